"""optimizer.momentum is applied where the optimizer has one and refused where it has none; an
override that changes optimizer.name takes the new optimizer's own defaults."""

import pytest
import torch

from tunelab.config import from_dict, saved_config, to_dict
from tunelab.errors import ConfigError
from tunelab.optim import build_optimizer


def _steps(opt, w, x, y, n=20):
    for _ in range(n):
        opt.zero_grad()
        torch.nn.functional.mse_loss(x @ w, y).backward()
        opt.step()
    return w.detach().clone()


def test_rmsprop_applies_momentum_like_torch():
    torch.manual_seed(0)
    x, y, w0 = torch.randn(16, 4), torch.randn(16, 2), torch.randn(4, 2)
    cfg = from_dict({}, ["optimizer.name=rmsprop", "optimizer.momentum=0.9", "optimizer.lr=0.01"]).optimizer
    mine = torch.nn.Parameter(w0.clone())
    ref = torch.nn.Parameter(w0.clone())
    got = _steps(build_optimizer([mine], cfg), mine, x, y)
    want = _steps(torch.optim.RMSprop([ref], lr=0.01, momentum=0.9), ref, x, y)
    assert torch.equal(got, want)
    plain = torch.nn.Parameter(w0.clone())
    assert not torch.allclose(got, _steps(torch.optim.RMSprop([plain], lr=0.01), plain, x, y))


@pytest.mark.parametrize("name,momentum", [("momentum", 0.9), ("nesterov", 0.9), ("rmsprop", 0.0), ("sgd", 0.0),
                                           ("adam", 0.0), ("adagrad", 0.0)])
def test_resolved_momentum_is_what_the_optimizer_uses(name, momentum):
    cfg = from_dict({"optimizer": {"name": name}})
    assert cfg.optimizer.momentum == momentum
    assert build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg.optimizer).defaults.get("momentum", 0.0) == momentum


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad", "adadelta"])
def test_momentum_on_an_optimizer_without_one_is_refused_in_one_line(name):
    with pytest.raises(ConfigError) as e:
        from_dict({"optimizer": {"name": name, "momentum": 0.9}})
    msg = str(e.value)
    assert "\n" not in msg and "optimizer.momentum=0.9" in msg and repr(name) in msg and "rmsprop" in msg


def test_zero_momentum_is_accepted_everywhere():
    assert from_dict({"optimizer": {"name": "adam", "momentum": 0}}).optimizer.momentum == 0


def test_switching_the_name_by_override_takes_the_new_defaults():
    base = to_dict(from_dict({"optimizer": {"name": "momentum"}}))  # resolved: lr 0.05, momentum 0.9
    adam = from_dict(base, ["optimizer.name=adam"]).optimizer
    assert (adam.lr, adam.momentum, adam.eps) == (1e-3, 0.0, 1e-8)
    adagrad = from_dict(base, ["optimizer.name=adagrad"]).optimizer
    assert (adagrad.lr, adagrad.eps) == (0.01, 1e-10)
    # a value the base set away from the old default is the user's, and stays
    tuned = to_dict(from_dict({"optimizer": {"name": "momentum", "lr": 0.2}}))
    assert from_dict(tuned, ["optimizer.name=nesterov"]).optimizer.lr == 0.2
    with pytest.raises(ConfigError, match="optimizer.momentum=0.5"):
        from_dict(to_dict(from_dict({"optimizer": {"name": "momentum", "momentum": 0.5}})), ["optimizer.name=adam"])


def test_a_search_switching_the_name_takes_the_new_defaults():
    from tunelab.search.space import apply_values

    base = to_dict(from_dict({"optimizer": {"name": "momentum"}}))
    assert apply_values(base, {"optimizer.name": "adam"})["optimizer"]["lr"] == 1e-3
    assert apply_values(base, {"optimizer.name": "adam", "optimizer.lr": 0.05})["optimizer"]["lr"] == 0.05


def test_a_saved_config_of_0_1_reads_the_unused_momentum_as_zero():
    old = {"optimizer": {"name": "adam", "lr": 0.001, "momentum": 0.9}}
    assert from_dict(saved_config(old)).optimizer.momentum == 0.0
    rms = {"optimizer": {"name": "rmsprop", "momentum": 0.9}}
    assert from_dict(saved_config(rms, before_0_2=True)).optimizer.momentum == 0.0
    assert from_dict(saved_config(rms)).optimizer.momentum == 0.9  # written by 0.2: it was applied


def test_a_value_set_with_the_name_stays_in_either_order():
    base = to_dict(from_dict({"optimizer": {"name": "momentum"}}))
    for overrides in (["optimizer.lr=0.05", "optimizer.name=adam"], ["optimizer.name=adam", "optimizer.lr=0.05"]):
        assert from_dict(base, overrides).optimizer.lr == 0.05
