"""Does the generated audio sound like the real clips? The metrics' ``realism`` entry.

Two figures from the independent judges (model/evaluation/judges), each beside its real-audio
reference measured the same way in the same run:

* ``frechet``: the Fréchet distance on the pretrained musicnn (MSD) embedding, generated vs the
  reference manifest's real clips, per group, beside two real-audio scales: ``real_vs_real`` (even
  vs odd real clips) and, given the held-out requests' real tracks, ``heldout_real`` (those clips, as
  long as the generated ones, against the reference without them: the figure a perfect generator of
  that many clips would score);
* ``tonal_energy_fraction``: the share of energy in stable, prominent partials
  (:mod:`model.evaluation.judges.clarity`) of the real clips (mean, std, n); each group's mean is in
  the metrics' ``groups``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from model.evaluation.embedding import HeldoutReal, frechet_section, over_manifest

if TYPE_CHECKING:
    from pipeline.executors import Executor

#: role -> ``function(samples, sample_rate)`` measuring a real clip with that judge.
Measure = Callable[[str], Callable[[np.ndarray, int], Any]]


def _mean_std(values: list[float]) -> dict[str, float | int]:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return {"n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "n": len(finite)}


def realism_section(generated: Mapping[str, np.ndarray | None], groups: Mapping[str, str],
                    reference_manifest: str | Path, panel: Any, limit: int = 0,
                    progress: bool = True, executor: Executor | None = None,
                    measure: Measure | None = None, memo: dict | None = None,
                    heldout: HeldoutReal | None = None) -> dict[str, Any]:
    """``generated``: clip id -> its (windows, D) musicnn embedding (None when not embedded);
    ``panel``: the :class:`~model.evaluation.judges.panel.JudgePanel` that embedded them;
    ``executor`` and ``measure``: where the real clips run, and a picklable stand-in for the panel's
    judge of a role there (None: the panel's own, in this process); ``memo``: see
    :func:`model.evaluation.embedding.over_manifest`; ``heldout``: the held-out requests' real tracks
    (left out of the reference, and measured as the same-size yardstick)."""
    if measure is None:
        def measure(role: str) -> Callable[[np.ndarray, int], Any]:
            judge = panel.members[role]
            return judge.embed if role == "embedding" else judge.hear
    section: dict[str, Any] = {}
    if panel.ready("embedding"):
        from model.evaluation.judges.musicnn import PATCH_SECONDS, SAMPLE_RATE

        judge = panel.members["embedding"]
        reference, failed = over_manifest(reference_manifest, measure("embedding"), SAMPLE_RATE, limit, progress,
                                          desc="reference musicnn", executor=executor, memo=memo, heldout=heldout)
        real, real_failed = over_manifest(reference_manifest, measure("embedding"), SAMPLE_RATE, 0, progress,
                                          desc="held-out real musicnn", executor=executor, memo=memo,
                                          heldout=heldout, real=True) if heldout is not None else (None, [])
        section["frechet"] = frechet_section(generated, groups, reference, failed, reference_manifest,
                                             {"embedding": judge.identity.name, "judge": judge.identity.as_dict(),
                                              "dimensions": judge.config.dimensions,
                                              "window_s": PATCH_SECONDS, "hop_s": judge.config.hop_s},
                                             real, real_failed)
    else:
        section["frechet"] = {"skipped": panel.skipped.get("embedding", "not set up")}
    if panel.ready("clarity"):
        judge = panel.members["clarity"]
        values, failed = over_manifest(reference_manifest, measure("clarity"), judge.config.sample_rate, limit,
                                       progress, desc="reference clarity", executor=executor, memo=memo,
                                       heldout=heldout)
        section["tonal_energy_fraction"] = {"judge": judge.identity.as_dict(), "real": _mean_std(values),
                                            "reference_failed": len(failed)}
    else:
        section["tonal_energy_fraction"] = {"skipped": panel.skipped.get("clarity", "not set up")}
    return section
