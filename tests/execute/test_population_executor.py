"""The population executor inside studies: the same trials and values as the inline executor (a
seeded random sampler asks the same parameters), prune decisions reach single members, what the
population cannot stack runs one by one, compare runs, and one-line errors for bad options."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.execute import make_executor
from tunelab.execute.base import TrialSpec
from tunelab.execute.population import PopulationExecutor

SPACE = {"base": {"data": {"name": "digits"}, "model": {"hidden": [32]},
                  "training": {"epochs": 3, "batch_size": 64, "threads": 1}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "model.dropout": {"uniform": [0.0, 0.4]},
                   "optimizer.name": {"choice": ["sgd", "adam"]}}}
ONE_EXAMPLE = 1 / 144 + 1e-9  # digits' validation set has 144 examples


def _values(result):
    return {t.number: (t.params, t.value, t.state.name) for t in result.study.trials}


def test_a_population_study_gives_the_inline_study_trial_for_trial():
    inline = tunelab.tune(SPACE, trials=6, seed=3, executor="inline")
    population = tunelab.tune(SPACE, trials=6, seed=3, executor="population", population_size=6)
    a, b = _values(inline), _values(population)
    assert sorted(a) == sorted(b) == list(range(6))
    for n in a:
        assert a[n][0] == b[n][0]  # the same parameters asked
        assert a[n][2] == b[n][2] == "COMPLETE"
        assert b[n][1] == pytest.approx(a[n][1], abs=ONE_EXAMPLE)
    # the stored histories agree epoch by epoch
    for ta, tb in zip(inline.study.trials, population.study.trials):
        la = [h["val_loss"] for h in ta.user_attrs["history"]]
        lb = [h["val_loss"] for h in tb.user_attrs["history"]]
        assert lb == pytest.approx(la, rel=1e-4, abs=1e-5)
    # both optimizers were asked: the population ran two buckets
    assert {p["optimizer.name"] for p, _, _ in b.values()} == {"sgd", "adam"}


def test_prune_decisions_stop_single_members_and_nothing_stays_running():
    space = {**SPACE, "base": {**SPACE["base"], "training": {**SPACE["base"]["training"], "epochs": 6}}}
    result = tunelab.tune(space, trials=12, seed=1, pruner="median", grace_epochs=2, executor="population",
                          population_size=12)
    states = [t.state for t in result.study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    pruned = [t for t in result.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in result.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and complete  # the median pruner stopped some members; the rest ran on
    assert all(len(t.user_attrs["history"]) == 6 for t in complete)
    assert all(len(t.user_attrs["history"]) < 6 for t in pruned)


def _objective(config, reporter):
    reporter.report(0.5, step=1)
    return 0.5


def test_what_cannot_be_stacked_runs_one_by_one_and_a_bucket_of_one_still_runs():
    specs = [TrialSpec(0, {"model": {"name": "cnn", "channels": [4], "hidden": []}, "training": {"epochs": 1, "threads": 1}}),
             TrialSpec(1, {}, fn=_objective),
             TrialSpec(2, {"model": {"hidden": [8]}, "training": {"epochs": 1, "threads": 1}})]
    seen = []
    PopulationExecutor(8).run(iter(specs), lambda ev: seen.append((ev.number, ev.kind)) and None)
    assert sorted(k for n, k in seen if k in ("done", "failed", "pruned")) == ["done", "done", "done"]
    assert {n for n, k in seen if k == "done"} == {0, 1, 2}


def test_a_bucket_that_cannot_start_fails_its_trials_with_the_reason():
    specs = [TrialSpec(i, {"model": {"hidden": [8]}, "augment": {"translate": 20},
                           "training": {"epochs": 1, "threads": 1}}) for i in range(2)]
    events = []
    PopulationExecutor(4).run(iter(specs), lambda ev: events.append(ev) and None)
    failed = [e for e in events if e.kind == "failed"]
    assert [e.number for e in failed] == [0, 1] and "augment.translate" in failed[0].error


def test_a_compare_on_the_population_counts_every_run_once(tmp_path):
    from tunelab.analysis.designs import one_at_a_time
    from tunelab.analysis.compare import collect_runs
    from tunelab.search.compare import run_compare

    base = {"data": {"name": "digits"}, "model": {"hidden": [16]}, "optimizer": {"lr": 0.01},
            "training": {"epochs": 3, "threads": 1}}
    arms = one_at_a_time(base, [("model.dropout", [0.3])])
    study = run_compare(base, arms, [0, 1, 2], name="pop", storage=f"sqlite:///{tmp_path}/c.db",
                        executor="population", population_size=8)
    runs = collect_runs(study)
    assert sorted((r["arm"], r["seed"]) for r in runs) == [(a, s) for a in range(2) for s in range(3)]
    assert all(r["result"]["test_accuracy"] > 0.5 for r in runs)  # compare runs read the test set
    # each run equals the reference trainer's run of its (arm, seed)
    ref = tunelab.train({**base, "model": {"hidden": [16], "dropout": 0.3}, "training": {"epochs": 3, "threads": 1, "seed": 2}},
                        save=False)
    run = next(r for r in runs if (r["arm"], r["seed"]) == (1, 2))
    assert run["result"]["test_accuracy"] == pytest.approx(ref.test_accuracy, abs=1 / 359 + 1e-9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(workers=1, executor="swarm"), r"^--executor='swarm' is not known; choose one of \['auto', 'inline', "),
    (dict(workers=1, executor="inline", population_size=4), r"^--population-size=4 needs --executor population or ray"),
    (dict(workers=1, executor="population", population_size=0), r"^--population-size=0 is out of range"),
])
def test_bad_executor_options_are_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_executor(**kwargs)


def test_cli_tune_runs_on_the_population_and_refuses_bad_options(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    code = main(["tune", "space.yaml", "--trials", "4", "--executor", "population", "--population-size", "4",
                 "--storage", f"sqlite:///{tmp_path}/t.db"])
    assert code == 0
    code = main(["tune", "space.yaml", "--trials", "4", "--executor", "inline", "--population-size", "4",
                 "--study", "other", "--storage", f"sqlite:///{tmp_path}/t.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--population-size=4 needs --executor population" in err[0]


def test_two_worker_processes_give_the_inline_study_trial_for_trial():
    inline = tunelab.tune(SPACE, trials=6, seed=5, executor="inline")
    parallel = tunelab.tune(SPACE, trials=6, seed=5, executor="population", population_size=6, workers=2)
    a, b = _values(inline), _values(parallel)
    assert sorted(a) == sorted(b) == list(range(6))
    for n in a:
        assert a[n][0] == b[n][0] and a[n][2] == b[n][2] == "COMPLETE"
        assert b[n][1] == pytest.approx(a[n][1], abs=ONE_EXAMPLE)
    pids = {t.user_attrs["pid"] for t in parallel.study.trials}
    assert len(pids) == 2 and os.getpid() not in pids  # two populations, each in its own worker


def test_a_dead_worker_fails_its_members_and_the_others_finish():
    specs = [TrialSpec(i, {"model": {"hidden": [16]}, "optimizer": {"lr": 0.01},
                           "training": {"epochs": 4, "threads": 1, "seed": i}}) for i in range(4)]
    events = []
    killed = {}

    def on_event(ev):
        events.append(ev)
        if ev.kind == "start" and not killed:
            killed["pid"], killed["number"] = ev.metrics["pid"], ev.number
        if ev.kind == "epoch" and ev.number == killed.get("number") and ev.step == 2:
            os.kill(killed["pid"], signal.SIGKILL)
        return "continue"

    with PopulationExecutor(4, workers=2) as ex:
        ex.run(iter(specs), on_event)
        assert ex.running() == []
    finals = {e.number: e for e in events if e.kind in ("done", "failed", "pruned")}
    assert sorted(finals) == [0, 1, 2, 3]
    dead = [n for n, e in finals.items() if e.kind == "failed"]
    assert killed["number"] in dead and all("worker process died" in finals[n].error for n in dead)
    assert len(dead) == 2 and all(finals[n].kind == "done" for n in finals if n not in dead)


POP_DRIVER = """
import sys, tunelab
space = {"base": {"data": {"name": "digits"}, "model": {"hidden": [32]},
                  "training": {"epochs": 30, "batch_size": 32, "threads": 1}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
tunelab.tune(space, trials=int(sys.argv[2]), storage=sys.argv[1], study="pop", seed=0,
             executor="population", population_size=4, workers=int(sys.argv[3]))
"""


def _pop_states(storage):
    try:
        return [t.state for t in optuna.load_study(study_name="pop", storage=storage).get_trials()]
    except KeyError:  # not created yet
        return []


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_in_a_population_study_leaves_nothing_running_and_a_rerun_finishes(tmp_path, workers):
    import subprocess
    import sys
    import time

    storage = f"sqlite:///{tmp_path}/p.db"
    proc = subprocess.Popen([sys.executable, "-c", POP_DRIVER, storage, "8", str(workers)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # interrupt while the first population trains
        trials = optuna.load_study(study_name="pop", storage=storage).get_trials() if _pop_states(storage) else []
        if any(t.intermediate_values for t in trials):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    trials = optuna.load_study(study_name="pop", storage=storage).get_trials()
    assert trials and optuna.trial.TrialState.RUNNING not in [t.state for t in trials]
    assert all(t.user_attrs.get("requeued") for t in trials if t.state == optuna.trial.TrialState.FAIL)
    subprocess.run([sys.executable, "-c", POP_DRIVER, storage, "8", str(workers)], check=True, timeout=300,
                   capture_output=True)
    after = optuna.load_study(study_name="pop", storage=storage).get_trials()
    done = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 8 and optuna.trial.TrialState.RUNNING not in [t.state for t in after]


def test_coarse_to_fine_on_the_population_trains_one_round_at_a_time():
    from tunelab.search.coarse_to_fine import stored_rounds

    space = {**SPACE, "space": {"optimizer.lr": {"log_uniform": [1e-4, 1.0]}}}
    result = tunelab.tune(space, sampler="coarse-to-fine", trials=16, round_size=8, seed=0,
                          executor="population", population_size=32)
    rounds = stored_rounds(result.study)
    assert len(rounds) == 2
    lo0, hi0 = rounds[0]["optimizer.lr"]["log_uniform"]
    lo1, hi1 = rounds[1]["optimizer.lr"]["log_uniform"]
    assert hi1 / lo1 < hi0 / lo0 / 10  # round 1 was narrowed from round 0's results
    assert all(t.state.name == "COMPLETE" for t in result.study.trials)


@pytest.mark.parametrize("kwargs, base, expected", [
    (dict(), {}, True),                                   # a small MLP on digits, random sampler
    (dict(workers=2), {}, True),                          # one population per worker
    (dict(sampler="tpe"), {}, True),                      # TPE: the refilled population was faster
    (dict(sampler="gp"), {}, False),                      # not measured on the population
    (dict(executor="inline"), {}, False),
    (dict(), {"model": {"hidden": [512, 512]}}, False),   # members too big: processes win on a CPU
])
def test_auto_picks_the_population_where_it_was_measured_faster(kwargs, base, expected, monkeypatch):
    import tunelab.execute.population as population

    made = []
    real = population.PopulationExecutor.__init__

    def spy(self, *args, **kw):
        made.append(True)
        real(self, *args, **kw)

    monkeypatch.setattr(population.PopulationExecutor, "__init__", spy)
    space = {**SPACE, "base": {**SPACE["base"], **base, "training": {"epochs": 1, "threads": 1}}}
    result = tunelab.tune(space, trials=2, seed=0, **kwargs)
    assert bool(made) is expected and all(t.state.name == "COMPLETE" for t in result.study.trials)


def test_ctrl_c_while_the_driver_writes_the_last_result_still_stops_the_study():
    """An interrupt inside the driver's write of the population's last final event must not be
    swallowed (train_population catches Ctrl-C to end its members as interrupted)."""
    specs = [TrialSpec(i, {"model": {"hidden": [8]}, "training": {"epochs": 1, "threads": 1, "seed": i}})
             for i in range(3)]
    finals = []

    def on_event(ev):
        if ev.kind in ("done", "failed", "pruned"):
            finals.append(ev.number)
            if len(finals) == 3:
                raise KeyboardInterrupt  # as SQLite's "interrupted" would be turned into
        return None

    ex = PopulationExecutor(4)
    with pytest.raises(KeyboardInterrupt):
        ex.run(iter(specs + [TrialSpec(9, {"training": {"epochs": 1}})]), on_event)
    # the one whose write was cut is still in flight, and so is 9 (asked, of another bucket: waiting)
    assert finals == [0, 1, 2] and ex.running() == [2, 9]


# ---------------------------------------------------------------- refill

def _specs(epochs, batch_sizes=None):
    batch_sizes = batch_sizes or [64] * len(epochs)
    return [TrialSpec(i, {"data": {"name": "digits"}, "model": {"hidden": [16]},
                          "training": {"epochs": e, "batch_size": b, "threads": 1, "seed": i}})
            for i, (e, b) in enumerate(zip(epochs, batch_sizes))]


def test_a_pruned_members_slot_is_taken_by_a_new_trial_at_the_next_epoch_boundary():
    seen = []

    def on_event(ev):
        seen.append((ev.number, ev.kind, ev.step))
        return "prune" if (ev.number, ev.kind, ev.step) == (0, "epoch", 1) else None

    executor = PopulationExecutor(2)
    executor.run(iter(_specs([4, 4, 3])), on_event)
    finals = [(n, kind) for n, kind, _ in seen if kind in ("done", "pruned", "failed")]
    assert sorted(finals) == [(0, "pruned"), (1, "done"), (2, "done")]
    order = [(n, kind, step) for n, kind, step in seen]
    joined = order.index((2, "start", 0))
    assert order.index((0, "pruned", 1)) < joined < order.index((1, "epoch", 2))  # the next epoch boundary
    assert [s for n, k, s in seen if n == 2 and k == "epoch"] == [1, 2, 3]  # its own epochs from 1
    assert executor.timing["refilled"] == 1 and executor.timing["occupancy"] == 1.0  # full until the end... of 2
    assert executor.running() == []


def test_asked_trials_of_another_bucket_wait_for_their_own_stack_and_each_runs_once():
    seen = []
    executor = PopulationExecutor(2)
    executor.run(iter(_specs([2, 1, 2, 1, 1, 2], [64, 32, 64, 32, 64, 32])), lambda ev: seen.append(ev) and None)
    finals = sorted(ev.number for ev in seen if ev.kind in ("done", "pruned", "failed"))
    starts = sorted(ev.number for ev in seen if ev.kind == "start")
    assert finals == starts == list(range(6))  # every trial started and finished exactly once
    assert all(ev.kind == "done" for ev in seen if ev.kind in ("done", "pruned", "failed"))
    assert executor.running() == [] and executor.timing["refilled"] >= 1


def test_tpe_with_asha_runs_on_the_population_and_keeps_the_stack_full():
    space = {**SPACE, "base": {**SPACE["base"], "training": {**SPACE["base"]["training"], "epochs": 6}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "model.dropout": {"uniform": [0.0, 0.4]}}}
    result = tunelab.tune(space, sampler="tpe", pruner="asha", trials=16, seed=0, executor="population",
                          population_size=4)
    states = [t.state.name for t in result.study.trials]
    assert len(states) == 16 and "RUNNING" not in states and "PRUNED" in states
    timing = result.progress.executor
    assert timing["refilled"] == 12  # every slot a trial left was taken by a new one
    assert timing["occupancy"] > 0.7


REFILL_DRIVER = """
import sys, tunelab
space = {"base": {"data": {"name": "digits"}, "model": {"hidden": [32]},
                  "training": {"batch_size": 32, "threads": 1}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "training.epochs": {"int": [4, 40]}}}
tunelab.tune(space, trials=int(sys.argv[2]), storage=sys.argv[1], study="pop", seed=0,
             executor="population", population_size=3)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_a_driver_stopped_mid_refill_loses_no_trial_and_runs_none_twice(tmp_path, how):
    """Stopped once a refilled member trains (Ctrl-C, or killed outright), then run again: the study
    ends with its 9 trials complete; each interrupted trial was requeued once and rerun once."""
    import subprocess
    import sys
    import time

    storage = f"sqlite:///{tmp_path}/p.db"
    proc = subprocess.Popen([sys.executable, "-c", REFILL_DRIVER, storage, "9"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # a trial beyond the first stack of 3 has started training: a refill
        trials = optuna.load_study(study_name="pop", storage=storage).get_trials() if _pop_states(storage) else []
        if any(t.number >= 3 and t.intermediate_values for t in trials):
            break
        time.sleep(0.05)
    else:
        pytest.fail("no refilled trial trained within 120 s")
    proc.send_signal(how)
    proc.communicate(timeout=60)
    subprocess.run([sys.executable, "-c", REFILL_DRIVER, storage, "9"], check=True, timeout=300, capture_output=True)
    after = optuna.load_study(study_name="pop", storage=storage).get_trials()
    done = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    cut = [t for t in after if t.state == optuna.trial.TrialState.FAIL]
    assert len(done) == 9 and optuna.trial.TrialState.RUNNING not in [t.state for t in after]
    assert cut and all(t.user_attrs.get("requeued") for t in cut)  # the stop cut trials, none failed
    retries = [t.user_attrs["retry_of"] for t in after if "retry_of" in t.user_attrs]
    assert sorted(retries) == sorted(t.number for t in cut)  # each cut trial asked again exactly once
    assert len(after) == 9 + len(cut)


def test_stacks_in_worker_processes_refill_through_their_pipes():
    space = {"base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "training": {"batch_size": 64, "threads": 1}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "training.epochs": {"int": [1, 6]}}}
    result = tunelab.tune(space, trials=10, seed=0, executor="population", population_size=4, workers=2)
    assert [t.state.name for t in result.study.trials].count("COMPLETE") == 10 and len(result.study.trials) == 10
    timing = result.progress.executor
    assert timing["refilled"] == 6  # 4 slots (2 per worker) started; each of the other 6 took a freed one
    assert 0 < timing["occupancy"] <= 1
