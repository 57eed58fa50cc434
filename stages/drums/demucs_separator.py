"""Demucs drum separation, segment-batched: segments of one or many tracks share forward passes.

``demucs.apply.apply_model(split=True)`` runs one segment at a time (batch = the tracks given, all
the same length). Here every track is cut into the same overlapping segments as demucs cuts them
(``demucs.apply.TensorChunk.padded``: a short last segment takes real context from before it),
segments from all tracks and shift passes are stacked into batches (``batch_size`` on a GPU,
``cpu_batch_size`` on CPU) for
``apply_model(split=False)``, and the drum outputs are overlap-added back with demucs' triangular
transition weights. With ``shifts=0`` the result equals ``apply_model(split=True)`` on each track;
with shifts, the random offsets come from ``seed``, so a re-run gives the same stem.

The shard runner hands the stage one track at a time, so in the pipeline a batch holds the
segments of one track (a 10 s clip is 2 segments of htdemucs' 7.8 s); :meth:`DemucsSeparator.separate_many`
batches across tracks for callers that hold several (evaluation, benchmarks, a future shard-level
hook of the runner).
"""

from __future__ import annotations

import dataclasses
import random
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from pipeline.audio import convert_channels, resample
from pipeline.config import ConfigError
from stages.drums.config import DemucsConfig
from stages.drums.constants import DEMUCS_CHANNELS, DEMUCS_MAX_SHIFT_S, DEMUCS_SAMPLE_RATE, DRUMS_SOURCE

#: demucs adds this to the mix's standard deviation before normalising (``demucs.api``).
NORMALISATION_EPS: float = 1e-8


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"drums.demucs.device is {name!r} but CUDA is not available here")
    return name


def transition_weight(length: int, power: float):
    """demucs' segment weight: a triangle peaking mid-segment, to ``power`` -> (length,) tensor."""
    import torch

    weight = torch.cat([torch.arange(1, length // 2 + 1), torch.arange(length - length // 2, 0, -1)]).float()
    return (weight / weight.max()) ** power


@dataclasses.dataclass
class _Signal:
    """One pass over one track: the (possibly shifted) mix and where the track starts in it."""

    track: int
    mix: Any  # torch tensor (C, L)
    start: int


class DemucsSeparator:
    """Drum stem from a pretrained Demucs model (or bag), loaded from disk only."""

    name = "demucs"

    def __init__(self, config: DemucsConfig) -> None:
        self.config = config
        self.model: Any = None
        self.record: dict[str, Any] = {}
        self.device = "cpu"
        self.batch_size = 1
        self.segment_length = 0
        self.drums_index = 0

    @property
    def label(self) -> str:
        return f"{self.name}/{self.config.model}"

    @property
    def tracks_per_call(self) -> int:
        """Tracks whose segments the stage batches together: a GPU batch's worth, 1 on CPU (where
        batching was measured slower)."""
        return self.batch_size if self.device.startswith("cuda") else 1

    @property
    def input_sample_rate(self) -> int | None:
        return DEMUCS_SAMPLE_RATE

    @property
    def input_channels(self) -> int | None:
        return DEMUCS_CHANNELS

    def setup(self) -> None:
        """Load the weights (fails at once if they are not on disk) and place the model."""
        if self.model is not None:
            return
        from stages.drums.demucs_weights import load_drums_bag

        model, self.record = load_drums_bag(self.config.model, self.config.weights_dir)
        self.device = resolve_device(self.config.device)
        self.batch_size = self.config.batch_size if self.device.startswith("cuda") else self.config.cpu_batch_size
        self.model = model.to(self.device)
        self.drums_index = list(model.sources).index(DRUMS_SOURCE)
        own = min(float(m.segment) for m in model.models)
        segment = own if self.config.segment is None else self.config.segment
        if segment > model.max_allowed_segment + 1e-9:
            raise ConfigError(f"drums.demucs.segment {segment} s exceeds the {model.max_allowed_segment} s "
                              f"that {self.config.model} was trained on (a transformer cannot go longer)")
        self.segment_length = int(round(segment * model.samplerate))

    def describe(self) -> dict[str, Any]:
        import demucs

        self.setup()
        c = self.config
        return {"separator": self.name, "model": c.model, "demucs": demucs.__version__, **self.record,
                "sample_rate": int(self.model.samplerate), "segment_s": self.segment_length / self.model.samplerate,
                "overlap": c.overlap, "transition_power": c.transition_power, "shifts": c.shifts, "seed": c.seed}

    def separate(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """Drum stem of one track (C, N) at ``sr`` -> (model channels, N) float32 at ``sr``."""
        return self.separate_many([samples], sr)[0]

    def separate_many(self, tracks: Sequence[np.ndarray], sr: int) -> list[np.ndarray]:
        """Drum stems of several tracks (each (C, N_i) at ``sr``), their segments batched together."""
        self.setup()
        rate = int(self.model.samplerate)
        tracks = [np.asarray(t, dtype=np.float32) for t in tracks]
        prepared = {i: self._prepare(t, sr) for i, t in enumerate(tracks) if t.shape[-1] > 0}
        signals = [s for i, (mix, _, _) in prepared.items() for s in self._passes(i, mix)]
        estimates = self.separate_signals([s.mix for s in signals])
        stems = []
        for i, track in enumerate(tracks):
            if i not in prepared:  # nothing to separate
                stems.append(np.zeros((int(self.model.audio_channels), 0), dtype=np.float32))
                continue
            mix, mean, std = prepared[i]
            length = mix.shape[-1]
            mine = [(s, e) for s, e in zip(signals, estimates) if s.track == i]
            drums = sum(e[..., s.start : s.start + length] for s, e in mine) / len(mine)
            drums = (drums * std + mean).numpy()
            stem = resample(np.ascontiguousarray(drums, dtype=np.float32), rate, sr)
            stems.append(_fit_length(stem, track.shape[1]))
        return stems

    def separate_signals(self, signals: Sequence[Any]) -> list[Any]:
        """Drum estimate of each (C, L_i) tensor at the model rate, by batched overlapping segments.

        Equals ``apply_model(model, x[None], shifts=0, split=True, overlap, transition_power)``
        restricted to the drums, for each ``x``.
        """
        import torch
        from demucs.apply import TensorChunk, apply_model

        seg = self.segment_length
        stride = max(1, int((1 - self.config.overlap) * seg))
        weight = transition_weight(seg, self.config.transition_power)
        jobs = [(j, offset, min(seg, x.shape[-1] - offset)) for j, x in enumerate(signals)
                for offset in range(0, x.shape[-1], stride)]
        outs = [torch.zeros(x.shape, dtype=torch.float32) for x in signals]
        totals = [torch.zeros(x.shape[-1], dtype=torch.float32) for x in signals]
        segment = Fraction(seg, int(self.model.samplerate))  # so demucs' int(segment * rate) == seg
        for first in range(0, len(jobs), self.batch_size):
            batch = jobs[first : first + self.batch_size]
            inputs = torch.stack([TensorChunk(signals[j], offset, seg).padded(seg) for j, offset, _ in batch])
            with torch.no_grad():
                out = apply_model(self.model, inputs.to(self.device), shifts=0, split=False, segment=segment)
            drums = out[:, self.drums_index].float().cpu()
            for (j, offset, n), piece in zip(batch, drums):
                start = (seg - n) // 2  # padded() centred the short last segment
                outs[j][..., offset : offset + n] += weight[:n] * piece[..., start : start + n]
                totals[j][offset : offset + n] += weight[:n]
        return [out / total for out, total in zip(outs, totals)]

    def _prepare(self, samples: np.ndarray, sr: int):
        """(C, N) at ``sr`` -> normalised (model channels, L) tensor at the model rate, mean, std."""
        import torch

        if samples.ndim != 2:
            raise ValueError(f"expected (channels, samples), got shape {samples.shape}")
        channels = int(self.model.audio_channels)
        if samples.shape[0] != channels:
            samples = convert_channels(samples, channels)
        samples = resample(samples, sr, int(self.model.samplerate))
        mix = torch.from_numpy(np.ascontiguousarray(samples))
        reference = mix.mean(0)
        mean = reference.mean()
        std = reference.std() + NORMALISATION_EPS if mix.shape[-1] > 1 else 1.0
        return (mix - mean) / std, mean, std

    def _passes(self, track: int, mix: Any) -> list[_Signal]:
        """The separation passes of one track: itself, or ``shifts`` randomly shifted copies."""
        from demucs.apply import TensorChunk

        if self.config.shifts == 0:
            return [_Signal(track, mix, 0)]
        length = mix.shape[-1]
        max_shift = int(DEMUCS_MAX_SHIFT_S * self.model.samplerate)
        padded = TensorChunk(mix).padded(length + 2 * max_shift)
        rng = random.Random(self.config.seed)  # same draws as demucs after random.seed(seed)
        passes = []
        for _ in range(self.config.shifts):
            offset = rng.randint(0, max_shift)
            passes.append(_Signal(track, padded[..., offset : length + max_shift], max_shift - offset))
        return passes


def _fit_length(stem: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad (C, M) to (C, length): resampling there and back may be off by a sample."""
    if stem.shape[1] >= length:
        return np.ascontiguousarray(stem[:, :length])
    return np.pad(stem, ((0, 0), (0, length - stem.shape[1])))
