"""`chordflow melody ...`: fetch-weights (local mirror), extract, eval metrics, plot."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf
import yaml

from chordflow.cli import main
from pipeline.manifest import build_manifest, write_manifest
from pipeline.reader import StageStore
from stages.melody.constants import WEIGHT_SHA256
from stages.melody.fetch import SOURCE_NOTE, FetchError, fetch_weights, sha256_of
from tests.test_melody_support import synth_melody, weights_dir, write_truth  # noqa: F401 (fixture)

MODELS = ["multif0", "melody2"]


@pytest.fixture
def mirror(tmp_path, weights_dir):
    """A folder with copies of two weight files and an HTTP server on 127.0.0.1 serving it."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for model in MODELS:
        shutil.copy(weights_dir / f"{model}.h5", folder)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # quiet, but remember what was asked
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_fetch_weights_over_http_verifies_and_skips_good_files(mirror, tmp_path):
    folder, url, requests = mirror
    dest = tmp_path / "weights"
    paths = fetch_weights(dest, url, MODELS)
    assert [p.name for p in paths] == ["multif0.h5", "melody2.h5"]
    assert all(sha256_of(p) == WEIGHT_SHA256[p.stem] for p in paths)
    assert "MIT" in (dest / SOURCE_NOTE).read_text()
    assert len(requests) == 2
    fetch_weights(dest, url, MODELS)  # already there with the right hash: nothing downloaded
    assert len(requests) == 2


def test_tampered_download_is_rejected_and_not_saved(mirror, tmp_path):
    folder, url, _ = mirror
    data = bytearray((folder / "multif0.h5").read_bytes())
    data[-100] ^= 0xFF
    (folder / "multif0.h5").write_bytes(bytes(data))
    dest = tmp_path / "weights"
    with pytest.raises(FetchError, match="SHA-256 mismatch for multif0.h5"):
        fetch_weights(dest, url, ["multif0"])
    assert list(dest.iterdir()) == []  # neither the file nor a temp file is left
    with pytest.raises(FetchError, match="download failed"):
        fetch_weights(dest, url, ["vocal"])  # 404 on the mirror


def test_fetch_weights_command_with_file_url(tmp_path, weights_dir, capsys):
    dest = tmp_path / "w"
    code = main(["melody", "fetch-weights", "--dest", str(dest), "--base-url", weights_dir.as_uri(),
                 "--models", "bass", "--params", str(tmp_path / "none.yaml")])
    assert code == 0 and sha256_of(dest / "bass.h5") == WEIGHT_SHA256["bass"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pitch.h5").write_bytes(b"not the weights")
    code = main(["melody", "fetch-weights", "--dest", str(dest), "--base-url", bad.as_uri(), "--models", "pitch"])
    assert code == 1 and "SHA-256 mismatch" in capsys.readouterr().out
    assert not (dest / "pitch.h5").exists()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, weights_dir):
    """Two melodies with truth files, a manifest, and params pointing at the shared weights."""
    root = tmp_path_factory.mktemp("melody_cli")
    (root / "audio").mkdir()
    (root / "truth").mkdir()
    tunes = {"tune_a": [(62, 0.6), (66, 0.6), (69, 0.8)], "tune_b": [(74, 0.5), (71, 0.5), (67, 1.0)]}
    for name, notes in tunes.items():
        audio, f0 = synth_melody(notes, gap=0.15)
        sf.write(root / "audio" / f"{name}.wav", audio.T, 22050)
        write_truth(root / "truth" / f"{name}.json", f0)
    table, rejects = build_manifest([root / "audio"])
    write_manifest(table, rejects, root / "manifest.parquet")
    params = {"melody": {"weights_dir": str(weights_dir)}, "melody_eval": {"models": ["melody2"]},
              "executor": {"backend": "serial", "workers": 1}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_extract_then_eval_writes_metrics(tiny_corpus):
    root = tiny_corpus
    common = ["--manifest", str(root / "manifest.parquet"), "--params", str(root / "params.yaml")]
    assert main(["melody", "extract", *common, "--out", str(root / "features"), "--no-progress"]) == 0
    assert len(StageStore(root / "features")) == 2
    out = root / "metrics" / "melody.json"
    assert main(["melody", "eval", *common, "--truth", str(root / "truth"), "--features", str(root / "features"),
                 "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["clips"] == 2 and set(metrics) == {"clips", "melody2", "condition"}
    for name in ("melody2", "condition"):
        print(name, {k: round(v, 3) for k, v in metrics[name].items()})
        assert metrics[name]["raw_pitch_accuracy"] > 0.9 and metrics[name]["voicing_recall"] > 0.75
    assert main(["melody", "eval", *common, "--truth", str(root / "truth"), "--out", str(out),
                 "--limit", "1", "--no-progress"]) == 0
    assert json.loads(out.read_text())["clips"] == 1


def test_eval_on_a_process_pool_gives_the_serial_figures(tiny_corpus):
    root = tiny_corpus
    common = ["--manifest", str(root / "manifest.parquet"), "--truth", str(root / "truth"), "--no-progress"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["executor"] = {"backend": "process", "workers": 2}
    (root / "params_pool.yaml").write_text(yaml.safe_dump(params))
    serial, pooled = root / "metrics" / "serial.json", root / "metrics" / "pooled.json"
    assert main(["melody", "eval", *common, "--params", str(root / "params.yaml"), "--out", str(serial)]) == 0
    assert main(["melody", "eval", *common, "--params", str(root / "params_pool.yaml"), "--out", str(pooled)]) == 0
    assert json.loads(pooled.read_text()) == json.loads(serial.read_text())


def test_plot_writes_a_png(tiny_corpus):
    root = tiny_corpus
    out = root / "plots" / "salience.png"
    assert main(["melody", "plot", "--audio", str(root / "audio" / "tune_a.wav"), "--truth",
                 str(root / "truth" / "tune_a.json"), "--out", str(out), "--params", str(root / "params.yaml")]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert np.all([not p.name.startswith(".") for p in out.parent.iterdir()])  # no temp file left
