"""Codec interface contract for every latents backend, EnCodec round trips with tiny random-init
models of the real classes, pitch preservation of the spectral codecs, clear checkpoint errors."""


import numpy as np
import pytest

from music.chords import label_pitch_classes
from pipeline.corpus.tones import chord_tone
from stages.latents.codec import CodecError
from stages.latents.codecs import CODECS, make_codec
from stages.latents.logspec import LogSpecConfig, band_centres
from tests.latents_helpers import (
    TINY_META_ARCHITECTURE,
    save_tiny_hf_encodec,
    save_tiny_jasco_state,
    save_tiny_meta_encodec,
    top_pitch_classes,
)

EXPECTED_FRAME_RATES = {"logspec_griffinlim": 50.0, "encodec_32khz": 50.0, "encodec_24khz": 75.0, "jasco_encodec": 50.0}


@pytest.fixture(scope="module")
def codec_options(tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    return {
        "logspec_griffinlim": {"griffin_lim_iters": 16},
        "encodec_32khz": {"checkpoint": str(save_tiny_hf_encodec(root / "encodec_32khz"))},
        "encodec_24khz": {"checkpoint": str(save_tiny_meta_encodec(root / "encodec_24khz.th")),
                          "architecture": TINY_META_ARCHITECTURE},
        "jasco_encodec": {"checkpoint": str(save_tiny_jasco_state(root / "jasco" / "state_dict.bin"))},
    }


@pytest.fixture(scope="module")
def codecs(codec_options):
    return {name: make_codec(name, options) for name, options in codec_options.items()}


def test_every_registered_codec_is_covered(codec_options):
    assert set(codec_options) == set(CODECS)


@pytest.mark.parametrize("name", sorted(EXPECTED_FRAME_RATES))
@pytest.mark.parametrize("seconds", [0.3, 1.37])
def test_interface_contract(codecs, name, seconds):
    codec = codecs[name]
    assert codec.frame_rate == pytest.approx(EXPECTED_FRAME_RATES[name])
    n = round(seconds * codec.sample_rate)
    wav = (0.1 * np.random.default_rng(1).standard_normal(n)).astype(np.float32)
    latents = codec.encode(wav)
    assert latents.dtype == np.float32 and latents.shape == (codec.n_frames(n), codec.dim)
    assert abs(latents.shape[0] - seconds * codec.frame_rate) <= 1.0
    assert np.all(np.isfinite(latents))
    decoded = codec.decode(latents)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) - n) <= codec.hop_length  # whole frames, give or take one
    coarse = codec.coarse(latents)
    assert coarse.dtype == np.float32 and coarse.shape == (latents.shape[0], codec.coarse_dim)


@pytest.mark.parametrize("name", sorted(EXPECTED_FRAME_RATES))
def test_bad_shapes_are_clear_errors(codecs, name):
    codec = codecs[name]
    with pytest.raises(CodecError, match="mono"):
        codec.encode(np.zeros((2, 1000), dtype=np.float32))
    with pytest.raises(CodecError, match=f"\\(T, {codec.dim}\\)"):
        codec.decode(np.zeros((10, codec.dim + 1), dtype=np.float32))


@pytest.mark.parametrize("name", ["encodec_32khz", "encodec_24khz"])
def test_encodec_coarse_is_the_nearest_first_codebook_vector(codecs, name):
    codec = codecs[name]
    latents = codec.encode((0.1 * np.random.default_rng(2).standard_normal(codec.sample_rate)).astype(np.float32))
    quantizer = codec.model.quantizer
    embed = (quantizer.layers[0].codebook.embed if name == "encodec_32khz"
             else quantizer.vq.layers[0]._codebook.embed).numpy()
    nearest = embed[np.argmin(((latents[:, None, :] - embed[None]) ** 2).sum(-1), axis=1)]
    np.testing.assert_allclose(codec.coarse(latents), nearest, atol=1e-6)
    assert len({tuple(row) for row in codec.coarse(latents)}) > 1  # not a degenerate lookup


@pytest.mark.parametrize("name", ["encodec_32khz", "encodec_24khz"])
def test_encodec_round_trip_is_deterministic(codecs, name):
    codec = codecs[name]
    wav = (0.1 * np.random.default_rng(3).standard_normal(codec.sample_rate // 2)).astype(np.float32)
    first = codec.decode(codec.encode(wav))
    np.testing.assert_array_equal(first, codec.decode(codec.encode(wav)))


def test_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CodecError, match="encodec_32khz: cannot load checkpoint .*nowhere.*latents.encodec_32khz.checkpoint"):
        make_codec("encodec_32khz", {"checkpoint": str(tmp_path / "nowhere")})
    with pytest.raises(CodecError, match="encodec_24khz: checkpoint .*missing.th not found"):
        make_codec("encodec_24khz", {"checkpoint": str(tmp_path / "missing.th")})
    wrong = save_tiny_meta_encodec(tmp_path / "tiny.th")
    with pytest.raises(CodecError, match="not a state dict of the configured architecture"):
        make_codec("encodec_24khz", {"checkpoint": str(wrong)})  # the released architecture's sizes
    with pytest.raises(CodecError, match="unknown codec 'nope'"):
        make_codec("nope")


@pytest.mark.parametrize("octave", [3, 4])
@pytest.mark.parametrize("chord", ["Am", "C", "Em", "F"])
def test_logspec_round_trip_keeps_the_chord(codecs, chord, octave):
    codec = codecs["logspec_griffinlim"]
    wav = chord_tone(label_pitch_classes(chord), 1.5, codec.sample_rate, octave=octave)
    assert top_pitch_classes(wav, codec.sample_rate) == set(label_pitch_classes(chord))  # the probe itself works
    decoded = codec.decode(codec.encode(wav))
    assert top_pitch_classes(decoded, codec.sample_rate) == set(label_pitch_classes(chord))


def test_logspec_bands_resolve_semitones_from_low_frequencies():
    config = LogSpecConfig()
    centres = band_centres(config)
    assert centres[0] == config.fmin and centres[-1] <= config.sample_rate / 2
    spacing = np.diff(centres)
    bin_hz = config.sample_rate / config.n_fft
    assert np.all(spacing >= bin_hz - 1e-9)  # never finer than the STFT can resolve
    # above the frequency where a semitone is wider than one STFT bin, bands are finer than a semitone
    semitone_ratio = 2 ** (1 / 12) - 1
    resolvable = centres[1:] > bin_hz / semitone_ratio
    assert np.all(spacing[resolvable] < centres[1:][resolvable] * semitone_ratio)
    assert np.all(spacing[~resolvable] <= bin_hz + 1e-9)  # below it, every STFT bin is its own band


def test_logspec_tone_peaks_in_its_band(codecs):
    codec = codecs["logspec_griffinlim"]
    for freq in (110.0, 196.0, 1318.5):
        t = np.arange(codec.sample_rate) / codec.sample_rate
        latents = codec.encode((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
        peak = codec.centres_hz[np.argmax(latents[25])]
        bin_hz = codec.sample_rate / codec.config.n_fft
        assert abs(peak - freq) <= max(freq * (2 ** (1 / 24) - 1), bin_hz / 2)  # a quarter tone or half a bin


def test_logspec_round_trip_spectral_distance_is_small(codecs):
    from stages.latents.metrics import multi_resolution_stft

    codec = codecs["logspec_griffinlim"]
    wav = chord_tone(label_pitch_classes("F"), 1.0, codec.sample_rate)
    noise = (0.05 * np.random.default_rng(4).standard_normal(len(wav))).astype(np.float32)
    assert multi_resolution_stft(wav, codec.decode(codec.encode(wav))) < 0.5 * multi_resolution_stft(wav, noise)


@pytest.mark.parametrize("semitones", [2, -3, 5])
def test_logspec_transpose_moves_the_chord(codecs, semitones):
    codec = codecs["logspec_griffinlim"]
    audio = chord_tone(label_pitch_classes("C"), 2.0, codec.sample_rate)
    decoded = codec.decode(codec.transpose(codec.encode(audio), semitones))
    expected = sorted((pc + semitones) % 12 for pc in label_pitch_classes("C"))
    assert sorted(top_pitch_classes(decoded, codec.sample_rate, 3)) == expected


def test_codecs_without_a_frequency_axis_refuse_to_transpose(codecs):
    for name in ("encodec_32khz", "encodec_24khz"):
        with pytest.raises(CodecError, match="no frequency axis"):
            codecs[name].transpose(np.zeros((3, codecs[name].dim), dtype=np.float32), 1)


@pytest.mark.parametrize("name", sorted(EXPECTED_FRAME_RATES))
def test_chunked_decode_is_the_whole_decode(codecs, name):
    """Short pieces decode whole (identical samples); long ones chunk by chunk with 2 s of latent
    context either side, to the same length and within float rounding of the whole decode."""
    codec = codecs[name]
    rng = np.random.default_rng(3)
    t = np.arange(int(8.0 * codec.sample_rate)) / codec.sample_rate
    wav = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.2 * np.sin(t))) + 0.05 * rng.standard_normal(len(t)))
    latents = codec.encode(wav.astype(np.float32))
    second = round(codec.frame_rate)
    whole = codec.decode(latents)
    assert np.array_equal(codec.decode_chunked(latents, len(latents) - 4 * second, 2 * second), whole)
    chunked = codec.decode_chunked(latents, second, 2 * second)
    assert chunked.shape == whole.shape
    error = np.sum((whole - chunked).astype(np.float64) ** 2)   # 0 for codecs without long memory
    snr = np.inf if error == 0 else 10 * np.log10(np.sum(whole.astype(np.float64) ** 2) / error)
    assert snr > 60.0, f"{name}: chunked decode {snr:.1f} dB from the whole decode"
