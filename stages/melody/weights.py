"""Find and read the original DeepSalience weight files (Keras 2.0.6 weights-only HDF5).

The files hold one HDF5 group per layer, listed in order by the root attribute ``layer_names``;
each group's ``weight_names`` attribute lists its arrays (``kernel``/``bias`` for Conv2D,
``gamma``/``beta``/``moving_mean``/``moving_variance`` for BatchNormalization). Layer names
carry running counters (``batch_normalization_91``), so we read layers by position and kind, not
by name. Keras 3 does not load this legacy layout by name, and we need the arrays for the PyTorch
port anyway, so both backends take them from :func:`read_weights`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from stages.melody.constants import (
    CONV_LAYERS,
    DEFAULT_WEIGHTS_DIR,
    MODEL_NAMES,
    N_INPUT_CHANNELS,
    ORIGINAL_REPOSITORY,
    WEIGHTS_ENV,
)


class WeightsError(FileNotFoundError):
    """A weight file is missing, unreadable or does not have the DeepSalience layout."""

    error_type = "weights"


@dataclasses.dataclass(frozen=True)
class BatchNormWeights:
    gamma: np.ndarray  # (C,)
    beta: np.ndarray
    moving_mean: np.ndarray
    moving_variance: np.ndarray


@dataclasses.dataclass(frozen=True)
class ConvWeights:
    kernel: np.ndarray  # (kernel_freq, kernel_time, in, out), Keras layout
    bias: np.ndarray  # (out,)


@dataclasses.dataclass(frozen=True)
class DeepSalienceWeights:
    """The 6 BatchNorm + 6 Conv2D layers of one model, in network order (BN before each conv)."""

    name: str
    batch_norms: tuple[BatchNormWeights, ...]
    convs: tuple[ConvWeights, ...]

    @property
    def n_parameters(self) -> int:
        arrays = [a for bn in self.batch_norms for a in dataclasses.astuple(bn)]
        arrays += [a for conv in self.convs for a in (conv.kernel, conv.bias)]
        return int(sum(a.size for a in arrays))


def resolve_weights_dir(configured: str | None = None) -> Path:
    """The weight folder: ``configured`` (params.yaml), else ``$CHORDFLOW_DEEPSALIENCE_WEIGHTS``,
    else ``~/.cache/chordflow/deepsalience``."""
    chosen = configured or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR
    return Path(os.path.expandvars(chosen)).expanduser()


def weight_path(model: str, weights_dir: str | Path | None = None) -> Path:
    """Path of ``<model>.h5``; a clear :class:`WeightsError` if it is not there."""
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown DeepSalience model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    folder = resolve_weights_dir(str(weights_dir) if weights_dir else None)
    path = folder / f"{model}.h5"
    if not path.is_file():
        raise WeightsError(
            f"{path}: DeepSalience weight file {model}.h5 not found in {folder}. "
            f"Run `chordflow melody fetch-weights --dest {folder}` (downloads and checks them), or copy "
            f"predict/weights/{model}.h5 from {ORIGINAL_REPOSITORY} there; the folder is set by "
            f"params.yaml melody.weights_dir or the {WEIGHTS_ENV} environment variable."
        )
    return path


def read_weights(model: str, weights_dir: str | Path | None = None) -> DeepSalienceWeights:
    """Read the arrays of ``<weights_dir>/<model>.h5`` (shapes checked against the network)."""
    import h5py  # only the weight reader needs it

    path = weight_path(model, weights_dir)
    try:
        with h5py.File(path, "r") as handle:
            layers = [_layer_arrays(handle, name) for name in _layer_names(handle)]
    except (OSError, KeyError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable Keras weight file ({exc})") from exc
    layers = [arrays for arrays in layers if arrays]  # input and lambda layers hold no weights
    batch_norms = tuple(BatchNormWeights(*(arrays[k] for k in ("gamma", "beta", "moving_mean", "moving_variance")))
                        for arrays in layers if "gamma" in arrays)
    convs = tuple(ConvWeights(arrays["kernel"], arrays["bias"]) for arrays in layers if "kernel" in arrays)
    weights = DeepSalienceWeights(model, batch_norms, convs)
    _check_shapes(weights, path)
    return weights


def _layer_names(handle) -> list[str]:
    names = handle.attrs.get("layer_names")
    if names is None:  # a full-model file keeps the weights under /model_weights
        handle = handle["model_weights"]
        names = handle.attrs["layer_names"]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _layer_arrays(handle, layer: str) -> dict[str, np.ndarray]:
    group = handle[layer] if layer in handle else handle["model_weights"][layer]
    arrays = {}
    for weight_name in group.attrs.get("weight_names", []):
        weight_name = weight_name.decode() if isinstance(weight_name, bytes) else str(weight_name)
        # "bendy1_14/kernel:0" -> "kernel"
        short = weight_name.rsplit("/", 1)[-1].split(":")[0]
        arrays[short] = np.asarray(group[weight_name], dtype=np.float32)
    return arrays


def _check_shapes(weights: DeepSalienceWeights, path: Path) -> None:
    problems = []
    if len(weights.convs) != len(CONV_LAYERS) or len(weights.batch_norms) != len(CONV_LAYERS):
        problems.append(f"{len(weights.convs)} conv and {len(weights.batch_norms)} batch-norm layers, "
                        f"expected {len(CONV_LAYERS)} of each")
    else:
        fan_in = N_INPUT_CHANNELS
        for (name, filters, kernel, _), conv, bn in zip(CONV_LAYERS, weights.convs, weights.batch_norms):
            expected = (*kernel, fan_in, filters)
            if conv.kernel.shape != expected or conv.bias.shape != (filters,):
                problems.append(f"{name}: kernel {conv.kernel.shape}, expected {expected}")
            if any(a.shape != (fan_in,) for a in dataclasses.astuple(bn)):
                problems.append(f"batch norm before {name}: expected {fan_in} channels")
            fan_in = filters
    if problems:
        raise WeightsError(f"{path}: not a DeepSalience weight file: {'; '.join(problems)}")
