"""``tunelab tune SPACE``: search hyperparameters; progress, leaderboard, runs/<study>/best.yaml.

On a terminal a status line rewrites itself; in a log file or a pipe each finished trial gets
one line instead (a status line that only redraws writes nothing to a log for minutes).
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
import yaml
from tunelab.cli.common import (ADDRESS_OPTION, EXECUTOR_OPTION, MAX_RETRIES_OPTION, POPULATION_SIZE_OPTION,
                                TRIAL_CPUS_OPTION, TRIAL_GPUS_OPTION, TRIAL_TIMEOUT_OPTION, ray_options,
                                make_console, status_line)
from tunelab.cli.studies import leaderboard_table, rounds_table
from tunelab.errors import ConfigError
from tunelab.fileio import write_text

# the library names its arguments; the CLI user typed these flags
FLAGS = {"trials": "--trials", "workers": "--workers", "sampler": "--sampler", "pruner": "--pruner",
         "storage": "--storage", "study": "--study", "round_size": "--round-size", "timeout": "--timeout",
         "trial_timeout": "--trial-timeout",
         "grace_epochs": "--grace-epochs", "interval": "--interval", "population_size": "--population-size",
         "executor": "--executor", "stages": "--stages", "seed": "--seed"}


def cli_words(message: str, flags: Optional[dict] = None) -> str:
    """A library message in the CLI's words: ``trials=0`` -> ``--trials=0``.

    Example:
        >>> cli_words("trials=0 is out of range; pass fresh=True to start over, or a new study name")
        '--trials=0 is out of range; pass --fresh to start over, or a new --study name'
        >>> cli_words("overrides: training.epochs=0 is out of range")
        '--set training.epochs=0 is out of range'
    """
    flags = FLAGS if flags is None else flags
    text = message.replace("pass fresh=True", "pass --fresh").replace("fresh=True", "--fresh")
    text = re.sub(r"^(with )?overrides:? ", lambda m: "--set " if not m.group(1) else "with --set ", text)
    text = text.replace("a new study name", "a new --study name").replace("choose a new name", "choose a new --name")
    names = "|".join(sorted(flags, key=len, reverse=True))
    return re.sub(rf"(?<![\w.\-'\"])({names})(?==)", lambda m: flags[m.group(1)], text)


@contextmanager
def cli_errors(flags: Optional[dict] = None) -> Iterator[None]:
    """Re-raise the library's ConfigErrors in the CLI's words (see ``cli_words``)."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(cli_words(str(e), flags)) from None


def _fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _status(p, started: float) -> str:
    best = f"{p.best:.4f} (#{p.best_number})" if p.best is not None else "-"
    stage = f"{p.study}: " if ".stage" in p.study else ""
    line = (f"{stage}trials {p.finished}/{p.target}  done {p.done}  pruned {p.pruned}  failed {p.failed}  "
            f"running {p.running}  best {best}  elapsed {_fmt_seconds(time.perf_counter() - started)}  "
            f"left ~{_fmt_seconds(p.eta())}")
    return line + (f"\nlast failure: {p.last_error[:120]}" if p.last_error else "")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def state_words(o) -> str:
    """How a finished trial ended, in words: a divergence is an outcome, not an error.

    Example:
        >>> from tunelab.search.study import TrialOutcome
        >>> state_words(TrialOutcome(3, "failed", None, {}, 1.0, 2, "diverged: loss became nan at epoch 2"))
        'diverged (loss became nan at epoch 2)'
    """
    reason = o.reason or "unknown reason"
    if o.state == "failed" and reason.startswith("diverged: "):
        return f"diverged ({reason[len('diverged: '):]})"
    return f"{o.state} ({reason})" if o.state == "failed" else o.state


def trial_line(o, word: str = "trial") -> str:
    """One line for a finished trial (logs and pipes): number, state, value, params, seconds.

    Example:
        >>> from tunelab.search.study import TrialOutcome
        >>> trial_line(TrialOutcome(7, "complete", 0.97123, {"optimizer.lr": 0.00312,
        ...            "model.hidden": [256, 128]}, 12.34, 15))
        'trial 7 complete value=0.9712 lr=0.00312 hidden=[256, 128] 12.3s'
        >>> trial_line(TrialOutcome(8, "pruned", 0.5, {"optimizer.lr": 0.9}, 2.0, 5))
        'trial 8 pruned at epoch 5 value=0.5000 lr=0.9 2.0s'
    """
    head = f"{word} {o.number} {state_words(o)}"
    if o.state == "pruned" and o.epoch:
        head += f" at epoch {o.epoch}"
    parts = [head]
    if o.value is not None:
        parts.append(f"value={o.value:.4f}")
    parts += [f"{k}={v:.4f}" for k, v in o.extra.items() if isinstance(v, float)]
    parts += [f"{k.split('.', 1)[-1]}={_value(v)}" for k, v in o.params.items()]
    parts.append(f"{o.seconds:.1f}s")
    return " ".join(parts)


def _start_lines(p, trials: int, staged: bool, where: str) -> list[str]:
    """What a run is about to do: counts from storage, grid size, nothing to run."""
    lines = []
    if p.deleted:
        lines.append(f"study {p.study}: deleted its {p.deleted} earlier trials (--fresh)")
    share = f"its share {p.target} of --trials {trials}" if staged else f"--trials {trials}"
    if p.grid is not None:
        if p.grid > p.target:
            more = "" if staged else f"; rerun with --trials {p.grid} for all"
            lines.append(f"grid: {p.grid} combinations; running {p.target} ({share}){more}")
        else:
            lines.append(f"grid: {p.grid} combinations; running all of them")
    if p.at_start >= p.target:
        limit = f"the whole grid of {p.grid}" if p.grid is not None and p.target == p.grid else f">= {share}"
        lines.append(f"study {p.study} already has {p.at_start} finished trials ({limit}); nothing to run"
                     + ("" if p.grid is not None and p.target == p.grid else "; raise --trials to continue"))
    elif p.at_start:
        lines.append(f"study {p.study} ({where}): {p.at_start} trials finished before; "
                     f"running {p.target - p.at_start} more to reach {p.target}")
    else:
        lines.append(f"study {p.study} ({where}): running {p.target} trials")
    return lines


def tune_command(
    space: Path = typer.Argument(..., metavar="SPACE", help="Space file: base (train config), space (dotted key -> "
                                 "distribution), objective, stages."),
    sampler: str = typer.Option("random", "--sampler", metavar="grid|random|coarse-to-fine|tpe|gp|pbt", help="grid, random, coarse-to-fine, tpe, gp, or pbt (population-based training: all --trials as one population; with --executor processes --workers W, run folders copied through their checkpoints)."),
    interval: int = typer.Option(4, "--interval", metavar="N", help="--sampler pbt: epochs between exploit/explore steps."),
    trials: int = typer.Option(20, "--trials", "-n", metavar="N", help="Finished trials wanted in total (a rerun continues up to this)."),
    pruner: str = typer.Option("none", "--pruner", metavar="none|median|asha|hyperband", help="none, median, asha or hyperband (on the per-epoch objective)."),
    grace_epochs: Optional[int] = typer.Option(None, "--grace-epochs", metavar="N", help="Pruners never stop a "
                                               "trial before N epochs (default: 25% of the longest trial's "
                                               "epochs, at least 2)."),
    workers: int = typer.Option(1, "--workers", "-w", metavar="N", help="Parallel worker processes (1: inline). Each gets cores/workers threads; with --executor population each trains its own population."),
    executor: str = EXECUTOR_OPTION,
    population_size: Optional[int] = POPULATION_SIZE_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    trial_cpus: Optional[float] = TRIAL_CPUS_OPTION,
    trial_gpus: Optional[float] = TRIAL_GPUS_OPTION,
    max_retries: Optional[int] = MAX_RETRIES_OPTION,
    trial_timeout: Optional[float] = TRIAL_TIMEOUT_OPTION,
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a key of the space's "
                                   "base config, e.g. --set training.threads=1 (repeatable; checked at once)."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help="SQLAlchemy URL (default sqlite:///tunelab.db; postgresql://... works)."),
    study: Optional[str] = typer.Option(None, "--study", metavar="NAME", help="Study name (default: the space file's name)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the study (its trials) first, then run it anew."),
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="SECONDS", help="Stop asking for new "
                                            "trials after this many seconds; running trials finish."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Sampler seed, for reproducible proposals."),
    stages: bool = typer.Option(False, "--stages", help="Tune in stages by priority (the space file's `stages`), fixing earlier best values."),
    round_size: Optional[int] = typer.Option(None, "--round-size", metavar="N", help="coarse-to-fine: trials per round (default: about five rounds, at least 2 per parameter + 2 and 8); the best quarter of a round sets the next ranges."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Folder for best.yaml "
                                       "(default runs/<study>)."),
    trial_folders: Optional[Path] = typer.Option(None, "--trial-folders", metavar="DIR", help="Give every trial a live run folder "
                                                 "DIR/<study>/trial-NNNN that tunelab control and tunelab runs reach."),
    profile: bool = typer.Option(False, "--profile", help="At the end, print where the wall time went (training, "
                                 "evaluation, data, worker start, sampler, storage, pruner, idle workers); every "
                                 "run stores it in the study either way (`tunelab studies show`)."),
) -> None:
    """Search hyperparameters over real training runs; keeps every trial in storage.

    Pruners (median, asha, hyperband) never stop a trial in its first --grace-epochs epochs.
    """
    from tunelab.search.tune import DEFAULT_STORAGE, study_dir, tune
    from tunelab.trainer.runfolder import check_writable  # imports torch: not at --help time

    name = study or space.stem
    out = out if out is not None else study_dir(name)
    check_writable(out, "--out")  # best.yaml goes there: fail now, not after the search
    if trial_folders is not None:
        check_writable(trial_folders, "--trial-folders")
    where = storage or DEFAULT_STORAGE
    console = make_console()
    started = time.perf_counter()
    state: dict[str, Any] = {"p": None}
    live = console.is_terminal  # a log or a pipe gets one line per trial instead

    def on_progress(p, update=None) -> None:
        state["p"] = p
        if p.event == "start":
            for line in _start_lines(p, trials, stages, where):
                console.print(line, highlight=False, soft_wrap=True)
        elif p.event == "finished" and not live and p.last is not None:
            console.print(trial_line(p.last), highlight=False, soft_wrap=True)
        if update is not None:
            update(_status(p, started))

    kwargs = dict(sampler=sampler, trials=trials, pruner=pruner, workers=workers, trial_folders=trial_folders,
                  storage=where, study=study, seed=seed, stages=stages, round_size=round_size,
                  overrides=list(set_), fresh=fresh, timeout=timeout, grace_epochs=grace_epochs,
                  executor=executor, population_size=population_size, interval=interval,
                  ray=ray_options(address, trial_cpus, trial_gpus, max_retries), trial_timeout=trial_timeout)
    try:
        with cli_errors():  # the library names its arguments; say the flags the user typed
            if live:
                with status_line(console) as update:
                    res = tune(space, **kwargs, on_progress=lambda p: on_progress(p, update))
            else:
                res = tune(space, **kwargs, on_progress=on_progress)
    except KeyboardInterrupt:
        p = state["p"]
        if p is not None and p.interrupted:
            cut = ", ".join(f"#{n}" for n in p.interrupted)
            said = (f"interrupted: trials {cut} were cut short; they are not counted and run again when you run "
                    f"the same command again")
        else:
            said = "interrupted: finished trials are stored; run the same command again to continue"
        console.print(said, highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    searched = time.perf_counter()
    _show_results(res, console, live=live, started=started, timeout=timeout)
    if res.best_config is None:
        _profile(res, searched, console, profile)
        console.print("no trial completed; see `tunelab studies show` for the failure reasons")
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    best = out / "best.yaml"
    copies = _pbt_copies(res)
    note = "".join(f"# population-based training: at epoch {c.get('epoch')} it copied trial #{c.get('from_trial')} "
                   f"and went on with {c.get('values')}\n" for c in copies)
    if copies:
        note += "# the values below are those it started with: its hyperparameters changed while it trained\n"
    write_text(best, f"# best trial #{res.best_number} of study {res.study.study_name}: "
                    f"{res.study.user_attrs.get('objective', 'value')} = {res.best_value:.6g}\n" + note
                    + yaml.safe_dump(res.best_config, sort_keys=False))
    _profile(res, searched, console, profile)
    console.print(f"best {res.best_value:.4f} (trial #{res.best_number}); config written to {best}; "
                  f"train it with: tunelab train {best}"
                  + (f" (its starting values: it copied {len(copies)} time(s) while it trained; the schedule "
                     f"is in {best} and the report's lineage)" if copies else ""), highlight=False, soft_wrap=True)


def _profile(res, searched: float, console, show: bool) -> None:
    """Add the seconds spent after the search (leaderboard, best.yaml) to the stored profile;
    print it when asked."""
    from tunelab.search.profile import profile_lines
    from tunelab.search.tune import store_profile

    res.profile["report_s"] = time.perf_counter() - searched
    store_profile(res.study, res.profile)
    if show:
        for line in profile_lines(res.profile):
            console.print(line, highlight=False, soft_wrap=True)


def _pbt_copies(res) -> list:
    """The copies (population-based training) the best trial made, oldest first."""
    try:
        trial = res.study.trials[res.best_number]
    except (IndexError, TypeError):
        return []
    return list((trial.user_attrs.get("result") or {}).get("pbt") or [])


def _show_results(res, console, *, live: bool, started: float, timeout: Optional[float]) -> None:
    """Final counts (logs only: a terminal keeps its status line), the timeout, each study's
    leaderboard and coarse-to-fine rounds, and a note when few trials completed."""
    from tunelab.search.coarse_to_fine import stored_rounds
    from tunelab.search.results import leaderboard, thin_study_note

    for p in res.progresses:
        if not live:
            console.print(_status(p, started), highlight=False, soft_wrap=True)
        if p.stopped_early == "timeout":
            console.print(f"timeout: stopped asking for new trials after {timeout:g} s; {p.finished} of "
                          f"{p.target} trials finished (running ones were completed); run the same command "
                          f"to continue", highlight=False, soft_wrap=True)
    for st in res.studies:
        console.print(leaderboard_table(st, leaderboard(st, 10)))
        rounds = stored_rounds(st)
        if rounds:
            console.print(rounds_table(rounds))
        note = thin_study_note(st)
        if note:
            console.print(f"note ({st.study_name}): {note} (`tunelab report --study {st.study_name}`)",
                          highlight=False, soft_wrap=True)
