"""fit() against a hand-written loop, plus its statuses: diverged, stopped, interrupted."""

import math

import pytest
import torch
import torch.nn.functional as F

from tunelab.config import from_dict
from tunelab.trainer.fit import evaluate, fit

from .conftest import make_model


def _cfg(*overrides):
    return from_dict({}, ["training.epochs=4", "training.batch_size=50", "optimizer.name=momentum",
                          "optimizer.lr=0.05", *overrides])


def _hand_written(bundle, epochs=4, bs=50, lr=0.05, momentum=0.9, seed=0):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = bundle.x_train, bundle.y_train
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(y))
    return model, losses


def test_matches_a_hand_written_loop(bundle):
    ref_model, ref_losses = _hand_written(bundle)
    result = fit(_cfg(), bundle, make_model())
    assert result.status == "completed" and result.epochs_run == 4
    assert [h["train_loss"] for h in result.history] == pytest.approx(ref_losses, rel=1e-5)
    for a, b in zip(result.model.parameters(), ref_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert result.test_accuracy == pytest.approx(evaluate(ref_model, bundle.x_test, bundle.y_test, 1000)[1])


def test_learns_and_is_deterministic(bundle):
    a = fit(_cfg("training.epochs=15"), bundle, make_model())
    b = fit(_cfg("training.epochs=15"), bundle, make_model())
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert a.test_accuracy == b.test_accuracy
    assert a.test_accuracy > 0.8 and a.history[-1]["train_loss"] < a.history[0]["train_loss"]


def test_diverging_loss_ends_with_status_and_message(bundle):
    result = fit(_cfg("optimizer.name=sgd", "optimizer.lr=1e30"), bundle, make_model())
    assert result.status == "diverged"
    assert "lower optimizer.lr" in result.message
    assert result.summary()["test_accuracy"] is None or math.isfinite(result.test_accuracy)
    assert result.epochs_run >= 1


def test_caller_can_stop(bundle):
    result = fit(_cfg("training.epochs=10"), bundle, make_model(),
                 on_epoch=lambda ev: "stop" if ev.epoch == 2 else None)
    assert result.status == "stopped" and result.epochs_run == 2


def test_ctrl_c_keeps_the_history(bundle):
    def interrupt(epoch, step, steps):
        if epoch == 2 and step == 3:
            raise KeyboardInterrupt

    result = fit(_cfg("training.epochs=10"), bundle, make_model(), on_batch=interrupt)
    assert result.status == "interrupted" and result.epochs_run == 2
    assert math.isfinite(result.test_accuracy)


def test_early_stopping_restores_best_weights(bundle):
    # a large lr on a small problem overfits/oscillates: the best epoch is not the last
    cfg = _cfg("training.epochs=60", "optimizer.name=adam", "optimizer.lr=0.05",
               "training.early_stopping.enabled=true", "training.early_stopping.patience=3")
    result = fit(cfg, bundle, make_model())
    assert result.status == "early_stopped"
    best = result.history[result.restored_epoch - 1]
    assert result.restored_epoch == min(result.history, key=lambda h: h["val_loss"])["epoch"]
    assert result.epochs_run == result.restored_epoch + 3
    # best_epoch / best_val_accuracy are one pair: the epoch of the highest validation accuracy
    assert result.history[result.best_epoch - 1]["val_accuracy"] == result.best_val_accuracy
    assert result.best_val_accuracy == max(h["val_accuracy"] for h in result.history)
    val_loss, val_acc = evaluate(result.model, bundle.x_val, bundle.y_val, 1000)
    assert val_loss == pytest.approx(best["val_loss"], rel=1e-5)
    assert result.val_accuracy == best["val_accuracy"] == val_acc


def test_plateau_schedule_lowers_lr_in_history(bundle):
    # mode=max on a falling val_loss: every epoch after the first is "no improvement"
    cfg = _cfg("training.epochs=6", "schedule.name=plateau", "schedule.patience=0",
               "schedule.monitor=val_loss", "schedule.mode=max", "schedule.factor=0.5")
    result = fit(cfg, bundle, make_model())
    assert result.history[1]["val_loss"] < result.history[0]["val_loss"]
    assert [h["lr"] for h in result.history][:3] == pytest.approx([0.05, 0.05, 0.025])


def test_custom_schedule_function(bundle):
    result = fit(_cfg(), bundle, make_model(), schedule_fn=lambda e: 0.5 ** e)
    assert [h["lr"] for h in result.history] == pytest.approx([0.05, 0.025, 0.0125, 0.00625])


def test_best_epoch_is_the_epoch_of_the_best_validation_accuracy(bundle):
    result = fit(_cfg("training.epochs=8"), bundle, make_model())
    accs = [h["val_accuracy"] for h in result.history]
    assert result.best_epoch == accs.index(max(accs)) + 1 and result.best_val_accuracy == max(accs)
    assert result.restored_epoch is None  # no early stopping: the last epoch's weights
    assert result.val_accuracy == accs[-1]


def test_a_run_that_diverges_at_once_has_no_best_epoch(bundle):
    result = fit(_cfg("training.epochs=3", "optimizer.name=sgd", "optimizer.lr=1e12"), bundle, make_model())
    assert result.status == "diverged"
    assert result.best_epoch is None and math.isnan(result.best_val_accuracy)
    assert result.summary()["best_epoch"] is None and result.summary()["best_val_accuracy"] is None
