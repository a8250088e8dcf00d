"""``tunelab studies list|show|export|delete``: read studies back from storage, or delete one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from tunelab.cli.common import make_console

app = typer.Typer(help="List, show, export and delete tuning studies.", no_args_is_help=True)
console = make_console()
STORAGE_HELP = "SQLAlchemy URL (default sqlite:///tunelab.db)."


def _flags():
    from tunelab.cli.tune import cli_errors

    return cli_errors()


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."


def _range(spec) -> str:
    """A stored distribution in a few characters: 1e-05..0.1 log, 0.9..0.99 1-b, [64] | [128]."""
    kinds = [k for k in spec if k != "points"] if isinstance(spec, dict) else []
    if len(kinds) != 1:
        return _short(spec)
    kind, args = kinds[0], spec[kinds[0]]
    if kind == "choice":
        text = " | ".join(_short(v) for v in args)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(args, (list, tuple)) and len(args) >= 2:
        suffix = {"log_uniform": " log", "log_int": " log", "one_minus_log": " 1-b"}.get(kind, "")
        return f"{_short(args[0])}..{_short(args[1])}{suffix}"
    return _short(spec)


def _label(key: str) -> str:
    """'optimizer.lr' -> 'lr', 'optimizer.betas.0' -> 'betas.0' (columns stay narrow)."""
    return key.split(".", 1)[-1]


def leaderboard_table(study, rows) -> Table:
    table = Table(title=f"{study.study_name}: best trials ({study.user_attrs.get('objective', 'value')})")
    keys = sorted({k for r in rows for k in r["params"]})
    for col in ["#", "value", "epochs", "seconds", *[_label(k) for k in keys]]:
        table.add_column(col, overflow="fold")
    for r in rows:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
        table.add_row(str(r["number"]), fmt(r["value"]), fmt(r["epochs"]), f"{r['seconds'] or 0:.1f}",
                      *[_short(r["params"].get(k, "")) for k in keys])
    return table


def rounds_table(rounds: list[dict]) -> Table:
    table = Table(title="coarse-to-fine ranges per round")
    table.add_column("round")
    keys = sorted({k for r in rounds for k in r})
    for k in keys:
        table.add_column(_label(k), overflow="fold")
    for i, r in enumerate(rounds):
        table.add_row(str(i), *[_range(r.get(k, "")) for k in keys])
    return table


@app.command("list")
def list_command(storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help=STORAGE_HELP)) -> None:
    """Every study in storage with its trial count and best value."""
    from tunelab.search.results import study_summaries
    from tunelab.search.tune import DEFAULT_STORAGE

    with _flags():
        rows = study_summaries(storage or DEFAULT_STORAGE)
    if not rows:
        console.print(f"no studies in {storage or DEFAULT_STORAGE}", highlight=False)
        return
    table = Table("study", "trials", "best", "direction", "started")
    for r in rows:
        table.add_row(r["name"], str(r["trials"]), "" if r["best"] is None else f"{r['best']:.4f}",
                      r["direction"], r["started"])
    console.print(table)


@app.command("show")
def show_command(name: str = typer.Argument(..., metavar="NAME", help="Study name."),
                 storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help=STORAGE_HELP),
                 top: int = typer.Option(10, "--top", metavar="N", help="Rows of the leaderboard.")) -> None:
    """Counts by state, the leaderboard, coarse-to-fine rounds, failure reasons and the last run's
    profile (where its wall time went)."""
    from tunelab.search.profile import profile_lines
    from tunelab.search.results import counts, leaderboard, load_study
    from tunelab.search.coarse_to_fine import stored_rounds
    from tunelab.search.tune import DEFAULT_STORAGE

    with _flags():
        study = load_study(name, storage or DEFAULT_STORAGE)
    c = counts(study)
    console.print(" ".join(f"{k} {v}" for k, v in c.items() if v), highlight=False)
    for key in ("sampler", "pruner", "stage"):
        if key in study.user_attrs:
            console.print(f"{key}: {study.user_attrs[key]}", highlight=False)
    console.print(leaderboard_table(study, leaderboard(study, top)))
    rounds = stored_rounds(study)
    if rounds:
        console.print(rounds_table(rounds))
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "FAIL":
            reason = (t.user_attrs.get("fail_reason") or "").split("\n", 1)[0]
            if t.user_attrs.get("requeued"):  # not a failure of its configuration: it runs again
                console.print(f"trial #{t.number} interrupted ({reason}); its parameters run again", highlight=False)
            else:
                console.print(f"trial #{t.number} failed: {reason}", highlight=False)
    profile = study.user_attrs.get("profile")
    if isinstance(profile, dict):
        try:
            lines = profile_lines(profile)
        except (KeyError, TypeError, ValueError):  # written by another version: not shown
            lines = []
        for line in lines:
            console.print(line.replace("profile:", "last run's profile:", 1), highlight=False, soft_wrap=True)


@app.command("export")
def export_command(name: str = typer.Argument(..., metavar="NAME", help="Study name."),
                   csv: Path = typer.Option(..., "--csv", metavar="FILE", help="CSV file to write (one row per trial); - for standard output."),
                   storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help=STORAGE_HELP)) -> None:
    """Write every trial (state, value, duration, params, failure reason) to a CSV file."""
    from tunelab.search.results import load_study, trial_rows, write_csv
    from tunelab.search.tune import DEFAULT_STORAGE
    from tunelab.trainer.runfolder import check_writable  # imports torch: not at --help time

    if str(csv) != "-":
        check_writable(csv, "--csv", kind="file")
    with _flags():
        rows = trial_rows(load_study(name, storage or DEFAULT_STORAGE))
    if str(csv) == "-":  # standard output, for piping
        write_csv(rows, sys.stdout)
        return
    csv.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"wrote {len(rows)} trials to {write_csv(rows, csv)}", highlight=False)


@app.command("delete")
def delete_command(name: str = typer.Argument(..., metavar="NAME", help="Study name (a compare is compare:NAME; a staged "
                                              "study's NAME.stageK go with NAME)."),
                   storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help=STORAGE_HELP)) -> None:
    """Delete a study and all its trials from storage (files under runs/ are kept)."""
    from tunelab.search.storage import delete_studies
    from tunelab.search.tune import DEFAULT_STORAGE

    where = storage or DEFAULT_STORAGE
    with _flags():
        deleted = delete_studies(where, name)
    for study, trials in deleted:
        console.print(f"deleted study {study} ({trials} trials) from {where}", highlight=False)
