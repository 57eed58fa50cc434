"""One seam for running shard tasks: in-process, a process pool, a Dask cluster, or SLURM.

Every backend is an :class:`Executor`: ``submit(fn, *args, **kwargs) -> future``,
``map(fn, items) -> [future]`` (on SLURM one job array, one array task per item) and
``as_completed(futures)`` (yields each future as it finishes, so the caller can drive tqdm).
Futures expose ``result(timeout=None)`` and ``done()``. A task that raises gives its own exception
back from ``result()`` on the local backends; on SLURM, where only the traceback text comes back,
``result()`` raises :class:`ExecutorTaskError` naming the job id, its state and its log files.

Workers are long-lived (a process or Dask worker runs many tasks), so a per-process model cache in
the caller's task pays the model load once per worker, not once per task.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

from pipeline.config import load_config
from pipeline.executor_base import Executor, ExecutorTaskError, SlurmConfig, TaskFuture  # noqa: F401 (the seam's names)
from pipeline.worker_guard import exit_with_parent

Backend = Literal["serial", "process", "dask", "slurm"]


@dataclass(frozen=True)
class ExecutorConfig:
    """Which backend runs the tasks (``executor:`` section of params.yaml)."""

    backend: Backend = "serial"
    workers: int = 2  # process pool size / LocalCluster workers
    dask_address: str | None = None  # None: a LocalCluster(workers, 1 thread each, processes)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


class SerialExecutor(Executor):
    """Runs each task at once in this process (debugging); exceptions go into the future."""

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskFuture:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # the caller sees it from future.result(), like a pool would
            future.set_exception(exc)
        return future

    def as_completed(
        self, futures: Iterable[TaskFuture], timeout: float | None = None
    ) -> Iterator[TaskFuture]:
        yield from futures  # every future is already done

    def close(self) -> None:
        pass


class ProcessExecutor(Executor):
    """A pool of ``workers`` long-lived processes started with "spawn".

    Spawn, not fork: a forked child inherits torch/TensorFlow thread pools and CUDA state in a
    broken form. Processes are never recycled, so per-process model caches survive across tasks.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"executor.workers must be >= 1, got {workers}")
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent, initargs=(os.getpid(),),  # no orphans if this process is killed
        )

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskFuture:
        return self._pool.submit(fn, *args, **kwargs)

    def as_completed(
        self, futures: Iterable[TaskFuture], timeout: float | None = None
    ) -> Iterator[TaskFuture]:
        return concurrent.futures.as_completed(list(futures), timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)  # lets every submitted task finish

    def __exit__(self, exc_type: object, *rest: object) -> None:
        # On an error in the with-block drop queued tasks instead of running them to the end.
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)


class DaskExecutor(Executor):
    """A ``distributed`` client: to ``address``, or to a private LocalCluster of processes."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        from distributed import Client, LocalCluster  # heavy import: only when Dask is used

        self._cluster = None
        if address is None:
            if workers < 1:
                raise ValueError(f"executor.workers must be >= 1, got {workers}")
            self._cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            address = self._cluster
        self._client = Client(address)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for scaling or diagnostics)."""
        return self._client

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskFuture:
        # pure=False: two calls with equal arguments are two tasks (a retry must really rerun).
        return self._client.submit(fn, *args, pure=False, **kwargs)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[TaskFuture]:
        return list(self._client.map(fn, list(items), pure=False))

    def as_completed(
        self, futures: Iterable[TaskFuture], timeout: float | None = None
    ) -> Iterator[TaskFuture]:
        from distributed import as_completed

        futures = list(futures)
        if not futures:
            return iter(())
        return iter(as_completed(futures, timeout=timeout))

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def run_all(executor: Executor, fn: Callable[..., Any], calls: Sequence[tuple], desc: str,
            progress: bool = True, unit: str = "clip") -> list[TaskFuture]:
    """Submit ``fn(*args)`` for every ``args`` of ``calls`` and wait for all of them behind one tqdm
    bar; the futures (all done) come back in the order of ``calls``, so callers sum in one order."""
    from tqdm import tqdm

    futures = [executor.submit(fn, *args) for args in calls]
    for _ in tqdm(executor.as_completed(futures), total=len(futures), desc=desc, unit=unit, disable=not progress):
        pass
    return futures


def executor_from_params(params: Mapping[str, Any], backend: str | None = None,
                         workers: int | None = None) -> Executor:
    """The executor of a params file's ``executor:`` section, with command-line overrides."""
    section = dict(params.get("executor") or {})
    if backend:
        section["backend"] = backend
    if workers:
        section["workers"] = workers
    return make_executor(load_config(ExecutorConfig, section, where="executor"))


def make_executor(config: ExecutorConfig) -> Executor:
    """The executor named by ``config.backend``."""
    if config.backend == "serial":
        return SerialExecutor()
    if config.backend == "process":
        return ProcessExecutor(config.workers)
    if config.backend == "dask":
        return DaskExecutor(config.workers, config.dask_address)
    if config.backend == "slurm":
        from pipeline.slurm_executor import SlurmExecutor  # submitit is imported only where SLURM is used

        return SlurmExecutor(config.slurm)
    raise ValueError(f"unknown executor backend {config.backend!r}; use serial, process, dask or slurm")
