"""Conditions of one batch and the modules that turn them into per-frame features.

Every condition can be dropped per example by a boolean *keep mask* (B,): a dropped temporal
condition contributes zeros and its mask bit is also fed to the network, so "dropped" is never
confused with a value (no sentinel chord, no silent melody). Text is dropped by masking its tokens
out of cross-attention (a learned null token is always attendable).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from music.conditions import CONDITION_NAMES, TEMPORAL_CONDITIONS


@dataclass
class Conditions:
    """One batch of conditions, aligned with latents of T frames.

    chords: (B, T) int64 chord indices; drums: (B, T, drum_dim) coarse drum latents;
    melody: (B, T, melody_bins) salience / one-hot; text: (B, L, text_dim) token embeddings with
    text_valid: (B, L) bool; keep: (B, 4) bool, True where the condition is given, columns in
    :data:`CONDITION_NAMES` order; frames: None (a given temporal condition covers every frame) or
    (B, T, 3) bool, the frames each temporal condition covers (:data:`TEMPORAL_CONDITIONS` order): a
    frame outside them sees exactly what a dropped condition gives there.
    """

    chords: torch.Tensor
    drums: torch.Tensor
    melody: torch.Tensor
    text: torch.Tensor
    text_valid: torch.Tensor
    keep: torch.Tensor
    frames: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.chords.shape[0]

    def to(self, device: torch.device | str) -> "Conditions":
        return Conditions(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                             for f in fields(self)})

    def with_keep(self, keep: torch.Tensor) -> "Conditions":
        """The same conditions with another keep mask (B, 4) (or (4,) broadcast to the batch)."""
        keep = keep.to(self.keep.device, torch.bool)
        if keep.dim() == 1:
            keep = keep.unsqueeze(0).expand(self.batch_size, -1)
        return replace(self, keep=keep.clone())

    def keep_of(self, name: str) -> torch.Tensor:
        """(B,) bool: whether condition ``name`` is given."""
        return self.keep[:, CONDITION_NAMES.index(name)]

    def kept_frames(self, name: str) -> torch.Tensor:
        """(B, T) bool for a temporal condition — (B, 1) when it covers whole clips — where it is given."""
        kept = self.keep_of(name)[:, None]
        if self.frames is None:
            return kept
        return kept & self.frames[..., TEMPORAL_CONDITIONS.index(name)]

    @staticmethod
    def cat(parts: list["Conditions"]) -> "Conditions":
        """Concatenate along the batch (text padded to the longest token count)."""
        longest = max(p.text.shape[1] for p in parts)
        if any(p.frames is not None for p in parts):
            parts = [p if p.frames is not None else replace(p, frames=torch.ones(
                p.chords.shape[0], p.chords.shape[1], len(TEMPORAL_CONDITIONS), dtype=torch.bool,
                device=p.chords.device)) for p in parts]
        out = {}
        for f in fields(Conditions):
            tensors = [getattr(p, f.name) for p in parts]
            if tensors[0] is None:
                out[f.name] = None
                continue
            if f.name in ("text", "text_valid"):
                tensors = [F.pad(x, (0, 0, 0, longest - x.shape[1]) if x.dim() == 3 else (0, longest - x.shape[1]))
                           for x in tensors]
            out[f.name] = torch.cat(tensors, dim=0)
        return Conditions(**out)

    def crop(self, start: int, stop: int) -> "Conditions":
        """Frames [start, stop) of the temporal conditions (text and masks unchanged)."""
        return replace(self, chords=self.chords[:, start:stop], drums=self.drums[:, start:stop],
                       melody=self.melody[:, start:stop],
                       frames=None if self.frames is None else self.frames[:, start:stop])


#: Per chord: which of the 12 pitch classes sound, and the bass pitch class (one-hot).
CHORD_TEMPLATE_DIM = 24


def chord_templates(labels: list[str]) -> torch.Tensor:
    """(V, 24) pitch-class content + bass of every vocabulary label (N and unknown chords: zeros).

    Fed next to the learned embedding, it lets chords share what they have in common (a Bb7 seen
    rarely still shares its notes with Bb and Gm), which matters on a small training set."""
    import mir_eval

    from music.chords import to_harte

    table = torch.zeros(len(labels), CHORD_TEMPLATE_DIM)
    for index, label in enumerate(labels):
        harte = to_harte(label)
        if harte in ("N", "X"):
            continue
        root, bitmap, bass = mir_eval.chord.encode(harte)
        table[index, :12] = torch.tensor([float(bitmap[(pc - root) % 12]) for pc in range(12)])
        table[index, 12 + (root + bass) % 12] = 1.0
    return table


def keep_mask_from_flags(batch_size: int, **given: bool) -> torch.Tensor:
    """(B, 4) keep mask with the same flags for every example, e.g. ``chords=True, text=False``."""
    unknown = set(given) - set(CONDITION_NAMES)
    if unknown:
        raise ValueError(f"unknown condition(s) {sorted(unknown)}; known: {CONDITION_NAMES}")
    row = torch.tensor([bool(given.get(name, False)) for name in CONDITION_NAMES])
    return row.unsqueeze(0).expand(batch_size, -1).clone()


#: Keep patterns that :class:`~model.config.DropoutConfig` can force, by its field name.
FORCED_PATTERNS: dict[str, tuple[str, ...]] = {"text_chords": ("chords", "text"), "text_only": ("text",)}


def sample_keep_mask(batch_size: int, probabilities: dict[str, float], p_all: float,
                     generator: torch.Generator, forced: Mapping[str, float] | None = None) -> torch.Tensor:
    """Training dropout: (B, 4) keep mask in CONDITION_NAMES order.

    One uniform u per example: u < ``p_all`` keeps nothing; the next ``forced[name]`` of the unit
    interval keep exactly ``FORCED_PATTERNS[name]``; the other examples drop each condition
    independently with ``probabilities[name]``."""
    p = torch.tensor([probabilities[name] for name in CONDITION_NAMES])
    keep = torch.rand(batch_size, len(CONDITION_NAMES), generator=generator) >= p
    u = torch.rand(batch_size, generator=generator)
    keep &= ~(u < p_all).unsqueeze(1)
    low = p_all
    for name, probability in (forced or {}).items():
        chosen = (u >= low) & (u < low + probability)
        keep[chosen] = torch.tensor([c in FORCED_PATTERNS[name] for c in CONDITION_NAMES])
        low += probability
    return keep


#: Length of a training span, as a fraction of the crop (uniform between these).
SPAN_FRACTION = (0.2, 0.8)


def sample_span_frames(batch_size: int, frames: int, probability: float,
                       generator: torch.Generator) -> torch.Tensor | None:
    """Training span dropout: (B, T, 3) frames each temporal condition covers, None when ``probability`` is 0.

    Each (example, condition) is, with ``probability``, limited to one random span of
    ``SPAN_FRACTION`` of the crop; otherwise it covers every frame."""
    if probability <= 0:
        return None
    shape = (batch_size, len(TEMPORAL_CONDITIONS))
    limited = torch.rand(shape, generator=generator) < probability
    low, high = SPAN_FRACTION
    length = ((low + (high - low) * torch.rand(shape, generator=generator)) * frames).long().clamp(min=1)
    start = (torch.rand(shape, generator=generator) * (frames - length + 1)).long()
    index = torch.arange(frames)[None, :, None]
    inside = (index >= start[:, None, :]) & (index < (start + length)[:, None, :])
    return inside | ~limited[:, None, :]


class TemporalConditioner(nn.Module):
    """Chords, drums and melody -> (B, T, C) per-frame features (masked), plus the 3 mask bits.

    Chords: a learned embedding (as JASCO) plus a projection of the chord's pitch classes and bass. Drums: the coarse latent averaged over ``drum_pool_frames`` (as JASCO,
    so the condition carries rhythm rather than timbre) then projected. Melody: a linear map of the
    53-bin matrix (a one-hot row picks one column, so it is an embedding of the pitch).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.chord_embedding = nn.Embedding(config.chord_vocab_size, config.chord_embed_dim)
        # filled from the vocabulary by the trainer (set_chord_labels); saved with the weights
        self.register_buffer("chord_template", torch.zeros(config.chord_vocab_size, CHORD_TEMPLATE_DIM))
        self.chord_template_projection = nn.Linear(CHORD_TEMPLATE_DIM, config.chord_embed_dim, bias=False)
        self.drum_projection = nn.Linear(config.drum_dim, config.drum_embed_dim)
        self.melody_projection = nn.Linear(config.melody_bins, config.melody_embed_dim)
        self.drum_pool_frames = config.drum_pool_frames
        self.out_dim = config.chord_embed_dim + config.drum_embed_dim + config.melody_embed_dim + 3

    def set_chord_labels(self, labels: list[str]) -> None:
        """Fill the pitch-class templates from the vocabulary's labels (index order)."""
        self.chord_template.copy_(chord_templates(labels))

    def forward(self, cond: Conditions) -> torch.Tensor:
        index = cond.chords.clamp(min=0)
        chords = self.chord_embedding(index) + self.chord_template_projection(self.chord_template[index])
        drums = cond.drums
        if self.drum_pool_frames > 1:
            drums = F.avg_pool1d(drums.transpose(1, 2), self.drum_pool_frames, stride=1,
                                 padding=self.drum_pool_frames // 2, count_include_pad=False).transpose(1, 2)
            drums = drums[:, : cond.drums.shape[1]]
        drums = self.drum_projection(drums)
        melody = self.melody_projection(cond.melody)
        features = dict(zip(TEMPORAL_CONDITIONS, (chords, drums, melody)))
        kept = {name: cond.kept_frames(name).to(chords.dtype) for name in TEMPORAL_CONDITIONS}   # (B, 1 or T)
        parts = [features[name] * kept[name][..., None] for name in TEMPORAL_CONDITIONS]
        bits = torch.stack([kept[name].expand(-1, chords.shape[1]) for name in TEMPORAL_CONDITIONS], dim=-1)
        return torch.cat(parts + [bits], dim=-1)


class TextConditioner(nn.Module):
    """Text token embeddings -> (B, 1 + L, dim) keys/values with a (B, 1 + L) attendable mask.

    Token 0 is a learned null token, always attendable, so a dropped text (all real tokens
    masked) still gives cross-attention something to attend to.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.projection = nn.Linear(config.text_dim, config.dim)
        self.null_token = nn.Parameter(torch.zeros(1, 1, config.dim))

    def forward(self, cond: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.projection(cond.text)
        batch = tokens.shape[0]
        tokens = torch.cat([self.null_token.expand(batch, -1, -1), tokens], dim=1)
        valid = cond.text_valid & cond.keep_of("text").unsqueeze(1)
        attendable = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=valid.device), valid], dim=1)
        return tokens, attendable
