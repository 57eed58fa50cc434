"""What every executor backend shares (:mod:`pipeline.executors`, :mod:`pipeline.slurm_executor`):
the :class:`Executor` interface, its futures, the task error of out-of-Python failures, and the SLURM
settings."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence


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
