"""Small helpers the CLI modules share."""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

__all__ = ["jsonable", "status_line", "make_console", "item_progress", "say_interrupted", "PIPE_WIDTH"]

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
        "auto", "--executor", metavar="auto|inline|processes|population|ray", help="How trials run: auto (the "
        "population for small mlp/cnn trials on built-in data when the sampler does not wait on results, "
        "else inline, or processes with --workers > 1), inline, processes, population (up to "
        "--population-size mlp/cnn trials trained together as one stacked computation), or ray (Ray actors "
        "on the cluster at --address; --workers > 1 caps the trials in flight).")
    size = typer.Option(None, "--population-size", metavar="K",
                        help="--executor population: trials trained together (default 32); --executor "
                             "ray: buckets of up to K trials, each trained as one population in one actor.")
    return executor, size


EXECUTOR_OPTION, POPULATION_SIZE_OPTION = _executor_options()


def _ray_options() -> tuple[Any, Any, Any, Any]:
    """``--address``, ``--trial-cpus``, ``--trial-gpus``, ``--max-retries`` (--executor ray)."""
    import typer

    return (typer.Option(None, "--address", metavar="auto|local|HOST:PORT", help="--executor ray: the Ray "
                         "cluster (default auto: the one `ray start` runs here; local: a private one)."),
            typer.Option(None, "--trial-cpus", metavar="N", help="--executor ray: CPUs each trial declares "
                         "(default 1; also its threads)."),
            typer.Option(None, "--trial-gpus", metavar="F", help="--executor ray: GPUs each trial declares "
                         "(default 0; a fraction lets small trials share a GPU)."),
            typer.Option(None, "--max-retries", metavar="N", help="--executor ray: retries of a trial whose "
                         "worker or node dies (default 1), then it fails with the reason."))


ADDRESS_OPTION, TRIAL_CPUS_OPTION, TRIAL_GPUS_OPTION, MAX_RETRIES_OPTION = _ray_options()


def _trial_timeout_option() -> Any:
    import typer

    return typer.Option(None, "--trial-timeout", metavar="SECONDS", help="Fail a trial that runs longer "
                        "(a hung or stopped worker too): its worker process is killed and replaced, the "
                        "study goes on. Needs --executor processes (auto picks it) or ray.")


TRIAL_TIMEOUT_OPTION = _trial_timeout_option()


def ray_options(address: Optional[str], trial_cpus: Optional[float], trial_gpus: Optional[float],
                max_retries: Optional[int]) -> Optional[dict]:
    """The ray options the user gave (None: none), for ``tune(ray=...)`` / ``run_compare(ray=...)``.

    Example:
        >>> ray_options("auto", None, 0.5, None)
        {'address': 'auto', 'trial_gpus': 0.5}
    """
    given = {"address": address, "trial_cpus": trial_cpus, "trial_gpus": trial_gpus, "max_retries": max_retries}
    return {k: v for k, v in given.items() if v is not None} or None


def say_interrupted(e: KeyboardInterrupt) -> None:
    """Print "interrupted" to stderr, and where when the interrupt says (``KeyboardInterrupt("while ...")``)."""
    said = str(e)
    print(said if said.startswith("interrupted") else f"interrupted {said}".strip(), file=sys.stderr)
