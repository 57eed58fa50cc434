"""Encode long signals in overlapping chunks with no seams.

Chunk k owns latent frames [a, b) and is encoded from ``context`` frames earlier to ``context``
frames later (clipped to the signal); only its own frames are kept. Every chunk starts on a
frame boundary, so its frame i is frame ``start + i`` of the whole signal, and the last chunk runs
to the end of the signal, so the trailing frames see the same edge as an unchunked encode. For a
codec whose frames depend on at most ``context`` samples on each side the result equals the
whole-signal encode; recurrent encoders (EnCodec's LSTM) match up to their fading memory.
"""

from __future__ import annotations

import math

import numpy as np

from stages.latents.codec import Codec


def encode_chunked(codec: Codec, wav: np.ndarray, chunk_seconds: float, context_seconds: float) -> np.ndarray:
    """(N,) mono at ``codec.sample_rate`` -> (codec.n_frames(N), D) float32.

    Args:
        chunk_seconds: frames owned per chunk (<= 0: encode the whole signal at once).
        context_seconds: overlap on each side; raised to the codec's own ``context_samples``.
    """
    total = codec.n_frames(len(wav))
    hop = codec.hop_length
    chunk_frames = math.ceil(chunk_seconds * codec.frame_rate) if chunk_seconds > 0 else total
    context_frames = math.ceil(max(context_seconds * codec.sample_rate, codec.context_samples) / hop)
    if chunk_frames >= total:
        return codec.encode(wav)
    pieces = []
    for first in range(0, total, chunk_frames):
        last = min(first + chunk_frames, total)
        begin = max(first - context_frames, 0)
        end_sample = min((last + context_frames) * hop, len(wav))
        latents = codec.encode(wav[begin * hop:end_sample])
        pieces.append(latents[first - begin:last - begin])
    result = np.concatenate(pieces, axis=0)
    if result.shape[0] != total:  # a codec whose n_frames disagrees with its encoder
        raise RuntimeError(f"{codec.name}: chunked encode gave {result.shape[0]} frames, expected {total}")
    return result
