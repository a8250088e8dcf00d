"""Initializers: empirical variance and bounds against the documented formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.nn.init import INITS, fans, init_model

TOL = 0.05  # relative tolerance on the variance; the schemes differ by >= 1.33x here

VARIANCE = {  # documented Var(w) by family, from (fan_in, fan_out)
    "lecun": lambda fi, fo: 1 / fi,
    "xavier": lambda fi, fo: 2 / (fi + fo),
    "he": lambda fi, fo: 2 / fi,
}
SCHEMES = [f"{family}_{kind}" for family in VARIANCE for kind in ("normal", "uniform")]
LAYERS = {
    "linear": lambda: nn.Linear(1000, 500),       # weight (500, 1000): fan_in 1000, fan_out 500
    "conv": lambda: nn.Conv2d(64, 128, 3),        # weight (128, 64, 3, 3): fan_in 576, fan_out 1152
}


def _init(layer_kind: str, scheme: str, std: float = 0.01) -> nn.Module:
    torch.manual_seed(0)
    return init_model(LAYERS[layer_kind](), scheme, std)


def _documented_var(family: str, weight: torch.Tensor) -> float:
    return VARIANCE[family](*fans(weight))


def test_registry_holds_exactly_the_documented_names():
    assert INITS.names() == sorted(SCHEMES + ["normal", "torch_default", "zeros"])


def test_fans_follow_torch_convention():
    assert fans(torch.empty(500, 1000)) == (1000, 500)
    assert fans(torch.empty(128, 64, 3, 3)) == (576, 1152)


@pytest.mark.parametrize("layer_kind", sorted(LAYERS))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_variance_matches_documented(scheme, layer_kind):
    w = _init(layer_kind, scheme).weight
    expected = _documented_var(scheme.split("_")[0], w)
    assert abs(w.mean().item()) < 0.05 * math.sqrt(expected)
    assert w.var().item() == pytest.approx(expected, rel=TOL)


@pytest.mark.parametrize("layer_kind", sorted(LAYERS))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_tolerance_rejects_every_other_family(scheme, layer_kind):
    # The test above must be able to fail: a wrong scheme lands outside the tolerance.
    w = _init(layer_kind, scheme).weight
    own = scheme.split("_")[0]
    for family in set(VARIANCE) - {own}:
        assert w.var().item() != pytest.approx(_documented_var(family, w), rel=TOL), family


@pytest.mark.parametrize("layer_kind", sorted(LAYERS))
@pytest.mark.parametrize("family", sorted(VARIANCE))
def test_uniform_is_bounded_by_sqrt_3var_and_normal_is_not(family, layer_kind):
    uniform = _init(layer_kind, f"{family}_uniform").weight
    normal = _init(layer_kind, f"{family}_normal").weight
    bound = math.sqrt(3 * _documented_var(family, uniform))
    assert uniform.abs().max().item() <= bound
    assert uniform.abs().max().item() > 0.99 * bound  # fills the interval
    assert normal.abs().max().item() > 1.5 * bound     # gaussian tails reach past it


@pytest.mark.parametrize("std", [0.01, 0.2])
def test_normal_uses_the_given_std(std):
    w = _init("linear", "normal", std).weight
    assert w.std().item() == pytest.approx(std, rel=TOL / 2)


@pytest.mark.parametrize("layer_kind", sorted(LAYERS))
def test_zeros_gives_all_zero_weights(layer_kind):
    assert torch.count_nonzero(_init(layer_kind, "zeros").weight) == 0


@pytest.mark.parametrize("scheme", sorted(SCHEMES + ["normal", "zeros"]))
def test_biases_zero_and_norms_reset(scheme):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(),
                          nn.Linear(8, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.5, 1.5)  # nothing starts at 0 or 1
    init_model(model, scheme, 0.01)
    for m in (model[0], model[3], model[5]):
        assert torch.count_nonzero(m.bias) == 0
        assert torch.count_nonzero(m.weight) == (0 if scheme == "zeros" else m.weight.numel())
    for m in (model[1], model[4]):
        assert torch.equal(m.weight, torch.ones_like(m.weight))
        assert torch.count_nonzero(m.bias) == 0


def test_unknown_scheme_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.init='glorot'.*xavier_normal"):
        init_model(nn.Linear(2, 2), "glorot")
