"""chordflow data plane: audio loading, manifests, shard store, executors and the stage runner.

The bottom layer: it names no stage and no model (``tests/test_layers.py``); the ``chordflow`` command
that wires everything together is the top-level ``chordflow`` package.
"""

from pipeline.numba_cache import configure as _configure_numba_cache

__version__ = "0.1.0"

# Before anything imports numba (it reads its cache folder once, at import): see numba_cache.
_configure_numba_cache()
