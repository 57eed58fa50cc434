"""The music vocabulary every layer of chordflow shares, and which imports nothing of the project.

* :mod:`music.chords`: one chord type, one parser of every spelling real inputs contain, the
  vocabulary's speller, Harte conversion (for mir_eval);
* :mod:`music.vocabulary`: JASCO's chord vocabulary and its resource file;
* :mod:`music.frames`: how many frames cover N samples, and the time of a frame;
* :mod:`music.conditions`: the names of the model's conditions, in their one order.

The demo-corpus renderer, the feature stages and the model all import these; none defines its own.
"""
