"""Figures: plain data in, matplotlib Figure out. Drawing code computes no statistics.

Example:
    >>> fig = plot_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1,
    ...                     "train_accuracy": 0.5, "val_accuracy": 0.45}])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["plot_curves"]


def plot_curves(history: Sequence[dict[str, float]], title: str = "") -> Figure:
    """Loss and accuracy for train and validation per epoch (the over-fitting picture)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epochs = [h["epoch"] for h in history]
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [h[f"{split}_{metric}"] for h in history], style, marker="o",
                    markersize=3, label="validation" if split == "val" else split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return fig
