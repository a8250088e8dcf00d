"""Compare verdicts on constructed runs (no training): divergence as an outcome, the target of
epochs_to_target and its refusals, factorial effects around a fully diverged cell, no gap
verdict for a network that learned nothing, and the gap in evaluation mode."""

from __future__ import annotations

import io
import math
from dataclasses import asdict
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
from scipy import stats

from tunelab.analysis.compare import METRICS, analyze, run_metrics
from tunelab.analysis.designs import factorial, one_at_a_time
from tunelab.analysis.stats import final_gap, holm
from tunelab.errors import ConfigError
from tunelab.report.assemble import _verdict_rows, compare_sections

NOISE = [-0.002, 0.001, 0.0, -0.001, 0.002]  # per seed; sums to zero, so cell means are exact


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _run(arm, seed, val, *, status="completed", train_eval=True, epochs=3, num_classes=None, test=None):
    """One run as collect_runs returns it; val is the last (and best) validation accuracy."""
    hist = []
    for e in range(1, epochs + 1):
        v = val - 0.02 * (epochs - e)
        row = dict(epoch=e, train_loss=1 / e, val_loss=1 / e, train_accuracy=v + 0.01, val_accuracy=v,
                   lr=0.1, seconds=1.0)
        if train_eval is not None:
            row.update(train_eval_loss=0.5 / e, train_eval_accuracy=v + 0.03 if train_eval else math.nan)
        hist.append(row)
    result = dict(status=status, test_accuracy=val if test is None else test, best_val_accuracy=val)
    if status == "diverged":
        hist[-1].update(train_loss=math.nan, val_loss=math.nan)
        result.update(test_accuracy=None, best_val_accuracy=None)
    if num_classes is not None:
        result["num_classes"] = num_classes
    return dict(arm=arm, arm_name=str(arm), seed=seed, status=status, history=hist, result=result, reason="")


def _design(arms, factorial_=False, base=None):
    return dict(arms=[asdict(a) for a in arms], seeds=list(range(5)), base=base or {}, factorial=factorial_)


def _norm_arms():
    return one_at_a_time({"model": {"norm": "none"}}, [("model.norm", ["none", "batch"])])


def _words(design, out, metric="test_accuracy"):
    sections = compare_sections(design, out, metric=metric)
    return {s.title: s for s in sections}


# ---------------------------------------------------------------- divergence as an outcome

def test_an_arm_that_trains_where_every_baseline_seed_diverges():
    runs = [_run(0, s, 0.1, status="diverged") for s in range(5)] + [_run(1, s, 0.93 + NOISE[s]) for s in range(5)]
    design = _design(_norm_arms())
    out = analyze(design, runs)
    base, arm = out["arms"]
    assert (base["completed"], base["diverged"], base["failed"]) == (0, 5, 0)
    assert (arm["completed"], arm["diverged"], arm["failed"]) == (5, 0, 0)
    (div,) = out["divergence"]
    assert div["p_value"] == pytest.approx(stats.fisher_exact([[0, 5], [5, 0]], alternative="two-sided").pvalue)
    assert div["p_adjusted"] == div["p_value"] and div["label"] == "diverges less"
    assert div["text"] == ("model.norm=batch trains where the baseline diverges: 0/5 vs 5/5 diverged "
                           "(Fisher exact p = 0.00794)")
    comp = out["metrics"]["test_accuracy"]["comparisons"][0]
    assert comp["verdict"] is None and comp["n"] == 0
    assert comp["note"] == "no paired comparison: the baseline diverged in 5 of 5 runs (0 pairs left, 2 needed)"
    rows = _verdict_rows(out, "test_accuracy")
    assert rows[0]["completed runs"] == "0/5 (5 diverged)" and rows[1]["verdict"] == comp["note"]
    sections = _words(design, out)
    words = sections["In words"].content
    assert div["text"] in words and comp["note"] in words and "Not enough runs" not in words
    assert [(r["arm"], r["completed"], r["diverged"], r["failed"]) for r in sections["Arms"].content] == \
        [("baseline", 0, 5, 0), ("model.norm=batch", 5, 0, 0)]


def test_divergence_tests_are_holm_adjusted_across_arms():
    arms = one_at_a_time({"model": {"init_std": 0.01}}, [("model.init_std", [0.01, 1.0, 10.0])])
    runs = [_run(0, s, 0.93) for s in range(5)] + \
        [_run(1, s, 0.9, status="diverged" if s == 0 else "completed") for s in range(5)] + \
        [_run(2, s, 0.1, status="diverged") for s in range(5)]
    out = analyze(_design(arms), runs, target=0.8)
    p = [stats.fisher_exact(t, alternative="two-sided").pvalue for t in ([[1, 4], [0, 5]], [[5, 0], [0, 5]])]
    assert [d["p_value"] for d in out["divergence"]] == pytest.approx(p)
    assert [d["p_adjusted"] for d in out["divergence"]] == pytest.approx(holm(p))
    assert [d["text"] for d in out["divergence"]] == [
        "model.init_std=1.0: no detectable difference in divergence: 1/5 vs 0/5 diverged "
        "(Fisher exact p = 1, Holm over 2 arms)",
        "model.init_std=10.0 diverges where the baseline trains: 5/5 vs 0/5 diverged "
        "(Fisher exact p = 0.0159, Holm over 2 arms)"]
    notes = [c.get("note") for c in out["metrics"]["test_accuracy"]["comparisons"]]
    assert notes == ["", "no paired comparison: this arm diverged in 5 of 5 runs (0 pairs left, 2 needed)"]


def test_too_few_seeds_for_fisher_to_tell_are_named():
    runs = [_run(0, s, 0.1, status="diverged") for s in range(3)] + [_run(1, s, 0.93) for s in range(3)]
    (div,) = analyze(_design(_norm_arms()), runs)["divergence"]
    assert div["p_value"] == pytest.approx(stats.fisher_exact([[0, 3], [3, 0]]).pvalue)
    assert stats.fisher_exact([[0, 4], [4, 0]]).pvalue < 0.05  # 4 seeds could tell
    assert div["text"] == ("model.norm=batch: no detectable difference in divergence: 0/3 vs 3/3 diverged "
                           "(Fisher exact p = 0.1); 3 against 3 runs cannot reach p<0.05 (smallest possible "
                           "p = 0.1): use at least 4 seeds")


def test_no_divergence_anywhere_means_no_fisher_test():
    runs = [_run(a, s, 0.9 + 0.01 * a + NOISE[s]) for a in (0, 1) for s in range(5)]
    assert analyze(_design(_norm_arms()), runs)["divergence"] == []


# ---------------------------------------------------------------- the target

def test_target_rule_and_an_arm_that_never_reaches_it():
    arms = one_at_a_time({"model": {"dropout": 0.0}}, [("model.dropout", [0.0, 0.2, 0.5])])
    runs = [_run(0, s, 0.96 + NOISE[s]) for s in range(5)] + [_run(1, s, 0.90) for s in range(5)] + \
        [_run(2, s, 0.97 if s < 3 else 0.90) for s in range(5)]
    design = _design(arms)
    out = analyze(design, runs)
    assert out["target"] == round(0.99 * 0.96, 4) == 0.9504
    assert out["target_rule"] == "99% of the baseline's mean best validation accuracy, 0.9600"
    m = out["metrics"]["epochs_to_target"]
    never, partial = m["comparisons"]
    assert never["verdict"] is None and never["note"] == "never reached in 5 of 5 runs"
    assert partial["n"] == 3 and partial["verdict"] is not None  # paired over the 3 seeds that got there
    assert m["notes"] == ["", "never reached in 5 of 5 runs", "reached in 3 of 5 runs"]
    rows = _verdict_rows(out, "epochs_to_target")
    assert rows[1]["verdict"] == "never reached in 5 of 5 runs" and rows[2]["note"] == "reached in 3 of 5 runs"
    sections = _words(design, out, "epochs_to_target")
    words = sections["In words"].content
    assert "model.dropout=0.2: never reached in 5 of 5 runs" in words and "not enough runs" not in words
    assert ("Target validation accuracy 0.9504: 99% of the baseline's mean best validation accuracy, 0.9600."
            in words)
    given = analyze(design, runs, target=0.9)
    assert given["target_rule"] == "given with --target" and given["metrics"]["epochs_to_target"]["notes"] == [""] * 3
    text = _words(design, given)["Target"].content
    assert text == "Target validation accuracy 0.9000: given with --target."


def test_no_automatic_target_when_the_baseline_does_not_learn():
    runs = [_run(0, s, 0.11) for s in range(5)] + [_run(1, s, 0.93 + NOISE[s]) for s in range(5)]
    design = _design(_norm_arms())  # the default dataset, digits: 10 classes, chance 0.10
    out = analyze(design, runs)
    assert out["target"] is None
    assert out["target_note"] == ("the baseline does not learn (best val accuracy 0.11, chance 0.10): "
                                  "no automatic target; give --target")
    m = out["metrics"]["epochs_to_target"]
    assert m["skipped"] == out["target_note"] and m["comparisons"] == []
    assert all(math.isnan(run_metrics(r, out["target"])["epochs_to_target"]) for r in runs)
    assert _words(design, out)["Target"].content == f"No target validation accuracy: {out['target_note']}."
    # the runs' own class count wins over the dataset's: 2 classes, chance 0.5
    binary = [dict(r, result=dict(r["result"], num_classes=2)) for r in runs]
    for r in binary[:5]:
        r["result"]["best_val_accuracy"] = 0.52
    assert analyze(design, binary)["target_note"].startswith("the baseline does not learn (best val accuracy 0.52, "
                                                             "chance 0.50)")
    # a learning baseline with a given target at or below chance: one line naming --target
    ok = [_run(a, s, 0.93) for a in (0, 1) for s in range(5)]
    with pytest.raises(ConfigError) as e:
        analyze(design, ok, target=0.1)
    assert str(e.value) == "--target=0.1 is at or below chance (0.1 with 10 classes); allowed: (0.1, 1]"


def test_no_automatic_target_when_every_baseline_run_diverged():
    runs = [_run(0, s, 0.1, status="diverged") for s in range(5)] + [_run(1, s, 0.93) for s in range(5)]
    out = analyze(_design(_norm_arms()), runs)
    assert out["target"] is None and out["target_note"] == \
        "the baseline has no completed run (5/5 diverged): no automatic target; give --target"


# ---------------------------------------------------------------- factorial effects

def test_a_fully_diverged_cell_is_named_and_main_effects_stay_balanced():
    base = {"model": {"norm": "none", "init_std": 0.01}}
    arms = factorial(base, [("model.norm", ["none", "batch"]), ("model.init_std", [0.01, 0.1, 1.0])])
    acc = {("none", 0.01): 0.90, ("none", 0.1): 0.92, ("batch", 0.01): 0.93, ("batch", 0.1): 0.95,
           ("batch", 1.0): 0.97}  # (none, 1.0): every seed diverged
    runs = []
    for i, a in enumerate(arms):
        cell = (a.levels["model.norm"], a.levels["model.init_std"])
        runs += [_run(i, s, acc[cell] + NOISE[s]) if cell in acc else _run(i, s, 0.1, status="diverged")
                 for s in range(5)]
    design = _design(arms, factorial_=True, base=base)
    eff = analyze(design, runs, target=0.8)["effects"]
    assert eff["empty_cells"] == ["cell model.norm=none, model.init_std=1.0: 5/5 diverged"]
    norm, init = eff["main"]["model.norm"], eff["main"]["model.init_std"]
    # norm over init_std 0.01 and 0.1 only: none (0.90 + 0.92) / 2, batch (0.93 + 0.95) / 2;
    # averaging all cells would give batch 0.95 and an effect of 0.04
    assert norm["means"] == pytest.approx({"none": 0.91, "batch": 0.94})
    assert norm["effect"] == pytest.approx(0.03)
    assert norm["note"] == "left out to keep it balanced: model.norm=batch, model.init_std=1.0"
    # init_std over batch only (the one norm with a value at every init_std)
    assert init["means"] == pytest.approx({"0.01": 0.93, "0.1": 0.95, "1.0": 0.97})
    assert init["effect"] == pytest.approx(0.04)
    assert init["left_out"] == ["model.norm=none, model.init_std=0.01", "model.norm=none, model.init_std=0.1"]
    sections = _words(design, analyze(design, runs, target=0.8))
    assert "cell model.norm=none, model.init_std=1.0: 5/5 diverged" in sections["Cells without a value"].content
    table = next(s for t, s in sections.items() if t.startswith("Main effects")).content
    assert table[0]["effect"] == "3.00" and table[0]["left out"] == norm["note"]


# ---------------------------------------------------------------- the gap

def test_a_network_that_learns_nothing_gets_no_gap_verdict():
    runs = [_run(0, s, 0.93 + NOISE[s]) for s in range(5)] + [_run(1, s, 0.10) for s in range(5)]
    for r in runs[5:]:  # train and validation both at chance: a gap of zero, "better" than any
        for e in r["history"]:
            e.update(train_accuracy=0.10, train_eval_accuracy=0.10, val_accuracy=0.10)
    design = _design(_norm_arms())
    out = analyze(design, runs, target=0.8)
    m = out["metrics"]["final_gap"]
    (comp,) = m["comparisons"]
    assert comp["verdict"] is None and comp["note"] == "did not learn (val accuracy ≈ chance): no gap verdict"
    assert m["summaries"][1] is None and out["arms"][1]["learned"] == 0 and out["arms"][0]["learned"] == 5
    assert _verdict_rows(out, "final_gap")[1]["verdict"] == comp["note"]
    words = _words(design, out, "final_gap")["In words"].content
    assert "model.norm=batch: did not learn (val accuracy ≈ chance): no gap verdict" in words
    # the same from the baseline's side: no arm gets a gap verdict against it
    swapped = [dict(r, arm=1 - r["arm"]) for r in runs]
    (comp,) = analyze(design, swapped, target=0.8)["metrics"]["final_gap"]["comparisons"]
    assert comp["note"] == "the baseline did not learn (val accuracy ≈ chance): no gap verdict"


def test_the_gap_is_measured_in_evaluation_mode_and_falls_back_with_a_warning():
    assert "evaluation mode" in METRICS["final_gap"][0]
    run = _run(0, 0, 0.95)  # train_accuracy 0.96 (running), train_eval_accuracy 0.98, val 0.95
    assert run_metrics(run, 0.9, 0.1)["final_gap"] == pytest.approx(0.03) == final_gap(run["history"])
    for missing in (False, None):  # nan (measurement switched off) or absent (an older study)
        old = _run(0, 0, 0.95, train_eval=missing)
        assert run_metrics(old, 0.9, 0.1)["final_gap"] == pytest.approx(0.01) == final_gap(old["history"])
    runs = [_run(0, s, 0.93 + NOISE[s]) for s in range(5)] + [_run(1, s, 0.95, train_eval=None) for s in range(5)]
    design = _design(_norm_arms())
    out = analyze(design, runs, target=0.8)
    assert out["arms"][1]["gap_from_train_accuracy"] == 5 and out["arms"][0]["gap_from_train_accuracy"] == 0
    assert out["metrics"]["final_gap"]["notes"][1] == \
        "gap from train_accuracy in 5 of 5 runs: running average with dropout on: not a fair gap"
    assert "train_eval_accuracy" in out["arms"][0]["curves"] and "train_eval_accuracy" not in out["arms"][1]["curves"]
    gap = _words(design, out)["About the gap"].content
    assert "model.norm=batch (5 of 5 runs)" in gap and "running average with dropout on: not a fair gap" in gap
    # every arm measured in evaluation mode: the learning curves show those numbers
    evaluated = [_run(a, s, 0.93 + 0.01 * a + NOISE[s]) for a in (0, 1) for s in range(5)]
    sections = _words(design, analyze(design, evaluated, target=0.8))
    curves = sections["Learning curves: model.norm"]
    assert "train (evaluation mode, solid)" in curves.caption
    assert [ax.get_title() for ax in curves.content.axes] == [
        "train (evaluation mode) loss / validation loss", "train (evaluation mode) accuracy / validation accuracy"]
    # an arm without them draws validation only; with none measured the running averages are shown
    assert "not recorded for model.norm=batch" in _words(design, out)["Learning curves: model.norm"].caption
    older = [_run(a, s, 0.93, train_eval=None) for a in (0, 1) for s in range(5)]
    curves = _words(design, analyze(design, older, target=0.8))["Learning curves: model.norm"]
    assert "running average over the epoch with dropout on" in curves.caption
    assert curves.content.axes[0].get_title() == "train loss / validation loss"


# ---------------------------------------------------------------- the CLI's summary

def test_the_cli_summary_prints_runs_per_arm_and_divergence(tmp_path):
    from rich.console import Console

    from tunelab.cli.compare import finish_compare

    runs = [_run(0, s, 0.1, status="diverged") for s in range(5)] + [_run(1, s, 0.93 + NOISE[s]) for s in range(5)]
    state = {"diverged": "FAIL", "completed": "COMPLETE"}
    trials = [SimpleNamespace(state=SimpleNamespace(name=state[r["status"]]),
                              user_attrs=dict(arm=r["arm"], arm_name=["baseline", "model.norm=batch"][r["arm"]],
                                              seed=r["seed"], history=r["history"], result=r["result"]))
              for r in runs]
    study = SimpleNamespace(study_name="compare:t", user_attrs={}, get_trials=lambda deepcopy=False: trials)
    buf = io.StringIO()
    finish_compare(study, _design(_norm_arms()), metric="test_accuracy", target=None, test="t",
                   out=tmp_path / "c", command="", console=Console(file=buf, width=200))
    printed = buf.getvalue()
    assert "runs per arm" in printed
    counts = [line.split("│")[1:5] for line in printed.splitlines() if line.count("│") >= 5 and "diverged" not in line]
    assert [[c.strip() for c in row] for row in counts][-2:] == [["baseline", "0", "5", "0"],
                                                                 ["model.norm=batch", "5", "0", "0"]]
    assert ("model.norm=batch trains where the baseline diverges: 0/5 vs 5/5 diverged (Fisher exact p = 0.00794)"
            in printed)
    assert "model.norm=batch: no paired comparison: the baseline diverged in 5 of 5 runs" in printed
    assert ("No target validation accuracy: the baseline has no completed run (5/5 diverged): no automatic target; "
            "give --target.") in printed
    csv = (tmp_path / "c" / "runs.csv").read_text().splitlines()
    assert csv[0].startswith("arm,seed,status,") and len(csv) == 11
