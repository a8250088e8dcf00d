"""Comparison and study figures: the right artists for small constructed data and a real study."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import optuna
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from tunelab.report.compare_figs import (VERDICT_COLORS, plot_learning_curves, plot_metric_intervals,
                                         plot_paired_differences)
from tunelab.report.study_figs import (best_curves_data, history_data, importance_data,
                                       parallel_data, plot_importance, plot_parallel, slice_data,
                                       study_figures)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _band(start: float, n: int = 5) -> dict[str, list[float]]:
    mean = [start / (e + 1) for e in range(n)]
    return {"mean": mean, "low": [m - 0.05 for m in mean], "high": [m + 0.05 for m in mean]}


def _bands(ax) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ---------------------------------------------------------------- comparison figures
def test_learning_curves_one_line_and_band_per_arm_and_metric():
    metrics = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    arms = {arm: {m: _band(k) for m in metrics} for arm, k in (("sgd", 1.5), ("adam", 1.0), ("adamw", 0.9))}
    fig = plot_learning_curves(arms)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax in fig.axes:
        styles = [line.get_linestyle() for line in ax.lines]
        assert styles.count("-") == 3 and styles.count("--") == 3  # train solid, validation dashed
        assert len(_bands(ax)) == 6
        colors = {line.get_color() for line in ax.lines}
        assert len(colors) == 3  # one color per arm, shared by its train and validation lines
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[:3] == ["sgd", "adam", "adamw"] and "validation" in legend


def test_learning_curves_draw_the_given_numbers_and_accept_nan_padding():
    band = {"mean": [1.0, 0.5, math.nan], "low": [0.9, 0.4, math.nan], "high": [1.1, 0.6, math.nan]}
    fig = plot_learning_curves({"a": {"val_loss": band}, "b": {"val_loss": {"mean": [2.0, 1.0]}}},
                               metric_pairs=(("train_loss", "val_loss"),))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(_bands(ax)) == 1  # no low/high: no band
    x, y = ax.lines[0].get_data()
    assert list(x) == [1, 2, 3] and list(y[:2]) == [1.0, 0.5] and math.isnan(y[2])


ROWS = [dict(arm="sgd", mean=0.95, ci_low=0.94, ci_high=0.96, baseline=True),
        dict(arm="adam", mean=0.97, ci_low=0.965, ci_high=0.975, verdict="better"),
        dict(arm="rmsprop", mean=0.93, ci_low=0.91, ci_high=0.95, verdict="worse")]


def test_metric_intervals_one_point_and_bar_per_arm_baseline_marked():
    fig = plot_metric_intervals(ROWS, "test accuracy")
    ax = fig.axes[0]
    assert len(ax.containers) == 3  # one errorbar per arm
    top = ax.containers[0]  # first row drawn at the top
    assert top.lines[0].get_ydata()[0] == 2 and top.lines[0].get_xdata()[0] == 0.95
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["rmsprop", "adam", "sgd (baseline)"]
    vlines = [line for line in ax.lines if list(line.get_xdata()) == [0.95, 0.95]]
    assert len(vlines) == 1  # the baseline's mean as a reference line
    verdicts = {t.get_text(): t.get_color() for t in ax.texts}
    assert verdicts == {"better": VERDICT_COLORS["better"], "worse": VERDICT_COLORS["worse"]}
    assert ax.get_xlabel() == "test accuracy"


def test_metric_intervals_interval_spans_ci():
    ax = plot_metric_intervals(ROWS[2:], "acc").axes[0]
    segments = ax.containers[0].lines[2][0].get_segments()
    assert [tuple(p) for p in segments[0]] == [(0.91, 0.0), (0.95, 0.0)]


def test_metric_intervals_reject_rows_without_the_value():
    with pytest.raises(ValueError, match="'mean'"):
        plot_metric_intervals([{"arm": "a", "ci_low": 0}], "acc")


def test_paired_differences_zero_line_and_one_interval_per_arm():
    rows = [dict(arm="adam", diff=0.02, ci_low=0.01, ci_high=0.03, verdict="better"),
            dict(arm="rmsprop", diff=-0.02, ci_low=-0.04, ci_high=0.0, verdict="worse")]
    ax = plot_paired_differences(rows).axes[0]
    assert len(ax.containers) == 2
    assert any(list(line.get_xdata()) == [0.0, 0.0] for line in ax.lines)
    assert {t.get_text() for t in ax.texts} == {"better", "worse"}


# ---------------------------------------------------------------- study figures
def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    value = (x - 1.0) ** 2 + 1e-3 * math.log10(lr) ** 2  # x matters, lr barely
    trial.set_user_attr("history", [{"epoch": e + 1, "val_accuracy": 1 - value / (e + 2),
                                     "val_loss": value / (e + 1)} for e in range(4)])
    return value


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(_objective, n_trials=12)
    return s


def test_study_figures_all_draw(study):
    figs = study_figures(study)
    assert set(figs) == {"history", "parallel", "importance", "slices", "best_curves"}
    assert all(isinstance(f, Figure) for f in figs.values())
    assert len(figs["slices"].axes) == 2


def test_history_best_so_far_is_the_running_minimum(study):
    d = history_data(study)
    assert d["number"] == list(range(12)) and d["direction"] == "minimize"
    running = [min(d["value"][: i + 1]) for i in range(12)]
    assert d["best"] == running and d["best"][-1] == study.best_value


def test_importance_ranks_the_parameter_that_matters_first(study):
    d = importance_data(study)
    assert list(d["importance"])[0] == "x" and d["method"] == "fANOVA"
    fig = plot_importance(d)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "x"  # top bar


def test_importance_with_fewer_than_two_trials_is_a_note():
    s = optuna.create_study()
    s.optimize(_objective, n_trials=1)
    d = importance_data(s)
    assert d["importance"] == {} and "need at least 2" in d["note"]
    fig = plot_importance(s)
    assert "need at least 2" in fig.axes[0].texts[0].get_text()
    assert set(study_figures(s)) == {"history", "parallel", "importance", "slices", "best_curves"}


def test_parallel_normalizes_log_params_in_log_space():
    s = optuna.create_study()
    for lr, act in ((1e-4, "relu"), (1e-2, "tanh"), (1e-3, "gelu")):
        s.enqueue_trial({"lr": lr, "act": act})
    s.optimize(lambda t: t.suggest_float("lr", 1e-5, 1.0, log=True)
               + len(t.suggest_categorical("act", ["relu", "tanh", "gelu"])), n_trials=3)
    d = parallel_data(s)
    assert d["params"] == ["act", "lr"]
    assert d["axes"]["lr"]["pos"] == pytest.approx([0.0, 1.0, 0.5]) and d["axes"]["lr"]["log"]
    assert d["axes"]["lr"]["labels"] == ["0.0001", "0.001", "0.01"]
    assert d["axes"]["act"]["pos"] == [0.0, 0.5, 1.0]  # choices as evenly spaced levels
    assert d["axes"]["act"]["labels"] == ["relu", "tanh", "gelu"]
    fig = plot_parallel(d)
    assert len(fig.axes[0].lines) == 3 + 2  # one line per trial, one vertical axis per param
    assert slice_data(s)["act"]["choices"] == ["relu", "tanh", "gelu"]


def test_best_curves_are_the_best_trials_in_order(study):
    d = best_curves_data(study, k=3)
    best = sorted(t.value for t in study.trials)[:3]
    assert [c["label"] for c in d["curves"]] == [
        f"trial {t.number} ({t.value:.4g})" for t in sorted(study.trials, key=lambda t: t.value)[:3]]
    assert d["curves"][0]["val_loss"][0] == pytest.approx(best[0])
    assert d["curves"][0]["epoch"] == [1, 2, 3, 4]


def test_a_finished_fork_redraws_its_parents_curves_with_the_child(tmp_path):
    import os

    import tunelab
    from tunelab.report.figures import lineage_lines
    from tunelab.trainer.lineage import make_fork

    cfg = {"model": {"hidden": [8]}, "training": {"epochs": 2, "threads": 1}}
    parent = tunelab.train(cfg, out=tmp_path / "parent").run_dir
    os.utime(parent / "curves.png", (0, 0))  # an old drawing: the fork must replace it
    child = make_fork(parent, "1", ["optimizer.lr=0.01"], tmp_path / "child")
    assert [line.label for line in lineage_lines(child)] == ["parent parent"]
    tunelab.resume(child)
    assert (parent / "curves.png").stat().st_mtime > 0
    (fork,) = lineage_lines(parent)
    assert fork.label == "fork child" and fork.branch_epoch == 1 and len(fork.history) == 2


def test_curves_draw_the_chance_line_and_keep_the_accuracy_axis_from_it_to_one():
    from tunelab.report.figures import plot_curves

    stuck = [{"epoch": e, "train_loss": 2.30, "val_loss": 2.30, "train_accuracy": 0.10 + 0.001 * (e % 2),
              "val_accuracy": 0.10} for e in range(1, 6)]
    fig = plot_curves(stuck, "stuck", chance=0.1)
    ax_acc = fig.axes[1]
    chance = [line for line in ax_acc.lines if line.get_label() == "chance"]
    assert len(chance) == 1 and set(chance[0].get_ydata()) == {0.1}
    low, high = ax_acc.get_ylim()
    assert low <= 0.1 and high >= 1.0  # a 0.001 wobble at chance is not blown up to fill the axis
