"""Models: each activation x norm x position trains a step; block order, dropout, shapes."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from tunelab.config import ModelConfig
from tunelab.errors import ConfigError
from tunelab.nn import ACTIVATIONS, MODELS, build_model
from tunelab.nn.norms import NORMS

NORM_TYPES = {"none": nn.Identity, "batch": (nn.BatchNorm1d, nn.BatchNorm2d),
              "layer": (nn.LayerNorm, nn.GroupNorm), "group": nn.GroupNorm,
              "instance": nn.InstanceNorm2d}
SMALL = dict(hidden=[8, 6], channels=[4, 6], groups=2)  # widths divisible by the groups
COMBOS = [("mlp", a, n, p) for a, n, p in itertools.product(
    ACTIVATIONS.names(), ["none", "batch", "layer", "group"], ["before", "after"])]
COMBOS += [("cnn", a, n, p) for a, n, p in itertools.product(
    ACTIVATIONS.names(), NORMS.names(), ["before", "after"])]


def _cfg(**kw) -> ModelConfig:
    return dataclasses.replace(ModelConfig(), **{**SMALL, **kw})


def _hidden_blocks(model: nn.Sequential) -> list[nn.Sequential]:
    return [m for name, m in model.named_children() if name.startswith(("fc", "conv"))]


def test_registry_holds_mlp_and_cnn():
    assert MODELS.names() == ["cnn", "mlp"]


@pytest.mark.parametrize("name, activation, norm, position", COMBOS)
def test_every_combination_trains_one_step(name, activation, norm, position):
    torch.manual_seed(0)
    cfg = _cfg(name=name, activation=activation, norm=norm, norm_position=position)
    model = build_model(cfg, (1, 8, 8), 3)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))  # (N, C, H, W), (N,)
    loss_fn = nn.CrossEntropyLoss()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    with torch.no_grad():
        assert loss_fn(model(x), y) < loss  # a small step downhill lowers the loss
    for n, p in model.named_parameters():
        if n.endswith("0.weight") or n == "out.weight":  # every Linear/Conv2d weight
            assert not torch.equal(p, before[n]), n


@pytest.mark.parametrize("name, activation, norm, position", COMBOS)
def test_block_order_follows_norm_position(name, activation, norm, position):
    cfg = _cfg(name=name, activation=activation, norm=norm, norm_position=position)
    model = build_model(cfg, (1, 8, 8), 3)
    act_type = type(ACTIVATIONS.get(activation)())
    for block in _hidden_blocks(model):
        kinds = [type(m) for m in block]
        assert isinstance(block[0], (nn.Linear, nn.Conv2d))
        is_head_with_instance = norm == "instance" and isinstance(block[0], nn.Linear)
        norm_type = nn.Identity if is_head_with_instance else NORM_TYPES[norm]
        norm_at = next(i for i, m in enumerate(block) if isinstance(m, norm_type))
        act_at = kinds.index(act_type)
        assert (norm_at, act_at) == ((1, 2) if position == "before" else (2, 1))


def test_instance_norm_applies_to_conv_blocks_only():
    model = build_model(_cfg(name="cnn", norm="instance"), (1, 8, 8), 3)
    assert all(isinstance(getattr(model, f"conv{i}")[1], nn.InstanceNorm2d) for i in range(2))
    assert all(isinstance(getattr(model, f"fc{i}")[1], nn.Identity) for i in range(2))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_dropout_only_in_hidden_blocks(name):
    model = build_model(_cfg(name=name, dropout=0.5), (1, 8, 8), 3)
    blocks = _hidden_blocks(model)
    assert len(blocks) == len(SMALL["hidden"]) + (len(SMALL["channels"]) if name == "cnn" else 0)
    assert all(isinstance(block[-1], nn.Dropout) for block in blocks)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == len(blocks)  # none on the input, none outside the blocks
    assert isinstance(model[-1], nn.Linear)  # logits leave the output layer undropped


def test_no_dropout_when_rate_is_zero_or_no_hidden_layer():
    for cfg in (_cfg(dropout=0.0), _cfg(hidden=[], dropout=0.5)):
        model = build_model(cfg, (40,), 3)
        assert not any(isinstance(m, nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_eval_is_deterministic_and_train_is_not(name):
    torch.manual_seed(0)
    model = build_model(_cfg(name=name, dropout=0.5), (1, 8, 8), 3)
    x = torch.randn(8, 1, 8, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name, input_shape", [
    ("mlp", (1, 8, 8)), ("mlp", (40,)), ("cnn", (1, 28, 28)), ("cnn", (3, 8, 8)),
])
def test_output_shape(name, input_shape):
    model = build_model(ModelConfig(name=name), input_shape, 10)
    assert model(torch.randn(5, *input_shape)).shape == (5, 10)


def test_logistic_regression_is_one_linear_layer():
    model = build_model(_cfg(hidden=[]), (1, 8, 8), 10)
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear]
    assert model.out.in_features == 64


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("pool", ["max", "avg", "none"])
def test_cnn_tracks_map_size(kernel_size, pool):
    cfg = _cfg(name="cnn", kernel_size=kernel_size, pool=pool, channels=[2, 2, 2], hidden=[])
    model = build_model(cfg, (1, 5, 5), 4)  # 5 -> 2 -> 1 -> 1 with odd kernels: last pool skipped
    assert model(torch.randn(3, 1, 5, 5)).shape == (3, 4)
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == (0 if pool == "none" else 2 if kernel_size % 2 else 3)


def test_build_model_initializes_every_layer():
    model = build_model(_cfg(name="cnn", init="zeros"), (1, 8, 8), 3)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(layers) == 5
    assert all(torch.count_nonzero(m.weight) == 0 and torch.count_nonzero(m.bias) == 0
               for m in layers)
    torch.manual_seed(0)
    model = build_model(_cfg(hidden=[256], init="normal", init_std=0.02), (1000,), 500)
    assert model.out.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_group_count_not_dividing_width():
    with pytest.raises(ConfigError, match=r"model\.groups=3 .*width 8"):
        build_model(_cfg(norm="group", groups=3), (40,), 3)


def test_instance_norm_on_mlp():
    with pytest.raises(ConfigError, match=r"model\.norm='instance'"):
        build_model(_cfg(norm="instance"), (1, 8, 8), 3)


def test_cnn_needs_vector_sequence_or_image_input():
    # (D,), (C, L) and (C, H, W) build (tests/nn/test_models_lectures.py); 4-D data does not
    with pytest.raises(ConfigError, match=r"model\.name='cnn' needs data of shape .*\(1, 2, 8, 8\)"):
        build_model(_cfg(name="cnn"), (1, 2, 8, 8), 3)


def test_unknown_model_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.name='resnet'.*\['cnn', 'mlp'\]"):
        build_model(_cfg(name="resnet"), (40,), 3)
