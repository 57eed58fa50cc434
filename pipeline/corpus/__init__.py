"""The ground-truth demo corpus: synthetic and public-domain music rendered with FluidSynth.

Modules: ``config`` (CorpusConfig), ``chords`` (JASCO vocabulary spelling), ``grammar`` and
``melody`` (generated progressions and tunes), ``sources`` (music21 chorales and lead sheets),
``drums`` and ``arrange`` (band arrangement, MIDI), ``render`` (FluidSynth, formats), ``truth``
and ``describe`` (sidecars), ``plan``/``compose``/``clip``/``build`` (the render), ``plot``, ``cli``.
Entry point: :func:`pipeline.corpus.build.render_corpus`.
"""

from pipeline.corpus.config import CorpusConfig

__all__ = ["CorpusConfig"]
