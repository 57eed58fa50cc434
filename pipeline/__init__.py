"""chordflow data plane: audio loading, manifests, shard store, executors and the CLI."""

from pipeline.numba_cache import configure as _configure_numba_cache

__version__ = "0.1.0"

# Before anything imports numba (it reads its cache folder once, at import): see numba_cache.
_configure_numba_cache()
