"""Studies open in optuna-dashboard as they are: the dashboard's own API serves them.

Both studies live in one storage: the dashboard caches by study id within a process.
"""

import io
import json

import pytest

import tunelab

optuna_dashboard = pytest.importorskip("optuna_dashboard")


def _get(app, path):
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http"}
    status = {}
    body = b"".join(app(env, lambda s, headers, exc_info=None: status.setdefault("s", s)))
    assert status["s"].startswith("200"), (path, status["s"], body[:200])
    return json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tunelab.analysis.designs import one_at_a_time
    from tunelab.config import from_dict, to_dict
    from tunelab.search.compare import run_compare

    storage = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'studies.db'}"
    space = {"base": {"training": {"epochs": 2}, "model": {"hidden": [16]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]},
                       "model.hidden": {"choice": [[16], [32, 16]]}}}
    tunelab.tune(space, trials=4, storage=storage, study="dash", seed=0)
    base = to_dict(from_dict({"training": {"epochs": 1}, "model": {"hidden": [16]}}))
    arms = one_at_a_time(base, [("model.dropout", [0.0, 0.3])])
    compare = run_compare(base, arms, [0, 1], name="c", storage=storage)
    app = optuna_dashboard.wsgi(storage)
    ids = {s["study_name"]: s["study_id"] for s in _get(app, "/api/studies")["study_summaries"]}
    return app, ids, compare, arms


def test_a_tune_study_is_served_by_optuna_dashboard(served):
    app, ids, _, _ = served
    study = _get(app, f"/api/studies/{ids['dash']}")
    assert len(study["trials"]) == 4
    trial = study["trials"][0]
    assert trial["state"] == "Complete" and len(trial["intermediate_values"]) == 2
    assert {p["name"] for p in trial["params"]} == {"optimizer.lr", "model.hidden"}
    assert {a["key"] for a in trial["user_attrs"]} >= {"config", "history", "seed", "duration_s", "versions"}
    importances = _get(app, f"/api/studies/{ids['dash']}/param_importances")["param_importances"][0]
    assert {p["name"] for p in importances} == {"optimizer.lr", "model.hidden"}


def test_a_compare_shows_its_arms_and_seeds_as_parameters(served):
    app, ids, compare, arms = served
    trials = compare.get_trials()
    pairs = sorted((t.params["arm"], t.params["seed"]) for t in trials)
    assert pairs == [("baseline", 0), ("baseline", 1), ("model.dropout=0.3", 0), ("model.dropout=0.3", 1)]
    assert all(t.params["arm"] == arms[t.user_attrs["arm"]].name for t in trials)
    assert all(t.params["seed"] == t.user_attrs["seed"] for t in trials)
    importances = _get(app, f"/api/studies/{ids['compare:c']}/param_importances")["param_importances"][0]
    assert {p["name"] for p in importances} == {"arm", "seed"}
