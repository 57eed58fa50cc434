"""The SLURM backend of the executor seam (:mod:`pipeline.executors`), through submitit.

``map`` submits one job array (one array task per item, several arrays past ``max_array_size``);
a task that times out or is preempted is requeued with the same arguments (tasks are idempotent: the
shard store resumes from what they already wrote); a task that fails or ends without a result file
comes back from ``result()`` as :class:`ExecutorTaskError` naming its job id, state and log files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import submitit

from pipeline.executor_base import Executor, ExecutorTaskError, SlurmConfig, TaskFuture

#: Seconds before the end of its time limit that SLURM warns a job (submitit's signal), so the
#: task can checkpoint and requeue itself; capped at half the limit for very short limits.
SLURM_SIGNAL_DELAY_S = 90


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
