"""Chords stage: Chordino chord timelines, JASCO-compatible vocabularies, frame-level chord indices.

Public API:

* :class:`ChordsExtractor` / :class:`ChordsConfig`: the stage (registered as ``chords``);
* :func:`timeline_to_frames`: ``[(label, start[, end])]`` -> (frames,) chord indices, the one
  conversion shared by the stage and the sampler (frame counts: :mod:`music.frames`);
* :class:`Vocabulary` (``Vocabulary.jasco()``, ``Vocabulary.load(path)``), :func:`build_vocabulary`;
* label spelling and Harte conversion are :mod:`music.chords` (one chord type, one parser).

Importing this package does not import the Vamp host; ``ChordsExtractor.setup()`` does.
"""

from stages.chords.frames import frames_to_timeline, timeline_to_frames
from stages.chords.stage import ChordsConfig, ChordsExtractor
from stages.chords.vocab import Vocabulary, build_vocabulary

__all__ = [
    "ChordsConfig",
    "ChordsExtractor",
    "Vocabulary",
    "build_vocabulary",
    "frames_to_timeline",
    "timeline_to_frames",
]
