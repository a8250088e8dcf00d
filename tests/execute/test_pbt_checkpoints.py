"""Population-based training on worker processes through run-folder checkpoints: a copy is a fork of
the better member's checkpoint with explored values; a member never copied trains exactly as a lone
run (stopping and resuming at each round changes nothing); every member reports its own history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

import tunelab
from tunelab.config import from_dict
from tunelab.errors import ConfigError
from tunelab.execute.base import TrialSpec
from tunelab.execute.pbt_checkpoints import _exploit_explore, _Member, _segment
from tunelab.population.pbt import PBTConfig
from tunelab.search.distributions import parse_dist
from tunelab.trainer import state as run_state

BASE = {"data": {"name": "digits"}, "model": {"hidden": [16]}, "optimizer": {"name": "momentum"},
        "training": {"epochs": 6, "threads": 1, "batch_size": 64}}
SPACE = {"base": BASE, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]}}}


def _member(tmp_path: Path, i: int, lr: float, stop_at: int) -> _Member:
    config = {**BASE, "optimizer": {"name": "momentum", "lr": lr}}
    m = _Member(TrialSpec(i, config), from_dict(config), index=i, folder=tmp_path / f"m{i}")
    result = _segment(str(m.folder), config, stop_at, False)
    assert result.status == "stopped" and result.epochs_run == stop_at
    m.started, m.history = True, list(result.history)
    return m


def test_a_copy_is_the_better_members_checkpoint_with_explored_values(tmp_path):
    weak, strong = _member(tmp_path, 0, 1e-3, 2), _member(tmp_path, 1, 0.1, 2)
    weak.history[-1]["val_accuracy"], strong.history[-1]["val_accuracy"] = 0.1, 0.9  # who is better
    pbt = PBTConfig({"optimizer.lr": parse_dist("optimizer.lr", {"log_uniform": [1e-3, 1.0]})}, interval=2,
                    resample=0.0, factors=(1.2,))
    _exploit_explore([weak, strong], [weak, strong], pbt, np.random.default_rng(0), tmp_path, 1)
    assert weak.folder != tmp_path / "m0" and strong.folder == tmp_path / "m1"
    copied, source = (run_state.load(f / "checkpoints" / "last.pt") for f in (weak.folder, strong.folder))
    for key, tensor in source["model"].items():  # the weights, exactly
        assert torch.equal(copied["model"][key], tensor), key
    assert str(copied["optimizer"]) == str(source["optimizer"])  # momentum buffers and all
    assert copied["state"]["epoch"] == source["state"]["epoch"] == 2
    assert weak.cfg.optimizer.lr == pytest.approx(0.12)  # the source's lr explored: x1.2
    assert weak.lineage == [{"kind": "pbt", "epoch": 2, "from": 1, "from_trial": 1, "score": 0.1,
                             "from_score": 0.9, "values": {"optimizer.lr": pytest.approx(0.12)}}]
    # the copy resumes from the checkpoint with its new lr
    result = _segment(str(weak.folder), None, None, False)
    assert result.status == "completed" and [r["lr"] for r in result.history[2:]] == [pytest.approx(0.12)] * 4


def test_pbt_on_processes_runs_the_study_and_members_keep_their_own_story(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    res = tunelab.tune(SPACE, trials=4, sampler="pbt", interval=2, executor="processes", workers=2, seed=0,
                       storage=storage, study="pbt")
    trials = res.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    copies = [(t, e) for t in trials for e in t.user_attrs["result"].get("pbt", [])]
    assert len(copies) == 2  # rounds end at epochs 2 and 4; a quarter of 4 members copies each time
    for t, e in copies:
        history = t.user_attrs["history"]
        assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
        assert e["from_trial"] in {u.number for u in trials} - {t.number} and e["epoch"] in (2, 4)
        after = history[e["epoch"]]  # the first epoch trained from the copy: the explored lr
        assert after["lr"] == pytest.approx(e["values"]["optimizer.lr"])
    assert {t.number for t, _ in copies} != {t.number for t in trials}
    # a member never copied trained exactly as a lone run (its rounds stop and resume bit for bit)
    alone = next(t for t in trials if not t.user_attrs["result"].get("pbt"))
    lone = tunelab.train(alone.user_attrs["config"], save=False)
    assert [r["val_loss"] for r in alone.user_attrs["history"]] == [r["val_loss"] for r in lone.history]
    assert alone.value == pytest.approx(lone.history[-1]["val_accuracy"])


@pytest.mark.parametrize("kwargs, match", [
    ({"executor": "processes", "population_size": 4}, "population_size=4 needs executor='population'"),
    ({"executor": "inline"}, "executor='inline' does not go with sampler='pbt'"),
    ({"executor": "population", "workers": 2}, "workers=2 does not go with sampler='pbt'"),
])
def test_pbt_refuses_what_it_cannot_do_in_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        tunelab.tune(SPACE, trials=4, sampler="pbt", **kwargs)
    assert "\n" not in str(e.value)


def test_a_member_whose_config_is_refused_fails_alone(tmp_path):
    from tunelab.execute.pbt_checkpoints import CheckpointPBTExecutor

    events = []
    pbt = PBTConfig({}, interval=2)
    bad = TrialSpec(0, {**BASE, "model": {"hidden": [16], "activation": "nope"}})
    CheckpointPBTExecutor(1, pbt).run(iter([bad]), events.append)
    assert [e.kind for e in events] == ["failed"] and "model.activation" in events[0].error
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_cli_runs_pbt_on_processes_and_best_yaml_says_what_the_best_member_copied(tmp_path, capsys,
                                                                                      monkeypatch):
    import yaml

    from tunelab.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SPACE))
    code = main(["tune", "s.yaml", "--sampler", "pbt", "--interval", "2", "--trials", "4", "--executor",
                 "processes", "--workers", "2", "--seed", "2"])  # seed 2: the best member made a copy
    out = capsys.readouterr().out
    assert code == 0, out
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'tunelab.db'}")
    best = study.best_trial
    copies = best.user_attrs["result"].get("pbt") or []
    text = (tmp_path / "runs" / "s" / "best.yaml").read_text()
    assert yaml.safe_load(text) == best.user_attrs["config"]  # the values it started with
    for c in copies:
        assert f"at epoch {c['epoch']} it copied trial #{c['from_trial']}" in text
    assert ("its hyperparameters changed while it trained" in text) == bool(copies)
    assert ("copied" in out.splitlines()[-1]) == bool(copies)
