"""HPSS separator: quality bounds on a synthetic drum loop + sustained chords, shapes, envelope."""

import numpy as np
import pytest

from stages.drums.config import HpssConfig, OnsetConfig
from stages.drums.evaluate import onset_scores, si_sdr
from stages.drums.hpss import HpssSeparator, positive_flux
from stages.drums.onsets import detect_onsets, onset_envelope
from stages.drums.synthetic import drum_loop_mix

SR = 32000


def harmonic_leakage_db(stem: np.ndarray, drums: np.ndarray, chords: np.ndarray) -> float:
    """Energy of the chord component of ``stem`` relative to its drum component (least squares)."""
    basis = np.stack([drums, chords], axis=1).astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(basis, stem.astype(np.float64), rcond=None)
    return float(10 * np.log10(np.sum((b * chords) ** 2) / np.sum((a * drums) ** 2)))


@pytest.fixture(scope="module")
def loop():
    return drum_loop_mix(sr=SR, seconds=8.0, chord_gain_db=6.0, seed=0)


@pytest.fixture(scope="module")
def stem(loop):
    return HpssSeparator(HpssConfig(), SR, 1).separate(loop.mix[None], SR)[0]


def test_mix_is_dominated_by_chords(loop):
    # the premise of the bounds below: before separation the chords are 6 dB above the drums
    assert harmonic_leakage_db(loop.mix, loop.drums, loop.chords) == pytest.approx(6.0, abs=0.01)
    assert si_sdr(loop.mix, loop.drums) < -5.0


def test_hpss_stem_finds_the_loop_onsets(loop, stem):
    f1, precision, recall = onset_scores(loop.onsets, detect_onsets(stem[None], SR, OnsetConfig()))
    assert f1 >= 0.95 and precision >= 0.95 and recall >= 0.95  # measured 0.98 / 1.00 / 0.97


def test_hpss_stem_leaks_little_harmony(loop, stem):
    assert harmonic_leakage_db(stem, loop.drums, loop.chords) <= -17.0  # measured -20.1 dB (mix: +6 dB)
    assert si_sdr(stem, loop.drums) >= 5.0  # measured 7.1 dB (mix: -5.9 dB)


def test_percussive_margin_trades_energy_for_less_leakage(loop, stem):
    plain = HpssSeparator(HpssConfig(percussive_margin=1.0), SR, 1).separate(loop.mix[None], SR)[0]
    assert harmonic_leakage_db(plain, loop.drums, loop.chords) > harmonic_leakage_db(stem, loop.drums, loop.chords) + 5
    assert np.sum(plain**2) > np.sum(stem**2)


def test_transient_emphasis_lifts_attacks(loop, stem):
    emphasised = HpssSeparator(HpssConfig(transient_emphasis=3.0), SR, 1).separate(loop.mix[None], SR)[0]
    attack = np.zeros(len(stem), dtype=bool)
    for t in loop.onsets:
        attack[int(t * SR): int((t + 0.02) * SR)] = True

    def attack_share(x):
        return np.sum(x[attack] ** 2) / np.sum(x**2)

    assert attack_share(emphasised) > attack_share(stem) + 0.03
    assert harmonic_leakage_db(emphasised, loop.drums, loop.chords) < harmonic_leakage_db(stem, loop.drums, loop.chords)


@pytest.mark.parametrize("seed", [1, 2])
def test_bounds_hold_for_other_loops(seed):
    other = drum_loop_mix(sr=SR, seconds=6.0, bpm=100.0 + 20 * seed, chord_gain_db=3.0 * seed, seed=seed)
    out = HpssSeparator(HpssConfig(), SR, 1).separate(other.mix[None], SR)[0]
    assert harmonic_leakage_db(out, other.drums, other.chords) <= -15.0
    assert onset_scores(other.onsets, detect_onsets(out[None], SR, OnsetConfig()))[0] >= 0.9


def test_shapes_channels_and_edge_lengths(loop):
    separator = HpssSeparator(HpssConfig(), SR, 2)
    stereo = np.stack([loop.mix[:SR], 0.5 * loop.mix[:SR]])
    out = separator.separate(stereo, SR)
    assert out.shape == (2, SR) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], 0.5 * out[0], atol=1e-5)  # channels are separated independently
    assert separator.separate(np.zeros((1, 0), np.float32), SR).shape == (1, 0)
    short = separator.separate(loop.mix[None, :300], SR)  # shorter than one FFT frame
    assert short.shape == (1, 300) and np.all(np.isfinite(short))
    with pytest.raises(ValueError, match="channels, samples"):
        separator.separate(loop.mix, SR)


def test_positive_flux_is_normalised_and_sees_the_first_frame():
    magnitude = np.zeros((4, 5))
    magnitude[:, 0] = 1.0
    magnitude[:, 3] = 2.0
    flux = positive_flux(magnitude)
    np.testing.assert_allclose(flux, [0.5, 0.0, 0.0, 1.0, 0.0])
    assert np.all(positive_flux(np.zeros((3, 4))) == 0)


@pytest.mark.parametrize("sr", [8000, 32000, 48000])
def test_onset_envelope_is_frame_aligned(sr):
    n = int(2.0 * sr) + 7
    clicks = np.zeros((1, n), np.float32)
    for t in (0.5, 1.2):
        clicks[0, int(t * sr): int(t * sr) + 40] = 0.8
    envelope = onset_envelope(clicks, sr, 50.0, OnsetConfig())
    assert envelope.shape == (int(np.ceil(n * 50.0 / sr)),) and envelope.dtype == np.float32
    frames = np.arange(len(envelope))
    near = np.zeros(len(envelope), dtype=bool)
    for t in (0.5, 1.2):
        assert envelope[int(round(50 * t))] >= 0.5 * envelope.max()  # the onset is in frame t * 50 fps
        near |= np.abs(frames - 50 * t) <= 3
    assert envelope[~near].max() < 0.2 * envelope.max()
    assert onset_envelope(np.zeros((1, 0), np.float32), sr, 50.0, OnsetConfig()).shape == (0,)
    assert detect_onsets(np.zeros((1, sr), np.float32), sr, OnsetConfig()).size == 0
