"""numba's on-disk cache, made safe for many processes that start at once.

librosa compiles its numba functions with ``cache=True``. numba's cache is not safe for processes
that compile the same functions at the same moment (numba issue #10128): a generalised ufunc is
cached as two files, the kernel and its wrapper, and when two processes compile the same module
at once the kernel may come from one and the wrapper from the other; their symbol names differ
and every later call, in any process, segfaults. A fresh venv with a process pool, dask workers
or a SLURM array sharing one filesystem hits this on its first run.

The rules here make that impossible by construction:

* **Where.** :func:`configure` (run when ``pipeline`` is imported, before numba is) points
  ``NUMBA_CACHE_DIR`` at a per-user folder keyed by the numba and Python versions and the CPU
  (``~/.cache/chordflow/numba/<key>``; ``CHORDFLOW_NUMBA_CACHE_DIR`` moves the base, and a
  ``NUMBA_CACHE_DIR`` the user set is kept as it is; a filesystem that cannot ``flock`` moves it
  to ``/tmp``). Nothing is written into the venv.
* **Who compiles the gufuncs.** Modules that compile gufuncs when imported (``EAGER_MODULES``)
  are imported through :func:`ensure_compiled`: the first process takes the folder's lock
  exclusively, imports them (compiling and writing both halves of every gufunc itself) and writes
  a stamp; processes that find a valid stamp only read. A stamp is valid while the CPU key (numba
  and Python versions, CPU), the modules' source files and the cache index files it lists are
  unchanged.
* **Who writes later.** Functions that numba compiles lazily on their first call (plain
  ``@jit(cache=True)``, one self-contained cache entry each) are saved while holding the same
  lock, so the read-modify-write of a cache index never interleaves with another process's.

``scripts/install.sh`` warms the cache once, serially (:func:`main`), so a
first run does not pay the compilation; a machine with another CPU warms its own folder the first
time under the lock. Project code imports librosa with :func:`import_librosa`, never directly
(``tests/test_numba_cache.py`` checks this).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import platform
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

#: numba's own variable: the folder its cache lives in.
NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"
#: The project's variable: the base folder of its per-CPU numba caches.
BASE_ENV = "CHORDFLOW_NUMBA_CACHE_DIR"
#: Records the folder :func:`configure` chose, so that a child process (a SLURM task on a node
#: with another CPU inherits the environment) recomputes it instead of taking it for the user's.
CHOSEN_ENV = "CHORDFLOW_NUMBA_CACHE_CHOSEN"
#: Where the cache goes when the base folder's filesystem cannot lock (e.g. Lustre without the
#: flock mount option): node-local, so the lock works.
LOCAL_FALLBACK_BASE = Path("/tmp")
DEFAULT_BASE = Path("~/.cache/chordflow/numba")
LOCK_FILE = ".chordflow.lock"
STAMP_PREFIX = ".chordflow-compiled-"
#: librosa modules whose ``@guvectorize``/``@vectorize`` functions have signature lists, so numba
#: compiles them (and writes their cache) at import. Every other numba function librosa has is
#: compiled lazily, on its first call. ``tests/test_numba_cache.py`` checks this list against the
#: installed librosa.
EAGER_MODULES: tuple[str, ...] = ("librosa.util.utils", "librosa.beat", "librosa.core.audio", "librosa.core.pitch")
#: Fields of /proc/cpuinfo's first processor block that identify the CPU (model + flags).
CPU_KEY_FIELDS = ("vendor_id", "model name", "flags")

log = logging.getLogger(__name__)
_state = threading.RLock()
_compiled: set[tuple[str, ...]] = set()
_save_patched = False
#: True while this process holds the exclusive lock (flock locks of two open files conflict even
#: within one process, so a save during a locked import must not take it again).
_holding_exclusive = False


@functools.lru_cache(maxsize=1)
def cpu_key() -> str:
    """Short id of the numba/Python versions and this CPU (model and instruction-set flags)."""
    fields = [platform.machine(), platform.python_version(), _numba_version()]
    try:
        block = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n", 1)[0]
        fields += [line for line in block.splitlines() if line.split(":", 1)[0].strip() in CPU_KEY_FIELDS]
    except OSError:  # not Linux: the processor string is the best there is
        fields.append(platform.processor())
    digest = hashlib.sha1("\n".join(fields).encode()).hexdigest()[:12]
    return f"numba{_numba_version()}-py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def _numba_version() -> str:
    try:
        from importlib.metadata import version

        return version("numba")
    except Exception:  # noqa: BLE001 - numba absent: nothing will be cached anyway
        return "none"


def default_cache_dir() -> Path:
    base = os.environ.get(BASE_ENV) or str(DEFAULT_BASE)
    return Path(base).expanduser() / cpu_key()


def configure() -> Path:
    """Set ``NUMBA_CACHE_DIR`` (unless the user did) and return the cache folder.

    Must run before numba is imported: numba reads the variable once, at import.
    """
    current = os.environ.get(NUMBA_CACHE_ENV)
    if current and current != os.environ.get(CHOSEN_ENV):
        return Path(current)  # the user's choice
    chosen = default_cache_dir()
    if not _can_lock(chosen):
        fallback = LOCAL_FALLBACK_BASE / f"chordflow-numba-{os.getuid()}" / chosen.name
        log.warning("numba cache: %s cannot be locked; using the node-local %s", chosen, fallback)
        chosen = fallback
    os.environ[NUMBA_CACHE_ENV] = os.environ[CHOSEN_ENV] = str(chosen)
    if "numba" in sys.modules:  # too late for numba's import-time read: make it read again
        from numba.core import config

        config.reload_config()
    return chosen


def _can_lock(folder: Path) -> bool:
    """Whether ``flock`` works in ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True
    except BlockingIOError:  # held exclusively by another process: locking works
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    return Path(os.environ.get(NUMBA_CACHE_ENV) or configure())


@contextlib.contextmanager
def cache_lock(exclusive: bool) -> Iterator[None]:
    """The cache folder's inter-process lock (``flock``: per open file, released if we die)."""
    global _holding_exclusive
    if _holding_exclusive:  # re-entered (numba saving during a locked import)
        yield
        return
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        _holding_exclusive = exclusive
        try:
            yield
        finally:
            _holding_exclusive = False
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_compiled(modules: Sequence[str] = EAGER_MODULES) -> None:
    """Import ``modules`` so that their import-time compilation is done by one process only.

    Idempotent per process. With a valid stamp the modules are not imported here (they load from
    the cache when first used); otherwise they are imported under the exclusive lock.
    """
    key = tuple(modules)
    with _state:
        if key in _compiled:
            return
        _patch_save()
        stamp = cache_dir() / (STAMP_PREFIX + hashlib.sha1("\n".join(key).encode()).hexdigest()[:12] + ".json")
        if not _stamp_valid(stamp, key):
            with cache_lock(exclusive=True):
                if not _stamp_valid(stamp, key):  # another process may have finished meanwhile
                    for name in key:
                        importlib.import_module(name)
                    _write_stamp(stamp, key)
        _compiled.add(key)


def import_librosa() -> ModuleType:
    """librosa, with its import-time numba compilation done safely (see the module docstring)."""
    ensure_compiled(EAGER_MODULES)
    import librosa

    return librosa


def _sources(modules: Sequence[str]) -> dict[str, list[int]]:
    """Source file -> [mtime_ns, size] of each module (numba keys its cache on the same)."""
    found = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise ModuleNotFoundError(f"numba cache: module {name!r} not found")
        stat = os.stat(spec.origin)
        found[spec.origin] = [stat.st_mtime_ns, stat.st_size]
    return found


def _index_files() -> list[str]:
    folder = cache_dir()
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*.nbi"))


def _stamp_valid(stamp: Path, modules: Sequence[str]) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    folder = cache_dir()
    return (recorded.get("cpu") == cpu_key() and recorded.get("sources") == _sources(modules)
            and all((folder / name).is_file() for name in recorded.get("index_files", ())))


def _write_stamp(stamp: Path, modules: Sequence[str]) -> None:
    record = {"cpu": cpu_key(), "modules": list(modules), "sources": _sources(modules),
              "index_files": _index_files()}
    temporary = stamp.with_name(f"{stamp.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, stamp)  # readers see the old stamp or the whole new one


def _patch_save() -> None:
    """Make numba hold the cache lock while it writes a cache entry (index read-modify-write)."""
    global _save_patched
    if _save_patched:
        return
    from numba.core import caching

    original = caching.Cache.save_overload

    def save_overload_locked(self, sig, data):  # noqa: ANN001 - numba's own signature
        with _state, cache_lock(exclusive=True):  # _state: one thread of ours at a time
            return original(self, sig, data)

    caching.Cache.save_overload = save_overload_locked
    _save_patched = True


def main() -> int:
    """Warm the cache serially (run by scripts/install.sh)."""
    folder = configure()
    ensure_compiled(EAGER_MODULES)
    print(f"numba cache ready: {folder}")
    return 0


