"""Polling with a deadline, for tests that watch another process (a run, tmux, a study)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import pytest


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.05,
               context: Optional[Callable[[], str]] = None) -> Any:
    """Return ``check()``'s first true value; fail the test after ``timeout`` seconds, naming
    ``what`` (and ``context()``, e.g. the screen, to show why). The deadline only guards
    against a hang: no assertion is about time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}" + (f"; {context()}" if context else ""))
