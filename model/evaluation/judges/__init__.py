"""Judges that share nothing with the stages that made the training conditions.

The project's own evaluation re-analyses generated audio with the chords stage (Chordino) and the
melody stage (DeepSalience): the extractors that wrote the conditions the model learned from, so a
model can please them without sounding like music. Each judge here is a pretrained model from a
package that ships its weights, trained on real recordings, and built on none of those stages:

* :mod:`.chords_cnn` — madmom's CNN chord recogniser (deep chroma-free CNN features + CRF), majmin;
* :mod:`.melody_crepe` — CREPE (torchcrepe) f0 of the clip as JASCO's 53 semitones (out of range: unvoiced);
* :mod:`.musicnn` — musicnn (MSD) embeddings for a Fréchet distance on a pretrained audio embedding.

Every judge names itself (:class:`JudgeIdentity`) so that metrics say which judge made each number.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata


@dataclasses.dataclass(frozen=True)
class JudgeIdentity:
    """Who made a number: the judge's name, the package (and version) its weights ship in, and what it is."""

    name: str
    package: str
    version: str
    model: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def package_version(package: str) -> str:
    """The installed version of the package a judge's weights ship in ("not installed" when absent)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
