"""Evaluation-mode training metrics, a budget of optimizer steps, and runs without a validation set.

- ``train_eval_*`` equal a hand-written evaluation pass (dropout off, batch norm in inference mode)
  over the training set or its fixed subset; the running ``train_*`` averages keep their names.
- ``training.steps`` runs exactly that many updates, in the data order a hand-written loop draws
  (one permutation per pass over the data, continued across evaluations), and resumes bit for bit.
- ``data.val_fraction: 0`` trains and reports test accuracy; nothing watches a validation set.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import tunelab
from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.nn import build_model
from tunelab.trainer.control import Control
from tunelab.trainer.fit import fit, train_eval_subset
from tunelab.trainer.runfolder import read_history

from ._runs import assert_same_run, strip


def _cfg(*overrides: str):
    base = ["data.name=digits", "model.hidden=[64]", "training.threads=1", "training.device=cpu",
            "training.batch_size=128", "optimizer.name=adam", "optimizer.lr=0.01"]
    return from_dict({}, [*base, *overrides])


def _run(cfg):
    data = load_data(cfg.data)
    torch.manual_seed(cfg.training.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    return data, model, fit(cfg, data, model, test=False)


@torch.no_grad()
def _hand_eval(model, x, y):
    """The reference: one full-batch pass in evaluation mode."""
    model.eval()
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).sum().item() / len(y)


def test_train_eval_metrics_equal_a_hand_written_eval_pass_over_the_whole_training_set():
    cfg = _cfg("model.dropout=0.5", "model.norm=batch", "training.epochs=2", "training.train_eval_size=100000")
    data, model, result = _run(cfg)
    loss, acc = _hand_eval(model, data.x_train, data.y_train)
    last = result.history[-1]
    assert last["train_eval_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert last["train_eval_loss"] == pytest.approx(loss, rel=1e-5)
    # the running average (dropout on, weights moving) is another number, kept under its own name
    assert last["train_accuracy"] != last["train_eval_accuracy"]


def test_the_default_subset_is_fixed_seeded_and_as_large_as_the_validation_set():
    cfg = _cfg("model.dropout=0.3", "training.epochs=1", "training.seed=3")
    data, model, result = _run(cfg)
    x, y = train_eval_subset(data, cfg)
    assert len(y) == len(data.y_val) < len(data.y_train)
    # the same examples for every run seed (arms and seeds are measured on one subset)
    x2, y2 = train_eval_subset(data, _cfg("training.seed=9"))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    # rows of the training set, not of validation or test
    rows = {tuple(r) for r in data.x_train.flatten(1).tolist()}
    assert all(tuple(r) in rows for r in x.flatten(1).tolist())
    loss, acc = _hand_eval(model, x, y)
    assert result.history[-1]["train_eval_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert result.history[-1]["train_eval_loss"] == pytest.approx(loss, rel=1e-5)
    _, _, off = _run(_cfg("training.epochs=1", "training.train_eval_size=0"))
    assert math.isnan(off.history[-1]["train_eval_accuracy"]) and off.status == "completed"


def test_with_dropout_the_running_average_understates_the_fit_that_the_gap_must_use():
    # a small training set and heavy dropout: the running train accuracy (dropout on) sits far
    # below what the network does on its training examples in evaluation mode
    cfg = _cfg("data.train_size=200", "model.hidden=[256]", "model.dropout=0.7", "training.epochs=15",
               "training.batch_size=32", "training.train_eval_size=100000")
    _, _, result = _run(cfg)
    last = result.history[-1]
    running_gap = last["train_accuracy"] - last["val_accuracy"]
    eval_gap = last["train_eval_accuracy"] - last["val_accuracy"]
    assert last["train_eval_accuracy"] > last["train_accuracy"] + 0.02
    assert eval_gap > running_gap + 0.02
    from tunelab.analysis.stats import final_gap

    assert final_gap(result.history) == pytest.approx(eval_gap)


def _hand_batches(n, bs, steps, seed):
    """The data order of a hand-written loop: a permutation per pass, batches in order."""
    gen = torch.Generator().manual_seed(seed)
    out, perm, pos = [], None, n
    for _ in range(steps):
        if pos >= n:
            perm, pos = torch.randperm(n, generator=gen), 0
        out.append(perm[pos:pos + bs])
        pos += bs
    return out


def test_training_steps_runs_exactly_that_many_updates_in_the_hand_written_order():
    cfg = _cfg("training.steps=37", "training.eval_every=10", "training.seed=4")
    assert cfg.training.epochs == 4
    data = load_data(cfg.data)
    torch.manual_seed(cfg.training.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) if m.training else None)
    result = fit(cfg, data, model, test=False)
    assert len(seen) == 37  # 37 training forwards: 37 optimizer steps (1294 examples: 11 steps a pass)
    assert [h["steps"] for h in result.history] == [10, 20, 30, 37]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    for got, idx in zip(seen, _hand_batches(len(data.y_train), 128, 37, seed=4)):
        assert torch.equal(got, data.x_train[idx])


def test_a_steps_budget_of_whole_passes_equals_the_same_epochs():
    by_epochs = _run(_cfg("training.epochs=3", "model.dropout=0.2"))[2]
    by_steps = _run(_cfg("training.steps=33", "training.eval_every=11", "model.dropout=0.2"))[2]
    assert strip(by_steps.history) == strip(by_epochs.history)


def test_a_steps_run_stopped_mid_period_across_a_pass_resumes_bit_for_bit(tmp_path):
    cfg = {"data": {"name": "digits"}, "model": {"hidden": [32], "dropout": 0.2},
           "optimizer": {"name": "adam", "lr": 0.01},
           "training": {"steps": 40, "eval_every": 15, "batch_size": 128, "threads": 1, "device": "cpu"},
           "augment": {"noise": 0.05}}
    ref = tunelab.train(cfg, out=tmp_path / "ref")
    control = Control()
    run_dir = tmp_path / "run"
    # stop in the second period at its step 3: global step 18, inside the second pass (11 steps a pass)
    first = tunelab.train(cfg, out=run_dir, control=control,
                          on_batch=lambda e, s, n: control.send("stop") if (e, s) == (1, 3) else None)
    assert first.status == "stopped" and first.epochs_run == 1
    resumed = tunelab.resume(run_dir)
    assert [h["steps"] for h in resumed.history] == [15, 30, 40]
    assert_same_run(ref, resumed, tmp_path / "ref", run_dir)
    assert [h["steps"] for h in read_history(run_dir)] == [15, 30, 40]


def test_no_validation_set_trains_and_reports_test_accuracy():
    cfg = _cfg("data.val_fraction=0", "training.epochs=2")
    data = load_data(cfg.data)
    assert len(data.y_val) == 0 and len(data.y_train) == 1438  # the 10 % of validation stays in train
    torch.manual_seed(0)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    result = fit(cfg, data, model)
    assert result.status == "completed" and result.epochs_run == 2
    assert all(math.isnan(h["val_accuracy"]) and math.isnan(h["val_loss"]) for h in result.history)
    assert result.test_accuracy > 0.8
    # with no validation the evaluation-mode subset is min(10000, training set): all of it here
    assert len(train_eval_subset(data, cfg)[1]) == len(data.y_train)


def test_no_validation_set_still_detects_divergence():
    cfg = _cfg("data.val_fraction=0", "training.epochs=3", "optimizer.name=sgd", "optimizer.lr=1e9")
    _, _, result = _run(cfg)
    assert result.status == "diverged"
