"""Run numeric code at a fixed thread count, whatever the process was started with.

Why: multithreaded BLAS (OpenBLAS ``sgemm``), torch reductions, convolutions and FFTs, and OpenMP
loops split their sums by thread, so the same call at 1 and at 2 threads can round differently
(one float32 step). A serial run uses every core, a dask worker one (it sets ``OMP_NUM_THREADS=1``):
unpinned, a stage's shards would depend on the executor and on the machine's core count.

:func:`pinned_threads` sets, for its duration and in the calling thread,

* every BLAS and OpenMP pool loaded in the process (threadpoolctl; OpenMP counts are per thread),
* torch's intra-op threads (``torch.set_num_threads``: its OpenMP pool and MKL), only when torch is
  already imported (this module never imports it),

to ``n`` and restores the previous counts on exit. Limiting OpenMP through threadpoolctl also sets
the libgomp that torch uses, and ``torch.get_num_threads()`` reads that pool: torch's count is
therefore read and set *before* the OpenMP pools and restored before them, so the two never
disagree. TensorFlow fixes its pools when it initialises; the keras backend sets them then
(:mod:`stages.melody.model_keras`). numba is not involved: librosa's jitted functions are serial.

Cost: the ``ThreadpoolController`` (which walks the loaded libraries, ~3 ms) is cached and rebuilt
only when ``sys.modules`` grew, i.e. when a library may have been loaded; a pin then costs tens of
microseconds, a nested pin at the same count about one. A library loaded *inside* a pin is pinned
at the next (nested) entry, so code that imports a library and then computes with it should enter
a pin after the import (:class:`stages.melody.model_torch.TorchSalienceModel` does).

Threads: several threads of one process (a dask worker with ``--nthreads`` > 1) may hold pins at
the same count at once; a thread asking for another count waits until the others have left,
because BLAS pools are process-wide. A nested pin at another count is allowed only while no other
thread holds one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from typing import Any, Callable, Iterator

from threadpoolctl import ThreadpoolController

#: threadpoolctl's name of the per-thread pools (the others, BLAS, are process-wide).
OPENMP_API = "openmp"


@dataclasses.dataclass
class _Saved:
    """Counts to restore on the outermost exit: torch's (setter, count) and, per library file,
    (threadpoolctl controller, count)."""

    torch: tuple[Callable[[int], Any], int] | None = None
    libraries: dict[str, tuple[Any, int]] = dataclasses.field(default_factory=dict)

    def restore(self) -> None:
        if self.torch is not None:  # first: torch's own setter also sets its OpenMP pool
            setter, count = self.torch
            setter(count)
        for library, count in self.libraries.values():
            _set_count(library, count)
        self.torch, self.libraries = None, {}


class _ThreadState(threading.local):
    """This thread's pins: the stack of counts, what to restore, and ``len(sys.modules)`` when the
    pools were last set (a change means a library may have been loaded since)."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.saved = _Saved()
        self.modules = -1


_CONDITION = threading.Condition()
_THREAD = _ThreadState()
_process_saved = _Saved()  # BLAS pools (process-wide), restored when the last holder leaves
_holders = 0  # threads inside a pin
_count: int | None = None  # the count the process-wide pools are pinned to while _holders > 0
_controller: ThreadpoolController | None = None
_controller_modules = -1


def _set_count(library: Any, n: int) -> None:
    """``library.set_num_threads(n)`` from any thread. threadpoolctl lets only one thread (the first
    that set it) change OpenBLAS's process-wide count and silently ignores the others; callers here
    hold _CONDITION, which already keeps threads from fighting, so ownership is taken and released."""
    release = getattr(type(library), "clear_controlling_thread", None)  # OpenBLAS's, in threadpoolctl 3.8
    if release is not None:
        release(force=True)
    library.set_num_threads(n)
    if release is not None:
        release(force=True)


def _libraries() -> list[Any]:
    """threadpoolctl's per-library controllers, rebuilt only when ``sys.modules`` changed."""
    global _controller, _controller_modules
    if _controller is None or len(sys.modules) != _controller_modules:
        _controller = ThreadpoolController()
        _controller_modules = len(sys.modules)
    return _controller.lib_controllers


def _torch() -> Any:
    """The torch module if it is imported (and done importing), else None; never imports it."""
    torch = sys.modules.get("torch")
    return torch if hasattr(torch, "set_num_threads") else None


def _record(state: _ThreadState, libraries: list[Any]) -> None:
    """Remember the counts not yet saved, all before any is set: torch's count *is* its OpenMP
    pool's, so setting one first would change what is recorded for the other."""
    torch = _torch()
    if torch is not None and state.saved.torch is None:
        state.saved.torch = (torch.set_num_threads, torch.get_num_threads())
    for library in libraries:
        saved = state.saved if library.user_api == OPENMP_API else _process_saved
        if library.filepath not in saved.libraries:
            saved.libraries[library.filepath] = (library, library.get_num_threads())


def _apply(n: int, state: _ThreadState) -> None:
    """Set torch, then every OpenMP (this thread) and BLAS (process) pool to ``n``; hold _CONDITION."""
    libraries = _libraries()
    _record(state, libraries)
    torch = _torch()
    if torch is not None:  # always: equal OpenMP counts do not mean equal MKL counts
        torch.set_num_threads(n)
    for library in libraries:
        _set_count(library, n)
    state.modules = len(sys.modules)


def _enter(n: int, state: _ThreadState) -> None:
    global _holders, _count
    if state.stack and n == state.stack[-1]:
        if len(sys.modules) != state.modules:  # a library may have been loaded inside the pin
            with _CONDITION:
                _apply(n, state)
        return
    with _CONDITION:
        if state.stack:  # nested, at another count
            if _holders > 1:
                raise RuntimeError(f"a pin at {n} threads inside one at {state.stack[-1]} while other "
                                   "threads hold pins: BLAS pools are process-wide")
            _count = n
            _apply(n, state)
            return
        while _holders and _count != n:
            _CONDITION.wait()
        _holders += 1
        _count = n
        try:
            _apply(n, state)
        except BaseException:  # leave no half-set pools and no phantom holder behind
            _leave(state)
            raise


def _exit(n: int, state: _ThreadState) -> None:
    global _count
    if state.stack:
        if state.stack[-1] != n:  # back to the enclosing pin's count
            with _CONDITION:
                _count = state.stack[-1]
                _apply(_count, state)
        return
    with _CONDITION:
        _leave(state)


def _leave(state: _ThreadState) -> None:
    """The thread's outermost exit: restore its pools, and the process's if it was the last holder;
    hold _CONDITION."""
    global _holders, _count
    state.saved.restore()
    state.modules = -1
    _holders -= 1
    if _holders == 0:
        _process_saved.restore()
        _count = None
        _CONDITION.notify_all()


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` BLAS, OpenMP and torch threads; re-entrant, restores on exit."""
    if n < 1:
        raise ValueError(f"pinned_threads needs n >= 1, got {n}")
    state = _THREAD
    _enter(n, state)
    state.stack.append(n)
    try:
        yield
    finally:
        state.stack.pop()
        _exit(n, state)


def current_pin() -> int | None:
    """The count this thread is pinned to, None outside any pin."""
    return _THREAD.stack[-1] if _THREAD.stack else None
