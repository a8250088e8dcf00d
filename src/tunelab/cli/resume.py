"""``tunelab resume RUN_DIR``: continue a run from its checkpoint, in the same folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from tunelab.cli.common import make_console
from tunelab.cli.train import finish, run_live
from tunelab.trainer.lineage import plan_resume


def resume_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run folder (holds config.yaml and checkpoints/)."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Change a key from here on: --set optimizer.lr=1e-4."),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N", help="New total number of epochs."),
    checkpoint: str = typer.Option("last", "--from", metavar="last|best|N|FILE", help="last, best, an epoch number or a checkpoint file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or epoch table."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Full-screen live dashboard (see tunelab train --watch)."),
) -> None:
    """Continue a run exactly where its checkpoint left it (after a stop, Ctrl-C or a crash)."""
    from tunelab.api import resume  # torch: only when the command runs

    cfg = plan_resume(run_dir, set_, epochs, checkpoint).cfg  # every error: one line, before any output
    console = make_console(quiet=quiet)
    runner = lambda **hooks: resume(run_dir, set_, epochs=epochs, checkpoint=checkpoint, **hooks)  # noqa: E731
    finish(run_live(cfg, run_dir, runner, console, watch=watch), console)
