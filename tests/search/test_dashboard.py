"""A tune study opens in optuna-dashboard as it is: the dashboard's own API serves it."""

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
    return status["s"], json.loads(body)


def test_a_tune_study_is_served_by_optuna_dashboard(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    space = {"base": {"training": {"epochs": 2}, "model": {"hidden": [16]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]},
                       "model.hidden": {"choice": [[16], [32, 16]]}}}
    tunelab.tune(space, trials=4, storage=storage, study="dash", seed=0)
    app = optuna_dashboard.wsgi(storage)

    status, summaries = _get(app, "/api/studies")
    assert status.startswith("200") and [s["study_name"] for s in summaries["study_summaries"]] == ["dash"]
    study_id = summaries["study_summaries"][0]["study_id"]
    status, study = _get(app, f"/api/studies/{study_id}")
    assert status.startswith("200") and len(study["trials"]) == 4
    trial = study["trials"][0]
    assert trial["state"] == "Complete" and len(trial["intermediate_values"]) == 2
    assert {p["name"] for p in trial["params"]} == {"optimizer.lr", "model.hidden"}
    assert {a["key"] for a in trial["user_attrs"]} >= {"config", "history", "seed", "duration_s", "versions"}
    status, importances = _get(app, f"/api/studies/{study_id}/param_importances")
    assert status.startswith("200") and {p["name"] for p in importances["param_importances"][0]} == {
        "optimizer.lr", "model.hidden"}
