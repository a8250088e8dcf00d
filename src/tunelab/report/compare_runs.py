"""Curves of several runs overlaid: loss and accuracy per epoch, one color per run, validation
solid and train dashed (the training set measured in evaluation mode, ``train_eval_*``, where a
run recorded it; else the running average over the epoch); each run's best epoch of the
compared metric is starred. Data in, figure out.

Example:
    >>> h = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_accuracy": 0.5, "val_accuracy": 0.45}]
    >>> fig = plot_runs({"a": h, "b": h}, marks={"a": (1, 0.45)})
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'accuracy']
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from tunelab.fileio import save_figure  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["plot_runs", "write_runs_figure"]


def _colors(n: int) -> list:
    """tab10 while it lasts; beyond ten runs evenly spaced hues, so no two runs share a color."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(i / (n - 1)) for i in range(n)]


def _train_key(rows: Sequence[dict], kind: str) -> str:
    """``train_eval_<kind>`` when the run measured it at some epoch, else ``train_<kind>``."""
    key = f"train_eval_{kind}"
    finite = any(isinstance(h.get(key), (int, float)) and h[key] == h[key] for h in rows)  # nan != nan
    return key if finite else f"train_{kind}"


def _train_label(modes: set[bool]) -> str:
    """Legend of the dashed lines; ``modes`` holds, per run drawn, whether it used train_eval_*."""
    if modes == {True}:
        return "train (evaluation mode)"
    return "train (evaluation mode where measured)" if True in modes else "train"


def plot_runs(histories: Mapping[str, Sequence[dict]], metric: str = "val_accuracy",
              marks: Optional[Mapping[str, tuple[float, float]]] = None, title: str = "") -> Figure:
    """``histories``: run label -> history rows (epoch, train/val loss and accuracy), drawn in
    that order; ``marks``: run label -> (epoch, value) of its best ``metric``, starred."""
    marks = marks or {}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    handles, modes = [], set()
    for (label, rows), color in zip(histories.items(), _colors(len(histories))):
        epochs = [h["epoch"] for h in rows]
        for ax, kind in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.plot(epochs, [h.get(f"val_{kind}", float("nan")) for h in rows], "-", color=color,
                    marker="o", markersize=3, linewidth=1.6)
            train = _train_key(rows, kind)
            modes.add(train.startswith("train_eval_"))
            ax.plot(epochs, [h.get(train, float("nan")) for h in rows], "--", color=color,
                    linewidth=1.0, alpha=0.7)
        if label in marks:
            ax = ax_loss if metric.endswith("loss") else ax_acc
            ax.plot(*marks[label], marker="*", markersize=13, color=color, markeredgecolor="black",
                    linestyle="none", zorder=5)
        handles.append(Line2D([], [], color=color, linewidth=2, label=label))
    handles += [Line2D([], [], color="grey", linestyle="-", label="validation"),
                Line2D([], [], color="grey", linestyle="--", label=_train_label(modes)),
                Line2D([], [], color="grey", marker="*", markersize=10, linestyle="none",
                       label=f"best {metric}")]
    for ax, kind in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_title(kind)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25
        ax.set_ylabel(kind)
        ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def write_runs_figure(path: str | Path, histories: Mapping[str, Sequence[dict]], metric: str = "val_accuracy",
                      marks: Optional[Mapping[str, tuple[float, float]]] = None, title: str = "") -> Path:
    """``plot_runs`` saved as a PNG at ``path`` (its folder created); returns the path."""
    path = Path(path)
    fig = plot_runs(histories, metric, marks, title)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
