"""Activations: the registry's names, each module against torch.nn.functional."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunelab.errors import ConfigError
from tunelab.nn.activations import ACTIVATIONS, make_activation

REFERENCE = {
    "relu": lambda x: torch.clamp(x, min=0),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / 2**0.5)),
    "silu": lambda x: x * torch.sigmoid(x),
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: F.tanh(x),
}


def test_registry_holds_exactly_the_documented_names():
    assert ACTIVATIONS.names() == sorted(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_activation_matches_reference(name):
    x = torch.linspace(-4, 4, 101)  # (101,)
    torch.testing.assert_close(make_activation(name)(x), REFERENCE[name](x))


def test_leaky_relu_slope_is_one_hundredth():
    assert make_activation("leaky_relu")(torch.tensor([-1.0])).item() == pytest.approx(-0.01)


def test_each_call_returns_a_new_module():
    assert make_activation("relu") is not make_activation("relu")


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        ACTIVATIONS.get("relux")
    message = str(err.value)
    assert "model.activation" in message and "'relu'" in message and "'tanh'" in message
