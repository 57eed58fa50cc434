"""Whole Ogg Opus files decoded by libopus below 48 kHz: the same audio as the 48 kHz path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from pipeline import audio
from pipeline.audio_decode import AudioError
from pipeline.audio_opus import OGG_PAGE_HEADER, available, decode_opus, decode_rate_for

pytestmark = pytest.mark.skipif(not available(), reason="libopus not installed")


@pytest.fixture(scope="module")
def opus_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    t = np.arange(int(48000 * 3.3)) / 48000
    left = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 330 * t)
    path = tmp_path_factory.mktemp("opus") / "tone.opus"
    soundfile.write(path, np.stack([left, right], axis=1).astype(np.float32), 48000, format="OGG", subtype="OPUS")
    return path


def _via_48k(path, rate, channels, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(audio, "is_reduced_rate_request", lambda *args: False)
        return audio.load_audio(path, rate, channels)[0]


@pytest.mark.parametrize("rate, channels", [(11025, 1), (22050, 1), (16000, 2)])
def test_reduced_rate_decode_is_the_48k_decode_resampled(opus_file, monkeypatch, rate, channels):
    fast = audio.load_audio(opus_file, rate, channels)[0]
    slow = _via_48k(opus_file, rate, channels, monkeypatch)
    assert fast.shape == slow.shape and fast.dtype == np.float32
    snr = 10 * np.log10(np.sum(slow ** 2) / np.sum((fast - slow) ** 2))
    # they differ only near the new Nyquist, where libopus' band edge and soxr's filter are not the
    # same (at 16 kHz straight from libopus, with this broadband noise: 34 dB; real music: 80+ dB)
    assert snr > 30, f"{snr:.1f} dB"


def test_rates_and_where_it_does_not_apply(tmp_path, opus_file):
    assert [decode_rate_for(r) for r in (8000, 11025, 22050, 32000, 44100, 96000)] == [8000, 12000, 24000, 48000, 48000, 48000]
    vorbis = tmp_path / "tone.ogg"
    soundfile.write(vorbis, np.zeros((4800, 1), np.float32), 48000, format="OGG", subtype="VORBIS")
    assert decode_opus(str(vorbis), 11025, mono=True) is None  # not Opus: the caller uses libsndfile
    samples, rate = decode_opus(str(opus_file), 11025, mono=False)
    assert rate == 12000 and samples.shape == (2, round(3.3 * 12000))


def test_header_gain_is_applied(tmp_path, opus_file):
    data = bytearray(opus_file.read_bytes())
    head = OGG_PAGE_HEADER.size + data[OGG_PAGE_HEADER.size - 1]  # the first packet, OpusHead
    assert data[head:head + 8] == b"OpusHead"
    data[head + 16:head + 18] = (1541).to_bytes(2, "little", signed=True)  # +6.02 dB in Q7.8
    louder = tmp_path / "louder.opus"
    louder.write_bytes(bytes(data))
    base, _ = decode_opus(str(opus_file), 24000, mono=True)
    gained, _ = decode_opus(str(louder), 24000, mono=True)
    np.testing.assert_allclose(gained, base * 10 ** (1541 / 5120), rtol=1e-5, atol=1e-7)


def test_a_damaged_file_gets_the_48k_paths_verdict(tmp_path, opus_file, monkeypatch):
    cut = tmp_path / "cut.opus"
    cut.write_bytes(opus_file.read_bytes()[:-100])
    assert decode_opus(str(cut), 11025, mono=True) is None  # a cut page: this reader declines
    try:
        expected = _via_48k(cut, 11025, 1, monkeypatch)
    except AudioError as exc:
        with pytest.raises(AudioError) as caught:
            audio.load_audio(cut, 11025, 1)
        assert str(caught.value) == str(exc) and str(cut) in str(exc)
    else:
        np.testing.assert_array_equal(audio.load_audio(cut, 11025, 1)[0], expected)


def test_chained_streams_go_to_libsndfile(tmp_path, opus_file):
    # two logical streams one after the other: this reader declines, the 48 kHz path reads the file
    chained = tmp_path / "chained.opus"
    first = opus_file.read_bytes()
    second = bytearray(first)
    for offset in range(len(second) - 3):  # give every page of the copy another serial number
        if second[offset:offset + 4] == b"OggS":
            second[offset + 14:offset + 18] = (0x5EED).to_bytes(4, "little")
    chained.write_bytes(first + bytes(second))
    assert decode_opus(str(chained), 11025, mono=True) is None
