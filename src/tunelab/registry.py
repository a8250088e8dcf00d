"""Registries: name -> factory. Config strings resolve only through them.

Example:
    >>> from tunelab.registry import Registry
    >>> acts = Registry("model.activation")
    >>> @acts.register("relu")
    ... def _relu(): ...
    >>> acts.names()
    ['relu']
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterator

from tunelab.errors import ConfigError

__all__ = ["Registry"]


class Registry:
    """A named table of factories that rejects duplicates and lists the choices on a miss."""

    def __init__(self, key: str) -> None:
        self.key = key  # the config key this registry answers for, used in error messages
        self._items: dict[str, Any] = {}

    _DECORATE = object()

    def register(self, name: str, obj: Any = _DECORATE) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        if obj is Registry._DECORATE:
            return lambda o: self.register(name, o)
        if name in self._items:
            raise ValueError(f"{self.key}: {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> Any:
        """Return the factory for ``name`` or raise ConfigError listing the sorted choices."""
        if name not in self._items:
            raise ConfigError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: object) -> str:
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{self.key}={name!r} is not known; choose one of {self.names()}{extra}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, Callable[..., Any]]]:
        return sorted(self._items.items())
