"""Every optimizer name builds the matching torch.optim with the given hyperparameters."""

import pytest
import torch

from tunelab.config import OptimizerConfig, from_dict
from tunelab.errors import ConfigError
from tunelab.optim import OPTIMIZERS, build_optimizer

CASES = {
    "sgd": (torch.optim.SGD, dict(lr=0.3, weight_decay=0.01), dict(momentum=0, nesterov=False)),
    "momentum": (torch.optim.SGD, dict(lr=0.3, momentum=0.8, weight_decay=0.01), dict(nesterov=False)),
    "nesterov": (torch.optim.SGD, dict(lr=0.3, momentum=0.7, weight_decay=0.01), dict(nesterov=True)),
    "adagrad": (torch.optim.Adagrad, dict(lr=0.02, eps=1e-7, weight_decay=0.01), {}),
    "rmsprop": (torch.optim.RMSprop, dict(lr=0.002, alpha=0.95, eps=1e-6, weight_decay=0.01), {}),
    "adadelta": (torch.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01), {}),
    "adam": (torch.optim.Adam, dict(lr=0.002, betas=[0.8, 0.99], eps=1e-7, weight_decay=0.01), {}),
    "adamw": (torch.optim.AdamW, dict(lr=0.002, betas=[0.85, 0.98], eps=1e-7, weight_decay=0.05), {}),
}


def test_every_registered_name_is_covered():
    assert sorted(CASES) == OPTIMIZERS.names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_builds_matching_torch_optimizer(name):
    cls, hp, fixed = CASES[name]
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], OptimizerConfig(name=name, **hp))
    assert type(opt) is cls
    for key, value in {**hp, **fixed}.items():
        got = opt.defaults[key]
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def _trajectory(make_opt, steps=25):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    x, y = torch.randn(32, 5), torch.randn(32, 3)
    opt = make_opt([w])
    for _ in range(steps):
        loss = ((x @ w - y) ** 2).mean() + 0.1 * w.abs().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().clone()


@pytest.mark.parametrize("name", sorted(CASES))
def test_steps_equal_the_reference(name):
    cls, hp, fixed = CASES[name]
    torch_kw = {k: (tuple(v) if k == "betas" else v) for k, v in {**hp, **fixed}.items()}
    ours = _trajectory(lambda p: build_optimizer(p, OptimizerConfig(name=name, **hp)))
    ref = _trajectory(lambda p: cls(p, **torch_kw, foreach=False))  # the plain per-tensor loop
    # ours may use torch's fused kernel (same math, another summation order): ~1 ulp apart
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_adamw_decay_is_decoupled_and_adam_is_coupled():
    # with zero gradient, coupled L2 in Adam normalizes the decay away (step ~ lr),
    # decoupled decay in AdamW shrinks by exactly lr * wd * w.
    for name, expected in (("adamw", 1.0 - 0.1 * 0.5), ("adam", 1.0 - 0.1)):
        w = torch.nn.Parameter(torch.ones(1))
        opt = build_optimizer([w], OptimizerConfig(name=name, lr=0.1, weight_decay=0.5))
        w.grad = torch.zeros(1)
        opt.step()
        assert w.item() == pytest.approx(expected, rel=1e-5), name


def test_defaults_resolved_per_optimizer():
    assert from_dict({"optimizer": {"name": "sgd"}}).optimizer.lr == 0.1
    assert from_dict({"optimizer": {"name": "adadelta"}}).optimizer.eps == 1e-6
    assert from_dict({"optimizer": {"name": "adam", "lr": 3e-4}}).optimizer.lr == 3e-4


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ConfigError, match=r"optimizer.name='adamm' is not known; choose one of \['adadelta'"):
        from_dict({"optimizer": {"name": "adamm"}})
