"""tune() habits: in memory unless told, study management (fresh, delete, overrides, timeout),
the pruners' grace period, honest progress counts and resumed seeds."""

import time

import optuna
import pytest
from optuna.trial import TrialState

import tunelab
from tunelab.errors import ConfigError
from tunelab.execute.base import Event
from tunelab.search.pruners import default_grace
from tunelab.search.results import counts, thin_study_note
from tunelab.search.storage import IN_MEMORY, delete_studies
from tunelab.search.study import StudyDriver
from tunelab.search.tune import load_space

from . import objectives

SPACE = {"base": {"epochs": 2, "sleep": 0.0}, "space": {"x": {"uniform": [0.0, 1.0]}}}


def _storage(tmp_path):
    return f"sqlite:///{tmp_path / 'studies.db'}"


def minus_x(config, reporter):
    """Another objective over the same space (best at x = 0, where quadratic is poor)."""
    reporter.report(-config["x"], 1)
    return -config["x"]


def sleepy(config, reporter):
    """Takes longer than the tests' timeouts, whatever the machine's speed."""
    time.sleep(0.3)
    reporter.report(config["x"], 1)
    return config["x"]


# ---------------------------------------------------------------- in memory unless told

def test_tune_keeps_studies_in_memory_unless_given_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = tunelab.tune(SPACE, trials=3, objective=objectives.quadratic, seed=0)
    assert first.storage == IN_MEMORY == "in memory (pass storage= to keep it)"
    assert list(tmp_path.iterdir()) == []  # no tunelab.db beside the user's files
    # the objective changed: a rerun runs its own trials, it does not return the old best
    second = tunelab.tune(SPACE, trials=3, objective=minus_x, seed=0)
    assert len(second.study.trials) == 3 and second.best_value == max(t.value for t in second.study.trials)
    assert second.best_value <= 0 and all(t.value <= 0 for t in second.study.trials)


def test_a_storage_url_keeps_the_study_and_says_so(tmp_path):
    url = _storage(tmp_path)
    res = tunelab.tune(SPACE, trials=2, storage=url, study="kept", objective=objectives.quadratic, seed=0)
    assert res.storage == url
    again = tunelab.tune(SPACE, trials=2, storage=url, study="kept", objective=objectives.quadratic, seed=0)
    assert len(again.study.trials) == 2 and again.progress.at_start == 2  # nothing new to run


def test_an_optuna_storage_object_is_accepted():
    store = optuna.storages.InMemoryStorage()
    tunelab.tune(SPACE, trials=2, storage=store, study="s", objective=objectives.quadratic)
    res = tunelab.tune(SPACE, trials=3, storage=store, study="s", objective=objectives.quadratic)
    assert len(res.study.trials) == 3 and res.storage.startswith("in memory (the storage object")


# ---------------------------------------------------------------- fresh, delete, base changes

def test_a_changed_base_config_is_refused_and_fresh_starts_over(tmp_path):
    space = {"base": {"training": {"epochs": 1}, "model": {"hidden": [8]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    kw = dict(trials=1, storage=_storage(tmp_path), study="b", seed=0, overrides=["training.threads=1"])
    tunelab.tune(space, **kw)
    with pytest.raises(ConfigError, match=r"^study 'b' was run with base training.epochs=1, now 2; "
                                          r"pass fresh=True to start it over"):
        tunelab.tune(space, **{**kw, "overrides": ["training.epochs=2"]})
    tunelab.tune(space, **{**kw, "overrides": ["training.threads=2"]})  # threads change no result
    res = tunelab.tune(space, **{**kw, "overrides": ["training.epochs=2"], "fresh": True})
    assert len(res.study.trials) == 1 and res.study.trials[0].user_attrs["config"]["training"]["epochs"] == 2
    assert res.progress.deleted == 1


def test_fresh_deletes_every_stage_of_a_staged_study(tmp_path):
    space = {"base": {"epochs": 1, "y": 0.5}, "space": {"x": {"uniform": [0, 1]}, "y": {"uniform": [0, 1]}},
             "stages": [["x"], ["y"]]}
    kw = dict(trials=4, stages=True, storage=_storage(tmp_path), study="st", objective=objectives.two_dims, seed=0)
    tunelab.tune(space, **kw)
    res = tunelab.tune(space, **kw, fresh=True)
    assert [len(s.trials) for s in res.studies] == [2, 2] and res.progresses[0].deleted == 4


def test_delete_studies_names_the_known_ones_for_an_unknown_name(tmp_path):
    url = _storage(tmp_path)
    tunelab.tune(SPACE, trials=1, storage=url, study="alpha", objective=objectives.quadratic)
    with pytest.raises(ConfigError, match=r"^study 'alpah' is not in sqlite:///.*; choose one of \['alpha'\] "
                                          r"\(did you mean 'alpha'\?\)$"):
        delete_studies(url, "alpah")
    assert delete_studies(url, "alpha") == [("alpha", 1)]
    assert optuna.get_all_study_names(url) == []


# ---------------------------------------------------------------- arguments, overrides

@pytest.mark.parametrize("kwargs,message", [
    (dict(trials=0), r"^trials=0 is out of range; allowed: a whole number from 1 to 1000000$"),
    (dict(trials=2**63), r"^trials=9223372036854775808 is out of range; allowed: a whole number from 1 to 1000000$"),
    (dict(seed=-1), r"^seed=-1 is out of range; allowed: a whole number from 0 to 4294967295$"),
    (dict(seed=2**32), r"^seed=4294967296 is out of range"),
    (dict(workers=0), r"^workers=0 is out of range"),
    (dict(timeout=0), r"^timeout=0 is out of range; allowed: seconds > 0"),
    (dict(grace_epochs=0), r"^grace_epochs=0 is out of range"),
    (dict(round_size=8), r"^round_size=8 only applies to sampler='coarse-to-fine'; got sampler='random'$"),
    (dict(sampler="bayes"), r"^sampler='bayes' is not known; choose one of"),
    (dict(pruner="early"), r"^pruner='early' is not known; choose one of"),
    (dict(storage=3), r"^storage=3 is not allowed"),
])
def test_library_errors_name_arguments_not_flags(kwargs, message):
    with pytest.raises(ConfigError, match=message) as e:
        tunelab.tune(SPACE, objective=objectives.quadratic, **{"trials": 1, **kwargs})
    assert "--" not in str(e.value)


def test_overrides_set_the_base_config_and_are_checked_at_once():
    space = {"base": {"training": {"epochs": 1}, "model": {"hidden": [8]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    res = tunelab.tune(space, trials=1, seed=0, overrides=["training.threads=1", "model.hidden=[12]"])
    assert res.best_config["model"]["hidden"] == [12] and res.best_config["training"]["threads"] == 1
    for bad, message in [("training.epochs=0", r"^overrides: training.epochs=0 is out of range"),
                         ("optimizer.lr=0.1", r"^overrides: optimizer.lr=0.1 sets a key the space searches"),
                         ("trainin.epochs=3", r"^overrides: .*trainin"),
                         ("training.epochs", r"^overrides: 'training.epochs' must look like key.path=value")]:
        with pytest.raises(ConfigError, match=message):
            tunelab.tune(space, trials=1, overrides=[bad])


# ---------------------------------------------------------------- timeout

@pytest.mark.parametrize("workers", [1, 2])
def test_timeout_stops_asking_and_lets_running_trials_finish(tmp_path, workers):
    res = tunelab.tune(SPACE, trials=50, workers=workers, timeout=1.0, objective=sleepy, seed=0)
    trials = res.study.get_trials()
    assert res.progress.stopped_early == "timeout"
    assert 0 < len(trials) < 50  # each trial outlasts the timeout, so few were asked
    assert all(t.state == TrialState.COMPLETE for t in trials)  # none cut short or left running
    assert res.progress.finished == len(trials)


# ---------------------------------------------------------------- grace period

def test_default_grace_is_a_quarter_of_the_longest_trial_and_at_least_two():
    assert [default_grace(n) for n in (1, 4, 8, 12, 20, 100)] == [2, 2, 2, 3, 5, 25]


@pytest.mark.parametrize("pruner", ["asha", "median", "hyperband"])
@pytest.mark.parametrize("grace", [None, 4])
def test_pruners_never_prune_before_the_grace_epochs(pruner, grace):
    space = {"base": {"epochs": 12}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    res = tunelab.tune(space, trials=24, pruner=pruner, objective=objectives.quadratic, seed=3,
                       grace_epochs=grace)
    first = grace or default_grace(12)  # 3 epochs by default
    pruned = [t for t in res.study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) >= 4, pruner  # the pruner does prune: the grace period is what is tested
    assert min(t.user_attrs["pruned_at_epoch"] for t in pruned) == first
    assert all(sorted(t.intermediate_values)[:first] == list(range(1, first + 1)) for t in pruned)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_a_trial_at_its_last_epoch_is_never_pruned():
    space = load_space({"base": {"training": {"epochs": 2}}, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}})
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    driver = StudyDriver(study, space, ["optimizer.lr"], space.base, target=1)
    spec = next(driver.specs())
    assert driver.on_event(Event(spec.number, "epoch", 1, 0.5, {})) == "prune"
    assert driver.on_event(Event(spec.number, "epoch", 2, 0.6, {})) == "continue"  # its result is kept


# ---------------------------------------------------------------- honest counts

def interrupts_at_large_x(config, reporter):
    if config["x"] > 0.7:
        raise KeyboardInterrupt  # Ctrl-C while this trial runs (inline executor)
    return objectives.raises_when_x_is_small(config, reporter)


def test_ctrl_c_cut_trials_are_counted_as_interrupted_not_failed(tmp_path):
    url, seen = _storage(tmp_path), []
    with pytest.raises(KeyboardInterrupt):
        tunelab.tune(SPACE, trials=30, storage=url, study="i", objective=interrupts_at_large_x, seed=1,
                     on_progress=seen.append)
    p = seen[-1]
    study = optuna.load_study(study_name="i", storage=url)
    genuine = [t for t in study.trials if t.state == TrialState.FAIL and "too small" in t.user_attrs["fail_reason"]]
    cut = [t for t in study.trials if t.state == TrialState.FAIL and "Ctrl-C" in t.user_attrs["fail_reason"]]
    assert len(cut) == 1 and p.interrupted == [cut[0].number]
    assert p.failed == len(genuine)  # the cut trial is not a failure of its parameters
    c = counts(study)
    assert c["fail"] == len(genuine) and c["interrupted"] == 1  # what `studies show` prints


def test_progress_reports_starts_so_running_counts_every_worker(tmp_path):
    seen = []
    space = {"base": {"epochs": 1, "sleep": 0.0}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    tunelab.tune(space, trials=4, workers=2, objective=sleepy, on_progress=lambda p: seen.append(
        (p.event, p.running, p.finished, p.at_start)))
    assert seen[0] == ("start", 0, 0, 0)
    assert max(running for _, running, _, _ in seen) == 2  # both workers' trials show as running
    assert [e for e, *_ in seen].count("finished") == 4 and seen[-1][2] == 4


def test_a_resumed_run_knows_what_storage_held_and_counts_only_its_own_trials(tmp_path):
    url, seen = _storage(tmp_path), []
    kw = dict(storage=url, study="r", objective=objectives.quadratic, seed=0)
    tunelab.tune(SPACE, trials=3, **kw)
    res = tunelab.tune(SPACE, trials=5, **kw, on_progress=lambda p: seen.append((p.event, p.finished_this_run)))
    assert res.progress.at_start == 3 and seen[0] == ("start", 0)
    assert [n for e, n in seen if e == "finished"] == [1, 2]


def test_a_resumed_seeded_study_does_not_propose_its_first_points_again(tmp_path):
    kw = dict(storage=_storage(tmp_path), study="seeded", objective=objectives.quadratic, seed=0)
    tunelab.tune(SPACE, trials=3, **kw)
    res = tunelab.tune(SPACE, trials=6, **kw)
    xs = [round(t.params["x"], 9) for t in res.study.trials]
    assert len(set(xs)) == 6, xs


class _Replay:
    """An executor that plays scripted final events (no training)."""

    def __init__(self, finals):
        self.finals = finals

    def run(self, specs, on_event):
        for spec, final in zip(specs, self.finals):
            on_event(Event(spec.number, "start"))
            on_event(Event(spec.number, final.kind, final.step, final.value, final.metrics, final.error))


def test_a_trial_whose_training_was_interrupted_is_rerun_not_completed():
    space = load_space(SPACE, custom=True)
    study = optuna.create_study(direction="maximize")
    driver = StudyDriver(study, space, ["x"], space.base, target=2)
    finals = [Event(0, "done", 1, 0.5, {"status": "interrupted", "epochs_run": 1}),  # e.g. SIGTERM in a worker
              Event(0, "done", 2, 0.9, {"status": "completed", "epochs_run": 2}),
              Event(0, "done", 2, 0.8, {"status": "completed", "epochs_run": 2})]
    driver.run(_Replay(finals))
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL and study.trials[0].user_attrs["requeued"]
    assert study.trials[1].user_attrs.get("retry_of") == 0  # its parameters ran again
    assert states.count(TrialState.COMPLETE) == 2 and driver.progress.interrupted == [0]
    assert driver.progress.failed == 0


# ---------------------------------------------------------------- thin studies

def test_thin_study_note_names_the_completed_count_and_goes_away_with_enough():
    study = optuna.create_study(direction="maximize")
    for v in (0.5, 0.6, 0.7):
        study.enqueue_trial({})
        study.optimize(lambda t, v=v: v, n_trials=1)
    trial = study.ask()
    study.tell(trial, state=TrialState.PRUNED)
    note = thin_study_note(study)
    assert note.startswith("importance and parallel coordinates rest on only 3 completed trials (1 pruned left out)")
    for v in (0.8, 0.9):
        study.enqueue_trial({})
        study.optimize(lambda t, v=v: v, n_trials=1)
    assert thin_study_note(study) is None
