"""Released JASCO files: loading (strict, weights-only, clear errors), export round trip, the
chord map, ``chordflow generate`` on a release folder, fine-tuning from one and exporting a
jasco-preset run."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jasco_fixture import VARIANTS, Fixture, require_fixture
from model.checkpoint import JASCO_RELEASE_FORMAT, CheckpointError, load_checkpoint
from model.jasco.release import ENCODEC_PREFIX, ReleaseError, read_release
from stages.chords.vocab import Vocabulary, VocabularyError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(params=VARIANTS)
def fixture(request) -> Fixture:
    return Fixture(require_fixture(request.param))


def release_copy(fixture: Fixture, tmp_path: Path, edit=None) -> Path:
    """A copy of the fixture's release files, ``edit(payload)`` applied to state_dict.bin."""
    folder = tmp_path / fixture.folder.name
    folder.mkdir()
    shutil.copy(fixture.folder / "compression_state_dict.bin", folder)
    payload = torch.load(fixture.folder / "state_dict.bin", weights_only=True)
    if edit is not None:
        edit(payload)
    torch.save(payload, folder / "state_dict.bin")
    return folder


def test_a_release_loads_strictly_with_its_own_config(fixture: Fixture):
    release = read_release(fixture.folder)
    original = torch.load(fixture.folder / "state_dict.bin", weights_only=True)["best_state"]
    assert set(release.weights) | {ENCODEC_PREFIX + k for k in release.codec_weights} == set(original)
    assert len(release.codec_weights) == 116
    config = release.model_config
    assert (config.architecture, config.dim, config.layers, config.heads) == ("jasco", 64, 2, 2)
    assert config.melody_embed_dim == (16 if fixture.folder.name == "tiny_cdm" else 0)
    checkpoint = load_checkpoint(fixture.folder)      # the same through the product's checkpoint reader
    assert checkpoint.format == JASCO_RELEASE_FORMAT and checkpoint.training is None


@pytest.mark.parametrize("damage, message", [
    (lambda p: p["best_state"].pop("emb.weight"), "missing: emb.weight"),
    (lambda p: p["best_state"].__setitem__("extra.weight", torch.zeros(1)), "unexpected: extra.weight"),
    (lambda p: p["best_state"].__setitem__("linear.weight", torch.zeros(3, 3)), "wrong shape: linear.weight"),
    (lambda p: p.__setitem__("xp.cfg", p["xp.cfg"].replace("norm_first: true", "norm_first: false")),
     "does not implement: {'norm_first': False}"),
    (lambda p: p.pop("xp.cfg"), "not an exported JASCO state dict"),
])
def test_damaged_releases_are_refused_naming_what_is_wrong(fixture: Fixture, tmp_path, damage, message):
    folder = release_copy(fixture, tmp_path, damage)
    with pytest.raises(ReleaseError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        read_release(folder)
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)


def test_missing_folder_and_pickled_code_are_clear_errors(tmp_path):
    with pytest.raises(ReleaseError, match="facebook/jasco-chords-drums-400M"):
        read_release(tmp_path / "nowhere")
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"best_state": {}, "xp.cfg": "", "hook": shutil.rmtree}, folder / "state_dict.bin")
    with pytest.raises(ReleaseError, match="refused"):
        read_release(folder)


def test_the_solver_form_is_refused_with_a_way_out(fixture: Fixture):
    """``solver_checkpoint.th`` holds an OmegaConf object: never unpickled, and the error says why."""
    with pytest.raises(ReleaseError, match="refused"):
        read_release(fixture.folder / "solver_checkpoint.th")


def test_chord_maps_json_and_plain_pickle(tmp_path):
    from conftest import REFERENCE_DIR

    shipped = REFERENCE_DIR / "jasco" / "chord_to_index_mapping.pkl"
    if not shipped.is_file():
        pytest.skip("JASCO's chord map pickle not available")
    assert Vocabulary.load(str(shipped)).mapping() == Vocabulary.jasco().mapping()
    hostile = tmp_path / "map.pkl"
    hostile.write_bytes(pickle.dumps({"N": 0, "UNK": 1, "x": shutil.rmtree}))
    with pytest.raises(VocabularyError, match="refused.*shutil"):
        Vocabulary.load(str(hostile))
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps(["N", "UNK"]))
    with pytest.raises(VocabularyError, match="expected a pickled dict"):
        Vocabulary.load(str(listed))


def test_export_round_trip_is_identical(fixture: Fixture, tmp_path):
    """Fixture -> ``chordflow export-jasco`` -> read again: the same state dict, the builder's keys only."""
    from chordflow.cli import main

    out = tmp_path / "exported"
    assert main(["export-jasco", str(fixture.folder), str(out)]) == 0
    original = torch.load(fixture.folder / "state_dict.bin", weights_only=True)
    exported = torch.load(out / "state_dict.bin", weights_only=True)
    assert set(exported) == {"best_state", "xp.cfg", "version", "exported"} and exported["exported"] is True
    assert set(exported["best_state"]) == set(original["best_state"])
    for key, value in original["best_state"].items():
        assert torch.equal(exported["best_state"][key], value), key
    xp = yaml.safe_load(exported["xp.cfg"])
    assert "emb_lr" not in xp["transformer_lm"] and "two_step_cfg" not in xp["transformer_lm"]
    from omegaconf import OmegaConf

    built_from = OmegaConf.create(original["xp.cfg"])   # a config AudioCraft's builder accepted
    assert set(xp["transformer_lm"]) <= set(built_from.transformer_lm)
    assert set(xp["conditioners"]) == set(built_from.conditioners)
    assert "${" not in exported["xp.cfg"]
    assert torch.load(out / "compression_state_dict.bin", weights_only=True)["pretrained"] == "facebook/encodec_32khz"
    again = read_release(out)
    assert again.model_config == read_release(fixture.folder).model_config


def test_generate_command_runs_a_release_folder(tmp_path):
    """``chordflow generate --checkpoint JASCO_FOLDER --t5 DIR`` on a prompts file."""
    from chordflow.cli import main

    fixture = Fixture(require_fixture("tiny_cdm"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "description": "jazz trio", "duration": 2.0,
                                   "chords": [["C", 0.0], ["G7", 1.0]]}) + "\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"generate": {"solver": "euler", "steps": 2}}))
    out = tmp_path / "out"
    code = main(["generate", "--checkpoint", str(fixture.folder), "--t5", str(fixture.folder / "hf_t5"),
                 "--prompts", str(prompts), "--out", str(out), "--params", str(params), "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["clips"]) == 1 and not report["rejects"]
    clip = report["clips"][0]
    assert (out / clip["wav"]).is_file() and clip["duration_s"] == pytest.approx(2.0)


TINY_TRAIN = {"steps": 3, "batch_size": 2, "segment_seconds": 1.0, "warmup_steps": 1, "checkpoint_every": 100,
              "eval_every": 0, "eval_batches": 1, "normalisation": "global", "seed": 3}


@pytest.fixture(scope="module")
def jasco_features(tmp_path_factory):
    """Tiny chordflow shards made with the EnCodec copy inside the tiny_cdm release (codec jasco_encodec)."""
    from model_helpers import build_tiny_features

    fixture = Fixture(require_fixture("tiny_cdm"))
    root = tmp_path_factory.mktemp("jasco_features")
    features = build_tiny_features(root, n_tracks=4, codec=("jasco_encodec", {
        "checkpoint": str(fixture.folder / "state_dict.bin"), "coarse_codebooks": 1}))
    return fixture, features


def train_params(fixture: Fixture, path: Path) -> Path:
    model = {"preset": "jasco", "dim": 64, "layers": 2, "heads": 2,
             "text": {"encoder": "t5", "name_or_path": str(fixture.folder / "hf_t5"), "max_tokens": 0}}
    path.write_text(yaml.safe_dump({"model": model, "train": TINY_TRAIN}))
    return path


def train_cli(features, params: Path, out: Path, *extra: str) -> int:
    from chordflow.cli import main

    return main(["train", "--manifest", str(features.manifest), "--metadata", str(features.metadata),
                 "--latents", str(features.latents), "--chords", str(features.chords), "--melody", str(features.melody),
                 "--stats", str(features.stats), "--out", str(out), "--params", str(params), "--no-progress", *extra])


def test_fine_tuning_starts_from_the_release_and_exports_back(jasco_features, tmp_path):
    from model.checkpoint import load_checkpoint
    from model.config import ModelParams, TrainConfig
    from model.sampling.sample import MusicGenerator
    from model.training.train import Trainer, TrainPaths
    from pipeline.config import load_config

    fixture, features = jasco_features
    params = yaml.safe_load(train_params(fixture, tmp_path / "params.yaml").read_text())
    paths = TrainPaths(manifest=str(features.manifest), latents=str(features.latents), chords=str(features.chords),
                       melody=str(features.melody), stats=str(features.stats), out_dir=str(tmp_path / "probe"),
                       metadata=str(features.metadata))
    trainer = Trainer(paths, load_config(ModelParams, params["model"]), load_config(TrainConfig, params["train"]),
                      continue_from=f"jasco:{fixture.folder}")
    release = read_release(fixture.folder)
    for name, value in release.weights.items():           # weights and EMA from the release, fresh optimizer
        assert torch.equal(trainer.model.state_dict()[name], value) and torch.equal(trainer.ema[name], value)
    assert not trainer.optimizer.state
    assert (trainer.stats.mean, trainer.stats.std) == (-0.0074, 4.0102)   # JASCO's normalisation, not the data's
    assert trainer.time_weighted_loss                                      # JASCO's (1 + t) loss weight

    run = tmp_path / "run"
    assert train_cli(features, tmp_path / "params.yaml", run, "--continue-from", f"jasco:{fixture.folder}") == 0
    artifact = load_checkpoint(run / "checkpoint.pt").artifact
    assert artifact.model_config == release.model_config
    moved = max(float((artifact.model_weights[k] - v).abs().max()) for k, v in release.weights.items())
    assert moved > 0                                                       # it trained
    from chordflow.cli import main

    exported = tmp_path / "exported"
    assert main(["export-jasco", str(run), str(exported)]) == 0
    again = read_release(exported)
    assert all(torch.equal(again.weights[k], artifact.ema_weights[k]) for k in again.weights)
    generator = MusicGenerator.from_jasco(str(exported), t5=str(fixture.folder / "hf_t5"), device="cpu",
                                          solver="euler", steps=2, seconds=1.0, separate_drums=False)
    audio = generator.generate_music(["organ"], chords=[("C", 0.0), ("F", 0.5)])
    assert audio.shape == (1, 32000) and np.isfinite(audio).all()


def test_a_fresh_jasco_preset_run_exports_and_loads_into_the_generator(jasco_features, tmp_path):
    from chordflow.cli import main
    from model.sampling.sample import MusicGenerator

    fixture, features = jasco_features
    run = tmp_path / "run"
    assert train_cli(features, train_params(fixture, tmp_path / "params.yaml"), run) == 0
    out = tmp_path / "exported"
    assert main(["export-jasco", str(run), str(out)]) == 0
    release = read_release(out)                   # AudioCraft's form, strict
    assert release.model_config.architecture == "jasco" and release.model_config.melody_embed_dim == 16
    generator = MusicGenerator.from_jasco(str(out), t5=str(fixture.folder / "hf_t5"), device="cpu", solver="euler",
                                          steps=2, seconds=1.0, separate_drums=False)
    own = MusicGenerator.from_checkpoint(str(run / "checkpoint.pt"))
    own.set_generation_params(solver="euler", steps=2, duration=1.0, cfg_coef_all=5.0, cfg_coef_txt=0.0,
                              guidance_interval=(0.0, 1.0))
    generator.set_generation_params(audiocraft_quirks=False)
    noise = torch.randn(1, 50, 128, generator=torch.Generator().manual_seed(1))
    a = generator.generate_music(["organ"], chords=[("C", 0.0)], noise=noise, return_latents=True)[1]
    b = own.generate_music(["organ"], chords=[("C", 0.0)], noise=noise, return_latents=True)[1]
    assert torch.allclose(a, b, atol=1e-5)        # the export is the same model as the run (EMA weights)


def test_a_release_generates_longer_than_its_segment_by_windows():
    """JASCO stops at 10 s; through chordflow's sampler a release continues window by window."""
    from jasco_fixture import generator_for

    fixture = Fixture(require_fixture("tiny_cdm"))
    generator = generator_for(fixture, solver="euler", steps=2, seconds=13.0, overlap_seconds=2.0)
    audio, latents = generator.generate_music(["jazz trio"], chords=[("C", 0.0), ("F", 6.0), ("G7", 11.0)],
                                              return_latents=True)
    assert latents.shape == (1, 650, 128) and audio.shape == (1, 13 * 32000)
    assert np.isfinite(audio).all()


def test_drums_mix_is_separated_with_the_drums_stage_demucs(tmp_path):
    """``separate_drums`` (on for releases, as JASCO): the mix goes through the drums stage's Demucs
    separator, then the same drum path as a given stem (tiny random HTDemucs here)."""
    from jasco_fixture import generator_for
    from stages.drums.config import DemucsConfig
    from stages.drums.demucs_separator import DemucsSeparator
    from stages.drums.demucs_weights import save_to_local_repo
    from test_drums_demucs import tiny_htdemucs

    fixture = Fixture(require_fixture("tiny_cdm"))
    save_to_local_repo(tiny_htdemucs(0), tmp_path, "0123abcd", bag="tiny")
    separator = DemucsSeparator(DemucsConfig(model="tiny", weights_dir=str(tmp_path), device="cpu"))
    mix = (0.3 * np.random.default_rng(0).standard_normal(44100)).astype(np.float32)
    separating = generator_for(fixture, solver="euler", steps=1)
    separating.set_generation_params(separate_drums=True)
    separating.set_drum_separator(separator)
    given_stem = generator_for(fixture, solver="euler", steps=1)
    stem = separator.separate(mix[None], 44100).mean(axis=0)
    frames = 50
    assert np.array_equal(separating._drum_condition(mix, 44100, frames), given_stem._drum_condition(stem, 44100, frames))
