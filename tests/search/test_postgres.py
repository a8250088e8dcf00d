"""Studies on PostgreSQL (marker: postgres; CI starts a local server with .ci/postgres-setup.sh)."""

import os
import uuid

import optuna
import pytest
from optuna.trial import TrialState

import tunelab

from . import objectives

pytestmark = pytest.mark.postgres
URL = os.environ.get("TUNELAB_PG_URL")


@pytest.fixture
def storage():
    if not URL:
        pytest.skip("TUNELAB_PG_URL is not set (run: export TUNELAB_PG_URL=$(bash .ci/postgres-setup.sh))")
    return URL


def test_tune_with_workers_on_postgres_and_continue(storage):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    space = {"base": {"epochs": 3}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    kw = dict(storage=storage, study=name, objective=objectives.quadratic, seed=0, pruner="median")
    tunelab.tune(space, trials=6, workers=2, **kw)
    res = tunelab.tune(space, trials=9, workers=2, **kw)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert len(trials) == 9 and res.best_value is not None
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(t.user_attrs["params"]["x"] == t.params["x"] for t in trials)
    optuna.delete_study(study_name=name, storage=storage)


def test_real_training_trial_on_postgres(storage):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    space = {"base": {"training": {"epochs": 2}, "model": {"hidden": [16]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    res = tunelab.tune(space, trials=2, storage=storage, study=name, seed=0)
    t = res.study.get_trials()[0]
    assert t.state == TrialState.COMPLETE and len(t.user_attrs["history"]) == 2
    optuna.delete_study(study_name=name, storage=storage)
