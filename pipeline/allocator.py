"""Keep freed memory in the process for the next allocation of the same size (glibc only).

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and gives it back with ``munmap`` on free. A stage that runs a network window by window allocates
the same few hundred-megabyte activations for every window, so the kernel maps, zero-fills and
page-faults them in again each time: in the melody stage that was a fifth of its CPU time, most of
it system time (``bench/report/melody_speed.md``). With mmap off and trimming off, freed blocks stay
in the heap and the next window reuses them without a fault.

The cost is that a worker keeps its peak heap until it exits (the melody stage: about 1 GB with the
default 1000-frame windows), which is why only stages that ask for it (in their ``setup``) get it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
M_TRIM_THRESHOLD: int = -1
M_MMAP_MAX: int = -4
#: Largest trim threshold ``mallopt`` takes (an int): the heap is in practice never trimmed.
NEVER_TRIM: int = 2**31 - 1


@functools.lru_cache(maxsize=1)
def retain_freed_memory() -> bool:
    """Turn glibc's mmap and heap trimming off for this process, once; False where the C library is
    not glibc (nothing is changed there) or refuses the settings."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success; mmap stays available to glibc for blocks its heap cannot hold
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
