"""Hidden-layer activations, by name: ``model.activation`` resolves through ``ACTIVATIONS``.

Each entry is a factory taking no arguments and returning a fresh ``nn.Module``.

Example:
    >>> from tunelab.nn.activations import make_activation
    >>> make_activation("leaky_relu")
    LeakyReLU(negative_slope=0.01)
"""

from __future__ import annotations

from functools import partial

from torch import nn

from tunelab.registry import Registry

__all__ = ["ACTIVATIONS", "make_activation"]

ACTIVATIONS = Registry("model.activation")

ACTIVATIONS.register("relu", nn.ReLU)
ACTIVATIONS.register("leaky_relu", partial(nn.LeakyReLU, negative_slope=0.01))
ACTIVATIONS.register("elu", nn.ELU)
ACTIVATIONS.register("gelu", nn.GELU)
ACTIVATIONS.register("silu", nn.SiLU)
ACTIVATIONS.register("sigmoid", nn.Sigmoid)
ACTIVATIONS.register("tanh", nn.Tanh)


def make_activation(name: str) -> nn.Module:
    """A new activation module for ``name``; unknown names raise ConfigError with the choices.

    Example:
        >>> make_activation("gelu")
        GELU(approximate='none')
    """
    return ACTIVATIONS.get(name)()
