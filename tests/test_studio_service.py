"""The studio's safety and its work without a browser: launch refusals, the model picker as the only
way to name a file, upload caps, temporary files, and downloads that ``chordflow generate`` re-runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from browser_helpers import studio_server
from studio_helpers import train_tiny_run
from chordflow.studio.config import StudioConfig, StudioError, check_launch
from chordflow.studio.request import build_request, parse_chords
from music.bars import BarsError, chords_from_pairs

FIELDS = dict(prompt="calm piano", model="tiny", chords="(C, 0.0), (G, 1.0)", bpm=None, meter="4/4", duration=2.0,
              seed=3, cfg_all=4.0, cfg_text=-1.0, solver="euler", steps=4, tolerance=1e-4, max_duration=300.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studio_service")
    train_tiny_run(root)
    return root


# ------------------------------------------------------------------ chords and fields
def test_jasco_chord_pairs_are_read_and_bad_ones_named():
    assert chords_from_pairs("(C, 0.0), (D, 2.0), (Ab, 6.0)") == [("C", 0.0), ("D", 2.0), ("Ab", 6.0)]
    assert chords_from_pairs("[(N, 0.0), (Dm7, 3.456)]") == [("N", 0.0), ("Dm7", 3.456)]
    with pytest.raises(BarsError, match="Qx7"):
        chords_from_pairs("(C, 0.0), (Qx7, 1.0)")
    with pytest.raises(BarsError, match="rise"):
        chords_from_pairs("(C, 2.0), (G, 1.0)")
    with pytest.raises(BarsError, match="character"):
        chords_from_pairs("(C, 0.0) junk (G, 1.0)")
    with pytest.raises(BarsError, match="not a number"):
        chords_from_pairs("(C, soon)")


def test_bars_need_a_tempo_and_fields_are_checked():
    assert parse_chords("C | G", 120, "4/4") == [("C", 0.0), ("G", 2.0)]
    assert parse_chords("  ", 120, "4/4") is None
    with pytest.raises(StudioError, match="bpm"):
        parse_chords("C | G", None, "4/4")
    for field, value, message in (("duration", 0.2, "duration"), ("duration", 301, "duration"),
                                  ("solver", "magic", "solver"), ("steps", 2.5, "whole"), ("seed", -1, "seed")):
        with pytest.raises(StudioError, match=message):
            build_request(**{**FIELDS, field: value})


# ------------------------------------------------------------------ launch safety
def test_serving_beyond_this_machine_needs_a_login_or_saying_so(tmp_path):
    check_launch(StudioConfig(models_dir=tmp_path))  # 127.0.0.1, no login: fine
    with pytest.raises(StudioError, match="--username and --password"):
        check_launch(StudioConfig(models_dir=tmp_path, host="0.0.0.0"))
    with pytest.raises(StudioError, match="--share"):
        check_launch(StudioConfig(models_dir=tmp_path, share=True))
    check_launch(StudioConfig(models_dir=tmp_path, host="0.0.0.0", username="a", password="b"))
    check_launch(StudioConfig(models_dir=tmp_path, host="0.0.0.0", allow_no_auth=True))
    with pytest.raises(StudioError, match="both"):
        check_launch(StudioConfig(models_dir=tmp_path, username="a"))
    with pytest.raises(StudioError, match="does not exist"):
        check_launch(StudioConfig(models_dir=tmp_path / "missing"))


def test_the_command_refuses_an_open_listen_without_a_login(tmp_path, capsys):
    from chordflow.cli import main

    assert main(["studio", "--models", str(tmp_path), "--listen", "0.0.0.0"]) == 2
    assert "--allow-no-auth" in capsys.readouterr().err


# ------------------------------------------------------------------ the running server
def _generate_api(url: str, model: str, chords: str = "(C, 0.0), (G, 1.0)") -> list:
    from gradio_client import Client

    client = Client(url, verbose=False)
    return client.predict("calm piano", model, chords, 120, "4/4", 2.0, 0, None, "drum loop", None, 4.0, -1.0,
                          "euler", 4, 1e-4, api_name="/generate")


def test_path_traversal_and_oversize_uploads_are_refused_and_the_server_keeps_serving(models, tmp_path):
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(200_000, dtype=np.float32), 16000)  # 400 kB of PCM16
    with studio_server(models / "models", max_upload_mb=0.1) as (url, service):
        for name in ("../../../etc/passwd", "/etc/passwd", str(models / "models" / "tiny" / "checkpoint.pt")):
            try:
                message = _generate_api(url, name)[-1]
            except Exception as exc:  # gradio's own check of the dropdown's choices
                message = str(exc)
            assert "unknown model" in message or "not in the list of choices" in message, message
        for path in ("/etc/passwd", models / "models" / "tiny" / "checkpoint.pt", "../../../../etc/passwd"):
            assert requests.get(url + f"gradio_api/file={path}", timeout=10).status_code in (403, 404), path
        upload = requests.post(url + "gradio_api/upload", files={"files": ("big.wav", big.read_bytes())}, timeout=30)
        assert upload.status_code >= 400 and "size" in upload.text.lower()
        result = _generate_api(url, "tiny")  # still serving
        assert result[-1].startswith("Generated")
        with pytest.raises(StudioError, match="MB"):
            service.check_upload(big, "drums")


def test_unknown_models_are_refused_by_name_lookup_only(models):
    from chordflow.studio.catalog import ModelCatalog

    catalog = ModelCatalog(models / "models")
    assert catalog.names() == ["tiny"]
    for name in ("..", "../models/tiny", "tiny/../tiny", "", None):
        with pytest.raises(StudioError):
            catalog.path_of(name)


def test_long_uploads_and_unreadable_files_are_messages(models, tmp_path):
    from chordflow.studio.service import StudioService

    service = StudioService(StudioConfig(models_dir=models / "models", max_upload_seconds=3.0))
    try:
        long = tmp_path / "long.wav"
        sf.write(long, np.zeros(16000 * 5, dtype=np.float32), 16000)
        with pytest.raises(StudioError, match="lasts 5 s"):
            service.check_upload(long, "song")
        broken = tmp_path / "broken.wav"
        broken.write_bytes(b"RIFF not really")
        with pytest.raises(StudioError, match="broken.wav"):
            service.check_upload(broken, "drums")
    finally:
        service.close()


def test_downloads_rerun_with_chordflow_generate_to_the_same_audio_and_temp_files_go(models, tmp_path):
    from chordflow.cli import main
    from chordflow.studio.service import StudioService

    service = StudioService(StudioConfig(models_dir=models / "models", params=None))
    melody = tmp_path / "tune.npy"
    index = np.arange(100) % 53
    np.save(melody, np.eye(53, dtype=np.float32)[index])
    drums = sorted((models / "features" / "audio").glob("*.wav"))[1]
    request = build_request(**{**FIELDS, "seed": 7}, drums=drums, drums_source="full mix", melody=melody)
    result = service.generate(request)
    assert len(result.variations) == 2
    variation = result.variations[1]
    names = {p.name for p in variation.downloads}
    assert names == {"variation_1.wav", "variation_1.json", "drums.wav", "melody.npy"}
    document = json.loads((result.folder / "variation_1.json").read_text())
    assert document["prompts"][0]["seed"] == 8 and document["prompts"][0]["drums_is_stem"] is False
    here = tmp_path / "download"
    here.mkdir()
    for path in variation.downloads:
        (here / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "again"
    assert main(["generate", "--checkpoint", document["checkpoint"], "--params", str(here / "variation_1.json"),
                 "--prompts", str(here / "variation_1.json"), "--out", str(out), "--no-progress"]) == 0
    again, _ = sf.read(out / "clips" / "variation_1.wav", dtype="int16")
    studio, _ = sf.read(variation.wav, dtype="int16")
    assert np.array_equal(again, studio)
    first, _ = sf.read(result.variations[0].wav, dtype="int16")
    assert not np.array_equal(first, studio)  # the two variations differ
    old = time.time() - 2 * service.config.file_lifetime_s
    os.utime(result.folder, (old, old))
    assert service.prune() == 1 and not result.folder.exists()
    service.close()
    assert not service.work_dir.exists()


def test_the_page_starts_from_the_checkpoints_recommended_settings(models):
    from chordflow.studio.service import StudioService
    from model.checkpoint import load_artifact

    service = StudioService(StudioConfig(models_dir=models / "models"))
    try:
        recorded = load_artifact(models / "models" / "tiny" / "checkpoint.pt").generate
        assert service.recommended("tiny") == {"cfg_coef_all": recorded.cfg_coef_all, "cfg_coef_txt": recorded.cfg_coef_txt,
                                               "solver": recorded.solver, "steps": recorded.steps,
                                               "tolerance": recorded.atol}
        with pytest.raises(StudioError, match="unknown model"):
            service.recommended("../tiny")
    finally:
        service.close()


def test_released_jasco_folders_under_the_models_folder_are_offered_and_generate(models, tmp_path):
    import shutil

    from chordflow.studio.service import StudioService
    from jasco_fixture import require_fixture

    release = require_fixture("tiny_cd")
    shutil.copytree(release, tmp_path / "models" / "jasco-tiny", ignore=shutil.ignore_patterns("reference.npz", "*.th"))
    shutil.copytree(models / "models" / "tiny", tmp_path / "models" / "tiny")
    service = StudioService(StudioConfig(models_dir=tmp_path / "models", t5=tmp_path / "models" / "jasco-tiny" / "hf_t5"))
    try:
        assert service.catalog.names() == ["jasco-tiny", "tiny"]
        assert service.recommended("jasco-tiny")["solver"] == "dopri5"  # JASCO's defaults
        request = build_request(**{**FIELDS, "model": "jasco-tiny", "duration": 1.0, "steps": 2})
        result = service.generate(request)
        assert [v.wav.name for v in result.variations] == ["variation_0.wav", "variation_1.wav"]
        assert abs(result.variations[0].duration_s - 1.0) < 0.05
    finally:
        service.close()
