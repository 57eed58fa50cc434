"""Decoder backends behind :mod:`pipeline.audio`: libsndfile first, FFmpeg (torchcodec) second.

A *source* is an open file that knows its :class:`AudioInfo` and can decode a frame range
``[start, stop)`` at the file's own rate and channel count, as float32 of shape (channels, n).
Every failure is an :class:`AudioError` that names the file and carries a short ``error_type``.

libsndfile (soundfile) reads WAV/AIFF/FLAC/Ogg (Vorbis, Opus, FLAC)/MP3 with exact, fast seeks;
anything it cannot open (MP4/M4A, raw AAC, Matroska, WMA, ...) goes to torchcodec's
``AudioDecoder`` (FFmpeg, :mod:`pipeline.audio_ffmpeg`), which imports torch only when needed.
"""

from __future__ import annotations

import dataclasses
import errno
import os

import numpy as np
import soundfile

from pipeline.audio_sniff import Sniffed

# Short error codes, shared by the manifest's rejects table and later stages' error tables.
MISSING = "missing"
UNREADABLE = "unreadable"
EMPTY = "empty"
ZERO_LENGTH = "zero_length"
NOT_AUDIO = "not_audio"
CORRUPT = "corrupt"
TRUNCATED = "truncated"
NON_FINITE = "non_finite"
UNSUPPORTED = "unsupported"
OUT_OF_RANGE = "out_of_range"
AUDIO_ERROR_TYPES: frozenset[str] = frozenset(
    {MISSING, UNREADABLE, EMPTY, ZERO_LENGTH, NOT_AUDIO, CORRUPT, TRUNCATED, NON_FINITE,
     UNSUPPORTED, OUT_OF_RANGE}
)

#: Frames decoded in a block when a stream must be read to its end (bounded memory).
BLOCK_FRAMES = 1 << 20
#: After a seek, libsndfile's MP3 decoder (mpg123) can return silence for a few thousand frames
#: (up to ~6600 measured); MP3 reads therefore seek this many frames early and drop them.
MP3_SEEK_PREROLL_FRAMES = 16384
#: Containers whose header length is exact when decoded by FFmpeg (others are bit-rate estimates).
FFMPEG_EXACT_CONTAINERS = frozenset({"mp4", "ogg", "matroska", "wav", "rf64", "w64", "aiff", "flac", "caf"})
#: Containers libsndfile cannot read: sent straight to FFmpeg.
FFMPEG_ONLY_CONTAINERS = frozenset({"mp4", "aac", "matroska", "asf", "amr", "ac3"})

# libsndfile names -> the names recorded in manifests (FFmpeg-style, lower case).
_SF_CONTAINERS = {"WAV": "wav", "WAVEX": "wav", "RF64": "rf64", "W64": "w64", "AIFF": "aiff",
                  "FLAC": "flac", "OGG": "ogg", "MP3": "mp3", "CAF": "caf", "AU": "au"}
_SF_CODECS = {
    "PCM_S8": "pcm_s8", "PCM_U8": "pcm_u8", "PCM_16": "pcm_s16", "PCM_24": "pcm_s24",
    "PCM_32": "pcm_s32", "FLOAT": "pcm_f32", "DOUBLE": "pcm_f64", "ULAW": "pcm_mulaw",
    "ALAW": "pcm_alaw", "IMA_ADPCM": "adpcm_ima", "MS_ADPCM": "adpcm_ms", "GSM610": "gsm",
    "VORBIS": "vorbis", "OPUS": "opus", "MPEG_LAYER_I": "mp1", "MPEG_LAYER_II": "mp2",
    "MPEG_LAYER_III": "mp3", "ALAC_16": "alac", "ALAC_20": "alac", "ALAC_24": "alac",
    "ALAC_32": "alac",
}
# Vorbis/Opus store surround channels in Vorbis order (L C R ...); libsndfile does not reorder,
# so these permutations bring them into WAV/SMPTE order (L R C LFE ...) like FFmpeg does.
VORBIS_TO_SMPTE: dict[int, tuple[int, ...]] = {
    3: (0, 2, 1),
    5: (0, 2, 1, 3, 4),
    6: (0, 2, 1, 5, 3, 4),
    7: (0, 2, 1, 6, 5, 3, 4),
    8: (0, 2, 1, 7, 5, 6, 3, 4),
}


class AudioError(Exception):
    """A file that cannot be used as audio; ``str(error)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str, error_type: str = CORRUPT) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.error_type = error_type
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep all three fields when sent between processes
        return (type(self), (self.path, self.reason, self.error_type))


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """Stream properties read from a file's header (``frames`` per channel, ``duration`` in s)."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    codec: str
    container: str


class Source:
    """An open file: ``info``, whether ``info.frames`` is exact, and a range decoder."""

    path: str
    info: AudioInfo
    #: False when the header length is only an estimate (then ``count_frames`` gives the truth).
    frames_exact: bool

    def read(self, start: int, stop: int | None) -> np.ndarray:
        """Decode frames ``[start, stop)`` (``stop=None``: to the end) -> (channels, n) float32."""
        raise NotImplementedError

    def count_frames(self) -> int:
        """Decode the whole stream (bounded memory) to count its frames."""
        raise NotImplementedError

    def with_frames(self, frames: int) -> None:
        """Replace an estimated length by a counted one."""
        self.info = dataclasses.replace(self.info, frames=frames, duration=frames / self.info.sample_rate)
        self.frames_exact = True

    def close(self) -> None:
        pass


class SoundFileSource(Source):
    """A file opened with libsndfile."""

    def __init__(self, path: str, sniffed: Sniffed) -> None:
        self.path = path
        self._file = soundfile.SoundFile(path)  # raises soundfile.LibsndfileError
        fmt, subtype = self._file.format, self._file.subtype
        container = _SF_CONTAINERS.get(fmt, fmt.lower())
        codec = "flac" if fmt == "FLAC" else _SF_CODECS.get(subtype, subtype.lower())
        # MP3 without a Xing/Info/VBRI tag: libsndfile guesses the length from the bit rate.
        self.frames_exact = not (fmt == "MP3" and not sniffed.mp3_length_tag)
        self._preroll = MP3_SEEK_PREROLL_FRAMES if fmt == "MP3" else 0
        self._reorder = None
        if fmt == "OGG" and subtype in ("VORBIS", "OPUS"):
            self._reorder = VORBIS_TO_SMPTE.get(self._file.channels)
        self.info = make_info(path, self._file.samplerate, self._file.channels,
                               self._file.frames, codec, container)

    def read(self, start: int, stop: int | None) -> np.ndarray:
        seek_to = max(0, start - self._preroll)
        try:
            self._file.seek(seek_to)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            if not self.frames_exact:  # the length was a guess: the seek went past the real end
                return np.zeros((self.info.channels, 0), dtype=np.float32)
            raise AudioError(self.path, f"cannot seek to frame {seek_to}: {short_message(exc)}", CORRUPT) from exc
        try:
            if stop is not None and self.frames_exact:
                data = self._file.read(max(0, stop - seek_to), dtype="float32", always_2d=True)
            else:
                data = self._read_until(None if stop is None else stop - seek_to)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(self.path, f"cannot decode frames from {start}: {short_message(exc)}", CORRUPT) from exc
        samples = np.ascontiguousarray(data[start - seek_to :].T)
        if self._reorder is not None:
            samples = samples[list(self._reorder)]
        return samples

    def _read_until(self, limit: int | None) -> np.ndarray:
        # soundfile's own blocks() counts requested, not delivered, frames; read until EOF instead.
        blocks, total = [], 0
        while limit is None or total < limit:
            want = BLOCK_FRAMES if limit is None else min(BLOCK_FRAMES, limit - total)
            block = self._file.read(want, dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            blocks.append(block)
            total += len(block)
        if not blocks:
            return np.zeros((0, self.info.channels), dtype=np.float32)
        return np.concatenate(blocks)

    def count_frames(self) -> int:
        total = 0
        try:
            self._file.seek(0)
            while True:
                block = self._file.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return total
                total += len(block)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(self.path, f"cannot decode after frame {total}: {short_message(exc)}", CORRUPT) from exc

    def close(self) -> None:
        self._file.close()


def make_info(path: str, sample_rate: int, channels: int, frames: int, codec: str, container: str) -> AudioInfo:
    return AudioInfo(path=path, sample_rate=int(sample_rate), channels=int(channels), frames=int(frames),
                     duration=frames / sample_rate if sample_rate else 0.0, codec=codec, container=container)


def check_readable(path: str) -> None:
    """Raise :class:`AudioError` for a path that is missing, not a file, unreadable or empty."""
    if not os.path.lexists(path):
        raise AudioError(path, "file not found", MISSING)
    if not os.path.exists(path):
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # "dangling" would send the user looking for a missing file
                raise AudioError(path, "unreadable: symlink loop", UNREADABLE) from None
        raise AudioError(path, f"unreadable: dangling symlink to {os.readlink(path)}", UNREADABLE)
    if os.path.isdir(path):
        raise AudioError(path, "unreadable: is a directory", UNREADABLE)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        size = os.path.getsize(path)
    except OSError as exc:
        raise AudioError(path, f"unreadable: {exc.strerror or exc}", UNREADABLE) from exc
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)", EMPTY)


def short_message(exc: BaseException) -> str:
    """First line of an exception message, without libsndfile's "Error opening '<path>': "."""
    text = getattr(exc, "error_string", None) or str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
