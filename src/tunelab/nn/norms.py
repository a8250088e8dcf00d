"""Normalization layers, by name: ``model.norm`` resolves through ``NORMS``.

Each entry is a factory ``(num_features, spatial, groups) -> nn.Module``; ``spatial`` says
the input is a conv map (N, C, H, W) rather than features (N, F).

| name     | features (N, F)        | maps (N, C, H, W)              |
|----------|------------------------|--------------------------------|
| none     | Identity               | Identity                       |
| batch    | BatchNorm1d(F)         | BatchNorm2d(C)                 |
| layer    | LayerNorm(F)           | GroupNorm(1, C): over C, H, W  |
| instance | ConfigError            | InstanceNorm2d(C, affine=True) |
| group    | GroupNorm(groups, F)   | GroupNorm(groups, C)           |

Example:
    >>> norm = make_norm("layer", 16, spatial=True, groups=8)
    >>> type(norm).__name__, norm.num_groups
    ('GroupNorm', 1)
"""

from __future__ import annotations

from torch import nn

from tunelab.errors import ConfigError
from tunelab.registry import Registry

__all__ = ["NORMS", "make_norm"]

NORMS = Registry("model.norm")


@NORMS.register("none")
def _none(num_features: int, spatial: bool, groups: int) -> nn.Module:
    return nn.Identity()


@NORMS.register("batch")
def _batch(num_features: int, spatial: bool, groups: int) -> nn.Module:
    return nn.BatchNorm2d(num_features) if spatial else nn.BatchNorm1d(num_features)


@NORMS.register("layer")
def _layer(num_features: int, spatial: bool, groups: int) -> nn.Module:
    # One group spanning all channels normalizes each sample over (C, H, W): layer norm.
    return nn.GroupNorm(1, num_features) if spatial else nn.LayerNorm(num_features)


@NORMS.register("instance")
def _instance(num_features: int, spatial: bool, groups: int) -> nn.Module:
    if not spatial:
        raise ConfigError("model.norm='instance' needs spatial maps (model.name='cnn')")
    return nn.InstanceNorm2d(num_features, affine=True)


@NORMS.register("group")
def _group(num_features: int, spatial: bool, groups: int) -> nn.Module:
    if num_features % groups:
        divisors = [d for d in range(1, num_features + 1) if num_features % d == 0]
        raise ConfigError(
            f"model.groups={groups} does not divide the layer width {num_features} "
            f"(model.norm='group'); choose one of {divisors}")
    # GroupNorm accepts (N, C) as well as (N, C, H, W).
    return nn.GroupNorm(groups, num_features)


def make_norm(name: str, num_features: int, spatial: bool, groups: int = 8) -> nn.Module:
    """A new normalization layer for ``name`` over ``num_features`` channels or features.

    Example:
        >>> type(make_norm("batch", 32, spatial=False)).__name__
        'BatchNorm1d'
    """
    return NORMS.get(name)(num_features, spatial, groups)
