"""Dotted keys into nested dicts and lists: ``optimizer.lr``, ``model.channels.0``.

A numeric component indexes a list. Errors name the space key (``space.<key>``).

Example:
    >>> tree = {"model": {"channels": [16, 32]}}
    >>> set_path(tree, "model.channels.1", 64); tree
    {'model': {'channels': [16, 64]}}
    >>> check_path("model.channels.1", tree)
"""

from __future__ import annotations

import copy
from typing import Any

from tunelab.errors import ConfigError

__all__ = ["check_path", "set_path"]


def check_path(key: str, tree: dict) -> None:
    """Raise ConfigError unless ``key`` names an existing node of ``tree`` (lists by index)."""
    node: Any = tree
    seen: list[str] = []
    for part in key.split("."):
        where = ".".join(seen)
        if isinstance(node, dict):
            if part not in node:
                inside = f" in {where}" if where else ""
                raise ConfigError(f"space.{key}: {part!r} is not a config key{inside}; "
                                  f"allowed: {sorted(node)}")
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(key, node, part, where)]
        else:
            raise ConfigError(f"space.{key}: {where}={node!r} is a value, not a section or list")
        seen.append(part)


def set_path(tree: dict, key: str, value: Any, fallback: dict | None = None) -> None:
    """Set ``key`` in ``tree`` in place, creating missing sections.

    A list that ``tree`` lacks but an index needs is copied from ``fallback`` (the resolved
    config), so ``model.channels.0`` works on a base that does not spell out ``channels``.
    """
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"space.{key}: a key needs non-empty parts separated by single dots")
    node: Any = tree
    ref: Any = fallback
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[:i])
        ref = _child(ref, part)
        node = _descend(key, node, part, where, parts[i + 1].isdigit(), ref)
    if isinstance(node, list):
        node[_index(key, node, parts[-1], ".".join(parts[:-1]))] = value
    else:
        node[parts[-1]] = value


def _descend(key: str, node: Any, part: str, where: str, want_list: bool, ref: Any) -> Any:
    if isinstance(node, list):
        return node[_index(key, node, part, where)]
    if not isinstance(node, dict):
        raise ConfigError(f"space.{key}: {where}={node!r} is a value, not a section or list")
    child = node.get(part)
    if child is None:  # a missing list comes from the resolved config; a section starts empty
        child = copy.deepcopy(ref) if want_list and isinstance(ref, list) else {}
        node[part] = child
    return child


def _child(ref: Any, part: str) -> Any:
    if isinstance(ref, dict):
        return ref.get(part)
    if isinstance(ref, list) and part.isdigit() and int(part) < len(ref):
        return ref[int(part)]
    return None


def _index(key: str, node: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"space.{key}: {part!r} does not index {where}={node!r}; "
                          f"allowed indices: 0..{len(node) - 1}")
    return int(part)
