"""Numpy <-> Arrow conversion for feature columns, zero-copy on the way back.

A feature declared with ``FeatureSpec.shape`` is stored as:

==================  ==========================================  ==============================
shape               Arrow type                                  numpy per track
==================  ==========================================  ==============================
``()``              primitive (``float32``, ``int64``, ...)      scalar
``(D,)``            ``fixed_size_list<T, D>``                    ``(D,)``
``(None,)``         ``list<T>``                                  ``(frames,)``
``(None, D)``       ``list<fixed_size_list<T, D>>``              ``(frames, D)``
==================  ==========================================  ==============================

``string`` features are Arrow strings and ``json`` features are JSON text (timelines, lists of
events). Reading a numeric column gives numpy *views* on the Arrow buffers (no copy): the list
offsets locate each track's frames inside one flat values buffer.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from pipeline.stage import FeatureSpec

NON_NUMERIC_DTYPES = ("string", "json")


class FeatureValueError(ValueError):
    """A value returned by a stage does not match its declared FeatureSpec."""


def arrow_type(spec: FeatureSpec) -> pa.DataType:
    """The Arrow type that stores ``spec`` (see the module table)."""
    if spec.dtype == "string" or spec.dtype == "json":
        if spec.shape != ():
            raise ValueError(f"{spec.name}: string/json features must be scalar per track")
        return pa.string()
    base = pa.from_numpy_dtype(np.dtype(spec.dtype))
    shape = tuple(spec.shape)
    if shape == ():
        return base
    if shape == (None,):
        return pa.list_(base)
    if len(shape) == 1 and shape[0] is not None:
        return pa.list_(base, shape[0])
    if len(shape) == 2 and shape[0] is None and shape[1] is not None:
        return pa.list_(pa.list_(base, shape[1]))
    raise ValueError(f"{spec.name}: unsupported feature shape {shape}")


def coerce_value(spec: FeatureSpec, value: Any) -> Any:
    """Check ``value`` against ``spec`` and return it in the stored dtype.

    Raises:
        FeatureValueError: wrong rank, wrong fixed dimension, or non-finite floats.
    """
    if spec.dtype == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if spec.dtype == "string":
        if not isinstance(value, str):
            raise FeatureValueError(f"{spec.name}: expected a string, got {type(value).__name__}")
        return value
    array = np.asarray(value)
    if array.ndim != len(spec.shape):
        raise FeatureValueError(
            f"{spec.name}: expected {len(spec.shape)}-d value of shape {spec.shape}, got shape {array.shape}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
        if want is not None and want != got:
            raise FeatureValueError(f"{spec.name}: axis {axis} must have size {want}, got {got}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise FeatureValueError(f"{spec.name}: contains NaN or Inf")
    if array.ndim == 0:  # ascontiguousarray would promote a 0-d value to shape (1,)
        return array.astype(np.dtype(spec.dtype))[()]
    return np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))


def build_column(spec: FeatureSpec, values: Sequence[Any]) -> pa.Array:
    """Build one Arrow column from per-track values already passed through :func:`coerce_value`."""
    kind = arrow_type(spec)
    if spec.dtype in NON_NUMERIC_DTYPES:
        return pa.array(list(values), type=kind)
    shape = tuple(spec.shape)
    dtype = np.dtype(spec.dtype)
    if shape == ():
        return pa.array(np.asarray(values, dtype=dtype), type=kind)
    if len(shape) == 1 and shape[0] is not None:
        flat = np.concatenate([v.reshape(-1) for v in values]) if values else np.zeros(0, dtype)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=kind.value_type), shape[0])
    lengths = np.array([len(v) for v in values], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate([v.reshape(-1) for v in values]) if values else np.zeros(0, dtype)
    if shape == (None,):
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=kind.value_type))
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=kind.value_type.value_type), shape[1])
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def _primitive_view(array: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a primitive Arrow array without nulls (whole buffer, offset applied)."""
    return array.to_numpy(zero_copy_only=True)


class ColumnView:
    """Per-track numpy access to one stored feature column (which may span several chunks)."""

    def __init__(self, spec: FeatureSpec, column: pa.ChunkedArray) -> None:
        self.spec = spec
        self._chunks = column.chunks
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, row: int) -> Any:
        chunk_index = int(np.searchsorted(self._starts, row, side="right") - 1)
        chunk = self._chunks[chunk_index]
        local = row - int(self._starts[chunk_index])
        if self.spec.dtype == "json":
            return json.loads(chunk[local].as_py())
        if self.spec.dtype == "string":
            return chunk[local].as_py()
        shape = tuple(self.spec.shape)
        if shape == ():
            return _primitive_view(chunk)[local]
        if len(shape) == 1 and shape[0] is not None:
            width = shape[0]
            flat = _primitive_view(chunk.values)  # .values ignores the chunk's own slice offset
            start = (chunk.offset + local) * width
            return flat[start : start + width]
        offsets = chunk.offsets.to_numpy(zero_copy_only=True)
        begin, end = int(offsets[local]), int(offsets[local + 1])
        if shape == (None,):
            return _primitive_view(chunk.values)[begin:end]
        frames = chunk.values  # FixedSizeListArray of width D
        width = shape[1]
        flat = _primitive_view(frames.values)
        base = frames.offset * width
        return flat[base + begin * width : base + end * width].reshape(end - begin, width)
