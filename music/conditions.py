"""The model's conditions, by name, in the one order every mask, checkpoint and report uses."""

from __future__ import annotations

#: Temporal conditions first, then text; a keep mask (B, 4) has one column per name, in this order.
CONDITION_NAMES: tuple[str, ...] = ("chords", "drums", "melody", "text")
#: The frame-aligned ones, fed to the network with the noisy latent (text goes in by cross-attention).
TEMPORAL_CONDITIONS: tuple[str, ...] = CONDITION_NAMES[:3]
