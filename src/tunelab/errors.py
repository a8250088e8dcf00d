"""Exception hierarchy: every user-facing error is a TunelabError with a one-line message."""

from __future__ import annotations

__all__ = ["TunelabError", "ConfigError", "DataError", "TrialError", "WriteError", "MAX_MESSAGE"]


MAX_MESSAGE = 600  # characters: a longer message keeps its start and its end (the allowed values)


class TunelabError(Exception):
    """Base of every error tunelab raises on purpose; the CLI prints it as one line, exit 2.
    A message over MAX_MESSAGE characters is cut in the middle (a huge value never fills the
    terminal)."""

    def __str__(self) -> str:
        text = super().__str__()
        return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE - 160]} ... {text[-150:]}"


class ConfigError(TunelabError, ValueError):
    """A config key, type or value that is not allowed (names the key, the value, the choices)."""


class DataError(TunelabError):
    """Missing or corrupt data: says which file and how to get it."""


class WriteError(TunelabError):
    """A file tunelab writes could not be written: names the path and why (no space, read-only)."""


class TrialError(TunelabError):
    """A training run that cannot go on (diverged, crashed)."""
