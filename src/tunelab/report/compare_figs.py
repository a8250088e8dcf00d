"""Comparison figures: precomputed summaries in, matplotlib Figure out.

The caller (analysis) has already reduced seeds to means, bands and confidence
intervals; these functions only draw them. Nothing here averages or tests.

Example:
    >>> band = {"mean": [1.0, 0.8], "low": [0.9, 0.7], "high": [1.1, 0.9]}
    >>> fig = plot_learning_curves({"adam": {"train_loss": band, "val_loss": band}},
    ...                            metric_pairs=(("train_loss", "val_loss"),))
    >>> len(fig.axes[0].lines)
    2
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

__all__ = ["plot_learning_curves", "plot_metric_intervals", "plot_paired_differences",
           "VERDICT_COLORS"]

Band = Mapping[str, Sequence[float]]  # {"mean": [...], "low": [...], "high": [...]} per epoch
VERDICT_COLORS = {"better": "#1a7f37", "worse": "#cf222e"}  # anything else: grey
_NEUTRAL = "#57606a"
_BASELINE = "#0969da"


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _label(metric: str) -> str:
    """'val_loss' -> 'validation loss', 'train_eval_accuracy' -> 'train (evaluation mode) accuracy'."""
    for prefix, words in (("train_eval_", "train (evaluation mode) "), ("train_", "train "), ("val_", "validation ")):
        if metric.startswith(prefix):
            return words + metric[len(prefix):].replace("_", " ")
    return metric.replace("_", " ")


def _draw_band(ax, band: Band, color: str, style: str) -> None:
    mean = [_nan(v) for v in band["mean"]]
    epochs = list(band.get("epoch", range(1, len(mean) + 1)))
    ax.plot(epochs, mean, style, color=color, linewidth=1.6)
    if "low" in band and "high" in band:
        low, high = [_nan(v) for v in band["low"]], [_nan(v) for v in band["high"]]
        ax.fill_between(epochs, low, high, color=color, alpha=0.18, linewidth=0)


def plot_learning_curves(
    arms: Mapping[str, Mapping[str, Band]],
    metric_pairs: Sequence[tuple[str, str]] = (("train_loss", "val_loss"),
                                               ("train_accuracy", "val_accuracy")),
    title: str = "",
) -> Figure:
    """Mean learning curve per arm with its band; train solid, validation dashed.

    ``arms`` maps arm -> metric -> {"mean", "low", "high"} (lists per epoch, NaN allowed;
    an optional "epoch" list sets the x values). One subplot per metric pair; each arm
    draws one line and one band per metric it has. A train key ``train_eval_*`` (the training
    set measured in evaluation mode) is labelled so in the legend and title.
    """
    fig, axes = plt.subplots(1, len(metric_pairs), figsize=(5 * len(metric_pairs), 4),
                             squeeze=False, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arm_color = {arm: colors[i % len(colors)] for i, arm in enumerate(arms)}
    for ax, (train_key, val_key) in zip(axes[0], metric_pairs):
        for arm, metrics in arms.items():
            for key, style in ((train_key, "-"), (val_key, "--")):
                if key in metrics:
                    _draw_band(ax, metrics[key], arm_color[arm], style)
        handles = [Line2D([], [], color=arm_color[a], label=a) for a in arms]
        train = "train (evaluation mode)" if train_key.startswith("train_eval_") else "train"
        handles += [Line2D([], [], color="black", linestyle=s, label=lab)
                    for s, lab in (("-", train), ("--", "validation"))]
        ax.legend(handles=handles, fontsize="small")
        ax.set_title(f"{_label(train_key)} / {_label(val_key)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_label(val_key).replace("validation ", ""))  # loss / accuracy
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def _interval_axes(rows: Sequence[Mapping], value_key: str, xlabel: str, title: str):
    """Shared point-and-interval layout: one row per arm, top to bottom, verdicts at the right."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(7.5, 1.0 + 0.45 * max(n, 1)), constrained_layout=True)
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for i, row in enumerate(rows):
        if value_key not in row or "arm" not in row:
            raise ValueError(f"row {i} needs keys 'arm' and {value_key!r}; it has {sorted(row)}")
        y = n - 1 - i
        mean = _nan(row.get(value_key))
        lo, hi = _nan(row.get("ci_low")), _nan(row.get("ci_high"))
        color = _BASELINE if row.get("baseline") else _NEUTRAL
        err = [[mean - lo], [hi - mean]] if not (math.isnan(lo) or math.isnan(hi)) else None
        ax.errorbar([mean], [y], xerr=err, fmt="D" if row.get("baseline") else "o",
                    color=color, capsize=4, markersize=6)
        verdict = row.get("verdict")
        if verdict:
            ax.text(1.02, y, str(verdict), transform=right, va="center", ha="left",
                    color=VERDICT_COLORS.get(str(verdict), _NEUTRAL), fontweight="bold")
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{r['arm']} (baseline)" if r.get("baseline") else str(r["arm"])
                        for r in reversed(rows)])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig, ax


def plot_metric_intervals(rows: Sequence[Mapping], metric_label: str, title: str = "") -> Figure:
    """Point at each arm's mean with a horizontal bar from ci_low to ci_high.

    Rows: {"arm", "mean", "ci_low", "ci_high", "verdict" (optional), "baseline" (bool)}.
    The baseline is drawn as a blue diamond, with a dotted vertical line at its mean.
    """
    fig, ax = _interval_axes(rows, "mean", metric_label, title)
    for row in rows:
        if row.get("baseline"):
            ax.axvline(_nan(row["mean"]), color=_BASELINE, linestyle=":", linewidth=1)
    return fig


def plot_paired_differences(rows: Sequence[Mapping], metric_label: str = "difference vs baseline",
                            title: str = "") -> Figure:
    """Each arm's paired difference from the baseline with its CI, and a zero line.

    Rows: {"arm", "diff", "ci_low", "ci_high", "verdict" (optional)}; an interval that
    crosses the zero line is a difference the seeds cannot tell apart from none.
    """
    fig, ax = _interval_axes(rows, "diff", metric_label, title)
    ax.axvline(0.0, color="black", linewidth=1)
    return fig
