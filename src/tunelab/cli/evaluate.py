"""``tunelab evaluate RUN_DIR``: loss, accuracy and per-class accuracy of a run's saved model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

HELP = "Loss, accuracy and per-class accuracy of a run's saved model on its test split (or another)."


def evaluate_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run folder (tunelab train --out RUN_DIR)."),
    split: str = typer.Option("test", "--split", metavar="test|val|train|all", help="test, val, train, or all (the whole data set)."),
    data: list[str] = typer.Option([], "--data", metavar="KEY=VALUE", help="Evaluate on other data: override a data key, e.g. "
                                   "--data name=fashion-mnist, or --data name=csv --data path=other.csv "
                                   "(repeatable; --split all takes every row of another file). Inputs are scaled "
                                   "with the statistics fitted on the run's original training set."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the tables."),
) -> None:
    """Loss, accuracy and per-class accuracy of a run's saved model on its test split (or another).

    The default equals the test metrics in the run's result.json.

    With --data the model meets other data, scaled as its own training set was (not refitted).
    """
    from tunelab.analysis.predict import evaluate_run
    from tunelab.cli.common import jsonable
    from tunelab.trainer.load import load_run
    from tunelab.trainer.threads import set_threads

    run = load_run(run_dir)
    set_threads(run.cfg.training.threads)
    ev = evaluate_run(run, split, data)
    if as_json:
        print(json.dumps(jsonable(ev.to_dict())))
        return
    print(f"run {ev.run} · {ev.source} · {ev.split} split · {ev.examples} examples")
    if ev.data:
        print(f"data: {', '.join(ev.data)}; {ev.scaling}")
    print(f"loss {ev.loss:.4f}   accuracy {ev.accuracy:.4f}")
    width = max([4, *(len(c.name) for c in ev.per_class)])
    print(f"\n{'class':>5}  {'name':<{width}}  {'examples':>8}  {'correct':>7}  {'accuracy':>8}")
    for c in ev.per_class:
        acc = f"{c.accuracy:.4f}" if c.accuracy is not None else "-"
        print(f"{c.index:>5}  {c.name:<{width}}  {c.examples:>8}  {c.correct:>7}  {acc:>8}")
