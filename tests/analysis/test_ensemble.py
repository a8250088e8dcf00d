"""Ensembles: voting rules on constructed logits, identical members, member selection, digits."""

import copy
import math

import optuna
import pytest
import torch
from torch import nn

from tunelab.analysis.ensemble import (ensemble_predict, ensemble_report, models_from_configs, pick_top,
                                       run_members, study_members, top_configs, vote)
from tunelab.config import DataConfig
from tunelab.data import load_data
from tunelab.errors import ConfigError


class Fixed(nn.Module):
    """A 'model' whose output for input i (an index) is row i of fixed logits (N, C)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, idx):
        return self.logits[idx]


def fixed_members(probs):
    """Members from probabilities (K, N, C): logits = log p, so softmax gives p back."""
    return [Fixed(torch.as_tensor(p, dtype=torch.float32).log()) for p in probs]


def test_identical_members_predict_exactly_as_one_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 5))
    x = torch.randn(1000, 8)
    single = model(x).argmax(1)
    for method in ("soft", "hard"):
        for members in ([model] * 4, [copy.deepcopy(model) for _ in range(3)]):
            assert torch.equal(ensemble_predict(members, x, method, batch_size=128), single)


def test_hard_voting_takes_the_majority_even_against_the_summed_probability():
    probs = [[[0.98, 0.01, 0.01], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]],
             [[0.45, 0.55, 0.00], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]],
             [[0.45, 0.55, 0.00], [0.1, 0.6, 0.3], [0.2, 0.7, 0.1]]]
    # example 0: votes 0,1,1 -> 1, though class 0 has the larger summed probability (1.88 vs 1.11);
    # example 1: votes 1,2,1 -> 1; example 2: one vote each, sums 0.8, 1.2, 1.0 -> class 1
    members = fixed_members(torch.tensor(probs).clamp_min(1e-9))
    x = torch.arange(3)
    assert ensemble_predict(members, x, "hard").tolist() == [1, 1, 1]
    assert ensemble_predict(members, x, "soft").tolist() == [0, 1, 1]


def test_hard_voting_ties_go_to_the_summed_probability_then_the_lowest_class():
    # dyadic probabilities, so the sums are exact: 4 members, 2 votes each for classes 1 and 2
    two_two = torch.tensor([[[0.0, 0.5, 0.5 - 2**-4]], [[0.0, 0.5, 0.5 - 2**-4]],
                            [[0.0, 0.25, 0.75]], [[0.0, 0.25, 0.75]]]).add(2**-6)
    assert vote(two_two, "hard").tolist() == [2]  # sums: class 2 2.4375, class 1 1.5625
    one_each = torch.tensor([[[0.5, 0.25, 0.25]], [[0.25, 0.5, 0.25]], [[0.25, 0.25, 0.5]]])
    assert vote(one_each, "hard").tolist() == [0]  # equal sums (1.0 each): the lowest class
    assert vote(one_each.flip(2), "hard").tolist() == [0]


def test_soft_and_hard_voting_disagree_where_one_member_is_confident():
    # two members lean to class 0 (0.6), one is sure of class 1 (0.95): hard votes 0,
    # the mean probability of class 1 is (0.4 + 0.4 + 0.95) / 3 = 0.58 > 0.42, so soft says 1
    probs = torch.tensor([[[0.6, 0.4]], [[0.6, 0.4]], [[0.05, 0.95]]])
    members = fixed_members(probs)
    x = torch.tensor([0])
    assert ensemble_predict(members, x, "hard").tolist() == [0]
    assert ensemble_predict(members, x, "soft").tolist() == [1]
    assert vote(probs, "hard").tolist() == [0] and vote(probs, "soft").tolist() == [1]


def test_prediction_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.5), nn.Linear(64, 5)).train()
    x = torch.randn(300, 8)
    first = ensemble_predict([model], x)
    assert model.training
    assert torch.equal(first, ensemble_predict([model], x))  # no dropout draws
    assert torch.equal(first, model.eval()(x).argmax(1))


def test_bad_method_and_no_models_are_config_errors():
    with pytest.raises(ConfigError, match=r"--method='mean' is not allowed; choose one of \['hard', 'soft'\]"):
        ensemble_predict([nn.Linear(2, 2)], torch.zeros(1, 2), "mean")
    with pytest.raises(ConfigError, match="at least one model"):
        ensemble_predict([], torch.zeros(1, 2))


def _study(direction):
    study = optuna.create_study(study_name="demo", direction=direction)
    for number, value in enumerate([0.5, 0.9, 0.7, 0.1]):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": {"n": number}}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"config": {"n": 4}}))
    study.add_trial(optuna.trial.create_trial(value=0.99))  # complete but without a config
    return study


def test_top_configs_respects_the_direction():
    assert top_configs(_study("maximize"), 3) == [{"n": 1}, {"n": 2}, {"n": 0}]
    assert top_configs(_study("minimize"), 2) == [{"n": 3}, {"n": 0}]
    assert [m["label"] for m in study_members(_study("maximize"))] == ["#1", "#2", "#0", "#3"]


@pytest.mark.parametrize("k", [0, 5])
def test_top_out_of_range_names_the_option_the_value_and_the_count(k):
    with pytest.raises(ConfigError) as err:
        top_configs(_study("maximize"), k)
    assert str(err.value) == f"--top={k} is out of range; study 'demo' has 4 usable members; choose 1 to 4"


def test_pick_top_keeps_the_order():
    assert pick_top([{"a": 1}, {"a": 2}, {"a": 3}], 2, "x") == [{"a": 1}, {"a": 2}]


def test_members_must_share_the_data_section():
    configs = [{"training": {"epochs": 1}}, {"data": {"split_seed": 3}, "training": {"epochs": 1}}]
    with pytest.raises(ConfigError, match=r"configs\[1\] has data.split_seed=3 but configs\[0\] has 0; "
                                          r"ensembles need the same data"):
        models_from_configs(configs)


def test_run_members_rejects_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        run_members(tmp_path / "nope")
    with pytest.raises(ConfigError, match="holds no finished run folders"):
        run_members(tmp_path)


def test_an_ensemble_of_three_digits_mlps_beats_the_mean_member():
    # under-trained small MLPs (5 epochs, lr 3e-3) disagree enough for voting to help: over seed
    # triples 0-11 the gain over the mean member is 3-7 points (soft) and 3-5 points (hard)
    configs = [{"model": {"hidden": [32]}, "optimizer": {"lr": 3e-3}, "training": {"epochs": 5, "seed": s}}
               for s in (0, 1, 2)]
    models = models_from_configs(configs)
    data = load_data(DataConfig())
    for method in ("soft", "hard"):
        report = ensemble_report(models, data, method)
        assert report["k"] == 3 and report["method"] == method
        assert report["ensemble_accuracy"] >= report["mean_single"] + 0.01
        best = max(range(3), key=lambda i: report["single_val_accuracies"][i])
        assert report["best_single"] == report["single_accuracies"][best]
        assert report["max_single_test"] == max(report["single_accuracies"])
        assert math.isclose(report["mean_single"], sum(report["single_accuracies"]) / 3)
    again = models_from_configs(configs[:1])[0]  # retraining is deterministic for the seed
    for a, b in zip(again.state_dict().values(), models[0].state_dict().values()):
        assert torch.equal(a, b)


def test_run_members_skip_a_folder_whose_result_still_says_running(tmp_path):
    import json

    import yaml

    for name, status in (("done", "completed"), ("killed", "running")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({"training": {"epochs": 1}}))
        # the killed run's partial result ranks higher: it must still not be picked
        value = 0.99 if status == "running" else 0.9
        (tmp_path / name / "result.json").write_text(json.dumps({"status": status, "val_accuracy": value}))
    assert [m["label"] for m in run_members(tmp_path)] == ["done"]


def test_models_from_configs_reports_each_member_as_it_is_retrained():
    configs = [{"model": {"hidden": [8]}, "training": {"epochs": e, "threads": 1}} for e in (1, 2)]
    seen = []
    models = models_from_configs(configs, on_progress=lambda done, total, info: seen.append((done, total, info)))
    assert len(models) == 2 and [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)]
    assert [info["index"] for _, _, info in seen] == [0, 1]
    assert [info["epochs_run"] for _, _, info in seen] == [1, 2]
    assert all(0 < info["val_accuracy"] <= 1 and info["status"] == "completed" for _, _, info in seen)
