"""The learning-rate range test against problems whose best learning rate is known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from tunelab.analysis.lr_find import lr_find, lr_range_test, lr_schedule, steepest_lr
from tunelab.config import from_dict
from tunelab.errors import ConfigError

BLOCK, N = 4, 256


def sgd(params, lr):
    return torch.optim.SGD(params, lr=lr)


def one_step_batches(s: float, steps: int, seed: int = 0):
    """A quadratic whose range test reads the effect of ONE step at each lr.

    Inputs are isotropic with variance s^2 (the MSE Hessian is 2 s^2 I: the best SGD step is
    lr* = 1 / (2 s^2), which solves the problem in one step; divergence starts at 1 / s^2),
    but batch i only touches weight blocks i-1 and i: block i is fresh, block i-1 was stepped
    once, at the previous lr, and is never measured again. So the loss before step i is
    s^2 (|1 - 2 s^2 lr_{i-1}|^2 + 1) |e|^2, a function of that lr alone, not of the sweep speed.
    """
    g = torch.Generator().manual_seed(seed)
    dim = (steps + 1) * BLOCK
    w_star = torch.ones(dim, 1)  # equal blocks: every fresh block starts with the same error
    for i in range(1, steps + 1):
        x = torch.zeros(N, dim)
        x[:, (i - 1) * BLOCK:(i + 1) * BLOCK] = s * torch.randn(N, 2 * BLOCK, generator=g)
        yield x, x @ w_star


def quadratic_batches(s: float, noise: float = 0.3, seed: int = 0, d: int = 10):
    """Plain linear regression: isotropic inputs of variance s^2, label noise (a loss floor)."""
    g = torch.Generator().manual_seed(seed)
    w_star = torch.randn(d, 1, generator=g)
    while True:
        x = s * torch.randn(N, d, generator=g)
        yield x, x @ w_star + noise * s * torch.randn(N, 1, generator=g)


def zero_linear(dim: int) -> nn.Linear:
    model = nn.Linear(dim, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


@pytest.mark.parametrize("s", [0.5, 4.0])
def test_the_suggestion_is_within_3x_of_the_best_lr(s):
    best = 1 / (2 * s ** 2)  # 2.0 and 1/32: 64x apart, so a rule blind to the scale fails one
    steps = 200
    result = lr_range_test(zero_linear((steps + 1) * BLOCK), one_step_batches(s, steps), nn.functional.mse_loss,
                           sgd, steps=steps, lr_max=1e3)
    assert best / 3 <= result["suggestion"] <= 3 * best
    assert result["stopped"].startswith("the smoothed loss exceeded 4 x its minimum")
    assert result["lrs"][-1] > 1 / s ** 2  # it stopped only after the divergence began


def test_on_a_plain_quadratic_the_suggestion_follows_the_scale():
    # here the loss at lr_i sums the progress of every earlier step, so the steepest descent
    # sits below lr* by a factor set by the sweep speed; it must still move as 1 / s^2
    a = lr_range_test(zero_linear(10), quadratic_batches(1.0), nn.functional.mse_loss, sgd)
    b = lr_range_test(zero_linear(10), quadratic_batches(4.0), nn.functional.mse_loss, sgd)
    assert 16 / 1.5 < a["suggestion"] / b["suggestion"] < 16 * 1.5
    assert a["suggestion"] < 0.5 / 3  # lr* = 1/2 for s = 1: a sweep over 200 steps lands near lr*/10


def test_the_sweep_stops_early_when_the_loss_diverges():
    result = lr_range_test(zero_linear(10), quadratic_batches(1.0), nn.functional.mse_loss, sgd,
                           lr_min=1e-3, lr_max=1e3, steps=100)
    assert result["steps_run"] < 100 and len(result["losses"]) == len(result["lrs"]) == result["steps_run"]
    assert 1.0 < result["lrs"][-1] < 10.0  # past divergence at lr = 1/s^2 = 1, soon after
    assert result["smoothed"][-1] > 4 * min(result["smoothed"])
    assert all(math.isfinite(v) for v in result["losses"])


def test_a_non_finite_loss_stops_the_sweep_and_is_not_recorded():
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        loss = nn.functional.mse_loss(out, y)
        return loss * math.nan if len(calls) == 30 else loss

    result = lr_range_test(zero_linear(10), quadratic_batches(1.0), loss_fn, sgd, steps=100)
    assert result["steps_run"] == 29 and result["stopped"].startswith("the loss became nan")


def test_the_weights_and_the_mode_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lr_range_test(model, quadratic_batches(1.0), nn.functional.mse_loss, sgd, lr_max=1e4)
    assert result["steps_run"] > 10  # it did train, and ran into divergence
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training


def test_each_step_uses_its_lr_of_the_exponential_sweep():
    seen, opts = [], []

    def make(params, lr):
        opts.append(torch.optim.SGD(params, lr=lr))
        return opts[-1]

    def loss_fn(out, y):
        seen.append(opts[0].param_groups[0]["lr"])
        return (out * 0).sum() + 1.0  # a flat loss: the sweep runs to the end

    result = lr_range_test(nn.Linear(2, 1), iter([(torch.zeros(1, 2), None)] * 50), loss_fn, make,
                           lr_min=1e-3, lr_max=1e2, steps=50)
    expected = [1e-3 * (1e5) ** (i / 49) for i in range(50)]
    assert np.allclose(seen, expected, rtol=1e-12) and np.allclose(result["lrs"], expected, rtol=1e-12)
    assert result["stopped"] == "completed" and result["lrs"][-1] == pytest.approx(1e2)


def test_running_out_of_batches_ends_the_sweep():
    batches = iter([(torch.randn(8, 3), torch.randn(8, 1))] * 20)
    result = lr_range_test(nn.Linear(3, 1), batches, nn.functional.mse_loss, sgd, steps=50)
    assert result["steps_run"] == 20 and result["stopped"] == "the batches ran out after 20 steps"


def test_steepest_lr_skips_the_ends():
    lrs = lr_schedule(1e-4, 1.0, 41).tolist()
    loss = [1 / (1 + math.exp(4 * (math.log10(lr) + 2))) for lr in lrs]  # steepest at 1e-2
    loss[1] = -100.0  # a start-up spike the rule must not take
    loss[-1] = -100.0
    assert steepest_lr(lrs, loss) == pytest.approx(1e-2)
    assert steepest_lr(lrs, loss, skip_start=25) > 1e-2  # skipped past the true drop
    assert steepest_lr(lrs[:4], loss[:4]) is None  # 2 points left between the ends


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=5), "--steps=5 is out of range; allowed: 10 or more"),
    (dict(lr_min=1.0, lr_max=0.1), "--lr-min=1 and --lr-max=0.1 are not allowed; need 0 < lr-min < lr-max"),
    (dict(lr_min=0.0), "--lr-min=0 and --lr-max=10 are not allowed"),
    (dict(smooth=1.0), "smooth=1 is out of range; allowed: [0, 1)"),
    (dict(diverge=1.0), "diverge=1 is out of range; allowed: more than 1"),
])
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        lr_range_test(nn.Linear(1, 1), iter([]), nn.functional.mse_loss, sgd, **kwargs)
    assert message in str(err.value)


def test_lr_find_on_digits_suggests_a_finite_lr_inside_the_range_and_is_repeatable():
    cfg = from_dict({"model": {"hidden": [32]}, "optimizer": {"name": "momentum"}})
    result = lr_find(cfg, steps=100, lr_min=1e-5, lr_max=10.0)
    assert math.isfinite(result["suggestion"]) and 1e-5 <= result["suggestion"] <= 10.0
    assert result["optimizer"] == "momentum" and result["batch_size"] == 128
    assert min(result["smoothed"]) < 0.8 * result["smoothed"][0]  # the loss did fall
    again = lr_find(cfg, steps=100, lr_min=1e-5, lr_max=10.0)
    assert again["losses"] == result["losses"]


def test_the_figure_marks_the_suggestion_on_a_log_axis():
    import matplotlib.pyplot as plt

    from tunelab.report.lr_find_figs import plot_lr_find

    result = lr_range_test(zero_linear(10), quadratic_batches(1.0), nn.functional.mse_loss, sgd)
    fig = plot_lr_find(result)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    vertical = [line for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
    assert vertical[0].get_xdata()[0] == result["suggestion"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"suggestion (steepest descent) {result['suggestion']:.2g}" in labels
    assert len(ax.get_lines()) == 4  # raw, smoothed, suggestion, min-loss / 10
    plt.close(fig)
    empty = plot_lr_find(dict(lrs=[], losses=[], smoothed=[], suggestion=None, min_loss_lr=None))
    assert len(empty.axes[0].get_lines()) == 2
    plt.close(empty)
