"""The lectures' models: residual MLP, 1-D CNN (sequences and vectors), ``init: torch_default``.

Shapes are checked against sizes worked out by hand with floor((L + 2p - k) / s) + 1 and
halving by pooling; torch_default against torch's own layers built in the same order.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats as scipy_stats
from torch import nn

from tunelab.analysis.diagnostics import layer_stats
from tunelab.config import ModelConfig, from_dict
from tunelab.errors import ConfigError
from tunelab.nn import build_model, count_params, flops_per_sample, forward_macs, init_model
from tunelab.nn.models import Residual, conv_out_size
from tunelab.nn.norms import make_norm


def _cfg(**kw) -> ModelConfig:
    return dataclasses.replace(ModelConfig(), **kw)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One SGD step: the loss goes down and every weight moves."""
    loss_fn = nn.CrossEntropyLoss()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    with torch.no_grad():
        assert loss_fn(model(x), y) < loss
    for n, p in model.named_parameters():
        if n.endswith("weight"):
            assert not torch.equal(p, before[n]), n


def _one_line_error(fn, *parts: str) -> str:
    with pytest.raises(ConfigError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


# --------------------------------------------------------------------------- residual MLP

def test_residual_mlp_wraps_blocks_with_equal_widths_only():
    # fc0: 40 -> 8 (first: never), fc1: 8 -> 16, fc2/fc3: 16 -> 16 (skips)
    model = build_model(_cfg(hidden=[8, 16, 16, 16], residual=True), (40,), 3)
    assert [n for n, _ in model.named_children()] == ["flatten", "fc0", "fc1", "fc2", "fc3", "out"]
    assert [type(getattr(model, f"fc{i}")) for i in range(4)] == [nn.Sequential, nn.Sequential, Residual, Residual]
    assert model(torch.randn(5, 40)).shape == (5, 3)


def test_first_block_has_no_skip_even_when_the_input_width_matches():
    model = build_model(_cfg(hidden=[16, 16], residual=True), (16,), 3)
    assert type(model.fc0) is nn.Sequential and type(model.fc1) is Residual


def test_residual_keeps_names_and_parameters_of_the_plain_mlp():
    torch.manual_seed(0)
    plain = build_model(_cfg(hidden=[16, 16, 16], norm="batch", dropout=0.1), (40,), 3)
    torch.manual_seed(0)
    residual = build_model(_cfg(hidden=[16, 16, 16], norm="batch", dropout=0.1, residual=True), (40,), 3)
    a, b = plain.state_dict(), residual.state_dict()
    assert a.keys() == b.keys()  # fc1.0.weight, fc1.1.running_mean, ...: checkpoints keep their keys
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert count_params(plain) == count_params(residual)


def test_skip_is_an_identity():
    torch.manual_seed(0)
    model = build_model(_cfg(hidden=[16, 16, 16], residual=True), (40,), 3)
    h = torch.randn(6, 16)  # (N, 16): the input of fc1
    plain_branch = nn.Sequential(*model.fc1)  # the same layers without the skip
    torch.testing.assert_close(model.fc1(h), h + plain_branch(h))
    with torch.no_grad():
        model.fc1[0].weight.zero_()
        model.fc1[0].bias.zero_()
    assert torch.equal(model.fc1(h), h)  # relu(0 h + 0) = 0: the block passes its input through
    assert torch.count_nonzero(plain_branch(h)) == 0  # ... which the plain block does not


def test_residual_model_is_the_hand_composition():
    torch.manual_seed(0)
    model = build_model(_cfg(hidden=[16, 16, 16], residual=True, activation="tanh"), (40,), 3)
    x = torch.randn(4, 40)
    lin = [model.fc0[0], model.fc1[0], model.fc2[0]]
    h = torch.tanh(lin[0](x))          # (4, 16), no skip from the 40 inputs
    h = h + torch.tanh(lin[1](h))      # (4, 16)
    h = h + torch.tanh(lin[2](h))      # (4, 16)
    torch.testing.assert_close(model(x), model.out(h))


def test_residual_mlp_trains_a_step():
    torch.manual_seed(0)
    model = build_model(_cfg(hidden=[16, 16, 16], residual=True, norm="layer"), (40,), 3)
    _train_step(model, torch.randn(32, 40), torch.randint(0, 3, (32,)))


@pytest.mark.parametrize("hidden", [[100, 50], [64], [], [32, 64, 32]])
def test_residual_without_equal_widths_is_one_config_error(hidden):
    _one_line_error(lambda: build_model(_cfg(hidden=hidden, residual=True), (40,), 3),
                    "model.residual=true", f"model.hidden={hidden!r}", "[128, 128, 128]")


def test_residual_on_a_cnn_is_refused():
    _one_line_error(lambda: build_model(_cfg(name="cnn", residual=True), (40,), 3),
                    "model.residual=true", "model.name='cnn'", "'mlp'")
    _one_line_error(lambda: from_dict({"model": {"name": "cnn", "residual": True}}),
                    "model.residual=true", "model.name='cnn'")


# --------------------------------------------------------------------------- 1-D CNN

def _map_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """Output shape of each conv block (after its pooling) on ``x``."""
    shapes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda m, a, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name, _ in model.named_children() if name.startswith("conv")]
    model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_conv_out_size_formula():
    assert conv_out_size(40, 5, 2, 1) == 19   # floor(37 / 2) + 1
    assert conv_out_size(19, 5, 2, 1) == 9    # floor(16 / 2) + 1
    assert conv_out_size(9, 5, 2, 1) == 4     # floor(7 / 2) + 1
    assert conv_out_size(5, 3) == 3 and conv_out_size(5, 6, padding=0) == 0


def test_vector_input_is_one_channel_sequence_with_per_block_settings():
    # L = 40: conv0 k5 s2 p1 -> floor(37/2)+1 = 19, pool -> 9
    #         conv1 k3 s1 p0 -> 9 - 3 + 1 = 7,        pool -> 3
    #         conv2 k3 s1 p2 -> 3 + 4 - 3 + 1 = 5,    pool -> 2;  head: 8 x 2 = 16
    cfg = _cfg(name="cnn", channels=[4, 6, 8], kernel_size=[5, 3, 3], stride=[2, 1, 1], padding=[1, 0, 2],
               pool="max", hidden=[])
    model = build_model(cfg, (40,), 10)
    assert [n for n, _ in model.named_children()] == ["unflatten", "conv0", "conv1", "conv2", "flatten", "out"]
    convs = [getattr(model, f"conv{i}")[0] for i in range(3)]
    assert all(type(c) is nn.Conv1d for c in convs)
    assert [(c.in_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, (5,), (2,), (1,)), (4, (3,), (1,), (0,)), (6, (3,), (1,), (2,))]
    assert all(type(getattr(model, f"conv{i}")[-1]) is nn.MaxPool1d for i in range(3))
    x = torch.randn(7, 40)  # (N, D)
    assert _map_shapes(model, x) == {"conv0": (7, 4, 9), "conv1": (7, 6, 3), "conv2": (7, 8, 2)}
    assert model.out.in_features == 16 and model(x).shape == (7, 10)


def test_sequence_input_with_scalar_settings_and_avg_pool():
    # (C, L) = (3, 20), k3 s1 padding null -> 1 (same size): 20 -> pool 10 -> 10 -> pool 5
    cfg = _cfg(name="cnn", channels=[5, 6], kernel_size=3, pool="avg", hidden=[12])
    model = build_model(cfg, (3, 20), 4)
    assert "unflatten" not in dict(model.named_children())
    assert [getattr(model, f"conv{i}")[0].padding for i in range(2)] == [(1,), (1,)]
    assert all(type(getattr(model, f"conv{i}")[-1]) is nn.AvgPool1d for i in range(2))
    x = torch.randn(2, 3, 20)  # (N, C, L)
    assert _map_shapes(model, x) == {"conv0": (2, 5, 10), "conv1": (2, 6, 5)}
    assert model.fc0[0].in_features == 30 and model(x).shape == (2, 4)


def test_stride_without_pool_gives_the_mnist1d_paper_shapes():
    # 40 -> 19 -> 9 -> 4 with k5 s2 p1 and no pooling; 25 x 4 = 100 features
    cfg = _cfg(name="cnn", channels=[25, 25, 25], kernel_size=5, stride=2, padding=1, pool="none", hidden=[])
    model = build_model(cfg, (40,), 10)
    assert _map_shapes(model, torch.randn(1, 40)) == {"conv0": (1, 25, 19), "conv1": (1, 25, 9), "conv2": (1, 25, 4)}
    assert model.out.in_features == 100
    assert not any(isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) for m in model.modules())


def test_pooling_is_skipped_where_a_side_is_below_two():
    # L = 5: conv0 k3 p0 -> 3, pool -> 1; conv1 k3 p1 -> 1: no pool on a side of 1
    cfg = _cfg(name="cnn", channels=[2, 3], kernel_size=3, padding=[0, 1], hidden=[])
    model = build_model(cfg, (1, 5), 2)
    assert type(model.conv0[-1]) is nn.MaxPool1d and type(model.conv1[-1]) is not nn.MaxPool1d
    assert _map_shapes(model, torch.randn(2, 1, 5)) == {"conv0": (2, 2, 1), "conv1": (2, 3, 1)}
    assert model.out.in_features == 3


def test_images_take_per_block_settings_per_side():
    # (1, 9, 6): conv0 k3 s2 p0 -> 4 x 2, pool -> 2 x 1; conv1 k3 s1 p1 -> 2 x 1, no pool (side 1)
    cfg = _cfg(name="cnn", channels=[4, 5], kernel_size=3, stride=[2, 1], padding=[0, 1], hidden=[])
    model = build_model(cfg, (1, 9, 6), 3)
    assert all(type(getattr(model, f"conv{i}")[0]) is nn.Conv2d for i in range(2))
    assert _map_shapes(model, torch.randn(2, 1, 9, 6)) == {"conv0": (2, 4, 2, 1), "conv1": (2, 5, 2, 1)}
    assert model.out.in_features == 10


def test_one_dim_cnn_equals_torch_layers_built_by_hand():
    cfg = _cfg(name="cnn", channels=[3, 4], kernel_size=[5, 3], stride=[2, 1], padding=[2, 0], hidden=[6],
               init="torch_default")
    torch.manual_seed(0)
    model = build_model(cfg, (40,), 5)
    torch.manual_seed(0)  # same constructors in the same order draw the same numbers
    ref = nn.Sequential(nn.Unflatten(1, (1, 40)),
                        nn.Conv1d(1, 3, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool1d(2),  # 40 -> 20 -> 10
                        nn.Conv1d(3, 4, 3), nn.ReLU(), nn.MaxPool1d(2),                        # 10 -> 8 -> 4
                        nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 5))
    x = torch.randn(3, 40)
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm1d), ("layer", nn.GroupNorm),
                                        ("instance", nn.InstanceNorm1d), ("group", nn.GroupNorm),
                                        ("none", nn.Identity)])
@pytest.mark.parametrize("position", ["before", "after"])
def test_one_dim_cnn_norms_train_a_step(norm, kind, position):
    torch.manual_seed(0)
    cfg = _cfg(name="cnn", channels=[4, 6], hidden=[8], groups=2, norm=norm, norm_position=position)
    model = build_model(cfg, (40,), 3)
    for i in range(2):
        assert type(getattr(model, f"conv{i}")[1 if position == "before" else 2]) is kind
    _train_step(model, torch.randn(16, 40), torch.randint(0, 3, (16,)))


def test_norm_factory_on_sequences():
    assert type(make_norm("batch", 8, spatial=1)) is nn.BatchNorm1d
    assert type(make_norm("batch", 8, spatial=2)) is nn.BatchNorm2d
    assert type(make_norm("instance", 8, spatial=1)) is nn.InstanceNorm1d
    assert make_norm("instance", 8, spatial=1).affine
    x = torch.randn(4, 6, 11) * 3 + 1  # (N, C, L)
    torch.testing.assert_close(make_norm("layer", 6, spatial=1)(x), F.layer_norm(x, x.shape[1:]))


def test_mnist1d_cnn_works_out_of_the_box():
    import tunelab

    model = build_model(ModelConfig(name="cnn"), (40,), 10)  # every default: channels [16, 32], kernel 3
    assert model(torch.randn(2, 40)).shape == (2, 10)
    result = tunelab.train({"data": {"name": "mnist1d"}, "model": {"name": "cnn", "hidden": [16]},
                            "training": {"steps": 3, "eval_every": 3, "batch_size": 32, "threads": 1}},
                           save=False)
    assert result.status == "completed" and 0 <= result.test_accuracy <= 1


def test_one_dim_cnn_trains_a_step():
    torch.manual_seed(0)
    model = build_model(_cfg(name="cnn", channels=[4, 4], kernel_size=5, stride=2, hidden=[8]), (40,), 3)
    _train_step(model, torch.randn(32, 40), torch.randint(0, 3, (32,)))


def test_kernel_larger_than_the_map_is_one_config_error():
    # L = 5, k9 p0: 5 + 0 - 9 < 0 -> size 0
    _one_line_error(lambda: build_model(_cfg(name="cnn", channels=[2], kernel_size=9, padding=0), (5,), 3),
                    "model.kernel_size=9", "conv block 0", "size 5", "at most 5")
    # 40 -> 19 -> 9 -> 4 -> 1 (k5 s2 p1), then block 4: 1 + 2 - 5 < 0
    _one_line_error(lambda: build_model(_cfg(name="cnn", channels=[2] * 5, kernel_size=5, stride=2, padding=1,
                                             pool="none"), (40,), 3),
                    "conv block 4", "size 1", "at most 3")
    # images: the narrow side runs out first; with pooling 8 x 3 -> 8 x 3 -> 4 x 1, then k3 p0
    _one_line_error(lambda: build_model(_cfg(name="cnn", channels=[2, 2], padding=[1, 0]), (1, 8, 3), 3),
                    "model.kernel_size=3", "conv block 1", "size 4x1")


def test_instance_norm_on_a_single_position_is_one_config_error():
    # 40 -> 19 -> 9 -> 4 -> 1 (k5 s2 p1): block 3 leaves one position, which instance norm cannot normalize
    cfg = _cfg(name="cnn", channels=[2] * 4, kernel_size=5, stride=2, padding=1, pool="none", norm="instance")
    _one_line_error(lambda: build_model(cfg, (40,), 3), "model.norm='instance'", "conv block 3", "size 1", "allowed")
    _one_line_error(lambda: build_model(_cfg(name="cnn", channels=[2], kernel_size=3, padding=0, norm="instance"),
                                        (1, 3, 3), 3), "size 1x1")
    build_model(dataclasses.replace(cfg, channels=[2] * 3), (40,), 3)(torch.randn(2, 40))  # 4 positions: fine


def test_cnn_input_shapes_and_list_lengths_are_config_errors():
    _one_line_error(lambda: build_model(_cfg(name="cnn"), (1, 2, 8, 8), 3),
                    "model.name='cnn'", "(1, 2, 8, 8)", "(D,), (C, L) or (C, H, W)")
    _one_line_error(lambda: build_model(_cfg(name="cnn", channels=[2, 2], stride=[1, 2, 2]), (40,), 3),
                    "model.stride=[1, 2, 2]", "3 values for 2 conv blocks", "one per block")


# --------------------------------------------------------------------------- torch_default

def test_torch_default_mlp_equals_torch_linear_layers():
    torch.manual_seed(3)
    model = build_model(_cfg(hidden=[16, 8], init="torch_default"), (40,), 3)
    torch.manual_seed(3)
    ref = [nn.Linear(40, 16), nn.Linear(16, 8), nn.Linear(8, 3)]
    ours = [model.fc0[0], model.fc1[0], model.out]
    for a, b in zip(ours, ref):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert all(torch.count_nonzero(a.bias) == a.bias.numel() for a in ours)  # biases are not zeroed


def test_torch_default_leaves_a_model_exactly_as_it_is():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 3), nn.LayerNorm(3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # norm scales no longer 1, shifts no longer 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init_model(model, "torch_default")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    init_model(model, "he_normal")  # the other schemes do reset them: the check above can fail
    assert torch.count_nonzero(model[3].bias) == 0 and torch.equal(model[1].weight, torch.ones(4))


@pytest.mark.parametrize("make", [lambda: nn.Linear(1000, 400), lambda: nn.Conv1d(50, 400, 5)],
                         ids=["linear", "conv1d"])
def test_torch_default_is_uniform_in_one_over_sqrt_fan_in(make):
    torch.manual_seed(0)
    layer = init_model(make(), "torch_default")
    bound = 1 / math.sqrt(layer.weight[0].numel())  # fan_in = 1000 or 50 x 5 = 250
    for p in (layer.weight, layer.bias):
        assert p.abs().max().item() <= bound
        assert p.abs().max().item() > 0.95 * bound  # fills the interval
    uniform = scipy_stats.uniform(loc=-bound, scale=2 * bound).cdf
    assert scipy_stats.kstest(layer.weight.detach().flatten().numpy(), uniform).pvalue > 0.01
    # the test can fail: he_uniform (bound sqrt(6) times wider) is rejected
    he = init_model(make(), "he_uniform").weight
    assert scipy_stats.kstest(he.detach().flatten().numpy(), uniform).pvalue < 1e-6


# --------------------------------------------------------------------------- stats and diagnostics

def test_flops_of_a_one_dim_cnn_by_hand():
    # conv0: 1 -> 4 channels, k5 s2 p2 on 40: 20 positions; 4 x 20 outputs x (1 x 5) = 400 MACs
    # out: Linear(4 x 20 -> 10) = 800 MACs; the data (unflattened) takes no input gradient
    cfg = _cfg(name="cnn", channels=[4], kernel_size=5, stride=2, padding=2, pool="none", hidden=[])
    model = build_model(cfg, (40,), 10)
    assert forward_macs(model, (40,)) == 400 + 800
    assert flops_per_sample(model, (40,)) == 2 * 400 * 2 + 2 * 800 * 3
    assert count_params(model) == 4 * 5 + 4 + 80 * 10 + 10


def test_flops_of_a_residual_mlp_match_the_plain_one():
    plain = build_model(_cfg(hidden=[16, 16]), (40,), 3)
    residual = build_model(_cfg(hidden=[16, 16], residual=True), (40,), 3)
    macs = 40 * 16 + 16 * 16 + 16 * 3
    assert forward_macs(residual, (40,)) == forward_macs(plain, (40,)) == macs
    assert flops_per_sample(residual, (40,)) == 2 * (2 * macs + macs - 40 * 16)


@pytest.mark.parametrize("cfg, names", [
    (_cfg(hidden=[16, 16, 16], residual=True), ["fc0", "fc1", "fc2", "out"]),
    (_cfg(name="cnn", channels=[4, 6], kernel_size=5, stride=2, hidden=[8], norm="instance"),
     ["conv0", "conv1", "fc0", "out"]),
])
def test_layer_stats_walk_residual_and_one_dim_models(cfg, names):
    torch.manual_seed(0)
    model = build_model(cfg, (40,), 3)
    stats = layer_stats(model, torch.randn(32, 40), torch.randint(0, 3, (32,)))
    assert [s["name"] for s in stats] == names
    assert all(s["grad_norm"] is not None and s["grad_norm"] > 0 for s in stats)
    hidden = [s for s in stats if s["kind"] == "hidden"]
    assert [s["units"] for s in hidden] == ([16, 16, 16] if cfg.name == "mlp" else [4, 6, 8])
    assert all(0 <= s["dead_fraction"] <= 1 for s in hidden)


def test_dead_channels_of_a_one_dim_map_are_counted_per_channel():
    torch.manual_seed(0)
    model = build_model(_cfg(name="cnn", channels=[4], hidden=[], pool="none"), (40,), 3)
    with torch.no_grad():
        model.conv0[0].bias[:2] = -100.0  # channels 0 and 1 never fire
    stats = layer_stats(model, torch.randn(16, 40), torch.randint(0, 3, (16,)))
    assert stats[0]["dead_fraction"] == 0.5


def test_inspect_runs_on_a_mnist1d_cnn(tmp_path):
    import typer
    from typer.testing import CliRunner

    from tunelab.cli.inspect import inspect_command

    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)
    app.command("inspect")(inspect_command)
    out = tmp_path / "inspect"
    result = CliRunner().invoke(app, ["inspect", "--set", "data.name=mnist1d", "--set", "model.name=cnn",
                                      "--set", "model.channels=[4, 4]", "--set", "model.stride=2",
                                      "--set", "model.hidden=[]", "--set", "training.threads=1",
                                      "--set", "training.train_eval_size=0",
                                      "--batch", "64", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "cnn [4, 4] k3 s2 head []" in result.output
    report = json.loads((out / "diagnostics.json").read_text())
    assert [s["name"] for s in report["init"]] == ["conv0", "conv1", "out"]
