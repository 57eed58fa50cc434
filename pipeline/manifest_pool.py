"""A process pool that survives workers killed by a crashing decoder.

A corrupt file can crash a C decoder (segfault) instead of raising. In a plain
``ProcessPoolExecutor`` that breaks the pool and loses the whole run. Here at most
``workers * IN_FLIGHT_PER_WORKER`` items are in flight; when the pool breaks, those items are
retried one at a time, each in a fresh single-worker pool, and an item that kills its worker
again gets ``on_crash(item)`` as its result. The other items continue in a new pool. If worker
processes cannot run at all here (a fresh pool fails a trivial task), the remaining items run in
this process, with a warning. Results come back in input order, so the output does not depend
on the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Items queued per worker: enough to keep workers busy, few enough to retry after a crash.
IN_FLIGHT_PER_WORKER = 4
#: "forkserver": workers start from a clean process, so a parent that has already imported
#: torch or started threads is not forked (forking those can deadlock).
START_METHOD = "forkserver"
#: Modules imported once by the fork server so that each worker starts warm.
PRELOAD_MODULES = ["pipeline.manifest_scan"]


def map_isolated(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    on_crash: Callable[[Item], Result],
    progress: tqdm | None = None,
) -> list[Result]:
    """``[function(item) for item in items]`` on ``workers`` processes (serial if ``workers <= 1``).

    ``function`` must be picklable by reference (a module-level function).
    """
    if workers <= 1:
        results = []
        for item in items:
            results.append(function(item))
            _tick(progress)
        return results
    results: list[Result | None] = [None] * len(items)
    done = [False] * len(items)
    pending = deque(range(len(items)))
    try:
        while pending:
            suspects = _run_until_broken(function, items, pending, results, done, workers, progress)
            if suspects and not _workers_can_start():
                raise _PoolUnavailable("worker processes die while starting")
            for index in suspects:  # each alone: only the item that crashes is given up
                if _run_until_broken(function, items, deque([index]), results, done, 1, progress):
                    results[index], done[index] = on_crash(items[index]), True
                    _tick(progress)
    except _PoolUnavailable as exc:
        logger.warning("cannot use worker processes (%s); continuing in this process", exc)
        for index in (i for i, finished in enumerate(done) if not finished):
            results[index] = function(items[index])
            _tick(progress)
    return results  # type: ignore[return-value]


def _run_until_broken(function, items, pending: deque, results: list, done: list, workers: int, progress) -> list[int]:
    """Run ``pending`` indices; on a broken pool return the indices that were in flight."""
    in_flight: dict = {}
    with _new_pool(workers) as pool:
        while pending or in_flight:
            while pending and len(in_flight) < workers * IN_FLIGHT_PER_WORKER:
                try:
                    future = pool.submit(function, items[pending[0]])
                except BrokenProcessPool:  # a worker died since the last wait
                    return sorted(in_flight.values())
                except (OSError, EOFError) as exc:  # the pool could not start a process at all
                    raise _PoolUnavailable(exc) from exc
                in_flight[future] = pending.popleft()
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                if isinstance(future.exception(), BrokenProcessPool):
                    return sorted(in_flight.values())
                index = in_flight.pop(future)
                results[index], done[index] = future.result(), True
                _tick(progress)
    return []


def _workers_can_start() -> bool:
    """Whether a fresh pool can run a trivial task (tells a crashing item from a broken setup)."""
    try:
        with _new_pool(1) as pool:
            return pool.submit(os.getpid).result() > 0
    except (BrokenProcessPool, OSError, EOFError):
        return False


def _new_pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        context.set_forkserver_preload(PRELOAD_MODULES)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


class _PoolUnavailable(RuntimeError):
    """Worker processes cannot be started here (e.g. no permission to run the interpreter)."""


def _tick(progress: tqdm | None) -> None:
    if progress is not None:
        progress.update(1)
