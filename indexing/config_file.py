"""An :class:`~xlir.indexing.config.IndexConfig` from a file (JSON, YAML or TOML) and overrides, checked.

The file holds the config as the manifest's ``"config"`` object writes it: top-level keys ``channels``,
one section per registered channel (``bm25``, ``dense``, ...), ``language``, ``fields``, ``on_error``,
e.g. ``{"channels": ["bm25", "dense"], "dense": {"batch_size": 64}}``. A key not in that shape, or a value
of the wrong type, is a :class:`~xlir.indexing.errors.ConfigError` naming it (and the keys known there).
:func:`merged` lays overrides (the command line's options) over the file, section by section.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from xlir.indexing.config import IndexConfig
from xlir.indexing.errors import ConfigError

#: The config file suffixes read, and the format each names.
FORMATS = {".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML"}


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The mapping a config file holds (checked with :func:`check_config`); ConfigError if it cannot be."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: a config file must end in {', '.join(FORMATS)} (JSON, YAML or TOML).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc}).") from exc
    try:
        if kind == "JSON":
            data = json.loads(text)
        elif kind == "TOML":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - every parser's own error class
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not valid {kind}: {first}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections, not a {type(data).__name__}.")
    check_config(data, where=str(path))
    return data


def check_config(data: dict[str, Any], *, where: str = "config") -> None:
    """Raise ConfigError at the first key of ``data`` IndexConfig does not have, or value of the wrong type."""
    _check_fields(data, IndexConfig, "", where)


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it: mappings merged key by key, anything else replaced."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def config_from(data: dict[str, Any], *, where: str = "config") -> IndexConfig:
    """The IndexConfig ``data`` describes (checked first; a section it lacks gets its defaults)."""
    check_config(data, where=where)
    return IndexConfig.from_dict(data)


def sections_with(name: str) -> list[str]:
    """The sections of IndexConfig whose settings have a field ``name`` (e.g. ``batch_size``)."""
    return [
        f.name
        for f in fields(IndexConfig)
        if is_dataclass(f.type if isinstance(f.type, type) else None)
        and name in {g.name for g in fields(f.type)}
    ]


def _check_fields(data: dict[str, Any], cls: type, prefix: str, where: str) -> None:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in hints or key not in known:
            section = f"of {prefix[:-1]}" if prefix else "at the top level"
            raise ConfigError(f"{where}: unknown key {dotted!r}; known keys {section}: {', '.join(known)}.")
        hint = hints[key]
        if is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{where}: {dotted!r} must be a mapping of its settings, not {value!r}; "
                    f"known keys: {', '.join(g.name for g in fields(hint))}."
                )
            _check_fields(value, hint, f"{dotted}.", where)
        elif not _fits(value, hint):
            raise ConfigError(f"{where}: {dotted!r} must be {_describe(hint)}, not {value!r}.")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as JSON, YAML or TOML give it) is of the type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if origin in (tuple, list):
        return isinstance(value, list | tuple) and all(_fits(v, args[0]) for v in value)
    return True


def _describe(hint: Any) -> str:
    """``hint`` in words: ``an integer``, ``one of 'stop', 'skip'``, ``a string or null``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is dict:
        return "a mapping"
    if origin in (tuple, list):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))
