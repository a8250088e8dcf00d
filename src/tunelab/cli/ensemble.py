"""``tunelab ensemble``: retrain the top K trials of a study (or runs of a folder) and vote."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from tunelab.cli.common import item_progress, jsonable, make_console
from tunelab.trainer.runfolder import check_writable, fresh_dir
from tunelab.errors import ConfigError
from tunelab.fileio import write_json


def _members(study: Optional[str], storage: Optional[str], runs: Optional[Path],
             top: int) -> tuple[list[dict], str]:
    """The top K members of the one source given, and a label for the output folder."""
    from tunelab.analysis.ensemble import pick_top, run_members, study_members

    if (study is None) == (runs is None):
        raise ConfigError("give exactly one of --study NAME or --runs DIR as the source of the members")
    if runs is not None:
        return pick_top(run_members(runs), top, f"--runs={str(runs)!r}"), runs.name
    from tunelab.search.results import load_study
    from tunelab.search.tune import DEFAULT_STORAGE

    opened = load_study(study, storage or DEFAULT_STORAGE)
    return pick_top(study_members(opened), top, f"study {study!r}"), study


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _table(members: list[dict], report: dict[str, Any], value_name: str) -> Table:
    table = Table(title=f"ensemble of {report['k']} ({report['method']} voting), accuracy on the test split")
    for column in ("member", value_name, "val acc", "test acc"):
        numeric = column != "member"  # numbers never wrap: a split "0.9712" reads as two values
        table.add_column(column, justify="right" if numeric else "left", no_wrap=numeric)
    for i, m in enumerate(members):
        mark = " (best on val)" if i == report["best_single_index"] else ""
        table.add_row(m["label"] + mark, _fmt(m["value"]), _fmt(report["single_val_accuracies"][i]),
                      _fmt(report["single_accuracies"][i]))
    table.add_section()
    table.add_row("ensemble", "", _fmt(report["ensemble_val_accuracy"]), _fmt(report["ensemble_accuracy"]))
    table.add_row("best single (chosen on val)", "", "", _fmt(report["best_single"]))
    table.add_row("mean single", "", "", _fmt(report["mean_single"]))
    return table


def _retrained(label: str, info: dict[str, Any]) -> str:
    """'#7 retrained: val 0.9712' (and the status when the run did not complete)."""
    status = ""
    if info["status"] != "completed":  # early stopped: its epochs say how far it went
        status = f", {info['status'].replace('_', ' ')} after {info['epochs_run']} epochs"
    return f"{label} retrained: val {_fmt(info['val_accuracy'])}{status}"


def ensemble_command(
    study: Optional[str] = typer.Option(None, "--study", metavar="NAME", help="Study whose top trials are the members."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL",
                                          help="SQLAlchemy URL (default sqlite:///tunelab.db)."),
    runs: Optional[Path] = typer.Option(None, "--runs", metavar="DIR", help="Instead of --study: a folder of run folders "
                                        "(config.yaml + result.json), ranked by result.json val_accuracy."),
    top: int = typer.Option(5, "--top", "-k", metavar="N", help="Number of members K: the best K by validation."),
    method: str = typer.Option("soft", "--method", metavar="soft|hard", help="soft: average the probabilities; hard: majority vote."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                       help="Output folder (default: runs/ensemble-<study>-<time>)."),
) -> None:
    """Retrain the top K trials of a study (or runs of a folder) and score their ensemble.

    The members are retrained from their stored configs (deterministic for their seeds on
    CPU). Prints each member's validation and test accuracy, then the ensemble's test accuracy
    beside the best single model (chosen on validation) and the mean single model. Writes
    ensemble.json to the output folder.
    """
    from tunelab.analysis.ensemble import check_method, ensemble_report, models_from_configs
    from tunelab.api import as_config
    from tunelab.data import load_data

    check_method(method)
    if out is not None:
        check_writable(out, "--out")  # before the work, not after it
    members, label = _members(study, storage, runs, top)
    console = make_console()
    console.print(f"retraining {len(members)} member{'s' if len(members) != 1 else ''} "
                  f"({', '.join(m['label'] for m in members)})", highlight=False)
    with item_progress(console, len(members), "member") as done:
        def on_progress(_done: int, _total: int, info: dict[str, Any]) -> None:
            done(_retrained(members[info["index"]]["label"], info))

        models = models_from_configs([m["config"] for m in members], on_progress=on_progress)
    device = next(models[0].parameters()).device
    report = ensemble_report(models, load_data(as_config(members[0]["config"]).data, device=device), method)
    console.print(_table(members, report, "value" if runs is None else "stored val acc"))
    folder = out if out is not None else fresh_dir("runs", f"ensemble-{label}-{{stamp}}")
    folder.mkdir(parents=True, exist_ok=True)
    source = {"study": study, "storage": storage} if runs is None else {"runs": str(runs)}
    rows = [dict(m, val_accuracy=report["single_val_accuracies"][i], test_accuracy=report["single_accuracies"][i])
            for i, m in enumerate(members)]
    write_json(folder / "ensemble.json", jsonable({**source, **report, "members": rows}))
    console.print(f"wrote {folder / 'ensemble.json'}", highlight=False, soft_wrap=True)
