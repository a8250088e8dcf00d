"""analyze() on constructed runs: pairing by seed, verdicts, curves, factorial effects."""

import math

import pytest

from tunelab.analysis.compare import BOUNDS, METRICS, analyze, curve_bands, display_interval
from tunelab.analysis.designs import factorial, one_at_a_time
from tunelab.analysis.stats import seeds_needed


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
    # diverged is an outcome of its own, not a failed run (a trial that errored)
    assert {k: out["arms"][1][k] for k in ("runs", "completed", "diverged", "failed")} == \
        dict(runs=5, completed=3, diverged=2, failed=0)
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


def _three_arms():
    return one_at_a_time({"model": {"dropout": 0.0}}, [("model.dropout", [0.0, 0.2, 0.5])])


def test_verdicts_count_the_arms_compared_and_the_test_used():
    base, drop = [0.95, 0.95], [0.10, 0.12]  # an 84-point drop on 2 seeds
    runs = [_run(0, s, base[s]) for s in range(2)] + [_run(1, s, drop[s]) for s in range(2)] + \
           [_run(2, s, base[s] - 0.001 * s) for s in range(2)]
    out = analyze(_design(_three_arms()), runs, target=0.5, test="wilcoxon")
    comp = out["metrics"]["test_accuracy"]["comparisons"][0]
    assert comp["paired"].ci_high < 0 and comp["verdict"].label == "no detectable difference"
    assert comp["verdict"].text.startswith(
        "no detectable difference at 2 seeds: Wilcoxon cannot reach p<0.05 after Holm over 2 comparisons "
        "with 2 seeds (smallest possible adjusted p=1); use at least 7 seeds or the t-test")
    assert comp["verdict"].seeds_needed == 7 > comp["n"]

    noise = [0.004, -0.006, 0.003, -0.001, 0.002]
    runs = [_run(0, s, 0.90) for s in range(5)] + [_run(1, s, 0.90 + noise[s]) for s in range(5)] + \
           [_run(2, s, 0.90 - noise[s]) for s in range(5)]
    out = analyze(_design(_three_arms()), runs, target=0.5)
    for comp in out["metrics"]["test_accuracy"]["comparisons"]:
        v = comp["verdict"]
        assert v.label == "no detectable difference" and v.text.endswith("with 80% power at alpha=0.05/2)")
        assert v.seeds_needed == seeds_needed(comp["paired"].effect_size, comparisons=2) > 5


def test_display_interval_clips_only_bounded_metrics():
    assert display_interval("test_accuracy", -0.445, 1.7848) == (0.0, 1.0)
    assert display_interval("best_val_accuracy", 0.2, 0.4) == (0.2, 0.4)
    assert display_interval("final_gap", -1.5, 0.1) == (-1.0, 0.1)
    assert display_interval("seconds", -3.0, 5.0) == (-3.0, 5.0)
    assert display_interval("epochs_to_target", -1.0, 9.0) == (-1.0, 9.0)
    low, high = display_interval("test_accuracy", math.nan, math.nan)
    assert math.isnan(low) and math.isnan(high)
    assert set(BOUNDS) <= set(METRICS)


def test_report_clips_arm_intervals_but_not_differences():
    import matplotlib.pyplot as plt

    from tunelab.report.assemble import _interval_rows, _verdict_rows, compare_sections

    base, arm = [0.10, 0.99], [0.99, 0.10]  # 2 seeds far apart: t intervals run far past 0-100
    runs = [_run(0, s, base[s]) for s in range(2)] + [_run(1, s, arm[s]) for s in range(2)]
    arms = one_at_a_time({"model": {"dropout": 0.0}}, [("model.dropout", [0.0, 0.2])])
    out = analyze(_design(arms), runs, target=0.5)  # above chance (0.1 on the default digits)
    raw = out["metrics"]["test_accuracy"]["summaries"][0]
    assert raw.ci_low < -4 and raw.ci_high > 5  # the stored summary keeps the t interval
    rows = _verdict_rows(out, "test_accuracy")
    assert [r["95% CI"] for r in rows] == ["0.00 to 100.00", "0.00 to 100.00"]
    diff = rows[1]["diff vs baseline (95% CI, unadjusted)"]
    assert diff.startswith("0.00 (-") and float(diff.split("(")[1].split()[0]) < -1000  # not clipped
    for r in _interval_rows(out, "test_accuracy"):
        assert 0.0 <= r["ci_low"] <= r["mean"] <= r["ci_high"] <= 100.0
    seconds = out["metrics"]["seconds"]["summaries"][0]  # identical seconds: a point interval
    assert _verdict_rows(out, "seconds")[0]["95% CI"] == f"{seconds.ci_low:.2f} to {seconds.ci_high:.2f}"
    sections = compare_sections(_design(arms), out)
    plt.close("all")
    words = next(s for s in sections if s.title == "In words").content
    assert "CIs of the differences are unadjusted" in words and "clipped" in words
    caption = next(s for s in sections if s.title == "Paired differences").caption
    assert "unadjusted" in caption


def test_diagnose_arms_reports_each_arm_as_it_is_measured():
    from tunelab.analysis.compare import diagnose_arms

    base = {"model": {"hidden": [8, 8]}, "training": {"threads": 1}}
    arms = one_at_a_time(base, [("model.init", ["zeros"])])  # the baseline and one arm
    seen = []
    out = diagnose_arms(base, arms, on_progress=lambda done, total, info: seen.append((done, total, info)))
    assert list(out) == [a.name for a in arms] and [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)]
    infos = [info for _, _, info in seen]
    assert [i["arm"] for i in infos] == [a.name for a in arms] and [i["index"] for i in infos] == [0, 1]
    # the zeros arm never breaks symmetry: its warnings are counted in the progress
    assert [i["warnings"] for i in infos] == [len(out[a.name]["warnings"]) for a in arms]
    assert infos[1]["warnings"] >= 1 and all(0 <= i["val_accuracy"] <= 1 for i in infos)
