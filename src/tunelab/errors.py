"""Exception hierarchy: every user-facing error is a TunelabError with a one-line message."""

from __future__ import annotations

__all__ = ["TunelabError", "ConfigError", "DataError", "TrialError"]


class TunelabError(Exception):
    """Base of every error tunelab raises on purpose; the CLI prints it as one line, exit 2."""


class ConfigError(TunelabError, ValueError):
    """A config key, type or value that is not allowed (names the key, the value, the choices)."""


class DataError(TunelabError):
    """Missing or corrupt data: says which file and how to get it."""


class TrialError(TunelabError):
    """A training run that cannot go on (diverged, crashed)."""
