"""A study's profile: the workers' parts add up to workers x wall, the driver's to its wall; it
is stored with the study and printed by `tunelab tune --profile` and `tunelab studies show`."""

import pytest
import yaml

import tunelab
from tunelab.cli.main import main
from tunelab.execute.base import TrialSpec
from tunelab.execute.trial import execute_trial
from tunelab.search.profile import WORKER_PARTS, profile_lines, study_profile
from tunelab.search.study import Progress

SPACE = {"base": {"training": {"epochs": 3}, "model": {"hidden": [16]}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}


def test_the_profile_arithmetic_on_made_up_records():
    a = Progress(4, workers=2, timing={"wall": 10.0, "in_driver": 2.0, "ask": 0.5, "storage": 1.0, "pruner": 0.25},
                 work={"train": 10.0, "eval": 2.0, "data": 1.0, "trials": 16.0, "epochs": 12},
                 executor={"process_start": 1.5})
    b = Progress(2, workers=1, timing={"wall": 5.0, "in_driver": 1.0}, work={"train": 3.0, "trials": 4.0, "epochs": 3})
    prof = study_profile([a, b])
    w = prof["workers"]
    assert prof["wall_s"] == 15.0 and prof["worker_seconds"] == pytest.approx(25.0)  # 2 x 10 + 1 x 5
    assert w["train"] == 13.0 and w["process_start"] == 1.5
    assert w["handoff"] == pytest.approx(20.0 - 16.0 - 1.5)  # trial time the parts and starts leave
    assert w["idle"] == pytest.approx(25.0 - 20.0)
    d = prof["driver"]
    assert d == pytest.approx({"ask": 0.5, "storage": 1.0, "pruner": 0.25, "driver": 1.25, "waiting": 12.0})
    assert sum(d.values()) == pytest.approx(prof["wall_s"]) and prof["epochs"] == 15
    assert prof["floor_s"] == pytest.approx((13.0 + 2.0) / 2)  # training and evaluation over the 2 workers


def test_a_trial_reports_its_parts():
    ev = execute_trial(TrialSpec(0, {"training": {"epochs": 2}, "model": {"hidden": [8]}}), lambda s, v, m: False)
    timing = ev.metrics["timing"]
    assert {"data", "model", "train", "eval", "callback"} <= set(timing)
    assert timing["train"] > 0 and timing["train"] <= sum(h["seconds"] for h in ev.metrics["history"])


@pytest.mark.parametrize("executor,workers", [("inline", 1), ("processes", 2)])
def test_a_tune_stores_a_profile_whose_parts_add_up(tmp_path, executor, workers):
    res = tunelab.tune(SPACE, trials=4, workers=workers, executor=executor, pruner="asha", seed=0,
                       storage=f"sqlite:///{tmp_path}/s.db", study="p")
    prof = res.profile
    w = prof["workers"]
    assert prof["workers_at_once"] == workers and prof["trials"] == 4
    assert prof["epochs"] == sum(len(t.intermediate_values) for t in res.study.trials)
    assert w["train"] > 0 and w["eval"] > 0
    assert sum(w.values()) == pytest.approx(workers * prof["wall_s"], rel=1e-6)
    assert sum(prof["driver"].values()) == pytest.approx(prof["wall_s"], rel=1e-6)
    assert (w["process_start"] > 0) == (executor == "processes")  # inline starts no process
    stored = res.study.user_attrs["profile"]
    assert stored["trials"] == 4 and set(stored["workers"]) == set(WORKER_PARTS) | {"process_start", "handoff", "idle"}


def test_cli_profile_is_printed_and_shown_again_by_studies_show(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    assert main(["tune", "space.yaml", "--trials", "3", "--seed", "0", "--profile", "--executor", "inline"]) == 0
    out = capsys.readouterr().out
    assert "where the workers' time went" in out and "training" in out and "sampler (ask)" in out
    assert "compute floor (training and evaluation alone, over the workers)" in out
    assert "after the search: leaderboard and best.yaml" in out
    assert main(["studies", "show", "space"]) == 0
    out = capsys.readouterr().out
    assert "last run's profile:" in out and "idle (no trial to run)" in out
    assert main(["tune", "space.yaml", "--trials", "4", "--seed", "0"]) == 0  # no --profile: not printed
    assert "where the workers' time went" not in capsys.readouterr().out


def test_profile_lines_show_each_part_with_its_share():
    p = Progress(1, timing={"wall": 4.0, "in_driver": 1.0}, work={"train": 2.0, "trials": 3.0, "epochs": 2})
    lines = profile_lines(study_profile([p]))
    train = next(line for line in lines if line.strip().startswith("training"))
    assert "2.00 s" in train and "50.0%" in train


def test_a_population_run_shows_no_made_up_per_worker_parts():
    # 8 trials trained together in one worker for 10 s: their times add up to 8x the capacity
    p = Progress(8, workers=1, timing={"wall": 10.0, "in_driver": 1.0}, work={"trials": 80.0, "epochs": 16})
    prof = study_profile([p])
    assert prof["workers"] == {} and prof["floor_s"] == 0.0
    assert any("not measured: the trials trained together" in line for line in profile_lines(prof))
