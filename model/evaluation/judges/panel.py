"""The independent judges as one panel: their settings (``model_eval.judges``), set up on first use,
and what they hear in one clip.

A judge that cannot be set up (its package missing) is recorded in ``skipped`` with the reason and
its numbers are left out, as the stages' analysers are; nothing here imports the chords or melody
stages.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from model.evaluation.judges import JudgeIdentity
from model.evaluation.judges.chords_cnn import ChordCNNConfig, CNNChordJudge
from model.evaluation.judges.clarity import ClarityConfig, HarmonicClarity
from model.evaluation.judges.melody_crepe import CrepeConfig, CrepeMelodyJudge
from model.evaluation.judges.musicnn import MusicnnConfig, MusicnnEmbedding
from pipeline.config import ConfigError

log = logging.getLogger(__name__)

#: The panel's members by role.
ROLES: tuple[str, ...] = ("chords", "melody", "clarity", "embedding")


@dataclasses.dataclass(frozen=True)
class JudgesConfig:
    """``model_eval.judges`` in params.yaml: the independent judges and their settings."""

    enabled: bool = True
    #: Which judges run (a subset of ROLES); a judge left out leaves its numbers out, said in ``skipped``.
    roles: tuple[str, ...] = ROLES
    chords: ChordCNNConfig = ChordCNNConfig()
    melody: CrepeConfig = CrepeConfig()
    clarity: ClarityConfig = ClarityConfig()
    embedding: MusicnnConfig = MusicnnConfig()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise ConfigError(f"model_eval.judges.roles: unknown {unknown}; known: {list(ROLES)}")


@dataclasses.dataclass
class JudgedClip:
    """What the judges heard in one clip (None: not heard; see the analysis' errors)."""

    timeline: list[tuple[str, float, float]] | None = None  # CNN chord segments tiling the clip
    melody_index: np.ndarray | None = None  # (frames,) int16 CREPE semitone index, -1 unvoiced
    tonal_energy_fraction: float | None = None
    embedding: np.ndarray | None = None  # (windows, D) musicnn embedding


class JudgePanel:
    """The four judges, each set up on first use (or skipped with its reason)."""

    def __init__(self, config: JudgesConfig = JudgesConfig()) -> None:
        self.config = config
        self.members: dict[str, Any] = {"chords": CNNChordJudge(config.chords),
                                        "melody": CrepeMelodyJudge(config.melody),
                                        "clarity": HarmonicClarity(config.clarity),
                                        "embedding": MusicnnEmbedding(config.embedding)}
        self.skipped: dict[str, str] = {role: "left out by model_eval.judges.roles"
                                        for role in ROLES if role not in config.roles}
        self._ready: set[str] = set()

    def ready(self, role: str) -> bool:
        if role not in self._ready and role not in self.skipped:
            try:
                self.members[role].setup()
                self._ready.add(role)
            except Exception as exc:  # a missing package skips that judge's numbers, with the reason
                self.skipped[role] = f"{type(exc).__name__}: {exc}"
                log.warning("eval: judge %s skipped: %s", role, self.skipped[role])
        return role in self._ready

    def identities(self) -> dict[str, dict[str, str]]:
        """Each member's :class:`JudgeIdentity` as a dict, by role."""
        return {role: judge.identity.as_dict() for role, judge in self.members.items()}

    def identity(self, role: str) -> JudgeIdentity:
        return self.members[role].identity

    def hear(self, samples: np.ndarray, sr: int, *, melody: bool, melody_frame_rate: float,
             embedding: bool, errors: dict[str, str]) -> JudgedClip:
        """Run the judges on a (C, n) clip: chords and clarity always, melody when the request has one,
        the embedding when a Fréchet distance is wanted. A judge's failure goes to ``errors``."""
        heard = JudgedClip()
        parts = [("chords", True), ("clarity", True), ("melody", melody), ("embedding", embedding)]
        for role, wanted in parts:
            if not wanted or not self.ready(role):
                continue
            judge = self.members[role]
            try:
                if role == "chords":
                    heard.timeline = judge.hear(samples, sr)
                elif role == "clarity":
                    value = judge.hear(samples, sr)
                    heard.tonal_energy_fraction = value if math.isfinite(value) else None
                elif role == "melody":
                    heard.melody_index = judge.hear(samples, sr, frame_rate=melody_frame_rate)
                else:
                    heard.embedding = judge.embed(samples, sr)
            except Exception as exc:  # one degenerate clip must not stop the evaluation
                errors[f"judge_{role}"] = f"{type(exc).__name__}: {exc}"
        return heard
