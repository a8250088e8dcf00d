"""``tunelab runs [DIR]``: the run folders under DIR with their live status."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tunelab.errors import ConfigError
from tunelab.trainer.live import read_status


def _result(run: Path) -> dict:
    try:
        return json.loads((run / "result.json").read_text())
    except (OSError, ValueError):
        return {}


def runs_command(
    root: Path = typer.Argument(Path("runs"), help="Folder holding run folders (default: runs)."),
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
        table.add_row(run.name if run != root else str(run), status, epoch,
                      f"{best:.4f}" if isinstance(best, (int, float)) else "", parent)
    Console().print(table if found else f"no run folders in {root}", highlight=False)
