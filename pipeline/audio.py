"""The one audio loader: ``probe_audio`` (header facts) and ``load_audio`` (float32 samples).

``open_audio`` keeps a file open for several range reads: a long file read in consecutive
chunks is decoded once, with memory bounded by the chunk size.

Formats are recognised by content, never by file name (:mod:`pipeline.audio_sniff`); libsndfile
decodes WAV/AIFF/FLAC/Ogg/MP3 (:mod:`pipeline.audio_decode`), FFmpeg through torchcodec
everything else (:mod:`pipeline.audio_ffmpeg`).
Resampling uses soxr; channel conversion follows :func:`channel_matrix`. Every problem with a file
is an :class:`AudioError` whose message names the file and the reason, and whose ``error_type``
is a short code (``corrupt``, ``truncated``, ``empty``, ...).

Channel conversion rules (channels are in WAV/SMPTE order: L R C LFE Ls Rs ...):

* same count: unchanged; 1 -> 2: the mono signal on both sides;
* 2 -> 1: mean of left and right;
* N > 2 -> 2: an ITU-R BS.775-style matrix for the standard layouts 3.0, quad, 5.0, 5.1, 6.1 and
  7.1 (centre and surrounds at -3 dB, LFE dropped), for more than 8 channels even channels go
  left and odd right; each output row is scaled to sum to 1, so a signal present identically on
  every channel comes out unchanged and nothing clips;
* N > 2 -> 1: the mean of that stereo downmix;
* anything else (e.g. 2 -> 6) is an ``unsupported`` AudioError.
"""

from __future__ import annotations

import math
import os

import numpy as np
import soxr

from pipeline.audio_decode import (
    AUDIO_ERROR_TYPES,
    CORRUPT,
    NON_FINITE,
    OUT_OF_RANGE,
    TRUNCATED,
    UNREADABLE,
    UNSUPPORTED,
    ZERO_LENGTH,
    AudioError,
    AudioInfo,
    Source,
    check_readable,
)
from pipeline.audio_open import open_source
from pipeline.audio_opus import OPUS_LENGTH_TOLERANCE, decode_opus, is_reduced_rate_request
from pipeline.audio_sniff import sniff_file

__all__ = [
    "AUDIO_ERROR_TYPES",
    "AudioError",
    "AudioInfo",
    "channel_matrix",
    "convert_channels",
    "AudioReader",
    "load_audio",
    "open_audio",
    "probe_audio",
    "resample",
]

#: soxr quality preset ("HQ": 20-bit precision, steep filter; "VHQ" costs more for no audible gain).
RESAMPLE_QUALITY = "HQ"
#: Seconds decoded on each side of a partial read before resampling and cut off afterwards, so
#: that consecutive chunks join like one long read (covers the soxr HQ filter's impulse response).
RESAMPLE_CONTEXT_S = 0.05
#: Seconds decoded at the start and end of a stream by :func:`probe_audio` to prove it decodes.
PROBE_CHECK_S = 0.1
#: Gain of centre and surround channels in the stereo downmix (-3 dB, ITU-R BS.775).
SURROUND_GAIN = 1.0 / math.sqrt(2.0)

# (left, right) weight of each channel role in the stereo downmix.
_ROLE_WEIGHTS = {
    "L": (1.0, 0.0), "R": (0.0, 1.0), "C": (SURROUND_GAIN, SURROUND_GAIN), "LFE": (0.0, 0.0),
    "Ls": (SURROUND_GAIN, 0.0), "Rs": (0.0, SURROUND_GAIN), "Cs": (SURROUND_GAIN, SURROUND_GAIN),
}
# Standard WAVE_FORMAT_EXTENSIBLE / SMPTE layouts by channel count.
_LAYOUTS = {
    3: ("L", "R", "C"),
    4: ("L", "R", "Ls", "Rs"),
    5: ("L", "R", "C", "Ls", "Rs"),
    6: ("L", "R", "C", "LFE", "Ls", "Rs"),
    7: ("L", "R", "C", "LFE", "Cs", "Ls", "Rs"),
    8: ("L", "R", "C", "LFE", "Ls", "Rs", "Ls", "Rs"),
}


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Read a file's stream properties and prove that its start and end decode.

    Cheap: headers plus ~0.1 s decoded at each end. Streams whose header length is only an
    estimate (MP3 without a Xing/Info tag, raw AAC) are decoded once to count their frames.
    Raises :class:`AudioError` for missing, unreadable, empty, zero-length, non-audio, corrupt
    and truncated files.
    """
    path = os.fspath(path)
    source = _open(path)
    try:
        if not source.frames_exact:
            source.with_frames(source.count_frames())
            if source.info.frames == 0:
                raise AudioError(path, "no audio frames could be decoded", ZERO_LENGTH)
            return source.info
        info = source.info
        check = max(1, round(PROBE_CHECK_S * info.sample_rate))
        head = source.read(0, min(check, info.frames))
        if head.shape[1] == 0:
            raise AudioError(path, "cannot decode: the first frames yield no audio", CORRUPT)
        tail_start = max(0, info.frames - check)
        try:
            tail = source.read(tail_start, info.frames)
        except AudioError as exc:
            raise AudioError(path, f"truncated: header says {info.duration:.3f} s but decoding fails "
                                   f"near the end ({exc.reason})", TRUNCATED) from exc
        if tail.shape[1] < info.frames - tail_start:
            raise AudioError(path, f"truncated: header says {info.frames} frames ({info.duration:.3f} s) "
                                   f"but the stream ends before that", TRUNCATED)
        return info
    finally:
        source.close()


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode ``[offset_s, offset_s + duration_s)`` of a file (only that part is read).

    Args:
        sample_rate: output rate (None: the file's own).
        channels: output channel count (None: the file's own); see the module doc for the rules.
        duration_s: None reads to the end; a range past the end is cut at the end.
    Returns:
        ``(samples, sample_rate)`` with samples float32 of shape (channels, n_samples).
    """
    _check_request(sample_rate, channels, offset_s, duration_s)
    with open_audio(path) as reader:
        return reader.read(offset_s, duration_s, sample_rate, channels)


def open_audio(path: str | os.PathLike) -> "AudioReader":
    """Open a file for several range reads (e.g. consecutive chunks of a long recording)."""
    return AudioReader(path)


class AudioReader:
    """An open audio file; ``read`` decodes one range, like :func:`load_audio`.

    Keeping the file open matters for long files read in consecutive chunks: FFmpeg decodes
    audio from the start up to the requested range, so a new decoder per chunk would cost
    O(chunks^2) decoding, while one reader moving forward decodes the file once. Memory stays
    bounded by the chunk size.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._source = _open(self.path)

    @property
    def info(self) -> AudioInfo:
        return self._source.info

    def read(self, offset_s: float = 0.0, duration_s: float | None = None,
             sample_rate: int | None = None, channels: int | None = None) -> tuple[np.ndarray, int]:
        """Decode ``[offset_s, offset_s + duration_s)`` -> (float32 (channels, n), sample_rate)."""
        _check_request(sample_rate, channels, offset_s, duration_s)
        path, source, info = self.path, self._source, self._source.info
        rate = info.sample_rate
        target_rate = sample_rate or rate
        if offset_s == 0 and duration_s is None and is_reduced_rate_request(info.container, info.codec, rate, target_rate):
            whole = self._read_opus_whole(target_rate, channels)
            if whole is not None:
                return whole, target_rate
        start = round(offset_s * rate)
        if source.frames_exact and start > info.frames:
            raise AudioError(path, f"offset {offset_s:.3f} s is past the end ({info.duration:.3f} s)", OUT_OF_RANGE)
        stop = None if duration_s is None else start + round(duration_s * rate)
        context = resample_aligned(RESAMPLE_CONTEXT_S * rate, rate, target_rate) if target_rate != rate else 0
        read_start = max(0, start - context)
        read_stop = None if stop is None else stop + context
        if source.frames_exact:
            stop = info.frames if stop is None else min(stop, info.frames)
            read_stop = info.frames if read_stop is None else min(read_stop, info.frames)
        raw = source.read(read_start, read_stop)
        read_end = read_start + raw.shape[1]
        # Only possible where the header length was an estimate (exact lengths are checked above).
        nothing_after_start = read_end == start and start > 0 and stop != start
        if read_end < start or (not source.frames_exact and nothing_after_start):
            raise AudioError(path, f"offset {offset_s:.3f} s is past the end ({read_end / rate:.3f} s)", OUT_OF_RANGE)
        if read_stop is not None and source.frames_exact and read_end < read_stop:
            raise AudioError(path, f"truncated: header says {info.frames} frames ({info.duration:.3f} s) "
                                   f"but decoding stops at frame {read_end}", TRUNCATED)
        if not np.isfinite(raw).all():
            raise AudioError(path, "non-finite samples (NaN or Inf)", NON_FINITE)
        segment_stop = read_end if stop is None else min(stop, read_end)
        try:
            samples = _convert_and_resample(raw, rate, target_rate, channels, start - read_start, segment_stop - start)
        except ValueError as exc:
            raise AudioError(path, str(exc), UNSUPPORTED) from exc
        return samples, target_rate

    def _read_opus_whole(self, target_rate: int, channels: int | None) -> np.ndarray | None:
        """A whole Opus file decoded by libopus below 48 kHz (:mod:`pipeline.audio_opus`), at the
        length the 48 kHz path gives; None where that decoder does not apply."""
        info = self._source.info
        decoded = decode_opus(self.path, target_rate, mono=channels == 1)
        if decoded is None:
            return None
        raw, raw_rate = decoded
        if not np.isfinite(raw).all():
            raise AudioError(self.path, "non-finite samples (NaN or Inf)", NON_FINITE)
        samples = _convert_and_resample(raw, raw_rate, target_rate, channels, 0, raw.shape[1])
        length = round(info.frames * target_rate / info.sample_rate)
        if samples.shape[1] < length - OPUS_LENGTH_TOLERANCE:
            return None  # less audio than the header promises: libsndfile's path says why
        if samples.shape[1] < length:
            samples = np.pad(samples, ((0, 0), (0, length - samples.shape[1])))
        return np.ascontiguousarray(samples[:, :length])

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def channel_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Mixing matrix of shape (n_out, n_in) for the rules in the module doc."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"channel counts must be positive, got {n_in} -> {n_out}")
    if n_in == n_out:
        return np.eye(n_in, dtype=np.float32)
    if n_in == 1 and n_out == 2:
        return np.ones((2, 1), dtype=np.float32)
    if n_out == 1:
        stereo = channel_matrix(n_in, 2) if n_in > 2 else np.eye(2, dtype=np.float32)
        return stereo.mean(axis=0, keepdims=True)
    if n_out == 2 and n_in > 2:
        if n_in in _LAYOUTS:
            weights = np.array([_ROLE_WEIGHTS[role] for role in _LAYOUTS[n_in]], dtype=np.float64).T
        else:
            weights = np.zeros((2, n_in))
            weights[0, 0::2] = 1.0
            weights[1, 1::2] = 1.0
        return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    raise ValueError(f"cannot convert {n_in} channels to {n_out}")


def convert_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """(C, N) -> (channels, N) float32 with :func:`channel_matrix`."""
    if samples.shape[0] == channels:
        return samples
    return (channel_matrix(samples.shape[0], channels) @ samples).astype(np.float32, copy=False)


def resample_aligned(frames: float, rate_in: int, rate_out: int) -> int:
    """``frames`` rounded up to a multiple of the frames that map to a whole number of output frames.

    Cutting a resampled range at such a multiple keeps its samples on the output grid of the whole
    file, so consecutive range reads join without a fractional-sample seam."""
    step = rate_in // math.gcd(rate_in, rate_out)
    return int(math.ceil(frames / step) * step)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample (C, N) float32 from ``rate_in`` to ``rate_out`` Hz with soxr -> (C, M)."""
    if rate_in == rate_out or samples.shape[1] == 0:
        return samples
    out = soxr.resample(np.ascontiguousarray(samples.T), rate_in, rate_out, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def _convert_and_resample(raw: np.ndarray, rate: int, target_rate: int, channels: int | None,
                          lead: int, length: int) -> np.ndarray:
    """Convert channels, resample, and cut the wanted ``lead:lead+length`` span (input frames)."""
    wanted_channels = channels or raw.shape[0]
    if wanted_channels < raw.shape[0]:  # fewer channels first: less to resample
        raw = convert_channels(raw, wanted_channels)
    if target_rate == rate:
        out = raw[:, lead : lead + length]
    else:
        resampled = resample(raw, rate, target_rate)
        ratio = target_rate / rate
        out_lead, out_length = round(lead * ratio), round(length * ratio)
        out = resampled[:, out_lead : out_lead + out_length]
        if out.shape[1] < out_length:  # soxr rounds its output length; pad the last sample or two
            out = np.pad(out, ((0, 0), (0, out_length - out.shape[1])))
    out = convert_channels(out, wanted_channels)
    return np.ascontiguousarray(out, dtype=np.float32)


def _open(path: str) -> Source:
    """Check access, sniff the content, reject truncated or empty streams, open a decoder."""
    check_readable(path)
    try:
        sniffed = sniff_file(path)
    except OSError as exc:
        raise AudioError(path, f"unreadable: {exc.strerror or exc}", UNREADABLE) from exc
    if sniffed.truncated_bytes:
        raise AudioError(path, f"truncated: the {sniffed.container} header declares audio data up to "
                               f"byte {sniffed.data_end} but the file has {sniffed.file_size} bytes", TRUNCATED)
    source = open_source(path, sniffed)
    if source.frames_exact and source.info.frames == 0:
        source.close()
        raise AudioError(path, f"no audio frames ({source.info.container} header with 0 frames)", ZERO_LENGTH)
    return source


def _check_request(sample_rate: int | None, channels: int | None, offset_s: float, duration_s: float | None) -> None:
    if sample_rate is not None and (not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive integer or None, got {sample_rate!r}")
    if channels is not None and (not isinstance(channels, (int, np.integer)) or channels <= 0):
        raise ValueError(f"channels must be a positive integer or None, got {channels!r}")
    if not math.isfinite(offset_s) or offset_s < 0:
        raise ValueError(f"offset_s must be a finite number >= 0, got {offset_s!r}")
    if duration_s is not None and (not math.isfinite(duration_s) or duration_s < 0):
        raise ValueError(f"duration_s must be a finite number >= 0 or None, got {duration_s!r}")


def audio_chunks(path: str, chunk_seconds: float, sample_rate: int | None, channels: int | None):
    """(channels, n) chunks of ``chunk_seconds`` read one after another from an open file, and the rate.

    The reader keeps its decoder and resampling context across chunks, so the chunks join without
    seams; memory is bounded by one chunk."""
    reader = open_audio(path)
    native = reader.info.sample_rate
    rate = sample_rate or native
    # chunk edges on frames that resample to whole output frames: no fractional-sample seams
    step = max(resample_aligned(chunk_seconds * native, native, rate), 1)

    def chunks():
        with reader:
            first = 0
            while True:
                samples, _ = reader.read(first / native, step / native, sample_rate, channels)
                if samples.shape[-1] == 0:
                    return
                yield samples
                if samples.shape[-1] < round(step * rate / native):
                    return
                first += step

    return chunks(), rate
