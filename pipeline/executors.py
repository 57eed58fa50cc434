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

import abc
import concurrent.futures
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Protocol, Sequence

import submitit

from pipeline.config import load_config
from pipeline.worker_guard import exit_with_parent

#: Seconds before the end of its time limit that SLURM warns a job (submitit's signal), so the
#: task can checkpoint and requeue itself; capped at half the limit for very short limits.
SLURM_SIGNAL_DELAY_S = 90

Backend = Literal["serial", "process", "dask", "slurm"]


@dataclass(frozen=True)
class SlurmConfig:
    """How shard tasks are submitted to SLURM (through submitit)."""

    folder: str = "outputs/slurm"  # submitit's pickles and the tasks' stdout/stderr logs
    partition: str | None = None  # None: the cluster's default partition
    time_min: int = 60  # time limit of one task; on timeout it is requeued (max_num_timeout)
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem_gb: float = 4.0
    array_parallelism: int = 16  # array tasks running at once
    max_array_size: int = 1000  # tasks per job array (SLURM's MaxArraySize is 1001 by default); more -> several arrays
    max_num_timeout: int = 3  # requeues after timeout/preemption before the task fails
    poll_interval_s: float = 1.0  # how often waiting futures look for their result file
    sacct_interval_s: float = 10.0  # how often job states are asked from sacct while waiting
    result_grace_s: float = 15.0  # wait for a result file after sacct says the job ended (NFS lag)
    additional_parameters: dict[str, Any] | None = None  # extra sbatch flags, e.g. {"qos": "high"}


@dataclass(frozen=True)
class ExecutorConfig:
    """Which backend runs the tasks (``executor:`` section of params.yaml)."""

    backend: Backend = "serial"
    workers: int = 2  # process pool size / LocalCluster workers
    dask_address: str | None = None  # None: a LocalCluster(workers, 1 thread each, processes)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


class ExecutorTaskError(RuntimeError):
    """A task failed or was cancelled outside Python (SLURM): names the job and its log files."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        state: str | None = None,
        stdout: Path | None = None,
        stderr: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.stdout = stdout
        self.stderr = stderr


class TaskFuture(Protocol):
    """What every backend's future offers (``concurrent.futures.Future`` has it)."""

    def result(self, timeout: float | None = None) -> Any: ...

    def done(self) -> bool: ...


class Executor(abc.ABC):
    """Runs callables somewhere and hands back futures; use it as a context manager."""

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskFuture:
        """Schedule ``fn(*args, **kwargs)``."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[TaskFuture]:
        """Schedule ``fn(item)`` for every item; futures are in the order of ``items``."""
        return [self.submit(fn, item) for item in items]

    @abc.abstractmethod
    def as_completed(
        self, futures: Iterable[TaskFuture], timeout: float | None = None
    ) -> Iterator[TaskFuture]:
        """Yield each future once it is done (succeeded, failed or cancelled).

        Raises ``TimeoutError`` if some are still running ``timeout`` seconds after the call.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release workers; safe to call twice."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


class _RequeueableCall(submitit.helpers.Checkpointable):
    """Wraps a task so submitit requeues it on timeout/preemption instead of failing it.

    ``checkpoint()`` (inherited) resubmits the same call with the same arguments: the task must be
    idempotent, resuming from what it already wrote (the shard store makes shard tasks so).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class SlurmFuture:
    """A submitit job seen as a future; failures become :class:`ExecutorTaskError`."""

    def __init__(self, job: Any, executor: "SlurmExecutor") -> None:
        self.job = job
        self._executor = executor
        job._results_timeout_s = executor.config.result_grace_s

    @property
    def job_id(self) -> str:
        """SLURM job id, ``<array id>_<index>`` for an array task."""
        return str(self.job.job_id)

    @property
    def stdout_path(self) -> Path:
        return Path(self.job.paths.stdout)

    @property
    def stderr_path(self) -> Path:
        return Path(self.job.paths.stderr)

    def done(self) -> bool:
        """True once the result file exists or sacct reports an end state."""
        return bool(self.job.done())

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value; waits at most ``timeout`` seconds (``TimeoutError``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"SLURM job {self.job_id} not finished after {timeout}s (state {self.job.state})"
                )
            self._executor.refresh_states()
            time.sleep(self._executor.config.poll_interval_s)
        try:
            return self.job.result()
        except submitit.core.utils.UncompletedJobError as exc:
            raise self._task_error(exc) from exc

    def _task_error(self, exc: Exception) -> ExecutorTaskError:
        if isinstance(exc, submitit.core.utils.FailedJobError):
            # The result file holds the remote traceback; its last line names the exception.
            trace = str(self.job._get_outcome_and_result()[1]).strip()
            summary = trace.splitlines()[-1] if trace else "unknown error"
            state, what = "FAILED", f"raised {summary}"
        else:  # no result file: cancelled, killed, out of memory, node failure, too many timeouts
            state = self.job.watcher.get_state(self.job_id, mode="force")
            trace = str(exc).strip()
            what = f"ended without a result (state {state})"
        return ExecutorTaskError(
            f"SLURM job {self.job_id} {what}\n  stdout: {self.stdout_path}\n"
            f"  stderr: {self.stderr_path}\n{trace}",
            job_id=self.job_id,
            state=state,
            stdout=self.stdout_path,
            stderr=self.stderr_path,
        )

    def cancel(self) -> None:
        """``scancel`` this task (the whole job for a plain job, one element for an array task)."""
        self.job.cancel(check=False)

    def __repr__(self) -> str:
        return f"SlurmFuture(job_id={self.job_id!r})"


class SlurmExecutor(Executor):
    """Submits through submitit; ``map`` makes one job array with one task per item."""

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self._submitit = submitit.AutoExecutor(
            folder=config.folder, cluster="slurm", slurm_max_num_timeout=config.max_num_timeout
        )
        self._submitit.update_parameters(**slurm_parameters(config))
        self._last_state_check = float("-inf")

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> SlurmFuture:
        job = self._submitit.submit(_RequeueableCall(fn), *args, **kwargs)
        return SlurmFuture(job, self)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[SlurmFuture]:
        items = list(items)
        if not items:
            return []
        size = max(1, self.config.max_array_size)
        jobs = [job for first in range(0, len(items), size)  # one array per max_array_size tasks
                for job in self._submitit.map_array(_RequeueableCall(fn), items[first: first + size])]
        return [SlurmFuture(job, self) for job in jobs]

    def refresh_states(self, force: bool = False) -> None:
        """Ask sacct for every watched job at most every ``sacct_interval_s`` seconds.

        submitit alone backs off to one sacct call per several minutes on long runs, so a task
        killed without a result file (scancel, node failure) would be noticed very late.
        """
        now = time.monotonic()
        if force or now - self._last_state_check >= self.config.sacct_interval_s:
            submitit.SlurmJob.watcher.update()
            self._last_state_check = now

    def as_completed(
        self, futures: Iterable[TaskFuture], timeout: float | None = None
    ) -> Iterator[TaskFuture]:
        pending = list(futures)
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            still_pending = []
            for future in pending:
                if future.done():
                    yield future
                else:
                    still_pending.append(future)
            pending = still_pending
            if not pending:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} SLURM task(s) still unfinished after {timeout}s")
            self.refresh_states()
            time.sleep(self.config.poll_interval_s)

    def close(self) -> None:
        # Submitted jobs keep running on the cluster: a later run resumes from their outputs.
        pass


def slurm_parameters(config: SlurmConfig) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` keywords for ``config``."""
    extra = config.additional_parameters or {}
    if not isinstance(extra, Mapping):
        raise ValueError(f"executor.slurm.additional_parameters must be a mapping, got {extra!r}")
    time_limit_s = config.time_min * 60
    parameters: dict[str, Any] = {
        "name": "chordflow",
        "timeout_min": config.time_min,
        "cpus_per_task": config.cpus_per_task,
        "mem_gb": config.mem_gb,
        "slurm_array_parallelism": config.array_parallelism,
        "slurm_signal_delay_s": min(SLURM_SIGNAL_DELAY_S, time_limit_s // 2),
        # Requeue needs the job to be requeueable even where the cluster default says no.
        "slurm_additional_parameters": {"requeue": True, **extra},
    }
    if config.partition:
        parameters["slurm_partition"] = config.partition
    if config.gpus_per_node > 0:  # "--gpus-per-node=0" is rejected by clusters without GRES
        parameters["gpus_per_node"] = config.gpus_per_node
    return parameters


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
        return SlurmExecutor(config.slurm)
    raise ValueError(f"unknown executor backend {config.backend!r}; use serial, process, dask or slurm")
