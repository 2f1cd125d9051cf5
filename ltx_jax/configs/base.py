"""Shared machinery of the config dataclasses: JSON (de)serialisation that refuses what it does not know."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

class ConfigError(ValueError):
    """A config value this project does not implement, or a key it does not know."""


class FrozenDict(tuple):
    """A JSON object inside a frozen config: a tuple of (key, value) pairs, hashable, kept in order."""

    def __repr__(self) -> str:
        return f"FrozenDict({dict(self)!r})"


def _freeze(value: Any) -> Any:
    """JSON lists -> tuples and objects -> FrozenDict (recursively), so configs are hashable."""
    if isinstance(value, dict):
        return FrozenDict((k, _freeze(value[k])) for k in sorted(value))  # sorted: equality ignores key order
    if isinstance(value, list | tuple) and not isinstance(value, FrozenDict):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of `_freeze`: back to JSON-ready lists and dicts."""
    if isinstance(value, FrozenDict):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class _JsonConfig:
    """Mixin: build from / write to one flat section of the official JSON config."""

    # Keys whose only supported value is pinned here: {key: value}. A different value is refused.
    _FIXED: Mapping[str, Any] = {}
    # Keys ltx-core does not read; accepted and dropped.
    _IGNORED: frozenset[str] = frozenset()
    # {field: allowed values} for enum-like fields.
    _CHOICES: Mapping[str, tuple] = {}
    _SECTION = "config"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, strict: bool = True):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        kwargs = {}
        for key, value in d.items():
            where = f"{cls._SECTION}.{key}"
            if key in names:
                kwargs[key] = _freeze(value)
            elif key in cls._FIXED:
                if value != cls._FIXED[key]:
                    raise ConfigError(f"{where}={value!r} is not supported (only {cls._FIXED[key]!r} is implemented)")
            elif key in cls._IGNORED:
                continue
            elif strict:
                raise ConfigError(f"unknown config key {where!r} (value {value!r}); pass strict=False to ignore it")
            else:
                warnings.warn(f"ignoring unknown config key {where!r}", stacklevel=2)
        config = cls(**kwargs)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}
        out.update(self._FIXED)
        return out

    def validate(self) -> None:
        for name, allowed in self._CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{self._SECTION}.{name}={value!r} is not supported (supported: {allowed})")


