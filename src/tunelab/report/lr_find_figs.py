"""Learning-rate range test figure: a result of ``tunelab.analysis.lr_find`` in, figure out.

Example:
    >>> result = dict(lrs=[1e-3, 1e-2, 1e-1, 1.0], losses=[2.3, 2.0, 1.2, 3.0],
    ...               smoothed=[2.3, 2.1, 1.7, 2.1], suggestion=1e-2, min_loss_lr=1e-1)
    >>> fig = plot_lr_find(result)
    >>> fig.axes[0].get_xscale()
    'log'
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["plot_lr_find"]


def _ylim(result: dict) -> tuple[float, float] | None:
    """Frame the smoothed curve: the raw losses of the divergence tail may be far above it."""
    smoothed = result["smoothed"]
    if not smoothed:
        return None
    low, high = min(smoothed + result["losses"]), max(smoothed)
    pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
    return low - pad, high + pad


def plot_lr_find(result: dict, title: str = "learning-rate range test") -> Figure:
    """Loss against lr on a log axis: raw (faint), smoothed (solid), the suggestion marked
    with a vertical line and a label, and min-loss lr / 10 dotted."""
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ax.plot(result["lrs"], result["losses"], color="tab:blue", alpha=0.25, lw=1, label="loss")
    ax.plot(result["lrs"], result["smoothed"], color="tab:blue", lw=2, label="smoothed loss")
    if result.get("suggestion") is not None:
        lr = result["suggestion"]
        ax.axvline(lr, color="tab:red", lw=1.5, label=f"suggestion (steepest descent) {lr:.2g}")
        ax.annotate(f"{lr:.2g}", (lr, 0.97), xycoords=("data", "axes fraction"), color="tab:red",
                    ha="right", va="top", rotation=90, fontsize=9)
    if result.get("min_loss_lr") is not None:
        ax.axvline(result["min_loss_lr"] / 10, color="tab:gray", ls=":", lw=1.5,
                   label=f"min-loss lr / 10 {result['min_loss_lr'] / 10:.2g}")
    ax.set_xscale("log")
    if (limits := _ylim(result)) is not None:
        ax.set_ylim(*limits)
    ax.set(xlabel="learning rate", ylabel="training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
