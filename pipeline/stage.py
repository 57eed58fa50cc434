"""Feature extractors: small classes with a pure ``extract(samples, sr)`` and a registry.

A stage is a :class:`FeatureExtractor` subclass registered under a name. The shard runner builds
it from a plain config mapping (so a job can be pickled to any worker), calls :meth:`setup` once
per worker process to load heavy models, then :meth:`extract` once per track.

Every entry point that computes (:data:`PINNED_METHODS`, overrides included, and methods marked
:func:`pinned`) runs with the BLAS, OpenMP and torch pools pinned to the stage's
:attr:`~FeatureExtractor.numeric_threads` (:mod:`pipeline.threads`), whoever calls it: the runner on
any executor, evaluation or generation code. Multithreaded sums round differently at different
thread counts, so this is what makes a stage's output independent of the executor and machine.

The registry maps names to "module:Class" strings and names no stage itself: stage packages
register theirs when imported (:func:`register_stage`), installed ones are found through the
:data:`STAGE_PROVIDERS_GROUP` entry points. Listing stages imports no TensorFlow, Demucs or torch.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from pipeline.config import config_hash, load_config
from pipeline.threads import pinned_threads

#: Threads a stage's numerics run with unless its config has a ``threads`` field: one, the count
#: a process-pool or dask worker uses anyway, and independent of the machine's core count.
DEFAULT_NUMERIC_THREADS = 1
#: Entry points that :class:`FeatureExtractor` pins by itself, in the base class and in overrides.
PINNED_METHODS: tuple[str, ...] = ("setup", "extract", "process", "process_many", "extract_stream")
#: Attribute that marks a method already wrapped by :func:`pinned` (never wrapped twice).
_PINNED_MARK = "__chordflow_pinned__"

Method = TypeVar("Method", bound=Callable[..., Any])


def pinned(method: Method) -> Method:
    """Run a stage method with the thread pools pinned to ``self.numeric_threads``.

    Applied to :data:`PINNED_METHODS` automatically; stages decorate their other public methods
    that compute and that evaluation code calls directly (e.g. ``ChordsExtractor.segments``)."""
    if getattr(method, _PINNED_MARK, False):
        return method

    @functools.wraps(method)
    def wrapper(self: "FeatureExtractor", *args: Any, **kwargs: Any) -> Any:
        with pinned_threads(self.numeric_threads):
            return method(self, *args, **kwargs)

    setattr(wrapper, _PINNED_MARK, True)
    return wrapper  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Declares one output column of a stage.

    ``shape`` uses ``None`` for the variable (time) axis, e.g. ``(None, 53)`` for frames × bins,
    ``(None,)`` for a per-frame index sequence and ``()`` for a scalar. ``dtype`` is a numpy
    dtype name (``"float32"``, ``"int16"``, ...) or ``"string"`` / ``"json"``.
    ``frame_rate`` is set for time-aligned features (frames per second of axis 0).
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...] = ()
    frame_rate: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "frame_rate": self.frame_rate}


@dataclasses.dataclass(frozen=True)
class TrackContext:
    """Where a track comes from and where its stage output goes (for stages that write files)."""

    track_id: str
    path: str  # as listed in the manifest
    out_dir: str  # the stage's shard folder (absolute)


class FeatureExtractor(ABC):
    """Base class of every stage. Subclasses set the class attributes and implement ``extract``."""

    #: Registry name, also the stage name recorded in shard metadata.
    name: ClassVar[str]
    #: Bump when the output of ``extract`` changes for the same input and config.
    version: ClassVar[str]
    #: Frozen dataclass holding the stage parameters (``params.yaml`` section).
    config_class: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in PINNED_METHODS:  # the subclass's own definitions; inherited ones are pinned already
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, pinned(method))

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def from_params(cls, values: Mapping[str, Any] | None) -> "FeatureExtractor":
        return cls(load_config(cls.config_class, values, where=cls.name))

    # What the loader must deliver to ``extract``: a sample rate (None keeps the file's) and a
    # channel count (None keeps the file's).
    @property
    def sample_rate(self) -> int | None:
        return getattr(self.config, "sample_rate", None)

    @property
    def channels(self) -> int | None:
        return getattr(self.config, "channels", None)

    @property
    def params_hash(self) -> str:
        return config_hash(self.config, {"stage": self.name, "version": self.version})

    @property
    def numeric_threads(self) -> int:
        """Threads the stage's numerics run with: ``config.threads`` where the config has that field
        (then it is in the params hash: another count may change the last bits of the output), else
        :data:`DEFAULT_NUMERIC_THREADS`. The same count gives the same bytes on every executor."""
        return getattr(self.config, "threads", DEFAULT_NUMERIC_THREADS)

    @abstractmethod
    def features(self) -> tuple[FeatureSpec, ...]:
        """The columns that :meth:`extract` returns, in order."""

    @pinned
    def setup(self) -> None:
        """Load heavy resources (models, plugins). Called once per worker before the first track."""

    @pinned
    def process(self, samples: np.ndarray, sr: int, context: "TrackContext") -> dict[str, Any]:
        """What the shard runner calls per track. The default is the pure :meth:`extract`; a stage
        that also writes files next to its shards (e.g. separated stems) overrides this and uses
        ``context`` to name them."""
        return self.extract(samples, sr)

    def tracks_per_call(self) -> int:
        """How many decoded tracks the runner hands to :meth:`process_many` at once (1 = one by one).

        Stages that batch work across tracks (e.g. GPU separation of segments from several tracks)
        return more; the runner then holds that many decoded tracks in memory."""
        return 1

    @pinned
    def process_many(self, items: Sequence[tuple[np.ndarray, int, "TrackContext"]]) -> list[dict[str, Any] | Exception]:
        """:meth:`process` over several ``(samples, sr, context)`` items; one result per item,
        either its values or the exception it raised (so one bad track fails alone)."""
        results: list[dict[str, Any] | Exception] = []
        for samples, sr, context in items:
            try:
                results.append(self.process(samples, sr, context))
            except Exception as exc:  # recorded per track by the runner
                results.append(exc)
        return results

    #: Seconds per chunk for stages that can process a track as a stream of chunks (bounded memory
    #: on hours-long files); None = whole tracks only. Such stages implement :meth:`extract_stream`.
    stream_chunk_seconds: ClassVar[float | None] = None

    @pinned
    def extract_stream(self, chunks: Iterator[np.ndarray], sr: int) -> dict[str, Any]:
        """Like :meth:`extract` over the concatenation of ``chunks`` ((channels, n) each), holding one
        chunk at a time. Only for stages that set :attr:`stream_chunk_seconds`."""
        raise NotImplementedError(f"stage {self.name} does not stream")

    @abstractmethod
    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        """Pure feature computation.

        Args:
            samples: float32 array of shape (channels, n_samples) at ``sr``.
            sr: sample rate of ``samples``.
        Returns:
            One value per declared feature, keyed by feature name.
        """


#: Entry-point group of packages that register stages when imported (``pyproject.toml`` names the
#: built-in one). Loaded on the first unknown name, so library callers and worker processes find
#: the installed stages without importing them by hand.
STAGE_PROVIDERS_GROUP = "chordflow.stages"

# name -> "module:ClassName". Stage packages fill it with strings, so registering imports nothing heavy.
_REGISTRY: dict[str, str] = {}
_providers_loaded = False


def register_stage(name: str, target: str) -> None:
    """Register ``target`` ("module:Class") under ``name`` (stage packages, plugins and tests)."""
    _REGISTRY[name] = target


def _load_providers() -> None:
    """Import every installed stage provider once (each calls :func:`register_stage`)."""
    global _providers_loaded
    if _providers_loaded:
        return
    _providers_loaded = True
    from importlib.metadata import entry_points  # scans installed metadata: only when needed

    explicit = dict(_REGISTRY)
    for entry_point in entry_points(group=STAGE_PROVIDERS_GROUP):
        entry_point.load()
    _REGISTRY.update(explicit)  # what a caller registered by hand wins over what was found


def available_stages() -> list[str]:
    _load_providers()
    return sorted(_REGISTRY)


def stage_target(name: str) -> str:
    """The "module:Class" that ``name`` stands for (a "module:Class" is its own target).

    The runner hands this to its workers, so a worker process resolves the stage without any
    registration of its own."""
    if ":" in name:
        return name
    if name not in _REGISTRY:
        _load_providers()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; available: {', '.join(available_stages())} "
                       "(a stage package registers its stages when imported)") from None


def get_stage_class(name: str) -> type[FeatureExtractor]:
    """The class registered as ``name``; a "module:Class" path also works (for plugins and tests,
    and because it needs no registration in the worker processes)."""
    target = stage_target(name)
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not issubclass(cls, FeatureExtractor):
        raise TypeError(f"{target} is not a FeatureExtractor")
    return cls


def create_stage(name: str, params: Mapping[str, Any] | Any | None = None) -> FeatureExtractor:
    """Build the registered stage ``name`` from its ``params.yaml`` section, or from its config
    already parsed (an instance of the stage's ``config_class``, e.g. by a command's edge)."""
    cls = get_stage_class(name)
    if isinstance(params, cls.config_class):
        return cls(params)
    if dataclasses.is_dataclass(params):
        raise TypeError(f"stage {name!r} takes a {cls.config_class.__name__}, not a {type(params).__name__}")
    return cls.from_params(params)
