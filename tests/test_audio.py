"""pipeline.audio: formats x rates x channels, ranges, channel rules, and every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import AudioError, channel_matrix, load_audio, open_audio, probe_audio
from pipeline.audio_ffmpeg import FFmpegSource

FORMATS = ("wav", "flac", "mp3", "ogg", "m4a")
RATES = (8000, 22050, 32000, 44100, 48000)
CHANNELS = (1, 2, 6)
LOSSLESS = ("wav", "flac")
TARGET_RATE = 32000


def peak_frequency(samples: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of the first channel of (C, N) samples."""
    spectrum = np.abs(np.fft.rfft(samples[0] * np.hanning(samples.shape[1])))
    return float(np.fft.rfftfreq(samples.shape[1], 1.0 / sample_rate)[np.argmax(spectrum)])


def format_cases():
    for fmt in FORMATS:
        for rate in RATES:
            for channels in CHANNELS:
                if fmt == "mp3" and channels > 2:
                    continue  # MPEG-1/2 audio has at most two channels
                yield pytest.param(fmt, rate, channels, id=f"{fmt}-{rate}-{channels}ch")


@pytest.mark.parametrize("fmt,rate,channels", list(format_cases()))
def test_every_format_rate_and_channel_count(make_audio, sine, fmt, rate, channels):
    path = make_audio(f"tone.{fmt}", fmt, rate, channels, seconds=1.0)
    info = probe_audio(path)
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert info.frames == rate  # 1 s: every encoder here records the exact length
    assert info.duration == pytest.approx(1.0)

    native, native_rate = load_audio(path)
    assert native_rate == rate
    assert native.dtype == np.float32 and native.shape == (channels, rate)
    if fmt in LOSSLESS:
        np.testing.assert_allclose(native.T, sine(rate, channels), atol=1e-4)

    for want_channels in (1, 2):
        samples, out_rate = load_audio(path, sample_rate=TARGET_RATE, channels=want_channels)
        assert out_rate == TARGET_RATE
        assert samples.dtype == np.float32 and samples.shape == (want_channels, TARGET_RATE)
        assert abs(peak_frequency(samples, TARGET_RATE) - 440.0) <= 2.0
        # The tone is identical on every input channel, so every downmix rule must keep it.
        middle = samples[:, TARGET_RATE // 4 : 3 * TARGET_RATE // 4]  # away from codec edge effects
        assert np.sqrt(np.mean(middle**2, axis=1)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("fmt", FORMATS)
def test_offset_and_duration_read_the_right_span(make_audio, fmt):
    rate = 22050
    path = make_audio(f"chirp.{fmt}", fmt, rate, 2, data=np.stack([_chirp(rate, 2.0)] * 2, axis=1))
    whole, _ = load_audio(path)
    part, _ = load_audio(path, offset_s=0.5, duration_s=0.75)
    assert part.shape == (2, round(0.75 * rate))
    start = round(0.5 * rate)
    expected = whole[:, start : start + part.shape[1]]
    # Exact for every format: lossy decoders are pre-rolled before the seek point.
    np.testing.assert_allclose(part, expected, atol=1e-5)

    tail, _ = load_audio(path, offset_s=1.5, duration_s=5.0)  # a range past the end is cut there
    assert tail.shape == (2, whole.shape[1] - round(1.5 * rate))
    empty, _ = load_audio(path, offset_s=1.0, duration_s=0.0)
    assert empty.shape == (2, 0)
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, offset_s=10.0)
    assert excinfo.value.error_type == "out_of_range" and str(path) in str(excinfo.value)


def test_resampled_chunks_join_like_one_read(make_audio):
    path = make_audio("chirp.flac", "flac", 44100, 1, data=_chirp(44100, 2.0)[:, None])
    whole, _ = load_audio(path, sample_rate=TARGET_RATE)
    first, _ = load_audio(path, sample_rate=TARGET_RATE, duration_s=1.0)
    second, _ = load_audio(path, sample_rate=TARGET_RATE, offset_s=1.0)
    joined = np.concatenate([first, second], axis=1)
    assert joined.shape == whole.shape == (1, 2 * TARGET_RATE)
    assert np.abs(joined - whole).max() < 1e-3


@pytest.mark.parametrize("fmt", ["flac", "m4a"])
def test_reader_serves_consecutive_chunks_like_one_read(make_audio, monkeypatch, fmt):
    rate, seconds = 8000, 25.0  # longer than one FFmpeg decoding block
    path = make_audio(f"long.{fmt}", fmt, rate, 1, data=_chirp(rate, seconds)[:, None])
    whole, _ = load_audio(path, sample_rate=TARGET_RATE)
    decoders = []
    original = FFmpegSource._new_decoder
    monkeypatch.setattr(FFmpegSource, "_new_decoder", lambda self: decoders.append(1) or original(self))
    with open_audio(path) as reader:
        assert reader.info.frames == rate * seconds
        chunks = [reader.read(offset, 2.5, sample_rate=TARGET_RATE)[0] for offset in np.arange(0, seconds, 2.5)]
        joined = np.concatenate(chunks, axis=1)
        assert joined.shape == whole.shape
        assert np.abs(joined - whole).max() < 1e-3
        again, _ = reader.read(5.0, 1.0, sample_rate=TARGET_RATE)  # backwards: restarts, same samples
        np.testing.assert_allclose(again, whole[:, 5 * TARGET_RATE : 6 * TARGET_RATE], atol=1e-3)
    if fmt == "m4a":  # metadata, the forward pass, the backward read: never one per chunk
        assert len(decoders) == 3


def test_channel_rules():
    np.testing.assert_allclose(channel_matrix(2, 1), [[0.5, 0.5]])
    np.testing.assert_allclose(channel_matrix(1, 2), [[1.0], [1.0]])
    surround = channel_matrix(6, 2)  # L R C LFE Ls Rs
    assert surround[:, 3].tolist() == [0.0, 0.0]  # LFE dropped
    assert surround[0, 1] == 0.0 and surround[1, 0] == 0.0  # no left/right crosstalk
    assert surround[0, 2] == surround[1, 2] > 0  # centre to both sides
    np.testing.assert_allclose(surround.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(channel_matrix(6, 1), surround.mean(axis=0, keepdims=True))
    wide = channel_matrix(10, 2)
    assert wide[0, 0::2].tolist() == pytest.approx([0.2] * 5) and wide[0, 1::2].tolist() == [0.0] * 5
    assert wide[1, 1::2].tolist() == pytest.approx([0.2] * 5) and wide[1, 0::2].tolist() == [0.0] * 5
    with pytest.raises(ValueError):
        channel_matrix(2, 6)


def test_surround_downmix_on_real_samples(make_audio):
    rate, frames = 16000, 1600
    data = np.zeros((frames, 6), dtype=np.float32)
    data[:, 0], data[:, 1], data[:, 3] = 0.4, -0.4, 0.9  # left, right, LFE
    path = make_audio("five_one.wav", "wav", rate, 6, data=data)
    stereo, _ = load_audio(path, channels=2)
    left_gain = channel_matrix(6, 2)[0, 0]
    np.testing.assert_allclose(stereo[:, 100], [0.4 * left_gain, -0.4 * left_gain], atol=1e-4)
    with pytest.raises(AudioError) as excinfo:
        load_audio(make_audio("stereo.wav", "wav", rate, 2), channels=6)
    assert excinfo.value.error_type == "unsupported"


@pytest.mark.parametrize("codec", ["libvorbis", "libopus", "aac"])
def test_surround_channel_order_matches_wav_order(make_audio, ffmpeg, sine, tmp_path, codec):
    freqs = [300.0, 500.0, 700.0, 60.0, 1100.0, 1300.0]  # L R C LFE Ls Rs
    data = np.concatenate([sine(48000, 1, freq=f) for f in freqs], axis=1)
    source = make_audio("six.wav", "wav", 48000, 6, data=data)
    target = tmp_path / ("six.m4a" if codec == "aac" else "six.ogg")
    ffmpeg(source, target, "-c:a", codec)
    samples, _ = load_audio(target)
    found = [peak_frequency(channel[None], 48000) for channel in samples]
    assert found == pytest.approx(freqs, abs=3.0)


def test_content_decides_the_format_not_the_extension(make_audio, tmp_path):
    assert probe_audio(make_audio("flac_named.wav", "flac")).codec == "flac"
    mp3 = probe_audio(make_audio("mp3_named.wav", "mp3"))
    assert (mp3.container, mp3.codec) == ("mp3", "mp3")
    m4a = probe_audio(make_audio("m4a_named.mp3", "m4a"))
    assert (m4a.container, m4a.codec) == ("mp4", "aac")
    samples, _ = load_audio(tmp_path / "m4a_named.mp3")
    assert samples.shape == (1, 22050)
    text = tmp_path / "notes.wav"
    text.write_text("not audio, just text\n" * 20)
    _assert_rejected(text, "not_audio")


def test_opus_and_aiff_decode(make_audio, ffmpeg, tmp_path):
    source = make_audio("src.wav", "wav", 48000, 2)
    ffmpeg(source, tmp_path / "tone.opus", "-c:a", "libopus")
    info = probe_audio(tmp_path / "tone.opus")
    assert (info.container, info.codec, info.channels) == ("ogg", "opus", 2)
    samples, _ = load_audio(tmp_path / "tone.opus", sample_rate=TARGET_RATE, channels=1)
    assert abs(peak_frequency(samples, TARGET_RATE) - 440.0) <= 2.0
    aiff = probe_audio(make_audio("tone.aif", "aiff", 44100, 2))
    assert (aiff.container, aiff.frames) == ("aiff", 44100)


def test_streams_without_a_length_header_are_counted(make_audio, ffmpeg, tmp_path):
    source = make_audio("src.wav", "wav", 22050, 2, data=np.stack([_chirp(22050, 1.0)] * 2, axis=1))
    ffmpeg(source, tmp_path / "untagged.mp3", "-c:a", "libmp3lame", "-write_xing", "0")
    ffmpeg(source, tmp_path / "raw.aac", "-c:a", "aac", "-f", "adts")
    for name, container in (("untagged.mp3", "mp3"), ("raw.aac", "aac")):
        info = probe_audio(tmp_path / name)
        whole, _ = load_audio(tmp_path / name)
        assert info.container == container
        assert whole.shape == (2, info.frames)  # the probe's count matches a full decode
        assert info.duration == pytest.approx(1.0, abs=0.1)  # plus encoder delay and padding
        part, _ = load_audio(tmp_path / name, offset_s=0.25, duration_s=0.5)
        start = round(0.25 * 22050)
        np.testing.assert_allclose(part, whole[:, start : start + part.shape[1]], atol=1e-5)
        with pytest.raises(AudioError) as excinfo:
            load_audio(tmp_path / name, offset_s=5.0)
        assert excinfo.value.error_type == "out_of_range"


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "m4a", "aiff"])
def test_truncated_files_are_detected(make_audio, fmt):
    path = make_audio(f"cut.{fmt}", fmt, 22050, 2, seconds=3.0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    _assert_rejected(path, "truncated")
    with pytest.raises(AudioError):
        load_audio(path)


def test_bad_files_give_typed_errors_naming_the_file(make_audio, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    _assert_rejected(empty, "empty")
    zero = make_audio("zero.wav", "wav", data=np.zeros((0, 1), dtype=np.float32))
    _assert_rejected(zero, "zero_length")
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 8)
    _assert_rejected(corrupt, "corrupt")
    _assert_rejected(tmp_path / "missing.wav", "missing")
    (tmp_path / "folder.wav").mkdir()
    _assert_rejected(tmp_path / "folder.wav", "unreadable")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    _assert_rejected(tmp_path / "dangling.wav", "unreadable")


def test_non_finite_samples_are_an_error_not_a_crash(sine, tmp_path):
    path = tmp_path / "nan.wav"
    data = sine(8000, 1)
    data[100, 0] = np.nan
    sf.write(path, data, 8000, subtype="FLOAT")
    assert probe_audio(path).codec == "pcm_f32"
    with pytest.raises(AudioError) as excinfo:
        load_audio(path)
    assert excinfo.value.error_type == "non_finite" and "non-finite samples" in str(excinfo.value)


def test_bad_requests_are_value_errors(make_audio):
    path = make_audio("ok.wav")
    for kwargs in ({"sample_rate": 0}, {"channels": -1}, {"offset_s": -1.0}, {"duration_s": float("nan")}):
        with pytest.raises(ValueError):
            load_audio(path, **kwargs)


def test_real_mp3_from_reference_data(reference_dir):
    path = reference_dir / "jasco" / "bach.mp3"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    info = probe_audio(path)
    assert (info.container, info.sample_rate, info.channels) == ("mp3", 44100, 2)
    # No Xing tag: libsndfile estimates 443384 frames from the bit rate; the probe counts them.
    assert info.frames == 442368
    samples, rate = load_audio(path, sample_rate=TARGET_RATE, channels=1)
    assert rate == TARGET_RATE and samples.shape == (1, round(info.frames * TARGET_RATE / 44100))
    assert 0.05 < np.abs(samples).max() <= 1.0
    part, _ = load_audio(path, sample_rate=TARGET_RATE, channels=1, offset_s=4.0, duration_s=2.0)
    np.testing.assert_allclose(part, samples[:, 4 * TARGET_RATE : 6 * TARGET_RATE], atol=1e-3)


def _chirp(rate: int, seconds: float) -> np.ndarray:
    """A rising sweep (frames,) float32: every sample differs, so misaligned spans are caught."""
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * (200.0 * t + 400.0 * t**2))).astype(np.float32)


def _assert_rejected(path, error_type: str) -> None:
    with pytest.raises(AudioError) as excinfo:
        probe_audio(path)
    assert excinfo.value.error_type == error_type, str(excinfo.value)
    assert str(excinfo.value).startswith(f"{path}: ")
