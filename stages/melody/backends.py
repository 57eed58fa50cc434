"""One entry point for both salience backends (``torch`` port, ``keras`` reference)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pipeline.stage import DEFAULT_NUMERIC_THREADS
from stages.melody.chunking import SalienceModel
from stages.melody.weights import read_weights

Backend = Literal["torch", "keras"]
BACKENDS: tuple[str, ...] = ("torch", "keras")


def available_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity, e.g. SLURM's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int) -> int:
    """``threads`` if positive, else all available cores (benchmarks only: a stage's thread count
    is always explicit, see ``MelodyConfig.threads``)."""
    return threads if threads > 0 else available_cores()


def load_salience_model(model: str, backend: str = "torch", weights_dir: str | Path | None = None,
                        threads: int = DEFAULT_NUMERIC_THREADS, device: str = "cpu",
                        precision: str = "float32") -> SalienceModel:
    """Build ``model`` (e.g. ``"multif0"``) on ``backend`` with its weights loaded; every prediction
    runs with ``threads`` threads (torch: pinned per call; keras: TensorFlow's pools, fixed at import);
    ``precision`` is the torch backend's compute precision (see ``MelodyConfig.precision``).

    Raises:
        WeightsError: the weight file is missing or malformed (the message says where to put it).
        ValueError: ``threads`` < 1 (the salience must not depend on the machine's core count).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    weights = read_weights(model, weights_dir)
    if backend == "torch":
        from stages.melody.model_torch import TorchSalienceModel

        return TorchSalienceModel(weights, threads, device, precision)
    if backend == "keras":
        if device != "cpu" or precision != "float32":
            raise ValueError("the keras backend runs on the CPU in float32 here; use backend torch for a GPU "
                             "or another precision")
        from stages.melody.model_keras import KerasSalienceModel

        return KerasSalienceModel(weights, threads)
    raise ValueError(f"unknown salience backend {backend!r}; choose one of {', '.join(BACKENDS)}")
