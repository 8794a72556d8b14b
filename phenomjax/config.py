"""Configs as frozen dataclasses read strictly from TOML.

Every section of a TOML file maps to a nested dataclass; an unknown key, a wrong type or a
value out of range is a ConfigError naming the file and the dotted field. `--set a.b=value`
overrides parse the value as TOML (so `lr=1e-3`, `positions="rope"` and `positions=rope` work).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

# Integers a TOML file may hold (int64); sizes and counts that index device arrays or count steps
# in int32 are bounded by INT32_MAX where they are validated (require_positive, data.check_sizes).
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table of fields, got {value!r}")
        return from_dict(tp, value, where=where)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if not -INT64_MAX - 1 <= value <= INT64_MAX:  # JAX and NumPy would overflow on it
            raise ConfigError(f"{where}: expected an integer within the int64 range, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # a TOML integer beyond the float range
            raise ConfigError(f"{where}: expected a finite number, got {value}") from None
        if not math.isfinite(number):  # no field means anything by nan or inf
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def dotted(where: str, key: Any) -> str:
    """`where.key` for a message; a key that would not read as one (empty, blank, control
    characters such as a newline) is quoted, so the message stays one readable line."""
    k = key if isinstance(key, str) and key.isprintable() and key.strip() else repr(key)
    return f"{where}.{k}" if where else k


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{dotted(where, unknown[0])}: unknown key; expected one of {sorted(fields)}"
        )
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = _coerce(v, hints[k], f"{where}.{k}" if where else k)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as e:
            msg = str(e)  # a validate() may already name its section (data.K): once only
            if where and not msg.startswith(f"{where}."):
                msg = f"{where}.{msg}"
            raise ConfigError(msg) from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts (for the manifest and for hashing)."""
    return dataclasses.asdict(obj)


def _parse_value(text: str, where: str) -> Any:
    """A --set value as TOML, nesting and integers bounded as in a file (read_toml)."""
    from .runs.validate import check_tree, short

    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        # bare words (rope, adamw) are strings
        if text and all(ch.isalnum() or ch in "_-./" for ch in text):
            return text
        raise ConfigError(f"{where}: cannot parse value {short(text)}") from None
    except (RecursionError, ValueError):  # nested too deeply; an integer of 4300+ digits
        raise ConfigError(f"{where}: cannot parse value {short(text)}") from None
    check_tree(value, Path(where), ConfigError)
    return value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a nested dict (copy); shape errors name the key."""
    out = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p} is a value, not a section")
            node = nxt
        node[parts[-1]] = _parse_value(text.strip(), f"--set {key}")
    return out


def _deepcopy(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as nested dicts: a regular file of bounded size whose nesting (arrays,
    inline and dotted tables) and integers are bounded (runs/validate.py)."""
    from .runs.validate import MAX_TEXT_BYTES, check_tree, read_regular

    path = Path(path)
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: config file not found")
    raw = read_regular(path, MAX_TEXT_BYTES, ConfigError)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise ConfigError(f"{path}: not valid TOML ({' '.join(str(e).split())[:100]})") from None
    check_tree(data, path, ConfigError)
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: Iterable[str] = ()) -> T:
    """Read `path` (or the defaults when None), apply overrides, build and validate `cls`."""
    data = read_toml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def require_positive(obj: Any, fields: Iterable[str]) -> None:
    """Raise a ConfigError naming the first of `fields` of `obj` outside [1, INT32_MAX].

    These are sizes and step counts: the device holds them (and loop indices) as int32.
    """
    for f in fields:
        if not 1 <= getattr(obj, f) <= INT32_MAX:
            raise ConfigError(
                f"{f}: expected an integer in [1, {INT32_MAX}], got {getattr(obj, f)}"
            )


# argparse types for comma-separated sweep axes (`--lr 1e-3,1e-2`)
def comma_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def comma_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def comma_words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())
