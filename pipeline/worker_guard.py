"""Pool workers that leave with their parent.

A ``ProcessPoolExecutor`` worker waits on a queue whose write end it holds itself, so when the parent
is killed (SIGKILL, an OOM kill, a SLURM time limit, Ctrl-C twice) it waits forever, holding its
memory and models. ``exit_with_parent`` (a pool initializer) watches the parent from a daemon thread.
"""

from __future__ import annotations

import os
import threading
import time

#: Seconds between looks at the parent.
PARENT_POLL_S = 1.0


def _watch(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)  # the parent is gone: nobody will read a result; skip interpreter teardown


def exit_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Start the watcher in this (worker) process: it exits once its parent is no longer ``parent_pid``."""
    threading.Thread(target=_watch, args=(parent_pid, poll_s), name="exit-with-parent", daemon=True).start()
