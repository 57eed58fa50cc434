"""FFmpeg decoding (torchcodec) for what libsndfile cannot read: MP4/M4A, raw AAC, Matroska, ...

torchcodec 0.8's public ``AudioDecoder.get_samples_played_in_range`` restarts decoding from the
beginning of the stream for any range that starts before the end of the last decoded frame,
which every range adjacent to the previous one does; reading a long file in chunks would decode
O(chunks^2) audio. :class:`FFmpegSource` therefore decodes forward in blocks of whole frames
with torchcodec's core op (which reports where its frames start), keeps the samples it may still
need in a small buffer, and serves consecutive ranges from it: each stretch of audio is decoded
once and memory stays bounded (one block plus ``RETAIN_S``). A range that starts before the
buffer restarts the decoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.audio_decode import (
    CORRUPT,
    FFMPEG_EXACT_CONTAINERS,
    UNSUPPORTED,
    AudioError,
    Source,
    make_info,
    short_message,
)
from pipeline.audio_sniff import Sniffed

#: Seconds decoded per call into FFmpeg.
BLOCK_S = 10.0
#: Seconds of decoded audio kept before the end of the last read, so that the next read may
#: overlap it (resampling context) without restarting the decoder.
RETAIN_S = 1.0
#: Seconds asked beyond a range's end so that a block always moves forward.
STEP_MARGIN_S = 0.01
#: Samples FFmpeg may deliver short of an exact range (time to sample rounding).
LENGTH_SLACK = 2
_NO_FRAMES = "No audio frames were decoded"


class FFmpegSource(Source):
    """A file opened with torchcodec's FFmpeg-based ``AudioDecoder``."""

    def __init__(self, path: str, sniffed: Sniffed) -> None:
        self.path = path
        self._decoder: Any = None
        meta = self._new_decoder().metadata
        if not meta.sample_rate or not meta.num_channels:
            raise RuntimeError("no audio stream with a sample rate and channel count")
        duration = meta.duration_seconds_from_header
        sample_rate = int(meta.sample_rate)
        frames = round(duration * sample_rate) if duration is not None else None
        codec = _normalise_codec(meta.codec or "unknown")
        # Raw streams (ADTS AAC, MP3 through FFmpeg) only have a bit-rate estimate of their length.
        self.frames_exact = sniffed.container in FFMPEG_EXACT_CONTAINERS and frames is not None
        self.info = make_info(path, sample_rate, int(meta.num_channels), frames or 0, codec, sniffed.container)
        self._reset()
        if frames is None:  # no length in the header at all: count by decoding
            self.with_frames(self.count_frames())

    def read(self, start: int, stop: int | None) -> np.ndarray:
        if stop is None and self.frames_exact:
            stop = self.info.frames  # trims the encoder padding that FFmpeg leaves at the end
        data = self._decode_range(start, stop)
        if stop is not None:
            short = (stop - start) - data.shape[1]
            if 0 < short <= LENGTH_SLACK:
                data = np.pad(data, ((0, 0), (0, short)))
        return data

    def count_frames(self) -> int:
        self._reset()
        block = round(BLOCK_S * self.info.sample_rate)
        position = 0
        while True:  # bounded memory: each block is dropped once counted
            got = self._decode_range(position, position + block).shape[1]
            position += got
            if got == 0:
                self._reset()
                return position

    def close(self) -> None:
        self._reset()

    # -- decoding -----------------------------------------------------------------------------

    def _new_decoder(self) -> Any:
        try:  # imports torch: only when FFmpeg is needed
            from torchcodec.decoders import AudioDecoder
        except (ImportError, OSError, RuntimeError) as exc:  # e.g. FFmpeg libraries missing
            raise AudioError(self.path, f"no FFmpeg decoder available: {short_message(exc)}", UNSUPPORTED) from exc
        return AudioDecoder(self.path)

    def _reset(self) -> None:
        """Forget the decoder and buffer; the next read starts a fresh decoder."""
        self._decoder = None
        self._blocks: list[np.ndarray] = []  # decoded (channels, n) blocks, in order
        self._buffer_start = 0  # frame index of the first buffered sample
        self._buffered = 0  # frames in self._blocks
        self._resume_s = 0.0  # where the next block starts: the end of the last decoded frame
        self._at_end = False

    @property
    def _buffer_end(self) -> int:
        return self._buffer_start + self._buffered

    def _decode_range(self, start: int, stop: int | None) -> np.ndarray:
        """Frames ``[start, stop)`` (``stop=None``: to the end) -> (channels, n) float32."""
        if self._decoder is None or start < self._buffer_start:
            self._reset()
            self._decoder = self._new_decoder()
            self._buffer_start = start
            self._resume_s = start / self.info.sample_rate
        try:
            while not self._at_end and (stop is None or self._buffer_end < stop):
                self._decode_block(stop)
                # Skipping ahead: nothing before ``start`` is needed.
                self._drop_before(start - round(RETAIN_S * self.info.sample_rate))
        except RuntimeError as exc:
            self._reset()
            raise AudioError(self.path, f"cannot decode from {start / self.info.sample_rate:.3f} s: "
                                        f"{short_message(exc)}", CORRUPT) from exc
        end = self._buffer_end if stop is None else min(stop, self._buffer_end)
        begin = min(max(start, self._buffer_start), end)
        out = self._slice(begin, end)
        self._drop_before(end - round(RETAIN_S * self.info.sample_rate))
        return out

    def _decode_block(self, limit: int | None) -> None:
        """Decode the frames from ``_resume_s`` on: up to ``BLOCK_S`` s, not far past ``limit``.

        Not decoding past what was asked matters for damaged files: the first frames of a
        truncated file must decode even though its end does not.
        """
        from torchcodec import _core as core  # the op behind get_samples_played_in_range

        rate = self.info.sample_rate
        stop_s = self._resume_s + BLOCK_S
        if limit is not None:
            stop_s = min(stop_s, max(limit / rate, self._resume_s) + STEP_MARGIN_S)
        try:
            frames, first_pts = core.get_frames_by_pts_in_range_audio(
                self._decoder._decoder, start_seconds=self._resume_s, stop_seconds=stop_s)
        except RuntimeError as exc:
            if _NO_FRAMES in str(exc):
                self._at_end = True
                return
            raise
        data = np.ascontiguousarray(frames.numpy(), dtype=np.float32)
        if data.shape[1] == 0:
            self._at_end = True
            return
        first_pts = float(first_pts.item())
        first = round(first_pts * rate)
        overlap = self._buffer_end - first
        if overlap > 0:  # a frame decoded twice (rounding at a block boundary): keep one copy
            data = data[:, overlap:]
        elif overlap < 0:  # a gap (or a late stream start): silence keeps samples on the timeline
            data = np.pad(data, ((0, 0), (-overlap, 0)))
        self._blocks.append(data)
        self._buffered += data.shape[1]
        self._resume_s = first_pts + frames.shape[1] / rate

    def _slice(self, begin: int, end: int) -> np.ndarray:
        """Buffered frames ``[begin, end)`` as one new array."""
        pieces, position = [], self._buffer_start
        for block in self._blocks:
            lo, hi = max(begin - position, 0), min(end - position, block.shape[1])
            if lo < hi:
                pieces.append(block[:, lo:hi])
            position += block.shape[1]
        if not pieces:
            return np.zeros((self.info.channels, 0), dtype=np.float32)
        return np.concatenate(pieces, axis=1)

    def _drop_before(self, frame: int) -> None:
        drop = min(max(0, frame - self._buffer_start), self._buffered)
        self._buffer_start += drop
        self._buffered -= drop
        while drop:
            first = self._blocks[0]
            if first.shape[1] <= drop:
                self._blocks.pop(0)
                drop -= first.shape[1]
            else:
                self._blocks[0] = first[:, drop:]
                drop = 0


def _normalise_codec(codec: str) -> str:
    # "pcm_s16le" -> "pcm_s16" so a WAV reads the same through either backend.
    if codec.startswith("pcm_") and codec.endswith(("le", "be")):
        return codec[:-2]
    return codec
