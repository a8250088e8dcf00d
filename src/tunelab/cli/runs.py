"""``tunelab runs [DIR]``: the run folders under DIR with their live status;
``tunelab runs compare RUN_DIR...``: their curves overlaid in one figure and a table of them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table
from typer.core import TyperGroup

from tunelab.cli.common import make_console
from tunelab.errors import ConfigError
from tunelab.trainer.live import read_status

HELP = "List run folders (tunelab runs [DIR]) or overlay their curves (tunelab runs compare RUN_DIR...)."


class _RunsGroup(TyperGroup):
    """``runs DIR`` beside ``runs compare ...``: a first word that names no subcommand is the
    listing's folder. (A group's own positional argument would swallow the word ``compare``.)"""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "list", self.commands["list"], args
        return super().resolve_command(ctx, args)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return ["[DIR] | compare RUN_DIR... [OPTIONS]"]


app = typer.Typer(cls=_RunsGroup, invoke_without_command=True, no_args_is_help=False, add_completion=False,
                  help=HELP)


@app.callback()
def _runs(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # plain `tunelab runs`: the default folder
        runs_command(Path("runs"))


def _result(run: Path) -> dict:
    try:
        return json.loads((run / "result.json").read_text())
    except (OSError, ValueError):
        return {}


@app.command("list")
def runs_command(
    root: Path = typer.Argument(Path("runs"), metavar="DIR", help="Folder holding run folders (default: runs)."),
) -> None:
    """List runs: status (running, paused, killed, ready, or how they ended), epoch, best val accuracy."""
    if not root.is_dir():
        raise ConfigError(f"runs folder {str(root)!r} does not exist")
    found = sorted(p.parent for p in root.glob("*/config.yaml"))
    if (root / "config.yaml").is_file():
        found.insert(0, root)
    table = Table(title=f"runs in {root}")
    for col in ("run", "status", "epoch", "best val acc", "parent"):
        table.add_column(col)
    for run in found:
        st, res = read_status(run), _result(run)
        status = st.get("status") or res.get("status") or "?"
        epoch = f"{st.get('epoch', res.get('epochs_run', '?'))}/{st.get('epochs', '?')}"
        if st.get("status") in ("running", "paused") and st.get("step"):
            epoch += f" step {st['step']}"
        best = st.get("best_val_accuracy", res.get("best_val_accuracy"))
        parent = ""
        if (run / "lineage.json").is_file():
            lin = json.loads((run / "lineage.json").read_text())
            parent = f"{Path(lin['parent_abs']).name} @ {lin['epoch']}"
        table.add_row(run.name if run != root else str(run), str(status), epoch,
                      f"{best:.4f}" if isinstance(best, (int, float)) else "", parent)
    make_console().print(table if found else f"no run folders in {root}", highlight=False)


def _cell(value: Optional[float]) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@app.command("compare")
def compare_command(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR",
                                          help="Run folders to compare; shell globs work: runs/init-*"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help="Figure file (default: "
                                       "runs/compare-runs-<time>.png)."),
    metric: str = typer.Option("val_accuracy", "--metric", metavar="NAME", help="History column the table and the stars "
                               "rank by: val_accuracy, val_loss, train_accuracy or train_loss."),
) -> None:
    """Overlay the loss and accuracy curves of run folders, print a table of them, write the figure.

    One color per run, train dashed, validation solid; a star marks each run's best --metric.
    """
    from tunelab.analysis.run_curves import read_runs
    from tunelab.report.compare_runs import write_runs_figure
    from tunelab.trainer.runfolder import check_writable

    runs = read_runs(run_dirs, metric)
    if out is None:
        out = Path("runs") / f"compare-runs-{datetime.now().strftime('%Y%m%d-%H%M%S')}.png"
    check_writable(out, "--out", kind="file")
    width = max(3, *(len(r.name) for r in runs))
    print(f"{'run':<{width}}  {'status':<13} {'epochs':>6}  {'best ' + metric:>17}  {'epoch':>5}  {'test acc':>8}")
    for r in runs:
        print(f"{r.name:<{width}}  {r.status:<13} {r.epochs_run:>6}  {_cell(r.best_value):>17}  "
              f"{r.best_epoch if r.best_epoch is not None else '-':>5}  {_cell(r.test_accuracy):>8}")
    ranked = [r for r in runs if r.best_value is not None]
    if ranked:
        top = (min if metric.endswith("loss") else max)(ranked, key=lambda r: r.best_value)
        print(f"best {metric}: {top.name} ({top.best_value:.4f} at epoch {top.best_epoch})")
    marks = {r.name: (r.best_epoch, r.best_value) for r in ranked}
    path = write_runs_figure(out, {r.name: r.history for r in runs}, metric, marks,
                             title=f"{len(runs)} runs (train dashed, validation solid)")
    print(f"figure: {path}")
