"""Parameter counts and training FLOPs, against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.config import ModelConfig
from tunelab.nn import build_model, count_params, flops_per_sample
from tunelab.nn.stats import forward_macs

MACS = 784 * 256 + 256 * 128 + 128 * 10  # 234,752 multiply-adds per forward sample


def _mlp(norm: str = "none") -> nn.Module:
    return build_model(ModelConfig(hidden=[256, 128], norm=norm), (784,), 10)


def test_mlp_784_256_128_10_flops():
    # forward 2M + weight grads 2M + input grads 2(M - 784*256): none for the data
    expected = 2 * (2 * MACS + (MACS - 784 * 256))
    assert forward_macs(_mlp(), (784,)) == MACS
    assert flops_per_sample(_mlp(), (784,)) == expected == 1_007_104
    assert flops_per_sample(_mlp(), (784,)) == pytest.approx(1.007e6, rel=1e-3)


def test_flops_of_a_conv_net():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10))
    conv, fc = 4 * 8 * 8 * 9, 256 * 10
    assert forward_macs(model, (1, 8, 8)) == conv + fc
    assert flops_per_sample(model, (1, 8, 8)) == 2 * conv * 2 + 2 * fc * 3


def test_frozen_layers_need_no_weight_gradient():
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 5))
    model[0].requires_grad_(False)
    # layer 0: forward only; layer 1: forward + dW (its input needs no gradient either)
    assert flops_per_sample(model, (10,)) == 2 * 200 + 2 * 100 * 2


def test_flops_leave_modes_and_running_stats_alone():
    model = _mlp("batch")
    model.train()
    model.out.eval()  # a mixed state must come back as it was
    stats = model.fc0[1].running_mean.clone()
    assert flops_per_sample(model, (784,)) == 1_007_104
    assert model.training and model.fc0.training and not model.out.training
    assert torch.equal(model.fc0[1].running_mean, stats)


def test_count_params():
    assert count_params(_mlp()) == (784 + 1) * 256 + (256 + 1) * 128 + (128 + 1) * 10
    assert count_params(_mlp("batch")) == count_params(_mlp()) + 2 * (256 + 128)
