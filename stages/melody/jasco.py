"""JASCO's melody condition from a 360-bin multif0 salience map.

Steps (as JASCO's authors made their training targets): zero the salience below a threshold (0.5),
drop the bins below G2, take the max over each 5-bin (one semitone) group of the rest, giving 53
semitones G2..B6 at the salience frame rate (86.13 fps); resample linearly to the latent frame rate
(50 fps); per frame, the melody is the argmax semitone, or unvoiced where every bin is zero.

JASCO's own loader resamples with ``F.interpolate(scale_factor=50 / 86)``, i.e. with the frame rate
rounded to 86, which drifts by 0.15 % (0.9 s after 10 minutes). By default (``melody.frame_rate_rule:
exact``) the same interpolation runs with the exact rate 22050 / 256, so long tracks stay aligned;
``frame_rate_rule: jasco86`` reproduces the loader's recipe instead (:func:`resample_jasco86`), the
conditions the released models were trained on.
"""

from __future__ import annotations

import math

import numpy as np

from music.frames import frames_covering
from stages.melody.constants import (
    BINS_PER_SEMITONE,
    FRAME_RATE_RULES,
    JASCO_FIRST_GROUP_BIN,
    JASCO_LOADER_FRAME_RATE,
    JASCO_LOWEST_MIDI,
    JASCO_N_SEMITONES,
    JASCO_SALIENCE_THRESHOLD,
    N_BINS,
    SALIENCE_FRAME_RATE,
    UNVOICED_INDEX,
)
from stages.melody.hcqt import bin_frequencies


def salience_to_semitones(salience: np.ndarray, threshold: float = JASCO_SALIENCE_THRESHOLD) -> np.ndarray:
    """Group a salience map into JASCO's 53 semitones.

    Args:
        salience: (360, T) salience in [0, 1].
    Returns:
        (T, 53) float32: per semitone G2..B6, the max salience over the 5 bins centred on it
        (+-40 cents), counting only bins at or above G2 and values at or above ``threshold``.
    """
    if salience.ndim != 2 or salience.shape[0] != N_BINS:
        raise ValueError(f"expected salience (360, T), got {salience.shape}")
    stop = JASCO_FIRST_GROUP_BIN + JASCO_N_SEMITONES * BINS_PER_SEMITONE
    kept = np.where(salience >= threshold, salience, 0.0).astype(np.float32)[JASCO_FIRST_GROUP_BIN:stop]
    below_g2 = bin_frequencies()[JASCO_FIRST_GROUP_BIN:stop] < midi_to_hz(JASCO_LOWEST_MIDI)
    kept[below_g2] = 0.0
    grouped = kept.reshape(JASCO_N_SEMITONES, BINS_PER_SEMITONE, -1).max(axis=1)
    return np.ascontiguousarray(grouped.T)


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def resample_frames(values: np.ndarray, n_out: int, frame_rate: float,
                    source_rate: float = SALIENCE_FRAME_RATE) -> np.ndarray:
    """Linear interpolation of frame-wise ``values`` (T, D) to ``n_out`` frames at ``frame_rate``.

    Output frame k reads source position (k + 0.5) * source_rate / frame_rate - 0.5, held at the
    first/last source frame beyond the ends: the convention of ``F.interpolate(mode="linear")``
    that JASCO's loader used (so the trained model sees the alignment it was trained with), but
    with the exact source rate, so there is no drift however long the track.
    """
    n_in = values.shape[0]
    if n_in == 0:
        return np.zeros((n_out,) + values.shape[1:], dtype=np.float32)
    position = np.clip((np.arange(n_out) + 0.5) * (source_rate / frame_rate) - 0.5, 0.0, n_in - 1)
    left = np.floor(position).astype(np.int64)
    right = np.minimum(left + 1, n_in - 1)
    weight = (position - left).astype(np.float32)[:, None]
    return (values[left] * (1.0 - weight) + values[right] * weight).astype(np.float32)


def resample_jasco86(values: np.ndarray, n_out: int, frame_rate: float,
                     segment_seconds: float | None = None) -> np.ndarray:
    """Frame-wise ``values`` (T, D) at the salience rate -> (n_out, D) float32 at ``frame_rate``, as
    JASCO's training loader (AudioCraft ``MelodyData.load_saliency_from_saliency_dict``) made them.

    The loader's recipe, reproduced step by step:

    1. the salience rate is taken as ``int(22050 / 256)`` = 86 fps
       (:data:`~stages.melody.constants.JASCO_LOADER_FRAME_RATE`);
    2. a segment of ``segment_seconds`` starting at 0 keeps source frames ``[0, int(segment_seconds
       * 86))`` (None: all ``T`` frames);
    3. if at most ``86 / frame_rate`` source frames are left the condition is all zeros (unvoiced);
    4. else ``F.interpolate(mode="linear", scale_factor=frame_rate / 86)`` without recomputing the
       scale: ``floor(T' * frame_rate / 86)`` output frames (in double, as torch computes it), frame
       k reading source position ``max(0, (k + 0.5) * (1 / scale) - 0.5)`` in float32 as torch's
       kernel does, held at the last frame (agrees with torch to 1 float32 ulp: its compiled CPU
       kernel fuses one multiply-add; the melody index and the float16 salience do not see it);
    5. zero-padded (unvoiced) at the end, or trimmed, to ``n_out``: the loader pads/trims to its
       segment's ``int(frame_rate * segment_duration)`` frames, the stage to the frames it writes
       for the track, ``ceil(n_samples * frame_rate / sr)``, which every other stage shares; for a
       10 s clip both are 500.

    The stage treats a track as one segment at offset 0 (``segment_seconds`` = its duration). A
    training crop at offset ``o`` started at source frame ``int(o * 86)`` and read it with the same
    86-based positions, so a crop of the whole-track matrix lines up with what the loader gave the
    model to within one salience frame (11.6 ms), drift included.
    """
    n_in = values.shape[0]
    if segment_seconds is not None:
        n_in = min(n_in, int(segment_seconds * JASCO_LOADER_FRAME_RATE))
    out = np.zeros((n_out,) + values.shape[1:], dtype=np.float32)
    if n_in <= JASCO_LOADER_FRAME_RATE / frame_rate:
        return out
    scale = frame_rate / JASCO_LOADER_FRAME_RATE
    n_kept = min(n_out, math.floor(float(n_in) * scale))
    ratio = np.float32(1.0 / scale)
    position = ratio * (np.arange(n_kept, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    position = np.maximum(position, np.float32(0.0))
    left = np.minimum(np.floor(position).astype(np.int64), n_in - 1)
    right = np.minimum(left + 1, n_in - 1)
    weight = np.clip(position - left.astype(np.float32), np.float32(0.0), np.float32(1.0))[:, None]
    source = np.asarray(values[:n_in], dtype=np.float32)
    out[:n_kept] = source[left] * (np.float32(1.0) - weight) + source[right] * weight
    return out


def condition_frame_times(n_frames: int, frame_rate: float) -> np.ndarray:
    """(n_frames,) time in seconds that each output frame of :func:`resample_frames` samples."""
    return (np.arange(n_frames) + 0.5) / frame_rate - 0.5 / SALIENCE_FRAME_RATE


def melody_index(semitones: np.ndarray) -> np.ndarray:
    """(T, 53) -> (T,) int16 argmax semitone (0 = G2), ``UNVOICED_INDEX`` (-1) for all-zero frames."""
    index = np.argmax(semitones, axis=1).astype(np.int16)
    index[~np.any(semitones > 0, axis=1)] = UNVOICED_INDEX
    return index


def one_hot(index: np.ndarray, n_classes: int = JASCO_N_SEMITONES) -> np.ndarray:
    """(T,) melody index -> (T, 53) float32 one-hot, all-zero rows where unvoiced (JASCO's matrix)."""
    matrix = np.zeros((index.shape[0], n_classes), dtype=np.float32)
    voiced = index >= 0
    matrix[np.flatnonzero(voiced), index[voiced]] = 1.0
    return matrix


def index_to_midi(index: np.ndarray) -> np.ndarray:
    """Melody index -> MIDI note number (float, NaN where unvoiced)."""
    midi = index.astype(np.float64) + JASCO_LOWEST_MIDI
    midi[index < 0] = math.nan
    return midi


def jasco_melody(salience: np.ndarray, n_samples: int, sr: int, frame_rate: float,
                 threshold: float = JASCO_SALIENCE_THRESHOLD,
                 frame_rate_rule: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """The melody condition of a track from its multif0 salience.

    Args:
        salience: (360, T) multif0 salience at 86.13 fps.
        n_samples, sr: length of the track (sets the number of output frames).
        frame_rate_rule: ``exact`` (:func:`resample_frames` from 22050 / 256 fps) or ``jasco86``
            (:func:`resample_jasco86`, JASCO's loader, the track as one segment).
    Returns:
        ``(semitones, index)``: (N, 53) float32 thresholded semitone salience and (N,) int16
        melody index at ``frame_rate``, N = ceil(n_samples * frame_rate / sr).
    """
    n_out = frames_covering(n_samples, sr, frame_rate)
    semitones = salience_to_semitones(salience, threshold)
    if frame_rate_rule == "exact":
        semitones = resample_frames(semitones, n_out, frame_rate)
    elif frame_rate_rule == "jasco86":
        semitones = resample_jasco86(semitones, n_out, frame_rate, n_samples / sr)
    else:
        raise ValueError(f"frame_rate_rule {frame_rate_rule!r} is not one of {', '.join(FRAME_RATE_RULES)}")
    return semitones, melody_index(semitones)
