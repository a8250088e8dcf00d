"""``tunelab tune SPACE``: search hyperparameters; live progress, leaderboard, best.yaml."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console

from tunelab.cli.common import status_line
from tunelab.cli.studies import leaderboard_table, rounds_table
from tunelab.trainer.runfolder import check_writable


def _fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _status(p, started: float, finished_at_start: int) -> str:
    best = f"{p.best:.4f} (#{p.best_number})" if p.best is not None else "-"
    eta = p.eta(p.finished - finished_at_start)
    line = (f"trials {p.finished}/{p.target}  done {p.done}  pruned {p.pruned}  failed {p.failed}  "
            f"running {p.running}  best {best}  elapsed {_fmt_seconds(time.perf_counter() - started)}  "
            f"left ~{_fmt_seconds(eta)}")
    return line + (f"\nlast failure: {p.last_error[:120]}" if p.last_error else "")


def tune_command(
    space: Path = typer.Argument(..., help="Space file: base (train config), space (dotted key -> "
                                 "distribution), objective, stages."),
    sampler: str = typer.Option("random", "--sampler", help="grid, random, coarse-to-fine, tpe or gp."),
    trials: int = typer.Option(20, "--trials", "-n", help="Finished trials wanted in total (a rerun continues up to this)."),
    pruner: str = typer.Option("none", "--pruner", help="none, median, asha or hyperband (on the per-epoch objective)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Parallel worker processes (1: inline). Each gets cores/workers threads."),
    storage: Optional[str] = typer.Option(None, "--storage", help="SQLAlchemy URL (default sqlite:///tunelab.db; postgresql://... works)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the space file's name)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampler seed, for reproducible proposals."),
    stages: bool = typer.Option(False, "--stages", help="Tune in stages by priority (the space file's `stages`), fixing earlier best values."),
    round_size: Optional[int] = typer.Option(None, "--round-size", help="coarse-to-fine: trials per round (default max(8, trials/4)); the top quarter of each round sets the next ranges."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for best.yaml."),
    trial_folders: Optional[Path] = typer.Option(None, "--trial-folders", help="Give every trial a live run folder "
                                                 "DIR/<study>/trial-NNNN that tunelab control and tunelab runs reach."),
) -> None:
    """Search hyperparameters over real training runs; keeps every trial in storage."""
    from tunelab.search.results import leaderboard
    from tunelab.search.coarse_to_fine import stored_rounds
    from tunelab.search.tune import tune

    check_writable(out, "--out")  # best.yaml goes there: fail now, not after the search
    if trial_folders is not None:
        check_writable(trial_folders, "--trial-folders")
    console = Console()
    started = time.perf_counter()
    state = {"at_start": None}
    with status_line(console) as update:
        def on_progress(p) -> None:
            if state["at_start"] is None:
                state["at_start"] = p.finished - 1
            update(_status(p, started, state["at_start"]))

        try:
            res = tune(space, sampler=sampler, trials=trials, pruner=pruner, workers=workers, trial_folders=trial_folders,
                       storage=storage, study=study, seed=seed, stages=stages, round_size=round_size,
                       on_progress=on_progress)
        except KeyboardInterrupt:
            console.print("interrupted: running trials were marked failed and will be retried "
                          "when you run the same command again")
            raise typer.Exit(130)
    for st in res.studies:
        console.print(leaderboard_table(st, leaderboard(st, 10)))
        rounds = stored_rounds(st)
        if rounds:
            console.print(rounds_table(rounds))
    if res.best_config is None:
        console.print("no trial completed; see `tunelab studies show` for the failure reasons")
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    best = out / "best.yaml"
    best.write_text(f"# best trial #{res.best_number} of study {res.study.study_name}: "
                    f"{res.study.user_attrs.get('objective', 'value')} = {res.best_value:.6g}\n"
                    + yaml.safe_dump(res.best_config, sort_keys=False))
    console.print(f"best {res.best_value:.4f} (trial #{res.best_number}); config written to {best}; "
                  f"train it with: tunelab train {best}", highlight=False)
