"""musicnn judge: the PyTorch port against the original TF graph, windows, padding, cache, errors.

``fixtures/musicnn/reference.npz`` holds the original musicnn graph's outputs (TensorFlow 2.15,
musicnn's own code; see ``fixtures/musicnn/make_reference.py``) on ``bach_6s_16k.wav``, a 6 s
excerpt of the shared ``bach.mp3`` at 16 kHz.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model.evaluation.judges import musicnn
from model.evaluation.judges.musicnn import (LAYER_DIMENSIONS, MSD_TAGS, PATCH_FRAMES, MusicnnConfig,
                                             MusicnnEmbedding, MusicnnSetupError)
from pipeline.audio import resample
from pipeline.config import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
OUTPUTS = ("taggram", "penultimate", "max_pool", "mean_pool")
#: The port and the TF graph differ by float32 summation order only: each output within this
#: fraction of its largest magnitude (max_pool: 1.2e-4 of 49; taggram: 6e-7 of 0.3, when written).
PARITY_TOLERANCE = 1e-5


def assert_close_to_reference(actual: np.ndarray, desired: np.ndarray, name: str) -> None:
    assert actual.shape == desired.shape, name
    worst = float(np.abs(actual - desired).max())
    assert worst <= PARITY_TOLERANCE * float(np.abs(desired).max()), f"{name}: max abs diff {worst}"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("musicnn_cache")


@pytest.fixture(scope="module")
def judge(cache_dir: Path) -> MusicnnEmbedding:
    embedding = MusicnnEmbedding(MusicnnConfig(cache_dir=str(cache_dir)))
    embedding.setup()  # converts the TF checkpoint once into cache_dir
    return embedding


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def bach() -> tuple[np.ndarray, int]:
    audio, sr = sf.read(FIXTURES / "bach_6s_16k.wav", dtype="float32")
    return audio[None], sr


def test_network_matches_the_original_graph(judge: MusicnnEmbedding, reference: dict[str, np.ndarray]) -> None:
    out = judge.forward_patches(reference["log_mel"])
    for key in OUTPUTS:
        assert_close_to_reference(out[key], reference[key], key)


def test_audio_to_embedding_matches_the_original(judge: MusicnnEmbedding, reference: dict[str, np.ndarray],
                                                 bach: tuple[np.ndarray, int]) -> None:
    audio, sr = bach
    frames = musicnn.patches(musicnn.log_mel(audio[0]), judge.config.hop_frames)
    np.testing.assert_array_equal(frames, reference["log_mel"])  # same float16 rounding, same float32 log
    out = judge.analyse(audio, sr)
    for key in OUTPUTS:
        assert_close_to_reference(out[key], reference[key], key)
    assert judge.top_tags(audio, sr, k=1)[0][0] == "instrumental"  # the original's top tag for this clip


def test_shapes_windows_and_determinism(cache_dir: Path, bach: tuple[np.ndarray, int]) -> None:
    audio, sr = bach
    stereo_44k = resample(np.repeat(audio, 2, axis=0), sr, 44100)
    for layer, dims in LAYER_DIMENSIONS.items():
        judge = MusicnnEmbedding(MusicnnConfig(layer=layer, cache_dir=str(cache_dir)))
        first = judge.embed(stereo_44k, 44100)
        # 6 s = 376 frames; patches of 187 start at 0, 62, 124, 186
        assert first.shape == (4, dims) and first.dtype == np.float32
        np.testing.assert_array_equal(first, judge.embed(stereo_44k, 44100))
        assert judge.identity.version == importlib.metadata.version("musicnn") and layer in judge.identity.model
    taggram = MusicnnEmbedding(MusicnnConfig(hop_s=3.0, cache_dir=str(cache_dir))).taggram(audio, sr)
    assert taggram.shape == (2, len(MSD_TAGS)) and np.all((taggram > 0) & (taggram < 1))


def test_short_clip_is_repeated_and_too_short_is_refused(judge: MusicnnEmbedding,
                                                         bach: tuple[np.ndarray, int]) -> None:
    audio, sr = bach
    short = audio[:, :2 * sr]
    frames = musicnn.log_mel(short[0])
    assert frames.shape[0] < PATCH_FRAMES
    repeated = np.concatenate([frames, frames])[:PATCH_FRAMES][None]
    np.testing.assert_array_equal(musicnn.patches(frames, judge.config.hop_frames), repeated)
    np.testing.assert_allclose(judge.embed(short, sr), judge.forward_patches(repeated)["penultimate"], rtol=1e-6)
    with pytest.raises(ValueError, match="shorter than the 1 s minimum"):
        judge.embed(audio[:, :sr // 2], sr)


def test_white_noise_is_far_from_music(judge: MusicnnEmbedding, bach: tuple[np.ndarray, int]) -> None:
    audio, sr = bach
    noise = (0.05 * np.random.default_rng(0).standard_normal(audio.shape)).astype(np.float32)
    music_vectors, noise_vectors = judge.embed(audio, sr), judge.embed(noise, sr)
    spread = np.linalg.norm(music_vectors - music_vectors.mean(0), axis=1).max()
    assert np.linalg.norm(music_vectors.mean(0) - noise_vectors.mean(0)) > 2 * spread


def test_loud_audio_stays_finite(judge: MusicnnEmbedding) -> None:
    sr = musicnn.SAMPLE_RATE
    t = np.arange(4 * sr) / sr
    loud = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)[None]  # full-scale square wave
    assert musicnn.log_mel(loud[0]).max() > np.log10(np.finfo(np.float16).max)  # float16 math would overflow
    assert np.all(np.isfinite(judge.analyse(loud, sr)["taggram"]))


def test_variable_map_covers_the_checkpoint_and_cache_is_reused(judge: MusicnnEmbedding, cache_dir: Path) -> None:
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(musicnn.checkpoint_dir()) + "/")
    model_variables = {name for name in reader.get_variable_to_shape_map()
                       if "Adam" not in name and not name.endswith("_power")}  # optimizer state
    assert {tf_name for tf_name, _ in musicnn.tf_variable_map().values()} == model_variables
    (cached,) = cache_dir.glob("MSD_musicnn-*.pt")
    reference_vector = judge.forward_patches(np.ones((1, PATCH_FRAMES, musicnn.N_MELS)))["penultimate"]
    cached.write_bytes(b"damaged")
    again = MusicnnEmbedding(MusicnnConfig(cache_dir=str(cache_dir)))
    np.testing.assert_array_equal(again.forward_patches(np.ones((1, PATCH_FRAMES, musicnn.N_MELS)))["penultimate"],
                                  reference_vector)
    assert cached.read_bytes() != b"damaged"  # converted again and replaced
    blocker = cache_dir / "a_file"
    blocker.write_bytes(b"")
    unwritable = MusicnnEmbedding(MusicnnConfig(cache_dir=str(blocker / "cache")))
    with pytest.warns(RuntimeWarning, match="not cached"):
        unwritable.setup()
    np.testing.assert_array_equal(
        unwritable.forward_patches(np.ones((1, PATCH_FRAMES, musicnn.N_MELS)))["penultimate"], reference_vector)


def test_setup_errors_name_package_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    with monkeypatch.context() as patch:
        patch.setattr(musicnn.importlib.metadata, "distribution", missing)
        with pytest.raises(MusicnnSetupError, match="'musicnn'.*not installed"):
            MusicnnEmbedding(MusicnnConfig(cache_dir=str(tmp_path))).setup()

    class Elsewhere:
        def locate_file(self, path: str) -> Path:
            return tmp_path / path

    monkeypatch.setattr(musicnn.importlib.metadata, "distribution", lambda name: Elsewhere())
    with pytest.raises(MusicnnSetupError, match=r"MSD_musicnn/\.index: MSD_musicnn checkpoint file missing"):
        MusicnnEmbedding(MusicnnConfig(cache_dir=str(tmp_path))).setup()


def test_config_is_checked() -> None:
    assert MusicnnConfig().hop_frames == 62 and MusicnnConfig().dimensions == 200
    with pytest.raises(ConfigError, match="layer"):
        MusicnnConfig(layer="logits")
    with pytest.raises(ConfigError, match="hop_s"):
        MusicnnConfig(hop_s=0.0)
