"""A compare whose run failed for a reason outside it (a worker that died) runs that (arm, seed)
again on the next command, and until then says which runs are missing instead of analysing fewer."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.analysis.compare import analyze, collect_runs
from tunelab.analysis.designs import Arm
from tunelab.execute.base import Event
from tunelab.search.compare import load_design, run_compare

BASE = {"data": {"name": "digits"}, "model": {"hidden": [8]}, "training": {"epochs": 2, "threads": 1}}
ARMS = [Arm("baseline", {}, baseline=True), Arm("sgd", {"optimizer.name": "sgd"})]


def test_a_failed_run_of_an_earlier_command_is_run_again_and_reported_missing_until_then(tmp_path, monkeypatch):
    import tunelab.execute.inline as inline

    real = inline.execute_trial

    def dies_once(spec, report):  # the sgd arm's seed 0: its worker "dies"
        if spec.seed == 0 and spec.config["optimizer"]["name"] == "sgd":
            return Event(spec.number, "failed", error="the worker process died")
        return real(spec, report)

    storage = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setattr(inline, "execute_trial", dies_once)
    study = run_compare(BASE, ARMS, [0, 1], name="faults", storage=storage, executor="inline")
    first = analyze(load_design(study), collect_runs(study))
    assert first["missing"] == [[1, 0]] and first["arms"][1]["failed"] == 1

    from tunelab.cli.compare import missing_text

    line = missing_text(first, collect_runs(study), 4)
    assert line.startswith("1 of 4 runs have no result (sgd seed 0: the worker process died)")

    monkeypatch.setattr(inline, "execute_trial", real)  # the next command: the machine is fine again
    study = run_compare(BASE, ARMS, [0, 1], name="faults", storage=storage, executor="inline")
    runs = collect_runs(study)
    assert sorted((r["arm"], r["seed"], r["status"]) for r in runs) == [
        (0, 0, "completed"), (0, 1, "completed"), (1, 0, "completed"), (1, 1, "completed")]
    assert analyze(load_design(study), runs)["missing"] == []
    trials = optuna.load_study(study_name="compare:faults", storage=storage).get_trials()
    old = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 5 and len(old) == 1  # the failure is kept in storage; the analysis takes the rerun

    # a third command has nothing left to run
    study = run_compare(BASE, ARMS, [0, 1], name="faults", storage=storage, executor="inline")
    assert len(study.get_trials()) == 5
