"""Small helpers the CLI modules share."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["jsonable", "status_line"]


def jsonable(value: Any) -> Any:
    """NaN and infinities become null (recursively), so written JSON is strict.

    Example:
        >>> jsonable({"a": [1.0, float("nan")]})
        {'a': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@contextmanager
def status_line(console) -> Iterator[Callable[[Any], None]]:
    """A status line that rewrites itself while work runs and stays on screen at the end.

    Yields the update function. rich's Live leaves the last line without a newline when the
    output is not a terminal (a log file, a pipe); this ends it, so what follows starts a line.
    """
    from rich.live import Live

    shown = []

    def update(renderable: Any) -> None:
        shown.append(True)
        live.update(renderable)

    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            yield update
    finally:
        if shown and not console.is_terminal:  # nothing shown (an early error): no blank line
            console.print()
