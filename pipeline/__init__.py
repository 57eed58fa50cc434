"""chordflow data plane: audio loading, manifests, shard store, executors and the CLI."""

__version__ = "0.1.0"
