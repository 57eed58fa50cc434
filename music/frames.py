"""The frame rule every feature, the trainer and the sampler share.

A track of ``n`` samples at ``sr`` Hz is covered by ``ceil(n * frame_rate / sr)`` frames at
``frame_rate``: frame k starts at ``k / frame_rate`` s and the last one may be short. Counting from
samples is exact (integer and rational arithmetic, no tolerance); a duration given in seconds (a
user's prompt, a corpus score) goes through :func:`frames_for_seconds`, whose tolerance absorbs the
float error of decimal seconds.
"""

from __future__ import annotations

import math
from fractions import Fraction

#: For a duration in float seconds: a product within this many frames above a whole number counts as
#: that number (0.3 s x 50 fps is 15.000000000000002 in floats and must give 15 frames, not 16).
#: Far below the smallest real excess at audio rates (one sample, e.g. 50 / 48000 frames).
SECONDS_TOLERANCE_FRAMES = 1e-6


def frames_covering(n_samples: int, sample_rate: int, frame_rate: float) -> int:
    """Frames at ``frame_rate`` covering ``n_samples`` at ``sample_rate``: ceil(n * fr / sr), exactly."""
    if n_samples < 0:
        raise ValueError(f"negative sample count {n_samples}")
    return math.ceil(Fraction(int(n_samples)) * Fraction(frame_rate) / int(sample_rate))


def frames_for_seconds(seconds: float, frame_rate: float) -> int:
    """Frames at ``frame_rate`` covering ``seconds``: ceil(seconds * fr), up to float error."""
    if seconds < 0:
        raise ValueError(f"negative duration {seconds}")
    return int(math.ceil(seconds * frame_rate - SECONDS_TOLERANCE_FRAMES))
