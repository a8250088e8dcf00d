"""Small helpers the CLI modules share."""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["jsonable", "status_line", "make_console", "item_progress", "PIPE_WIDTH"]

# Width of output that is not a terminal. rich falls back to 80 columns there, wraps tables to
# fit and splits numbers across lines ("0.0031" / "3"); a log file or a pipe has no width to
# fit, so rows are laid out wide and kept on one line.
PIPE_WIDTH = 200


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


def make_console(**kwargs: Any):
    """A rich Console for a command's output (keyword arguments as rich's ``Console``).

    On a terminal it is rich's own. Written to a pipe or a log file it is ``PIPE_WIDTH``
    columns wide (or ``$COLUMNS`` when larger) and soft-wrapping, so a table row stays on one
    line and no number is split; a ``width`` given by the caller is kept.

    Example:
        >>> import io
        >>> console = make_console(file=io.StringIO())
        >>> console.width >= PIPE_WIDTH, console.soft_wrap
        (True, True)
    """
    from rich.console import Console

    console = Console(**kwargs)
    if console.is_terminal or "width" in kwargs:
        return console
    columns = os.environ.get("COLUMNS", "")
    console.width = max(int(columns) if columns.isdigit() else 0, PIPE_WIDTH)
    console.soft_wrap = kwargs.get("soft_wrap", True)
    return console


@contextmanager
def item_progress(console, total: int, what: str) -> Iterator[Callable[[str], None]]:
    """Progress over ``total`` items that take a while each (ensemble members, compare arms).

    Yields ``done(text)``, to call after each item: it prints one line, ``{what} 2/5 {text}
    (12.3 s)`` with the seconds since the previous item, so a log file or a pipe shows each item
    as it finishes. On a terminal a progress bar below the lines says how far the work is.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with item_progress(make_console(file=out), 2, "member") as done:
        ...     done("#7 retrained")
        >>> out.getvalue().startswith("member 1/2 #7 retrained (")
        True
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    state = {"n": 0, "t": time.perf_counter()}
    progress = None
    if console.is_terminal and not console.quiet:
        progress = Progress(TextColumn(f"{what}s"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        task = progress.add_task(what, total=total)

    def done(text: str) -> None:
        now = time.perf_counter()
        state["n"] += 1
        line = f"{what} {state['n']}/{total} {text} ({now - state['t']:.1f} s)"
        state["t"] = now
        (progress.console if progress is not None else console).print(line, highlight=False, markup=False)
        if progress is not None:
            progress.advance(task)

    if progress is None:
        yield done
        return
    with progress:
        yield done


def _executor_options() -> tuple[Any, Any]:
    """``--executor`` and ``--population-size``, shared by tune and compare."""
    import typer

    executor = typer.Option(
        "auto", "--executor", metavar="auto|inline|processes|population", help="How trials run: auto (the "
        "population for small mlp/cnn trials on built-in data when the sampler does not wait on results, "
        "else inline, or processes with --workers > 1), inline, processes, or population (up to "
        "--population-size mlp/cnn trials trained together as one stacked computation).")
    size = typer.Option(None, "--population-size", metavar="K",
                        help="--executor population: trials trained together (default 32).")
    return executor, size


EXECUTOR_OPTION, POPULATION_SIZE_OPTION = _executor_options()
