"""Normalization layers, by name: ``model.norm`` resolves through ``NORMS``.

Each entry is a factory ``(num_features, spatial, groups) -> nn.Module``; ``spatial`` is the
number of spatial dims of the input: 0 (or False) for features (N, F), 1 for sequence maps
(N, C, L), 2 (or True, as older callers pass it) for image maps (N, C, H, W).

| name     | features (N, F)        | sequences (N, C, L)            | maps (N, C, H, W)              |
|----------|------------------------|--------------------------------|--------------------------------|
| none     | Identity               | Identity                       | Identity                       |
| batch    | BatchNorm1d(F)         | BatchNorm1d(C)                 | BatchNorm2d(C)                 |
| layer    | LayerNorm(F)           | GroupNorm(1, C): over C, L     | GroupNorm(1, C): over C, H, W  |
| instance | ConfigError            | InstanceNorm1d(C, affine=True) | InstanceNorm2d(C, affine=True) |
| group    | GroupNorm(groups, F)   | GroupNorm(groups, C)           | GroupNorm(groups, C)           |

Example:
    >>> norm = make_norm("layer", 16, spatial=True, groups=8)
    >>> type(norm).__name__, norm.num_groups
    ('GroupNorm', 1)
    >>> type(make_norm("instance", 16, spatial=1)).__name__
    'InstanceNorm1d'
"""

from __future__ import annotations

from typing import Union

from torch import nn

from tunelab.errors import ConfigError
from tunelab.registry import Registry

__all__ = ["NORMS", "make_norm", "spatial_dims"]

NORMS = Registry("model.norm")

Spatial = Union[bool, int]


def spatial_dims(spatial: Spatial) -> int:
    """The number of spatial dims ``spatial`` stands for: False -> 0, True -> 2, else itself.

    Example:
        >>> spatial_dims(False), spatial_dims(True), spatial_dims(1)
        (0, 2, 1)
    """
    dims = 2 if spatial is True else 0 if spatial is False else spatial
    if dims not in (0, 1, 2):
        raise ValueError(f"spatial={spatial!r}: expected 0, 1, 2, True or False")
    return dims


@NORMS.register("none")
def _none(num_features: int, spatial: Spatial, groups: int) -> nn.Module:
    return nn.Identity()


@NORMS.register("batch")
def _batch(num_features: int, spatial: Spatial, groups: int) -> nn.Module:
    # BatchNorm1d takes (N, F) and (N, C, L) alike: statistics per feature / channel.
    return nn.BatchNorm2d(num_features) if spatial_dims(spatial) == 2 else nn.BatchNorm1d(num_features)


@NORMS.register("layer")
def _layer(num_features: int, spatial: Spatial, groups: int) -> nn.Module:
    # One group spanning all channels normalizes each sample over (C, *spatial): layer norm.
    return nn.GroupNorm(1, num_features) if spatial_dims(spatial) else nn.LayerNorm(num_features)


@NORMS.register("instance")
def _instance(num_features: int, spatial: Spatial, groups: int) -> nn.Module:
    dims = spatial_dims(spatial)
    if not dims:
        raise ConfigError("model.norm='instance' needs spatial maps (model.name='cnn')")
    return (nn.InstanceNorm1d if dims == 1 else nn.InstanceNorm2d)(num_features, affine=True)


@NORMS.register("group")
def _group(num_features: int, spatial: Spatial, groups: int) -> nn.Module:
    spatial_dims(spatial)  # rejects a bad value like the other factories
    if num_features % groups:
        divisors = [d for d in range(1, num_features + 1) if num_features % d == 0]
        raise ConfigError(
            f"model.groups={groups} does not divide the layer width {num_features} "
            f"(model.norm='group'); choose one of {divisors}")
    # GroupNorm accepts (N, C), (N, C, L) and (N, C, H, W).
    return nn.GroupNorm(groups, num_features)


def make_norm(name: str, num_features: int, spatial: Spatial, groups: int = 8) -> nn.Module:
    """A new normalization layer for ``name`` over ``num_features`` channels or features.

    ``spatial``: 0/False for (N, F) features, 1 for (N, C, L), 2/True for (N, C, H, W).

    Example:
        >>> type(make_norm("batch", 32, spatial=False)).__name__
        'BatchNorm1d'
        >>> type(make_norm("batch", 32, spatial=2)).__name__
        'BatchNorm2d'
    """
    return NORMS.get(name)(num_features, spatial, groups)
