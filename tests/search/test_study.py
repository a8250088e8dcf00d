"""The study driver: storage contents, pruning, faults, resume after SIGKILL, Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import tunelab
from tunelab.errors import ConfigError

from . import objectives

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"base": {"epochs": 3, "sleep": 0.0}, "space": {"x": {"uniform": [0.0, 1.0]}}}


def _storage(tmp_path):
    return f"sqlite:///{tmp_path / 'studies.db'}"


def test_real_training_trials_store_everything(tmp_path):
    space = {"base": {"training": {"epochs": 2}, "model": {"hidden": [16]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "model.hidden": {"choice": [[16], [32, 16]]}}}
    res = tunelab.tune(space, trials=3, storage=_storage(tmp_path), study="s", seed=1)
    trials = res.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        attrs = t.user_attrs
        assert attrs["config"]["optimizer"]["lr"] == pytest.approx(attrs["params"]["optimizer.lr"])
        assert attrs["config"]["model"]["hidden"] in ([16], [32, 16])
        assert len(attrs["history"]) == 2 and set(attrs["history"][0]) >= {"val_accuracy", "train_loss", "lr"}
        assert attrs["seed"] == 0 and attrs["duration_s"] > 0 and "torch" in attrs["versions"]
        assert t.intermediate_values.keys() == {1, 2}
        assert t.value == pytest.approx(attrs["history"][-1]["val_accuracy"])
    assert res.best_config == max(trials, key=lambda t: t.value).user_attrs["config"]
    tunelab.from_dict(res.best_config)  # best config is a valid train config


def test_rerun_continues_up_to_the_total(tmp_path):
    kw = dict(trials=4, storage=_storage(tmp_path), study="c", objective=objectives.quadratic, seed=0)
    tunelab.tune(SPACE, **kw)
    res = tunelab.tune(SPACE, **{**kw, "trials": 7})
    assert len(res.study.get_trials()) == 7
    assert len(tunelab.tune(SPACE, **{**kw, "trials": 7}).study.get_trials()) == 7  # nothing more to do


def test_a_different_space_under_the_same_name_is_refused(tmp_path):
    kw = dict(trials=1, storage=_storage(tmp_path), study="c", objective=objectives.quadratic)
    tunelab.tune(SPACE, **kw)
    other = {"base": SPACE["base"], "space": {"y": {"uniform": [0, 1]}}}
    with pytest.raises(ConfigError, match="already exists with another search space"):
        tunelab.tune(other, **kw)


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband"])
def test_pruners_stop_clearly_bad_trials(tmp_path, pruner):
    space = {"base": {"epochs": 9}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    res = tunelab.tune(space, trials=24, pruner=pruner, storage=_storage(tmp_path), study=pruner,
                       objective=objectives.quadratic, seed=3)
    trials = res.study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(pruned) >= 4, pruner
    best = max(t.value for t in complete)
    # the pruned ones are the bad ones: every pruned trial is worse than the best completed one
    assert all(max(t.intermediate_values.values()) < best for t in pruned)
    # epochs were saved: most pruned trials stopped before the last epoch (asha's top rung is 9)
    assert sum(max(t.intermediate_values) < 9 for t in pruned) >= len(pruned) / 2


def test_failures_are_recorded_and_the_study_goes_on(tmp_path):
    res = tunelab.tune(SPACE, trials=10, storage=_storage(tmp_path), study="f",
                       objective=objectives.raises_when_x_is_small, seed=0)
    trials = res.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 10 and failed
    assert all("ValueError" in t.user_attrs["fail_reason"] and "too small" in t.user_attrs["fail_reason"] for t in failed)


def test_worker_killed_mid_trial_leaves_that_trial_failed(tmp_path):
    res = tunelab.tune(SPACE, trials=10, workers=2, storage=_storage(tmp_path), study="k",
                       objective=objectives.dies_when_x_is_large, seed=0)
    trials = res.study.get_trials()
    dead = [t for t in trials if t.params["x"] > 0.8]
    assert len(trials) == 10 and dead
    assert all(t.state == TrialState.FAIL and "died" in t.user_attrs["fail_reason"] for t in dead)
    assert all(t.state == TrialState.COMPLETE for t in trials if t.params["x"] <= 0.8)


def test_a_hung_worker_fails_its_trial_at_the_trial_timeout_and_the_study_goes_on(tmp_path):
    res = tunelab.tune(SPACE, trials=10, workers=2, storage=_storage(tmp_path), study="h",
                       objective=objectives.hangs_when_x_is_large, seed=0, executor="processes", trial_timeout=4)
    trials = res.study.get_trials()
    hung = [t for t in trials if t.params["x"] > 0.8]
    assert len(trials) == 10 and hung and not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.state == TrialState.FAIL and "timed out" in t.user_attrs["fail_reason"]
               and "--trial-timeout=4 s" in t.user_attrs["fail_reason"] for t in hung)
    assert all(t.state == TrialState.COMPLETE for t in trials if t.params["x"] <= 0.8)


def test_a_trial_timeout_needs_the_process_executor():
    with pytest.raises(ConfigError, match="--trial-timeout needs --executor processes or ray .*got --executor inline"):
        tunelab.tune(SPACE, trials=1, objective=objectives.quadratic, executor="inline", trial_timeout=5)
    with pytest.raises(ConfigError, match=r"--trial-timeout=0 is out of range; allowed: a finite number of seconds > 0"):
        tunelab.tune(SPACE, trials=1, objective=objectives.quadratic, trial_timeout=0)


DRIVER = textwrap.dedent("""
    import sys, tunelab
    from tests.search import objectives
    space = {"base": {"epochs": 4, "sleep": 0.15}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    tunelab.tune(space, trials=int(sys.argv[2]), workers=int(sys.argv[3]), storage=sys.argv[1],
                 study="killed", objective=objectives.quadratic, seed=0)
""")


def _states(storage):
    import sqlalchemy.exc

    try:
        return [t.state for t in optuna.load_study(study_name="killed", storage=storage).get_trials()]
    except KeyError:
        return []
    except sqlalchemy.exc.SQLAlchemyError:  # the driver is creating the schema at this instant
        return []


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_the_driver_then_rerun_loses_nothing(tmp_path, workers):
    storage = _storage(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, storage, "8", str(workers)], cwd=ROOT,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill while a trial runs (not in the instant between two trials)
        states = _states(storage)
        if states.count(TrialState.COMPLETE) >= 3 and TrialState.RUNNING in states:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-trial
    proc.wait()
    before = optuna.load_study(study_name="killed", storage=storage).get_trials()
    completed = {t.number: t.params for t in before if t.state == TrialState.COMPLETE}
    assert len(completed) >= 3 and TrialState.RUNNING in [t.state for t in before]

    subprocess.run([sys.executable, "-c", DRIVER, storage, "8", str(workers)], cwd=ROOT, check=True, timeout=120)
    after = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert not [t for t in after if t.state == TrialState.RUNNING]
    for number, params in completed.items():  # no completed trial lost or rerun
        assert after[number].state == TrialState.COMPLETE and after[number].params == params
    counted = [t for t in after if t.state != TrialState.FAIL or not t.user_attrs.get("requeued")]
    assert len(counted) == 8
    stale = [t for t in after if t.user_attrs.get("requeued")]
    assert stale and all("interrupted" in t.user_attrs["fail_reason"] for t in stale)
    retried = {t.user_attrs.get("retry_of") for t in after} - {None}
    assert retried == {t.number for t in stale}  # each interrupted trial's params ran again


def test_ctrl_c_marks_running_trials_and_a_rerun_finishes(tmp_path):
    storage = _storage(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, storage, "6", "2"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while _states(storage).count(TrialState.COMPLETE) < 1 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: only the driver handles it, workers ignore it
    proc.communicate(timeout=60)
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if "Ctrl-C" in t.user_attrs.get("fail_reason", "")]
    assert interrupted and all(t.user_attrs.get("requeued") for t in interrupted)
    subprocess.run([sys.executable, "-c", DRIVER, storage, "6", "2"], cwd=ROOT, check=True, timeout=120)
    after = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert len([t for t in after if not t.user_attrs.get("requeued")]) == 6


def test_stages_fix_the_best_values_of_earlier_stages(tmp_path):
    space = {"base": {"epochs": 2, "y": 0.5},
             "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]}},
             "stages": [["x"], ["y"]]}
    res = tunelab.tune(space, trials=12, stages=True, storage=_storage(tmp_path), study="st",
                       objective=objectives.two_dims, seed=0)
    first, second = res.studies
    assert first.study_name == "st.stage1" and second.study_name == "st.stage2"
    assert len(first.trials) == 6 and len(second.trials) == 6
    best_x = first.best_trial.params["x"]
    assert all(t.user_attrs["config"]["x"] == pytest.approx(best_x) for t in second.trials)
    assert all(t.user_attrs["config"]["y"] == 0.5 for t in first.trials)  # later stages at base
    assert set(res.best_params) == {"x", "y"} and second.user_attrs["stage"]["fixed"] == {"x": best_x}


def test_continuing_with_another_sampler_is_refused(tmp_path):
    kw = dict(trials=2, storage=_storage(tmp_path), study="s", objective=objectives.quadratic)
    tunelab.tune(SPACE, sampler="random", **kw)
    with pytest.raises(ConfigError, match=r"^sampler='tpe' differs from the 'random' that study 's' was run with"):
        tunelab.tune(SPACE, sampler="tpe", **{**kw, "trials": 3})


def test_a_bad_storage_url_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^storage='foo://bar' cannot be opened"):
        tunelab.tune(SPACE, trials=1, storage="foo://bar", objective=objectives.quadratic)


@pytest.mark.parametrize("workers", [1, 2])
def test_grid_through_the_driver_runs_every_point_once_and_finishes(tmp_path, workers):
    space = {"base": {"epochs": 1, "y": 0}, "space": {"x": {"uniform": [0.0, 1.0], "points": 5},
                                                       "y": {"choice": [0, 1]}}}
    res = tunelab.tune(space, sampler="grid", storage=_storage(tmp_path), study="g", workers=workers,
                       objective=objectives.quadratic, seed=0)  # no --trials: the grid's size
    trials = res.study.get_trials()
    points = sorted((round(t.params["x"], 6), t.user_attrs["config"]["y"]) for t in trials)
    assert points == sorted((x, y) for x in (0.0, 0.25, 0.5, 0.75, 1.0) for y in (0, 1))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert res.best_config["x"] == pytest.approx(0.25)  # nearest grid point to the peak at 0.3


def test_an_interrupt_inside_a_storage_write_ends_the_study_as_an_interrupt(tmp_path):
    """Ctrl-C landing inside SQLAlchemy's flush (a pruner report mid-epoch) must not leave a broken
    session that turns the clean-up into StorageInternalError; the trial in flight is requeued."""
    import sqlalchemy.event
    import sqlalchemy.orm

    import tunelab

    storage = _storage(tmp_path)
    flushes = {"n": 0}

    def interrupt_once(session, context):
        # the 5th per-epoch report: inside fit(), in the middle of a trial
        if any(type(o).__name__ == "TrialIntermediateValueModel" for o in session.new):  # written, not committed
            flushes["n"] += 1
            if flushes["n"] == 5:
                raise KeyboardInterrupt

    space = {"base": {"training": {"epochs": 3, "threads": 1}, "model": {"hidden": [8]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-2]}}}
    sqlalchemy.event.listen(sqlalchemy.orm.Session, "after_flush", interrupt_once)
    try:
        with pytest.raises(KeyboardInterrupt):
            tunelab.tune(space, trials=50, storage=storage, study="cut", seed=0)
    finally:
        sqlalchemy.event.remove(sqlalchemy.orm.Session, "after_flush", interrupt_once)
    assert flushes["n"] >= 5
    trials = optuna.load_study(study_name="cut", storage=storage).get_trials()
    assert trials and not [t for t in trials if t.state == TrialState.RUNNING]
    assert any("interrupted" in t.user_attrs.get("fail_reason", "") for t in trials)


def _commits_per_trial(tmp_path, name, epochs, pruner):
    """Storage commits per trial of a 4-trial study whose trials report ``epochs`` values."""
    import sqlalchemy.event
    import sqlalchemy.orm

    storage, commits = _storage(tmp_path), {"n": 0}
    space = {"base": {"epochs": epochs, "sleep": 0.0}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    tunelab.tune(space, trials=1, storage=storage, study=name, objective=objectives.quadratic, seed=0,
                 pruner=pruner)  # the study exists: what follows is trials only

    def count(session):
        commits["n"] += 1

    sqlalchemy.event.listen(sqlalchemy.orm.Session, "after_commit", count)
    try:
        res = tunelab.tune(space, trials=5, storage=storage, study=name, objective=objectives.quadratic,
                           seed=0, pruner=pruner)
    finally:
        sqlalchemy.event.remove(sqlalchemy.orm.Session, "after_commit", count)
    for t in res.study.get_trials():  # every epoch's value is stored either way
        last = epochs if t.state == TrialState.COMPLETE else t.user_attrs["pruned_at_epoch"]
        value = t.intermediate_values[1]
        assert t.intermediate_values == {e: pytest.approx(value) for e in range(1, last + 1)}
        assert {"config", "params", "seed", "versions", "history", "duration_s", "pid"} <= set(t.user_attrs)
    return commits["n"] / 4


def test_without_a_pruner_a_trial_costs_the_same_commits_whatever_its_epochs(tmp_path):
    """The driver gathers a trial's attributes and epoch values and writes them in one transaction;
    only a pruner, which reads each epoch's value, makes it write every epoch as it comes."""
    short = _commits_per_trial(tmp_path, "short", 1, "none")
    long = _commits_per_trial(tmp_path, "long", 12, "none")
    assert long == short
    pruned = _commits_per_trial(tmp_path, "median", 12, "median")
    assert pruned >= long + 11  # one commit per reported epoch


def test_a_long_trial_writes_its_gathered_epochs_as_it_trains(tmp_path, monkeypatch):
    """Without a pruner, a running trial's epoch values still reach storage every FLUSH_EVERY
    seconds (here: every epoch), so optuna-dashboard shows a long trial's progress."""
    from tunelab.search import study as study_module

    short = _commits_per_trial(tmp_path, "short", 1, "none")
    monkeypatch.setattr(study_module, "FLUSH_EVERY", 0.0)
    assert _commits_per_trial(tmp_path, "live", 12, "none") >= short + 11


def test_write_trial_stores_what_the_per_item_calls_store(tmp_path):
    from tunelab.search.storage import write_trial

    study = optuna.create_study(storage=_storage(tmp_path), study_name="rows")
    a, b = study.ask(), study.ask()
    attrs = {"config": {"optimizer": {"lr": 0.1}}, "history": [{"val_accuracy": 0.5}], "seed": 3}
    values = [(1, 0.25), (2, float("nan")), (3, float("inf")), (4, -1.5)]
    for key, value in attrs.items():
        a.set_user_attr(key, value)
    for step, value in values:
        a.report(value, step)
    write_trial(study, b._trial_id, attrs, values)
    write_trial(study, b._trial_id, {"seed": 4})  # a second write replaces a key, as set_user_attr does
    a.set_user_attr("seed", 4)
    got_a, got_b = (study._storage.get_trial(t._trial_id) for t in (a, b))
    assert got_a.user_attrs == got_b.user_attrs
    assert list(got_a.intermediate_values) == list(got_b.intermediate_values) == [1, 2, 3, 4]
    assert str(got_a.intermediate_values) == str(got_b.intermediate_values)  # nan compares by its text


def test_the_run_says_where_its_time_went(tmp_path):
    res = tunelab.tune({"base": {"epochs": 3, "sleep": 0.02}, "space": {"x": {"uniform": [0.0, 1.0]}}}, trials=4,
                       storage=_storage(tmp_path), study="t", objective=objectives.quadratic, seed=0)
    split, timing = res.progress.split(), res.progress.timing
    assert set(split) == {"ask", "storage", "pruner", "driver", "executor"} and min(split.values()) >= 0
    assert sum(split.values()) == pytest.approx(timing["wall"], rel=1e-6)
    assert split["ask"] > 0 and split["storage"] > 0
    assert split["executor"] >= 4 * 3 * 0.02  # the objective's sleeps are the executor's time


@pytest.mark.parametrize("cut", ["enqueue_trial", "tell"])
def test_a_kill_inside_the_requeue_neither_loses_nor_doubles_the_params(tmp_path, monkeypatch, cut):
    from tunelab.search.study import recover_stale

    study = optuna.create_study(storage=_storage(tmp_path), study_name="rq")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, no live driver
    real = getattr(optuna.Study, cut)
    calls = []

    def killed_once(self, *args, **kwargs):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt("the driver is killed here")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, cut, killed_once)
    with pytest.raises(KeyboardInterrupt):
        recover_stale(study)
    assert recover_stale(study) == [trial.number]  # the next run recovers it
    trials = study.get_trials()
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert trials[0].state == TrialState.FAIL and len(waiting) == 1
    assert waiting[0].user_attrs["retry_of"] == 0 and waiting[0].system_attrs["fixed_params"] == trials[0].params
