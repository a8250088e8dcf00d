"""analyze() on constructed runs: pairing by seed, verdicts, curves, factorial effects."""

import math

import pytest

from tunelab.analysis.compare import analyze, curve_bands
from tunelab.analysis.designs import factorial, one_at_a_time


def _run(arm, seed, acc, epochs=3):
    hist = [dict(epoch=e, train_loss=1 / e, val_loss=1 / e, train_accuracy=acc + 0.01, val_accuracy=acc - 0.1 / e,
                 lr=0.1, seconds=1.0) for e in range(1, epochs + 1)]
    return dict(arm=arm, arm_name=str(arm), seed=seed, status="completed", history=hist,
                result=dict(status="completed", test_accuracy=acc, best_val_accuracy=acc - 0.1 / epochs), reason="")


def _design(arms, factorial_=False):
    from dataclasses import asdict
    return dict(arms=[asdict(a) for a in arms], seeds=list(range(5)), base={}, factorial=factorial_)


def test_paired_by_seed_detects_a_consistent_small_gain():
    arms = one_at_a_time({"model": {"norm": "none"}}, [("model.norm", ["none", "batch"])])
    seed_effect = [0.0, 0.05, -0.04, 0.02, -0.03]  # large between-seed noise, shared by both arms
    runs = [_run(0, s, 0.90 + seed_effect[s]) for s in range(5)] + \
           [_run(1, s, 0.91 + seed_effect[s] + 0.001 * (s % 2)) for s in range(5)]
    out = analyze(_design(arms), runs, target=0.85)
    comp = out["metrics"]["test_accuracy"]["comparisons"][0]
    assert comp["verdict"].label == "better"  # unpaired the noise would hide a 1-point gain
    assert comp["paired"].mean_diff == pytest.approx(0.0104, abs=1e-9)
    seconds = out["metrics"]["seconds"]["comparisons"][0]
    assert seconds["verdict"].label == "no detectable difference"  # identical seconds
    assert out["arms"][1]["curves"]["val_accuracy"]["epoch"] == [1, 2, 3]


def test_diverged_runs_are_excluded_from_the_pairs():
    arms = one_at_a_time({"optimizer": {"lr": 0.1}}, [("optimizer.lr", [0.1, 10.0])])
    runs = [_run(0, s, 0.9) for s in range(5)] + [_run(1, s, 0.5) for s in range(3)]
    for s in (3, 4):
        r = _run(1, s, 0.1)
        r["result"] = dict(status="diverged", test_accuracy=None)
        runs.append(r)
    out = analyze(_design(arms), runs, target=0.85)
    assert out["arms"][1]["failed"] == 2
    assert out["metrics"]["test_accuracy"]["comparisons"][0]["n"] == 3


def test_factorial_effects_are_recovered():
    arms = factorial({"model": {"dropout": 0.0, "norm": "none"}},
                     [("model.dropout", [0.0, 0.5]), ("model.norm", ["none", "batch"])])
    effect = {(0.0, "none"): 0.90, (0.0, "batch"): 0.94, (0.5, "none"): 0.86, (0.5, "batch"): 0.90}
    runs = [_run(i, s, effect[(a.levels["model.dropout"], a.levels["model.norm"])] + 0.001 * s)
            for i, a in enumerate(arms) for s in range(5)]
    out = analyze(_design(arms, factorial_=True), runs, target=0.8)
    main = out["effects"]["main"]
    assert main["model.norm"]["effect"] == pytest.approx(0.04)
    assert main["model.dropout"]["effect"] == pytest.approx(0.04)
    inter = out["effects"]["interactions"]["model.dropout x model.norm"]
    assert abs(inter["strength"]) < 1e-9 or math.isnan(inter["strength"])


def test_curve_bands_handle_early_stopped_seeds():
    h1 = [dict(val_loss=v) for v in (1.0, 0.5, 0.25)]
    h2 = [dict(val_loss=v) for v in (3.0, 1.5)]
    bands = curve_bands([h1, h2], "val_loss")
    assert bands["mean"] == [2.0, 1.0, 0.25] and bands["low"][0] == 1.0 and bands["high"][1] == 1.5
