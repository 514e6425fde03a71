"""One config mechanism for every room: a flat YAML file (or none) plus overrides → a frozen dataclass.

``load_config(TrainConfig, "configs/x.yaml", epochs=3)`` checks every key against the dataclass's
fields and types, and any mistake is one line naming the file, the key and what was expected: an
unknown key (a typo must never be ignored silently), a wrong type (``epochs: ten``), a number
written as a string that does not parse (``lr: "1e-3"`` parses; YAML reads ``1e-3`` as text),
a YAML syntax error or a ``!!python`` tag. ``None`` overrides are ignored (an unset CLI option).

Written here rather than taken from a library (pydantic, OmegaConf) because the rooms' configs
are plain frozen dataclasses that must stay importable without either, and the checks needed are
few: scalars, optionals, literals, tuples and dicts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from affectlens.errors import DataError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; a missing file, bad syntax, a tag or a non-mapping is one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DataError(path, f"not valid YAML ({where}{problem})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DataError(path, f"a config must be a mapping of keys to values, not a {type(raw).__name__}")
    return raw


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` or ``ValueError`` (the caller names the key)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return coerce(value, a)
            except ValueError:
                continue
        raise ValueError
    if origin is Literal:
        if value in args:
            return value
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())  # "1e-3": YAML 1.1 reads it as text; ValueError if not a number
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    if origin is tuple or tp is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError
        inner = args[0] if args and (len(args) == 2 and args[1] is Ellipsis or len(set(args)) == 1) else Any
        return tuple(coerce(v, inner) for v in value)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError
        return [coerce(v, args[0] if args else Any) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, source="")
        raise ValueError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError


def from_dict(cls: type[T], values: dict, *, source: str | Path = "", skip_unknown: bool = False) -> T:
    """``cls(**values)`` with every key checked (see the module docstring)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    where = str(source) or cls.__name__
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            if skip_unknown:
                continue
            raise DataError(where, f"unknown key {key!r} for {cls.__name__} (known: {', '.join(sorted(fields))})")
        try:
            kwargs[key] = coerce(value, hints.get(key, Any))
        except (ValueError, TypeError):
            raise DataError(where, f"{key}: expected {_describe(hints.get(key, Any))}, got {value!r}") from None
    try:
        return cls(**kwargs)
    except DataError:
        raise
    except (TypeError, ValueError) as e:
        raise DataError(where, str(e)) from None


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """A frozen dataclass from an optional flat YAML file and keyword overrides (``None`` = unset)."""
    values = read_yaml(path) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, values, source=path or "")
