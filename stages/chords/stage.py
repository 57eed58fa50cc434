"""The chords stage: Chordino chord timeline + frame-level chord indices at the latent frame rate.

Per track: downmix + resample to ``sample_rate`` -> Chordino on the samples (``timing``, see
:mod:`stages.chords.chordino`) -> labels normalised, segments tiling the track
(:func:`changes_to_segments`) -> change times sharpened (:mod:`stages.chords.refine`) -> frame
indices in the configured vocabulary. It stores

* ``timeline``: ``[{"label", "start", "end"}, ...]`` covering ``[0, duration]``, labels normalised
  (:func:`music.chords.normalise_label`), consecutive equal labels merged;
* ``chord_index``: (frames,) int16 indices in the configured vocabulary at ``frame_rate``, made by
  :func:`stages.chords.frames.timeline_to_frames` from the ``[(label, start)]`` changes, exactly as
  the sampler makes them from a user's list;
* ``unknown_frames``: how many of those frames are ``UNK`` (labels the vocabulary lacks);
* ``duration_s``: the decoded duration.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable

import numpy as np

from music.chords import normalise_label
from music.frames import frames_covering
from music.vocabulary import CHORD_NO_CHORD
from pipeline.config import config_hash
from pipeline.constants import LATENT_FRAME_RATE
from pipeline.stage import FeatureExtractor, FeatureSpec, pinned
from stages.chords.chordino import Chordino, ChordinoParams, Timing, load_vamp
from stages.chords.frames import CHORD_INDEX_DTYPE, Segment, timeline_to_frames
from stages.chords.refine import RefineParams, refine_changes
from stages.chords.vocab import JASCO_VOCABULARY, Vocabulary

#: Rate Chordino analyses at: its log-frequency spectrum ends at A7 (3.5 kHz), below this rate's
#: 5.5 kHz Nyquist, and a quarter of 44.1 kHz needs a quarter of the FFT size for the same window
#: (framing: :mod:`stages.chords.chordino`).
CHORDINO_SAMPLE_RATE = 11025
#: Decimals kept for times in the stored timeline (0.1 ms, far below a 20 ms frame).
TIME_DECIMALS = 4


@dataclasses.dataclass(frozen=True)
class ChordsConfig:
    """``chords:`` in params.yaml."""

    sample_rate: int = CHORDINO_SAMPLE_RATE
    channels: int = 1  # Chordino analyses mono; the loader downmixes
    frame_rate: float = LATENT_FRAME_RATE
    vocabulary: str = JASCO_VOCABULARY  # "jasco" or a path to a {label: index} JSON (chords build-vocab)
    slash_fallback: bool = True  # a slash chord whose bass the vocabulary lacks -> its root-position chord
    timing: Timing = "centred"  # see stages/chords/chordino.py
    plugin_dir: str | None = None  # folder holding nnls-chroma.so; None: the chord-extractor wheel's
    chordino: ChordinoParams = dataclasses.field(default_factory=ChordinoParams)
    refine: RefineParams = dataclasses.field(default_factory=RefineParams)  # see stages/chords/refine.py


def changes_to_segments(changes: Iterable[tuple[float, str]], duration_s: float) -> list[Segment]:
    """Chordino's ``[(time, label)]`` changes -> normalised ``(label, start, end)`` segments that tile
    ``[0, duration_s]``: times clamped to the audio, ``N`` before the first change, zero-length
    segments dropped, consecutive equal labels merged."""
    points: list[tuple[float, str]] = []
    for time_s, label in sorted(changes, key=lambda change: change[0]):
        if time_s >= duration_s:
            break  # Chordino's closing N sits at (or past) the end of the audio
        start = round(max(time_s, 0.0), TIME_DECIMALS)
        if points and points[-1][0] == start:
            points.pop()  # the later change at the same instant wins
        points.append((start, normalise_label(label)))
    if not points or points[0][0] > 0.0:
        points.insert(0, (0.0, CHORD_NO_CHORD))
    merged = [points[0]]
    for start, label in points[1:]:
        if label != merged[-1][1]:
            merged.append((start, label))
    end = round(duration_s, TIME_DECIMALS)
    bounds = [start for start, _ in merged[1:]] + [end]
    return [(label, start, stop) for (start, label), stop in zip(merged, bounds) if stop > start or end == 0.0]


class ChordsExtractor(FeatureExtractor):
    name = "chords"
    version = "2"  # 2: 11025 Hz analysis, 67 ms Chordino steps (issue 19)
    config_class = ChordsConfig

    def __init__(self, config: ChordsConfig) -> None:
        super().__init__(config)
        self._chordino: Chordino | None = None

    @functools.cached_property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary.load(self.config.vocabulary, slash_fallback=self.config.slash_fallback)

    @property
    def params_hash(self) -> str:
        # The vocabulary's content, not just its path, decides the stored indices.
        return config_hash(self.config, {"stage": self.name, "version": self.version,
                                         "vocabulary": self.vocabulary.digest})

    def features(self) -> tuple[FeatureSpec, ...]:
        return (
            FeatureSpec("timeline", "json"),
            FeatureSpec("chord_index", np.dtype(CHORD_INDEX_DTYPE).name, (None,), self.config.frame_rate),
            FeatureSpec("unknown_frames", "int32", ()),
            FeatureSpec("duration_s", "float64", ()),
        )

    def setup(self) -> None:
        """Find, load and initialise the plugin once per worker; reads the vocabulary."""
        if self._chordino is None:
            self._chordino = Chordino(load_vamp(self.config.plugin_dir), self.config.sample_rate, self.config.chordino)
        _ = self.vocabulary

    def mono(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """(channels, n) samples at ``sr`` -> (n',) mono at the configured rate (what Chordino gets)."""
        from pipeline.audio import resample

        mono = samples.mean(axis=0, dtype=np.float32) if samples.shape[0] > 1 else samples[0]
        if sr != self.config.sample_rate:
            mono = resample(mono[None, :], sr, self.config.sample_rate)[0]
        return np.ascontiguousarray(mono, dtype=np.float32)

    @pinned  # evaluation code calls it directly
    def segments(self, samples: np.ndarray, sr: int) -> list[Segment]:
        """The chord timeline of (channels, n) samples: ``[(label, start, end)]`` tiling the track."""
        self.setup()
        mono = self.mono(samples, sr)
        rate = self.config.sample_rate
        assert self._chordino is not None  # setup() made it
        changes = self._chordino.changes(mono, self.config.timing)
        segments = changes_to_segments(changes, samples.shape[1] / sr)
        segments = refine_changes(mono, rate, segments, self.config.refine)
        return [(label, round(start, TIME_DECIMALS), round(end, TIME_DECIMALS)) for label, start, end in segments]

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        """Args: samples (channels, n) float32 at ``sr``. Returns the four features of the module doc."""
        segments = self.segments(samples, sr)
        # Frames come from the changes, [(label, start)], exactly as the sampler gets them from a user;
        # the last chord therefore also covers a last frame whose centre lies past the audio's end.
        changes = [(label, start) for label, start, _ in segments]
        n_frames = frames_covering(samples.shape[1], sr, self.config.frame_rate)
        indices = timeline_to_frames(changes, n_frames, self.vocabulary, self.config.frame_rate)
        return {
            "timeline": [{"label": label, "start": start, "end": end} for label, start, end in segments],
            "chord_index": indices,
            "unknown_frames": np.int32(np.count_nonzero(indices == self.vocabulary.unk_index)),
            "duration_s": np.float64(samples.shape[1] / sr),
        }
