"""Norm layers: the right torch module per name and input kind, and the config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunelab.errors import ConfigError
from tunelab.nn.norms import NORMS, make_norm


def test_registry_holds_exactly_the_documented_names():
    assert NORMS.names() == ["batch", "group", "instance", "layer", "none"]


@pytest.mark.parametrize("name, spatial, kind", [
    ("none", False, nn.Identity), ("none", True, nn.Identity),
    ("batch", False, nn.BatchNorm1d), ("batch", True, nn.BatchNorm2d),
    ("layer", False, nn.LayerNorm), ("layer", True, nn.GroupNorm),
    ("instance", True, nn.InstanceNorm2d),
    ("group", False, nn.GroupNorm), ("group", True, nn.GroupNorm),
])
def test_factory_type(name, spatial, kind):
    assert type(make_norm(name, 16, spatial, groups=4)) is kind


def test_instance_norm_is_affine():
    norm = make_norm("instance", 8, spatial=True, groups=2)
    assert norm.affine and norm.weight.shape == (8,)


def test_layer_norm_on_maps_normalizes_each_sample_over_c_h_w():
    x = torch.randn(4, 6, 5, 5) * 3 + 1  # (N, C, H, W)
    out = make_norm("layer", 6, spatial=True, groups=1)(x)
    torch.testing.assert_close(out, F.layer_norm(x, x.shape[1:]))


def test_group_norm_on_features_normalizes_each_group():
    x = torch.randn(5, 12) * 2 - 1  # (N, F)
    out = make_norm("group", 12, spatial=False, groups=3)(x)
    grouped = x.reshape(5, 3, 4)  # (N, G, F/G)
    ref = (grouped - grouped.mean(-1, keepdim=True)) / torch.sqrt(
        grouped.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(out, ref.reshape(5, 12))


def test_group_count_must_divide_width():
    with pytest.raises(ConfigError) as err:
        make_norm("group", 16, spatial=False, groups=3)
    message = str(err.value)
    for part in ("model.groups=3", "16", "[1, 2, 4, 8, 16]"):
        assert part in message


def test_instance_norm_needs_spatial_maps():
    with pytest.raises(ConfigError, match=r"model\.norm='instance' needs spatial maps"):
        make_norm("instance", 16, spatial=False, groups=1)


def test_unknown_norm_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.norm='batchnorm'.*'batch'"):
        make_norm("batchnorm", 4, spatial=False)
