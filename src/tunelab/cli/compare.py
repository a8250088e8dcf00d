"""``tunelab compare BASE --vary key=v1,v2 ... --seeds 5``: technique ablations, honestly."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tunelab.cli.common import (ADDRESS_OPTION, EXECUTOR_OPTION, MAX_RETRIES_OPTION, POPULATION_SIZE_OPTION,
                                TRIAL_CPUS_OPTION, TRIAL_GPUS_OPTION, TRIAL_TIMEOUT_OPTION, ray_options,
                                make_console, status_line)
from tunelab.errors import ConfigError
from tunelab.fileio import write_json

_FLAGS = {"name": "--name", "storage": "--storage", "workers": "--workers"}


def _name(base: Optional[Path], varies: list, seeds: list[int], factorial: bool, sets: list[str]) -> str:
    digest = hashlib.sha1(json.dumps([varies, seeds, factorial, sets], default=str).encode()).hexdigest()[:8]
    return f"{base.stem if base else 'default'}-{digest}"


def verdict_table(analysis: dict, metric: str) -> Table:
    from tunelab.report.assemble import _verdict_rows

    rows = _verdict_rows(analysis, metric)
    table = Table(title=f"{metric} vs baseline")
    for col in [c for c in rows[0] if not c.startswith("_")]:
        # text columns wrap; numbers never split across lines
        table.add_column(col, **({"overflow": "fold"} if col in ("arm", "verdict", "note") else {"no_wrap": True}))
    for r in rows:
        style = {"better": "green", "worse": "red"}.get(r["_class"], None)
        table.add_row(*[str(v) for k, v in r.items() if not k.startswith("_")], style=style)
    return table


def runs_table(analysis: dict) -> Table:
    """Completed, diverged and failed runs per arm."""
    table = Table(title="runs per arm")
    for col in ("arm", "completed", "diverged", "failed"):
        table.add_column(col, **({"overflow": "fold"} if col == "arm" else {"no_wrap": True}))
    for arm in analysis["arms"]:
        style = "red" if arm["completed"] < arm["runs"] else None
        table.add_row(arm["name"], *(str(arm[k]) for k in ("completed", "diverged", "failed")), style=style)
    return table


def finish_compare(study, design: dict, *, metric: str, target: Optional[float], test: str,
                   out: Path, command: str, console: Console) -> Path:
    """Analyze the stored runs and write compare.json, runs.csv and report.html into ``out``;
    print the verdict table, the runs per arm, the divergence verdicts, each arm's verdict (or
    why it has none) and the target of epochs_to_target."""
    from tunelab.analysis.compare import analyze, collect_runs, run_context, run_metrics
    from tunelab.report.assemble import _target_text, _words, compare_sections
    from tunelab.report.html import build_report, write_report
    from tunelab.search.results import write_csv

    runs = collect_runs(study)
    analysis = analyze(design, runs, target=target, test=test)
    out.mkdir(parents=True, exist_ok=True)
    chance = [a["chance"] for a in analysis["arms"]]
    rows = [dict(arm=r["arm_name"], seed=r["seed"], status=r["status"],
                 **run_metrics(r, analysis["target"], chance[r["arm"]]), **run_context(r["result"])) for r in runs]
    write_csv(rows, out / "runs.csv")
    write_json(out / "compare.json", analysis, default=_jsonable)
    diagnostics = study.user_attrs.get("diagnostics")
    sections = compare_sections(design, analysis, metric=metric, diagnostics=diagnostics, command=command)
    title = f"compare {study.study_name.split(':', 1)[-1]}"
    path = write_report(out / "report.html", build_report(title, sections, subtitle=f"{len(runs)} runs"))
    if not analysis["metrics"][metric].get("skipped"):
        console.print(verdict_table(analysis, metric))
    console.print(runs_table(analysis))
    if analysis["missing"]:
        console.print(missing_text(analysis, runs, len(design["arms"]) * len(design["seeds"])), highlight=False)
    for text in _words(analysis, metric) + analysis.get("effects", {}).get("empty_cells", []):
        console.print(text, highlight=False)
    if not analysis["metrics"][metric].get("skipped"):  # a skipped metric said why above
        console.print(_target_text(analysis), highlight=False)
    console.print(f"report: {path}", highlight=False)
    return path


def missing_text(analysis: dict, runs: list[dict], expected: int) -> str:
    """The line that says which runs have no result, why, and that a rerun runs them.

    Example:
        >>> missing_text({"missing": [[1, 0]], "arms": [{"name": "base"}, {"name": "sgd"}]},
        ...              [{"arm": 1, "seed": 0, "status": "failed", "reason": "the worker process died"}], 4)
        '1 of 4 runs have no result (sgd seed 0: the worker process died); the comparisons leave them out; run the same command again to run them'
    """
    reasons = {(r["arm"], r["seed"]): ((r.get("reason") or r["status"]).splitlines() or [""])[0][:100]
               for r in runs if r["status"] == "failed"}
    shown = [f"{analysis['arms'][a]['name']} seed {s}: {reasons.get((a, s), 'never ran')}"
             for a, s in analysis["missing"][:3]]
    more = f", and {len(analysis['missing']) - 3} more" if len(analysis["missing"]) > 3 else ""
    return (f"{len(analysis['missing'])} of {expected} runs have no result ({'; '.join(shown)}{more}); "
            f"the comparisons leave them out; run the same command again to run them")


def _jsonable(obj):
    import dataclasses

    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else str(obj)


def compare_command(
    base: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="Base train config (YAML); omitted: the defaults."),
    vary: list[str] = typer.Option(..., "--vary", "-v", metavar="KEY=A,B", help="key=v1,v2,... (repeatable; values are YAML, "
                                   "e.g. model.hidden=[64],[128,64])."),
    seeds: int = typer.Option(5, "--seeds", metavar="N", help="Seeds per arm (0..N-1), shared by every arm (paired)."),
    factorial: bool = typer.Option(False, "--factorial", help="Every combination instead of one at a time."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a key of the base config."),
    workers: int = typer.Option(1, "--workers", "-w", metavar="N", help="Parallel worker processes (with --executor population: one population each)."),
    executor: str = EXECUTOR_OPTION,
    population_size: Optional[int] = POPULATION_SIZE_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    trial_cpus: Optional[float] = TRIAL_CPUS_OPTION,
    trial_gpus: Optional[float] = TRIAL_GPUS_OPTION,
    max_retries: Optional[int] = MAX_RETRIES_OPTION,
    trial_timeout: Optional[float] = TRIAL_TIMEOUT_OPTION,
    metric: str = typer.Option("test_accuracy", "--metric", metavar="NAME", help="Metric of the verdicts: test_accuracy, "
                               "best_val_accuracy, epochs_to_target, final_gap or seconds."),
    target: Optional[float] = typer.Option(None, "--target", metavar="ACCURACY", help="Validation accuracy for epochs_to_target, "
                                           "above chance (default: 99% of the baseline's mean best; none when "
                                           "the baseline does not learn)."),
    test: str = typer.Option("t", "--test", metavar="t|wilcoxon", help="t (paired t-test) or wilcoxon (signed-rank)."),
    diagnostics: bool = typer.Option(True, "--diagnostics/--no-diagnostics", help="Record activations and "
                                     "gradients per arm (seed 0, after 1 epoch)."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help="SQLAlchemy URL (default sqlite:///tunelab.db)."),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="Compare name (default: base name + design hash; "
                                       "the same command resumes)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Output folder (default runs/compare-<name>)."),
) -> None:
    """Run every arm over the same seeds and say which changes help, by how much, and whether N seeds can tell."""
    from tunelab.analysis.compare import METRICS, chance_level, check_target
    from tunelab.analysis.designs import arm_config, factorial as full, merge_baseline_equal, one_at_a_time, parse_vary
    from tunelab.api import as_config
    from tunelab.config import to_dict
    from tunelab.search.compare import run_compare
    from tunelab.search.tune import DEFAULT_STORAGE

    if metric not in METRICS:
        raise ConfigError(f"--metric={metric!r} is not known; choose one of {sorted(METRICS)}")
    if test not in ("t", "wilcoxon"):
        raise ConfigError(f"--test={test!r} is not allowed; choose one of ['t', 'wilcoxon']")
    if target is not None:
        check_target(target, None)  # (0, 1]; chance once the base config is known
    if seeds < 2:
        raise ConfigError(f"--seeds={seeds} is out of range; a paired comparison needs at least 2")
    cfg = to_dict(as_config(base, set_))
    if target is not None:
        check_target(target, chance_level(cfg))  # reaching chance says nothing
    varies = [parse_vary(v) for v in vary]
    arms = (full if factorial else one_at_a_time)(cfg, varies)
    for arm in arms:  # every arm's config is valid before anything runs
        arm_config(cfg, arm, 0)
    arms, merged = merge_baseline_equal(cfg, arms)
    if len(arms) < 2:
        raise ConfigError(f"--vary {' '.join(vary)}: every value is the base config's own, so there is nothing "
                          f"to compare; give a value that differs from the base")
    name = name or _name(base, varies, list(range(seeds)), factorial, set_)
    out = out or Path("runs") / f"compare-{name}"
    args = sys.argv[1:]
    command = "tunelab " + " ".join(shlex.quote(a) for a in args)
    console = make_console()
    if merged:
        console.print(f"note: {'; '.join(merged)} resolve{'s' if len(merged) == 1 else ''} to the base config: "
                      f"that is the baseline, run once and not counted in the correction", highlight=False,
                      soft_wrap=True)
    console.print(f"compare {name}: {len(arms)} arms x {seeds} seeds = {len(arms) * seeds} runs", highlight=False)
    started = time.perf_counter()
    live = console.is_terminal  # a log or a pipe gets one line per run instead

    def on_progress(p, update=None) -> None:
        if p.event == "finished" and not live and p.last is not None:
            console.print(run_line(p), highlight=False, soft_wrap=True)
        if update is not None:
            update(f"runs {p.finished}/{p.target}  failed {p.failed}  running {p.running}  "
                   f"elapsed {time.perf_counter() - started:.0f}s")

    from tunelab.cli.tune import cli_errors

    kwargs = dict(name=name, storage=storage or DEFAULT_STORAGE, workers=workers, executor=executor,
                  population_size=population_size, ray=ray_options(address, trial_cpus, trial_gpus, max_retries),
                  trial_timeout=trial_timeout,
                  meta=dict(factorial=factorial, command=command, metric=metric, test=test, target=target))
    try:
        with cli_errors(_FLAGS):
            if live:
                with status_line(console) as update:
                    study = run_compare(cfg, arms, list(range(seeds)), **kwargs,
                                        on_progress=lambda p: on_progress(p, update))
            else:
                study = run_compare(cfg, arms, list(range(seeds)), **kwargs, on_progress=on_progress)
    except KeyboardInterrupt:
        again = command if "--name" in args else f"{command} --name {shlex.quote(name)}"
        console.print(f"interrupted: finished runs are stored in {storage or DEFAULT_STORAGE}; the runs cut "
                      f"short run again. Continue with:\n  {again}", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if diagnostics and "diagnostics" not in study.user_attrs:
        from tunelab.analysis.compare import diagnose_arms
        from tunelab.cli.common import item_progress

        console.print("diagnostics: activations and gradients per arm (seed 0, 1 epoch) ...", highlight=False)
        with item_progress(console, len(arms), "arm") as done:
            def on_diagnosed(_done, _total, info):
                val = "-" if info["val_accuracy"] is None else f"{info['val_accuracy']:.4f}"
                n = info["warnings"]
                done(f"{info['arm']} diagnosed: val {val}, {n} warning{'s' if n != 1 else ''}")
            study.set_user_attr("diagnostics", diagnose_arms(cfg, arms, epochs=1, on_progress=on_diagnosed))
    design = study.user_attrs["design"]
    finish_compare(study, design, metric=metric, target=target, test=test, out=out, command=command, console=console)


def run_line(p) -> str:
    """One line for a finished compare run (logs and pipes): which run, arm, seed, state, metrics.

    Example:
        >>> from tunelab.search.study import Progress, TrialOutcome
        >>> p = Progress(10, done=3, last=TrialOutcome(4, "complete", 0.97, {"arm": "dropout=0.2", "seed": 1},
        ...                                            12.34, 4, extra={"test_accuracy": 0.9651}))
        >>> run_line(p)
        "run 3/10 arm 'dropout=0.2' seed 1 complete val_accuracy=0.9700 test_accuracy=0.9651 12.3s"
    """
    o = p.last
    from tunelab.cli.tune import state_words

    parts = [f"run {p.finished}/{p.target} arm {o.params.get('arm')!r} seed {o.params.get('seed')} {state_words(o)}"]
    if o.value is not None:
        parts.append(f"val_accuracy={o.value:.4f}")
    parts += [f"{k}={v:.4f}" for k, v in o.extra.items() if isinstance(v, float)]
    parts.append(f"{o.seconds:.1f}s")
    return " ".join(parts)
