import dataclasses
from typing import Literal

import pytest

from pipeline.config import ConfigError, config_hash, load_config, load_section


@dataclasses.dataclass(frozen=True)
class Inner:
    rate: float = 50.0
    names: tuple[str, ...] = ("a",)


@dataclasses.dataclass(frozen=True)
class Outer:
    n: int = 3
    mode: Literal["fast", "slow"] = "fast"
    path: str | None = None
    inner: Inner = Inner()


def test_defaults_and_nested_values():
    cfg = load_config(Outer, {"n": 5, "inner": {"rate": 25, "names": ["x", "y"]}})
    assert cfg == Outer(n=5, inner=Inner(rate=25.0, names=("x", "y")))
    assert isinstance(cfg.inner.rate, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 1


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nn": 1}, "unknown key(s) nn"),
        ({"inner": {"rat": 1}}, "inner: unknown key(s) rat"),
        ({"n": "three"}, "expected int"),
        ({"n": True}, "expected int"),
        ({"mode": "medium"}, "not one of"),
        ({"n": None}, "null is not allowed"),
    ],
)
def test_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(Outer, values, where="section")


def test_optional_accepts_null_and_section_from_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("outer:\n  path: null\n  n: 7\nother: {}\n")
    assert load_section(Outer, "outer", params) == Outer(n=7)
    assert load_section(Outer, "missing", params) == Outer()


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Outer()) == config_hash(Outer())
    assert config_hash(Outer()) != config_hash(Outer(n=4))
    assert config_hash(Outer(), {"v": 1}) != config_hash(Outer(), {"v": 2})
