"""Demucs separator with a tiny randomly initialised HTDemucs: loading, chunking, batching, stage.

The model is the real ``demucs.htdemucs.HTDemucs`` class, only small (8 channels, 1 s segments),
saved as a demucs local-repo checkpoint; nothing here touches the network.
"""

import json
import random
import time
import warnings
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.config import ConfigError
from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.runner import run_stage
from stages.drums.config import DemucsConfig
from stages.drums.demucs_separator import DemucsSeparator
from stages.drums.demucs_weights import DemucsWeightsMissing, load_drums_bag, save_to_local_repo
from stages.drums.stems import read_stem, stem_label

SOURCES = ["drums", "bass", "other", "vocals"]
SAMPLE_RATE = 44100
SEGMENT = Fraction(1, 1)  # seconds; tracks below are longer, so they are chunked


def tiny_htdemucs(seed: int):
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HTDemucs warns about zero-sized tensors at this size
        return HTDemucs(sources=SOURCES, samplerate=SAMPLE_RATE, segment=SEGMENT, channels=8, depth=4,
                        t_layers=1, t_heads=2)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The model is tiny: threads only add contention (CI runners and busy machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demucs_repo")
    save_to_local_repo(tiny_htdemucs(0), folder, "0123abcd", bag="tiny")
    return folder


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """Any attempt to download fails the test; the user's real caches are hidden."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network download attempted: {args}")

    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch_hub"))
    yield tmp_path
    torch.hub.set_dir(hub_dir)


def separator(repo, **overrides) -> DemucsSeparator:
    values = {"model": "tiny", "weights_dir": str(repo), "device": "cpu", "cpu_batch_size": 4, **overrides}
    sep = DemucsSeparator(DemucsConfig(**values))
    sep.setup()
    return sep


def noise(channels: int, seconds: float, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def reference_separation(sep: DemucsSeparator, samples: np.ndarray, shifts: int = 0) -> np.ndarray:
    """What demucs' own API does (normalise, apply_model with split=True, denormalise), drums only."""
    from demucs.apply import apply_model

    mix = torch.from_numpy(samples)
    ref = mix.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    random.seed(sep.config.seed)
    out = apply_model(sep.model, ((mix - mean) / std)[None], shifts=shifts, split=True, overlap=sep.config.overlap)
    return (out[0, 0] * std + mean).numpy()


@pytest.mark.parametrize("shifts", [0, 1])
def test_segmented_batches_equal_demucs_apply_model(repo, shifts):
    sep = separator(repo, shifts=shifts, seed=3)
    samples = noise(2, 2.6)  # 3.5 strides of 0.75 s: a short last segment with context
    np.testing.assert_allclose(sep.separate(samples, SAMPLE_RATE), reference_separation(sep, samples, shifts), atol=2e-6)


def test_batch_size_and_track_grouping_do_not_change_the_stems(repo):
    tracks = [noise(2, s, seed=i) for i, s in enumerate((0.4, 1.0, 2.3))]  # shorter than, equal to, longer than a segment
    one_by_one = [separator(repo, cpu_batch_size=1).separate(t, SAMPLE_RATE) for t in tracks]
    grouped = separator(repo, cpu_batch_size=5, batch_size=2)
    assert grouped.batch_size == 5  # on CPU the CPU batch size applies
    batched = grouped.separate_many(tracks, SAMPLE_RATE)
    for single, together, track in zip(one_by_one, batched, tracks):
        assert together.shape == track.shape
        np.testing.assert_allclose(together, single, atol=2e-5)


@pytest.mark.parametrize("sr", [8000, 48000])
def test_mono_and_other_rates_in_give_input_length_out(repo, sr):
    sep = separator(repo)
    mono = noise(1, 1.3, sr)
    out = sep.separate(mono, sr)
    assert out.shape == (2, mono.shape[1]) and out.dtype == np.float32 and np.all(np.isfinite(out))
    # mono is copied to both channels, so it separates exactly like the equivalent stereo input
    np.testing.assert_allclose(out, sep.separate(np.repeat(mono, 2, axis=0), sr), atol=1e-6)
    assert sep.separate(np.zeros((1, 0), np.float32), sr).shape == (2, 0)


def test_missing_weights_fail_fast_naming_the_file(tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    import demucs.apply, demucs.hf, demucs.pretrained, demucs.repo  # noqa: F401  (time the search, not imports)

    started = time.perf_counter()
    with pytest.raises(DemucsWeightsMissing) as info:
        DemucsSeparator(DemucsConfig(model="htdemucs", weights_dir=str(empty), device="cpu")).setup()
    assert time.perf_counter() - started < 2.0
    message = str(info.value)
    assert "955717e8-8726e21a.th" in message  # the file htdemucs needs, as demucs' files.txt names it
    assert "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/955717e8-8726e21a.th" in message
    assert str(empty) in message and str(tmp_path / "torch_hub" / "checkpoints") in message


def test_htdemucs_ft_needs_only_its_drums_specialist(tmp_path):
    with pytest.raises(DemucsWeightsMissing) as info:
        DemucsSeparator(DemucsConfig(model="htdemucs_ft", device="cpu")).setup()
    message = str(info.value)
    assert "f7e0c4bc-ba3fe64a.th" in message  # the drums member of the bag
    assert "d12395a8" not in message and "92cfc3b6" not in message and "04573f0d" not in message


def test_unknown_model_name_says_what_is_known(tmp_path):
    with pytest.raises(DemucsWeightsMissing, match="neither a known model .*htdemucs_ft"):
        DemucsSeparator(DemucsConfig(model="no_such_model", device="cpu")).setup()


def test_weights_found_in_torch_hub_cache_and_huggingface_cache(no_downloads):
    # torch hub cache: where demucs < 4.1 downloads <sig>-<checksum>.th
    save_to_local_repo(tiny_htdemucs(1), no_downloads / "torch_hub" / "checkpoints", "955717e8")
    bag, record = load_drums_bag("htdemucs", None)
    assert record["members"] == ["955717e8"] and record["files"][0].startswith("955717e8-")
    # HuggingFace cache: where demucs 4.1 downloads <sig>.safetensors (klass/args/kwargs in metadata)
    from safetensors.torch import save_file

    model = tiny_htdemucs(2)
    args, kwargs = model._init_args_kwargs
    snapshot = no_downloads / "hf_cache" / "models--adefossez--HTDemucs-ft" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    encoded = {k: ({"_type": "fraction", "numerator": v.numerator, "denominator": v.denominator}
                   if isinstance(v, Fraction) else v) for k, v in kwargs.items()}
    save_file(model.state_dict(), str(snapshot / "f7e0c4bc.safetensors"),
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(args), "kwargs": json.dumps(encoded)})
    bag, record = load_drums_bag("htdemucs_ft", None)
    assert record["files"] == ["f7e0c4bc.safetensors"] and len(bag.models) == 1
    assert bag.weights == [[1.0, 0.0, 0.0, 0.0]]
    x = torch.from_numpy(noise(2, 0.5))[None]
    with torch.no_grad():
        torch.testing.assert_close(bag.models[0](x), model.eval()(x))


def test_bag_loads_only_members_that_weigh_on_drums(tmp_path):
    folder = tmp_path / "bag"
    save_to_local_repo(tiny_htdemucs(4), folder, "aaaa1111")
    (folder / "pair.yaml").write_text("models: ['aaaa1111', 'bbbb2222']\nweights: [[1, 0, 0, 0], [0, 1, 1, 1]]\n")
    bag, record = load_drums_bag("pair", str(folder))  # bbbb2222 is not on disk and not needed
    assert record["members"] == ["aaaa1111"] and len(bag.models) == 1


def test_segment_longer_than_training_is_rejected(repo):
    with pytest.raises(ConfigError, match="exceeds"):
        separator(repo, segment=1.5)
    assert separator(repo, segment=0.5).segment_length == SAMPLE_RATE // 2


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("demucs_stage")
    audio = root / "audio"
    audio.mkdir()
    sf.write(audio / "mono8k.wav", noise(1, 1.2, 8000, seed=1).T, 8000)
    sf.write(audio / "stereo48k.flac", noise(2, 1.7, 48000, seed=2).T, 48000)
    table, rejects = build_manifest([audio])
    manifest = root / "manifest.parquet"
    write_manifest(table, rejects, manifest)
    return root, manifest


def test_stage_end_to_end_with_tiny_htdemucs(repo, small_manifest):
    root, manifest = small_manifest
    params = {"separator": "demucs", "demucs": {"model": "tiny", "weights_dir": str(repo), "device": "cpu"}}
    out = root / "drums"
    report = run_stage("drums", params, manifest, out, ShardingConfig(tracks_per_shard=1), progress=False)
    assert report.ok and report.written == 2 and report.track_errors == 0
    store = StageStore(out)
    durations = {"mono8k": 1.2, "stereo48k": 1.7}
    for track_id in store.track_ids():
        row = store.get(track_id)
        assert row["separator"] == "demucs/tiny"
        settings = row["separator_settings"]
        assert settings["members"] == ["0123abcd"] and settings["files"][0].startswith("0123abcd-")
        assert settings["sample_rate"] == SAMPLE_RATE and settings["segment_s"] == 1.0
        stem, sr = read_stem(out, row["stem_path"])
        seconds = durations[track_id.split("-")[0]]
        assert sr == 32000 and stem.shape[0] == 1 and abs(stem.shape[1] - seconds * sr) <= 2
        assert len(row["onset_envelope"]) == int(np.ceil(stem.shape[1] * 50 / sr))
        assert stem_label(out / row["stem_path"]) == "demucs/tiny"


def test_stage_batches_segments_across_tracks_with_the_same_output(repo, small_manifest, monkeypatch):
    """On a GPU the runner hands several decoded tracks to the stage at once and Demucs separates
    their segments in shared batches; the shards and stems must equal the one-by-one run."""
    from stages.drums.demucs_separator import DemucsSeparator

    root, manifest = small_manifest
    params = {"separator": "demucs", "demucs": {"model": "tiny", "weights_dir": str(repo), "device": "cpu"}}
    one_by_one = root / "drums_single"
    run_stage("drums", params, manifest, one_by_one, ShardingConfig(tracks_per_shard=2), progress=False)

    calls = []
    real = DemucsSeparator.separate_many

    def spy(self, tracks, sr):
        calls.append(len(tracks))
        return real(self, tracks, sr)

    monkeypatch.setattr(DemucsSeparator, "tracks_per_call", property(lambda self: 2))
    monkeypatch.setattr(DemucsSeparator, "separate_many", spy)
    batched = root / "drums_batched"
    report = run_stage("drums", params, manifest, batched, ShardingConfig(tracks_per_shard=2), progress=False)
    assert report.ok and calls == [2]
    assert (batched / "shard-00000.parquet").read_bytes() == (one_by_one / "shard-00000.parquet").read_bytes()
    for stem in sorted((one_by_one / "stems").iterdir()):
        np.testing.assert_allclose(read_stem(batched, f"stems/{stem.name}")[0], read_stem(one_by_one, f"stems/{stem.name}")[0], atol=1e-4)
