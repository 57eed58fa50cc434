"""Whole Ogg Opus files decoded by libopus at a reduced rate, for stages that want less than 48 kHz.

Why: Opus always codes 48 kHz audio, and libsndfile decodes it at 48 kHz whatever the caller wants
next; a stage at 11025 or 22050 Hz then resamples 4 or 2 times more samples than it keeps. libopus
itself decodes straight to 8, 12, 16 or 24 kHz (it skips the bands and samples above), and to mono
from a stereo stream (its own downmix): for the chords stage at 11025 Hz that is 2.5x less decode
time (bench/report/README.md, the side-by-side section).

Only what is needed is read: one logical stream, mapping family 0 (mono and stereo; chained files
and other layouts go to libsndfile),
the pre-skip and the end trim from the last granule position, and the header's output gain,
exactly as RFC 7845 sets them. The result is the same audio as a 48 kHz decode resampled, up to
the decoder's band limit and resampler (not bit-identical, so sources that need that, e.g. a range
read of a long file, keep using libsndfile).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct

import numpy as np

from pipeline.audio_decode import CORRUPT, AudioError

#: The rates libopus decodes to directly (Hz); every Opus stream is coded at the last one.
OPUS_DECODE_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
OPUS_CODING_RATE: int = 48000
#: Largest packet duration Opus allows: 120 ms at 48 kHz.
MAX_PACKET_FRAMES_48K: int = 5760
#: Ogg page header: capture pattern, version, flags, granule position, serial, sequence, CRC,
#: segment count (RFC 3533), little-endian.
OGG_PAGE_HEADER = struct.Struct("<4sBBqIIIB")
#: Output samples a reduced-rate decode may fall short of the 48 kHz length by (rounding of the
#: pre-skip and end trim at the lower rate); more, and the file is read the 48 kHz way.
OPUS_LENGTH_TOLERANCE: int = 2
OPUS_HEAD_MAGIC = b"OpusHead"
OPUS_TAGS_MAGIC = b"OpusTags"
#: Length of the OpusHead fields read here (RFC 7845 5.1: up to the mapping family byte).
OPUS_HEAD_BYTES: int = 19


def decode_rate_for(target_rate: int) -> int:
    """The lowest libopus decode rate at or above ``target_rate`` (Hz)."""
    return next(rate for rate in OPUS_DECODE_RATES if rate >= min(target_rate, OPUS_CODING_RATE))


@functools.lru_cache(maxsize=1)
def _libopus() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("opus")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decode_float.restype = ctypes.c_int
    lib.opus_decode_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                      ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_int]
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    return lib


def available() -> bool:
    """Whether libopus (Debian: libopus0, a libsndfile dependency) can be loaded."""
    return _libopus() is not None


def ogg_packets(data: bytes) -> tuple[list[bytes], int] | None:
    """The packets of an Ogg file's one logical stream, and its last granule position; None for a
    file with several streams (chained or multiplexed) or a damaged page, which libsndfile reads
    (or rejects, naming why) instead."""
    packets, pending, last_granule, offset, serial = [], [], -1, 0, None
    while offset < len(data):
        if len(data) - offset < OGG_PAGE_HEADER.size:
            return None
        magic, _, _, granule, page_serial, _, _, n_segments = OGG_PAGE_HEADER.unpack_from(data, offset)
        lacing = data[offset + OGG_PAGE_HEADER.size: offset + OGG_PAGE_HEADER.size + n_segments]
        offset += OGG_PAGE_HEADER.size + n_segments
        serial = page_serial if serial is None else serial
        if magic != b"OggS" or offset + sum(lacing) > len(data) or page_serial != serial:
            return None
        for size in lacing:
            pending.append(data[offset:offset + size])
            offset += size
            if size < 255:  # a lacing value below 255 ends a packet
                packets.append(b"".join(pending))
                pending = []
        if granule >= 0:
            last_granule = granule
    return packets, last_granule


def decode_opus(path: str, target_rate: int, mono: bool) -> tuple[np.ndarray, int] | None:
    """Decode a whole Ogg Opus file at :func:`decode_rate_for` ``(target_rate)``.

    Returns:
        ``(samples (channels, n) float32, rate)``, mono if asked; ``None`` where this decoder does not
        apply (no libopus, not Opus, a channel mapping other than family 0, several streams) or the
        stream is damaged (a cut page, a packet libopus rejects), so the caller falls back: this path
        only ever makes a read faster, never gives another verdict on a file.
    Raises:
        AudioError: libopus cannot create a decoder.
    """
    lib = _libopus()
    if lib is None:
        return None
    with open(path, "rb") as handle:
        data = handle.read()
    stream = ogg_packets(data)
    if stream is None:
        return None
    packets, last_granule = stream
    if len(packets) < 2 or len(packets[0]) < OPUS_HEAD_BYTES or not packets[0].startswith(OPUS_HEAD_MAGIC) \
            or not packets[1].startswith(OPUS_TAGS_MAGIC):
        return None
    head = packets[0]
    channels, pre_skip, gain_q8, mapping_family = head[9], struct.unpack_from("<H", head, 10)[0], \
        struct.unpack_from("<h", head, 16)[0], head[18]
    if mapping_family != 0 or channels not in (1, 2):
        return None
    rate = decode_rate_for(target_rate)
    out_channels = 1 if mono else channels
    error = ctypes.c_int()
    decoder = lib.opus_decoder_create(rate, out_channels, ctypes.byref(error))
    if not decoder or error.value != 0:
        raise AudioError(path, f"libopus refused a decoder at {rate} Hz (error {error.value})", CORRUPT)
    max_frames = MAX_PACKET_FRAMES_48K * rate // OPUS_CODING_RATE
    buffer = (ctypes.c_float * (max_frames * out_channels))()
    pieces = []
    try:
        for packet in packets[2:]:
            n = lib.opus_decode_float(decoder, packet, len(packet), buffer, max_frames, 0)
            if n < 0:  # a damaged packet: the 48 kHz path gives its own verdict on the file
                return None
            pieces.append(np.frombuffer(buffer, dtype=np.float32, count=n * out_channels).copy())
    finally:
        lib.opus_decoder_destroy(decoder)
    samples = np.concatenate(pieces).reshape(-1, out_channels).T if pieces else np.zeros((out_channels, 0), np.float32)
    scale = rate / OPUS_CODING_RATE
    skip = round(pre_skip * scale)
    length = samples.shape[1] - skip if last_granule < 0 else round((last_granule - pre_skip) * scale)
    samples = samples[:, skip:skip + max(length, 0)]
    if gain_q8:
        samples = samples * np.float32(10.0 ** (gain_q8 / (20.0 * 256.0)))
    return np.ascontiguousarray(samples, dtype=np.float32), rate


def is_reduced_rate_request(container: str, codec: str, file_rate: int, target_rate: int) -> bool:
    """Whether a whole-file read at ``target_rate`` gains from decoding below 48 kHz: Opus in Ogg only
    (Opus in WebM/Matroska goes through FFmpeg as before)."""
    return (container, codec) == ("ogg", "opus") and file_rate == OPUS_CODING_RATE \
        and decode_rate_for(target_rate) < OPUS_CODING_RATE
