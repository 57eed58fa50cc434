"""Chords stage: Chordino chord timelines, JASCO-compatible vocabularies, frame-level chord indices.

Public API:

* :class:`ChordsExtractor` / :class:`ChordsConfig`: the stage (registered as ``chords``);
* :func:`timeline_to_frames`: ``[(label, start[, end])]`` -> (frames,) chord indices, the one
  conversion shared by the stage and the sampler; :func:`n_frames_for`;
* :class:`Vocabulary` (``Vocabulary.jasco()``, ``Vocabulary.load(path)``), :func:`build_vocabulary`;
* :func:`normalise_label`, :func:`to_harte`.

Importing this package does not import the Vamp host; ``ChordsExtractor.setup()`` does.
"""

from stages.chords.frames import frames_to_timeline, n_frames_for, timeline_to_frames
from stages.chords.labels import normalise_label, to_harte
from stages.chords.stage import ChordsConfig, ChordsExtractor
from stages.chords.vocab import Vocabulary, build_vocabulary

__all__ = [
    "ChordsConfig",
    "ChordsExtractor",
    "Vocabulary",
    "build_vocabulary",
    "frames_to_timeline",
    "n_frames_for",
    "normalise_label",
    "timeline_to_frames",
    "to_harte",
]
