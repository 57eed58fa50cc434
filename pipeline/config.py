"""One helper that turns a ``params.yaml`` section into a frozen dataclass.

Every stage declares a frozen dataclass for its parameters; :func:`load_config` fills it from a
mapping, recursing into nested dataclasses, and rejects unknown keys so a typo in ``params.yaml``
is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_PARAMS_PATH = Path("params.yaml")


class ConfigError(ValueError):
    """A parameter file or section does not match the dataclass that describes it."""


def read_params(path: str | Path = DEFAULT_PARAMS_PATH) -> dict[str, Any]:
    """Read a YAML parameter file into a dict (an empty file gives ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found")
    with path.open("r", encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def read_params_if_present(path: str | Path = DEFAULT_PARAMS_PATH) -> dict[str, Any]:
    """:func:`read_params`, or ``{}`` when nothing is at ``path`` (every section at its defaults).

    Every command's ``--params`` goes through this, so running without a params file behaves the
    same everywhere; a path that exists but is not a readable YAML mapping is still an error."""
    if not Path(path).exists():
        log.info("%s not found: every section at its defaults", path)
        return {}
    return read_params(path)


def load_config(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``values``; unknown keys raise :class:`ConfigError`.

    Missing keys take the dataclass defaults. Nested dataclass fields are built recursively and
    lists become tuples so the result stays hashable.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    values = dict(values or {})
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {
        name: _convert(hints[name], raw, f"{where}.{name}") for name, raw in values.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field without default was not given
        raise ConfigError(f"{where}: {exc}") from exc


def load_section(cls: type[T], section: str, params: Mapping[str, Any] | str | Path = DEFAULT_PARAMS_PATH) -> T:
    """Build ``cls`` from ``params[section]`` (``params`` may be a mapping or a YAML path)."""
    if not isinstance(params, Mapping):
        params = read_params(params)
    return load_config(cls, params.get(section), where=section)


def _convert(hint: Any, raw: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if raw is None:
        if hint is type(None) or (origin in (typing.Union, types.UnionType) and type(None) in args):
            return None
        raise ConfigError(f"{where}: null is not allowed here")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, raw, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if dataclasses.is_dataclass(hint):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
        return load_config(hint, raw, where)
    if origin is typing.Literal:
        if raw not in args:
            raise ConfigError(f"{where}: {raw!r} is not one of {list(args)}")
        return raw
    if origin in (tuple, list):
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(raw))
    if hint is Any:
        return raw
    if hint is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if hint in (int, str, bool) and not (isinstance(raw, hint) and not (hint is int and isinstance(raw, bool))):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {raw!r}")
    return raw


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-data view of a (nested) config dataclass, JSON-serialisable."""
    return json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str))


def config_hash(config: Any, extra: Mapping[str, Any] | None = None) -> str:
    """Stable 16-hex-digit hash of a config (or of its identity dict) and optional extras, used to
    validate outputs."""
    values = config if isinstance(config, Mapping) else config_to_dict(config)
    payload = {"config": dict(values), "extra": dict(extra or {})}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
