"""Network diagnostics on digits: saturation, dead units, symmetry, vanishing gradients.

Each rule is checked on a net that has the problem and on one that does not, so every test
can fail; the statistics themselves are checked against a hand-written forward/backward.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunelab.analysis.diagnostics import diagnose, hidden_layers, layer_stats, warnings_for
from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.errors import ConfigError
from tunelab.nn import build_model
from tunelab.report.diagnostics_figs import plot_activation_histograms


@pytest.fixture(scope="module")
def digits():
    return load_data(from_dict({}).data)


@pytest.fixture(scope="module")
def probe(digits):
    idx = torch.randperm(len(digits.y_train), generator=torch.Generator().manual_seed(0))[:512]
    return digits.x_train[idx], digits.y_train[idx]


def _model(digits, **model):
    cfg = from_dict({"model": model})
    torch.manual_seed(0)
    return build_model(cfg.model, digits.input_shape, digits.num_classes)


def _hidden(stats):
    return [s for s in stats if s["kind"] == "hidden"]


def _stats(digits, probe, **model):
    return layer_stats(_model(digits, **model), *probe)


# --------------------------------------------------------------------------- the rules on real nets

@pytest.mark.parametrize("init,saturated", [("normal", True), ("xavier_normal", False)])
def test_sigmoid_saturation_at_init(digits, probe, init, saturated):
    stats = _stats(digits, probe, hidden=[256, 256, 256], activation="sigmoid", init=init, init_std=1.0)
    fractions = [s["saturated_fraction"] for s in _hidden(stats)]
    flagged = [w for w in warnings_for(stats) if "saturated" in w]
    if saturated:  # std 1 weights: pre-activations of std ~9 from layer 2 on
        assert max(fractions) >= 0.6
        assert flagged and flagged[0].startswith("layer 2 (sigmoid): ") and "% of units saturated at init" in flagged[0]
        assert "xavier" in flagged[0]
    else:
        assert max(fractions) < 0.05 and flagged == []


def test_tanh_saturation_fills_the_histogram_to_its_edges(digits, probe):
    stats = _stats(digits, probe, hidden=[64, 64], activation="tanh", init="normal", init_std=1.0)
    layer = _hidden(stats)[1]
    edges, counts = layer["histogram"]["edges"], layer["histogram"]["counts"]
    assert -1.0 <= edges[0] < -0.98 and 0.98 < edges[-1] <= 1.0  # saturated: the observed range is the tails
    assert counts[0] + counts[-1] > counts[len(counts) // 2]
    assert layer["saturated_fraction"] > 0.5 and layer["dead_fraction"] is None


def test_relu_with_a_large_negative_bias_is_dead(digits, probe):
    model = _model(digits, hidden=[64, 64], activation="relu")
    with torch.no_grad():
        model.fc0[0].bias.fill_(-10.0)
    stats = layer_stats(model, *probe)
    assert _hidden(stats)[0]["dead_fraction"] >= 0.99
    warnings = warnings_for(stats)
    assert any(w.startswith("layer 1 (relu): 100% of units dead at init") and "leaky_relu" in w for w in warnings)
    assert not any("symmetry" in w for w in warnings)  # a constant input is not a symmetric init


def test_he_relu_has_few_dead_units(digits, probe):
    stats = _stats(digits, probe, hidden=[64, 64], activation="relu", init="he_normal")
    assert all(s["dead_fraction"] < 0.2 for s in _hidden(stats))
    assert warnings_for(stats) == []


def test_zeros_init_gives_the_symmetry_warning(digits):
    cfg = from_dict({"model": {"hidden": [32, 32], "activation": "sigmoid", "init": "zeros"}})
    report = diagnose(cfg, epochs=1, batch=256, data=digits)
    expected = "layer 1: all units compute the same function (symmetry not broken); use a random init"
    assert expected in report["warnings"]
    assert all(s["units_identical"] for s in _hidden(report["trained"]))  # training never breaks it
    random_init = diagnose(from_dict({"model": {"hidden": [32, 32], "activation": "sigmoid"}}),
                           epochs=1, batch=256, data=digits)
    assert not any("symmetry" in w for w in random_init["warnings"])


@pytest.mark.parametrize("activation,init,vanishing", [("sigmoid", "normal", True),
                                                       ("relu", "he_normal", False)])
def test_vanishing_gradients_in_a_deep_net(digits, probe, activation, init, vanishing):
    stats = _stats(digits, probe, hidden=[64] * 8, activation=activation, init=init, init_std=0.01)
    hidden = _hidden(stats)
    ratio = hidden[0]["grad_norm"] / hidden[-1]["grad_norm"]
    flagged = [w for w in warnings_for(stats) if "vanishing" in w]
    if vanishing:  # each sigmoid layer shrinks the gradient by ~0.25 * 0.01 * sqrt(64)
        assert ratio < 1e-6 and len(flagged) == 1
        assert flagged[0].startswith("gradient norm falls ") and "from the last layer to the first at init" in flagged[0]
    else:
        assert 1e-1 < ratio < 1e1 and flagged == []


# --------------------------------------------------------------------------- the rules on scripted stats

def _layer(layer, activation="relu", sat=None, dead=None, grad=1.0, identical=False):
    return dict(layer=layer, kind="hidden", name=f"fc{layer - 1}", activation=activation,
                saturated_fraction=sat, dead_fraction=dead, units_identical=identical, grad_norm=grad)


def test_warning_thresholds_and_wording():
    init = [_layer(1, dead=0.49), _layer(2, dead=0.1), _layer(3, "sigmoid", sat=0.2),
            _layer(4, "sigmoid", sat=0.97), {"layer": 5, "kind": "output", "grad_norm": 1.0}]
    trained = [_layer(1, dead=0.2), _layer(2, dead=0.63), _layer(3, "sigmoid", sat=0.5),
               _layer(4, "sigmoid", sat=0.1)]
    assert warnings_for(init, trained) == [
        "layer 2 (relu): 63% of units dead after training; try he init, a lower lr or leaky_relu",
        "layer 3 (sigmoid): 50% of units saturated after training; try xavier init or batch norm",
        "layer 4 (sigmoid): 97% of units saturated at init; try xavier init or batch norm",
    ]
    both = warnings_for([_layer(1, "tanh", sat=0.9)], [_layer(1, "tanh", sat=0.8)])
    assert both == ["layer 1 (tanh): 90% of units saturated at init, 80% after training; "
                    "try xavier init or batch norm"]


@pytest.mark.parametrize("first,last,word", [(1e-4, 1.0, "vanishing"), (2e3, 1.0, "exploding"),
                                             (2e-3, 1.0, None), (5e2, 1.0, None), (0.0, 0.0, None)])
def test_gradient_ratio_rule(first, last, word):
    stats = [_layer(1, grad=first), _layer(2, grad=0.5), _layer(3, grad=last)]
    warnings = warnings_for(stats, [])
    assert [w for w in warnings if word and word in w] == warnings
    assert len(warnings) == (word is not None)
    if word == "vanishing":
        assert warnings == ["gradient norm falls 1e+04x from the last layer to the first at init: "
                            "vanishing gradients; try he/xavier init, batch norm or relu"]


def test_symmetry_is_one_warning_per_layer():
    stats = [_layer(1, "sigmoid", sat=0.0, identical=True), _layer(2, "sigmoid", sat=0.0)]
    assert warnings_for(stats, stats) == [
        "layer 1: all units compute the same function (symmetry not broken); use a random init"]


# --------------------------------------------------------------------------- layer_stats itself

def test_layer_stats_changes_nothing_and_leaves_nothing_behind(digits, probe):
    model = _model(digits, hidden=[32, 16], activation="relu", norm="batch", dropout=0.5)
    model.eval()
    model.fc1.train()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    rng = torch.get_rng_state()
    layer_stats(model, *probe)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(torch.get_rng_state(), rng)  # dropout drew from a forked generator
    grads = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    layer_stats(model, *probe)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_layer_stats_against_a_hand_written_pass():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x, y = torch.randn(40, 6) * 4, torch.randint(0, 3, (40,))
    stats = layer_stats(net, x, y)
    h1 = torch.sigmoid(net[0](x))
    h2 = torch.relu(net[2](h1))
    F.cross_entropy(net[4](h2), y).backward()
    s1, s2, out = stats
    assert [s["kind"] for s in stats] == ["hidden", "hidden", "output"]
    assert math.isclose(s1["mean"], h1.mean().item(), rel_tol=1e-5)
    assert math.isclose(s1["std"], h1.std(unbiased=False).item(), rel_tol=1e-5)
    assert s1["saturated_fraction"] == ((h1 < 0.02) | (h1 > 0.98)).double().mean().item() > 0.05
    assert math.isclose(s1["histogram"]["edges"][0], h1.min().item(), rel_tol=1e-6)
    assert math.isclose(s1["histogram"]["edges"][-1], h1.max().item(), rel_tol=1e-6)
    assert sum(s1["histogram"]["counts"]) == 40 * 5 and len(s1["histogram"]["counts"]) == 50
    assert s2["dead_fraction"] == (h2 <= 0).all(0).double().mean().item()
    for s, layer in ((s1, net[0]), (s2, net[2]), (out, net[4])):
        assert math.isclose(s["grad_norm"], layer.weight.grad.norm().item(), rel_tol=1e-5)


def test_cnn_layers_and_per_channel_dead_units(digits, probe):
    model = _model(digits, name="cnn", channels=[4, 8], hidden=[16], activation="relu")
    with torch.no_grad():
        model.conv1[0].bias[:4] = -100.0  # half the channels of conv1 never fire
    layers, (out_name, _) = hidden_layers(model)
    assert [h["name"] for h in layers] == ["conv0", "conv1", "fc0"] and out_name == "out"
    stats = layer_stats(model, *probe)
    assert stats[1]["dead_fraction"] == 0.5 and stats[1]["units"] == 8


# --------------------------------------------------------------------------- diagnose and the figure

def test_diagnose_is_deterministic_and_json_ready(digits):
    cfg = from_dict({"model": {"hidden": [16, 16]}, "training": {"seed": 3}})
    a = diagnose(cfg, epochs=2, batch=128, data=digits)
    assert a == diagnose(cfg, epochs=2, batch=128, data=digits)
    assert a["context"]["seed"] == 3 and a["context"]["epochs"] == 2 and a["context"]["batch"] == 128
    assert a["config"]["training"]["epochs"] == 2
    assert a["init"] != a["trained"]  # training moved the weights
    json.dumps(a, allow_nan=False)


@pytest.mark.parametrize("kwargs,message", [({"epochs": 0}, "training.epochs=0"), ({"batch": 0}, "batch=0")])
def test_diagnose_rejects_bad_arguments(digits, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        diagnose(from_dict({}), data=digits, **kwargs)


def test_histogram_figure_has_a_row_per_hidden_layer(digits, probe):
    stats = _stats(digits, probe, hidden=[16, 16, 16], activation="sigmoid", init="normal", init_std=1.0)
    fig = plot_activation_histograms(stats, stats)
    assert len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[2].startswith("layer 2 fc1 (sigmoid), init: saturated ")
    assert titles[3].startswith("layer 2 fc1 (sigmoid), trained: ")
    empty = plot_activation_histograms(stats, [])
    assert "no trained stats" in [t.get_text() for t in empty.axes[1].texts]


def test_vanishing_signal_of_a_deep_tanh_net_with_tiny_init_is_flagged():
    from tunelab.analysis.diagnostics import diagnose
    from tunelab.config import from_dict

    base = {"model": {"hidden": [128] * 6, "activation": "tanh", "init": "normal", "init_std": 0.01}}
    bad = diagnose(from_dict(base), epochs=1)
    assert any("signal vanishes" in w for w in bad["warnings"])
    good = diagnose(from_dict({"model": dict(base["model"], init="xavier_normal")}), epochs=1)
    assert not any("signal vanishes" in w for w in good["warnings"])
