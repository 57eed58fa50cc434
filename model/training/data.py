"""Training examples from the cached feature shards: random segment crops, deterministic per step.

Tracks are joined by ``track_id`` across the latents (mix latents + coarse drum latents), chords
and melody stages. Each rank reads its own shards (``shards[rank::world]``) and holds a window of
``shards_in_memory`` of them; the window moves every ``steps_per_window`` steps through a seeded
shuffle. The batch of step s depends only on (seed, rank, s), so a resumed run sees exactly the
batches an uninterrupted run would have seen: the data position is the step counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.reader import StageStore
from stages.latents.stats import NormalisationStats
from stages.melody.jasco import one_hot

FEATURE_STAGES: tuple[str, ...] = ("latents", "chords", "melody")
#: Frames by which a codec's own framing of its resampled signal may differ from the frame rule.
CODEC_FRAME_SLACK = 1


class DataError(ValueError):
    """Features are missing or inconsistent for training."""


@dataclass
class Track:
    """One track's aligned features: latents (T, D), drums (T, Dd), chords (T,), melody (T, 53)."""

    track_id: str
    latents: np.ndarray
    drums: np.ndarray
    chords: np.ndarray
    melody: np.ndarray
    description: str | None

    @property
    def frames(self) -> int:
        return self.latents.shape[0]


@dataclass
class Batch:
    """x1: (B, T, D) normalised latents; drums (B, T, Dd); chords (B, T) int64; melody (B, T, 53)."""

    x1: torch.Tensor
    drums: torch.Tensor
    chords: torch.Tensor
    melody: torch.Tensor
    descriptions: list[str | None]
    track_ids: list[str]


class FeatureSource:
    """Joined feature folders of one split, read shard by shard."""

    def __init__(self, folders: dict[str, str | Path], track_ids: list[str], descriptions: dict[str, str | None],
                 stats: NormalisationStats, normalisation: str, melody_bins: int) -> None:
        missing = [name for name in FEATURE_STAGES if name not in folders]
        if missing:
            raise DataError(f"feature folders missing for {missing}")
        self.stores = {name: StageStore(folders[name]) for name in FEATURE_STAGES}
        wanted = set(track_ids)
        present = set.intersection(*(set(s.track_ids()) for s in self.stores.values()))
        self.skipped = sorted(wanted - present)  # failed in some stage: listed, not fatal
        self.track_ids = sorted(wanted & present)
        if not self.track_ids:
            raise DataError(f"none of the {len(wanted)} requested tracks has latents, chords and melody features")
        latents = self.stores["latents"]
        by_shard: dict[int, list[str]] = {}
        for tid in self.track_ids:
            by_shard.setdefault(latents.shard_of(tid), []).append(tid)
        self.shards: list[list[str]] = [by_shard[i] for i in sorted(by_shard)]
        self.descriptions = descriptions
        self.stats = stats
        self.normalisation = normalisation
        self.melody_bins = melody_bins

    def load(self, track_id: str) -> Track:
        lat = self.stores["latents"].get(track_id)
        chords = self.stores["chords"].get(track_id)["chord_index"]
        melody = self.stores["melody"].get(track_id)["melody_index"]
        frames = aligned_frames(track_id, chords=chords.shape[0], melody=melody.shape[0],
                                latents=lat["latents"].shape[0], drums=lat["drums_coarse"].shape[0])
        return Track(
            track_id=track_id,
            latents=np.asarray(lat["latents"][:frames], dtype=np.float32),  # raw: transposed before normalising
            drums=np.asarray(lat["drums_coarse"][:frames], dtype=np.float32),
            chords=np.asarray(chords[:frames], dtype=np.int64),
            melody=one_hot(np.asarray(melody[:frames], dtype=np.int64), self.melody_bins),
            description=self.descriptions.get(track_id),
        )


def aligned_frames(track_id: str, *, chords: int, melody: int, latents: int, drums: int) -> int:
    """Frames of a track that every feature covers.

    Chords and melody count frames by the one frame rule (:func:`music.frames.frames_covering`), so
    they agree exactly. A codec frames its own resampled signal (``Codec.n_frames``) and may give up
    to :data:`CODEC_FRAME_SLACK` frames more or fewer; those are cropped. Any other disagreement
    means the features come from different audio: a :class:`DataError` naming the track.
    """
    if chords != melody:
        raise DataError(f"{track_id}: chords have {chords} frames but melody {melody}; re-run both stages "
                        "on the same manifest")
    for name, count in (("latents", latents), ("drums_coarse", drums)):
        if abs(count - chords) > CODEC_FRAME_SLACK:
            raise DataError(f"{track_id}: {name} have {count} frames but chords and melody {chords}; "
                            "the latents stage ran on other audio (re-run it on the same manifest)")
    return min(chords, latents, drums)


def chord_transposition_table(labels: list[str], vocabulary) -> np.ndarray:
    """(V, 12) index of every chord moved up by 0..11 semitones (N stays N; unknown -> UNK)."""
    from music.chords import parse_chord, spell_chord

    table = np.zeros((len(labels), 12), dtype=np.int64)
    for index, label in enumerate(labels):
        chord = parse_chord(label)
        for k in range(12):
            if chord is None:
                table[index, k] = index
            else:
                table[index, k] = vocabulary.encode(spell_chord(chord.transposed(k)))
    return table


@dataclass(frozen=True)
class Transposition:
    """Training augmentation: shift latents, chords and melody by k semitones, |k| <= ``max_semitones``,
    with probability ``probability`` (needs a codec whose latents have a frequency axis)."""

    codec: Any
    chord_table: np.ndarray
    max_semitones: int
    probability: float

    def pick(self, rng: np.random.Generator) -> int:
        if self.max_semitones <= 0 or rng.random() >= self.probability:
            return 0
        k = int(rng.integers(1, self.max_semitones + 1))
        return k if rng.random() < 0.5 else -k

    def apply(self, latents: np.ndarray, chords: np.ndarray, melody: np.ndarray, k: int):
        if k == 0:
            return latents, chords, melody
        latents = self.codec.transpose(latents, k)
        chords = self.chord_table[chords, k % 12]
        shifted = np.zeros_like(melody)
        if k > 0:
            shifted[:, k:] = melody[:, :-k]
        else:
            shifted[:, :k] = melody[:, -k:]
        return latents, chords, shifted  # notes moved past the 53-bin range become unvoiced


class CropSampler:
    """Batches of random crops for step s, from this rank's current window of shards."""

    def __init__(self, source: FeatureSource, *, segment_frames: int, batch_size: int, seed: int,
                 rank: int = 0, world: int = 1, shards_in_memory: int = 64, steps_per_window: int = 2000,
                 transposition: Transposition | None = None) -> None:
        self.source = source
        self.transposition = transposition
        self.segment_frames = segment_frames
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.my_shards = list(range(len(source.shards)))[rank::world] or list(range(len(source.shards)))
        self.shards_in_memory = shards_in_memory
        self.steps_per_window = steps_per_window
        self._window: tuple[int, ...] | None = None
        self._tracks: list[Track] = []

    def window_shards(self, step: int) -> tuple[int, ...]:
        """The shard indices in memory at ``step`` (all of them when they fit)."""
        n = len(self.my_shards)
        if n <= self.shards_in_memory:
            return tuple(self.my_shards)
        window = step // self.steps_per_window
        cycle, position = divmod(window * self.shards_in_memory, n)
        order = np.random.default_rng([self.seed, self.rank, cycle]).permutation(self.my_shards)
        picked = [order[(position + i) % n] for i in range(self.shards_in_memory)]
        return tuple(sorted(int(i) for i in picked))

    def _ensure_window(self, step: int) -> None:
        window = self.window_shards(step)
        if window != self._window:
            ids = [tid for shard in window for tid in self.source.shards[shard]]
            tracks = [self.source.load(tid) for tid in ids]
            self._tracks = [t for t in tracks if t.frames >= self.segment_frames]
            if not self._tracks:
                raise DataError(f"no track in shards {window} is at least {self.segment_frames} frames long; "
                                "lower train.segment_seconds")
            self._window = window

    def batch(self, step: int) -> Batch:
        """The batch of training step ``step`` (deterministic)."""
        self._ensure_window(step)
        rng = np.random.default_rng([self.seed, self.rank, step])
        weights = np.array([t.frames - self.segment_frames + 1 for t in self._tracks], dtype=np.float64)
        picks = rng.choice(len(self._tracks), size=self.batch_size, p=weights / weights.sum())
        items = [(self._tracks[i], int(rng.integers(0, self._tracks[i].frames - self.segment_frames + 1)))
                 for i in picks]
        shifts = [self.transposition.pick(rng) if self.transposition else 0 for _ in items]
        return self._crops(items, shifts)

    def _crops(self, items: list[tuple[Track, int]], shifts: list[int]) -> Batch:
        n = self.segment_frames
        latents, chords, melody = [], [], []
        for (track, start), k in zip(items, shifts):
            lat, ch, mel = track.latents[start: start + n], track.chords[start: start + n], track.melody[start: start + n]
            if k:
                lat, ch, mel = self.transposition.apply(lat, ch, mel, k)
            latents.append(self.source.stats.normalise(lat, self.source.normalisation))
            chords.append(ch)
            melody.append(mel)
        return Batch(x1=torch.from_numpy(np.stack(latents)), chords=torch.from_numpy(np.stack(chords)),
                     melody=torch.from_numpy(np.stack(melody)),
                     drums=torch.from_numpy(np.stack([t.drums[s: s + n] for t, s in items])),
                     # a transposed crop no longer matches its description's key: its text is left out
                     descriptions=[t.description if k == 0 else None for (t, _), k in zip(items, shifts)],
                     track_ids=[t.track_id for t, _ in items])
