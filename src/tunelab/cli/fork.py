"""``tunelab fork RUN_DIR``: a new run from a checkpoint of another, with changes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from tunelab.cli.common import make_console
from tunelab.cli.train import finish, run_live
from tunelab.trainer.lineage import make_fork, run_config
from tunelab.trainer.runfolder import check_writable


def fork_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="The parent run folder."),
    source: str = typer.Option("last", "--from", metavar="last|best|N|FILE", help="last, best, an epoch number or a checkpoint file."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="What the child changes: --set optimizer.lr=1e-4."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Child run folder (default: RUN_DIR-fork-<time>)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N", help="Total epochs of the child."),
    no_run: bool = typer.Option(False, "--no-run", help="Only create the child folder; run it later with tunelab resume."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or epoch table."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Full-screen live dashboard (see tunelab train --watch)."),
) -> None:
    """Branch off a run: the child starts from the parent's checkpoint with the changes given,
    records its parent and the epoch it branched at, and draws the parent beside its curves."""
    from tunelab.api import resume  # torch: only when the command runs

    if out is not None:
        check_writable(out, "--out")
    overrides = list(set_) + ([f"training.epochs={epochs}"] if epochs is not None else [])
    child = make_fork(run_dir, source, overrides, out)
    console = make_console(quiet=quiet)
    console.print(f"fork: {child} (from {run_dir}, --from {source})", highlight=False, soft_wrap=True)
    if no_run:
        console.print(f"run it with: tunelab resume {child}", highlight=False, soft_wrap=True)
        return
    cfg = run_config(child)
    finish(run_live(cfg, child, lambda **hooks: resume(child, **hooks), console, watch=watch), console)
