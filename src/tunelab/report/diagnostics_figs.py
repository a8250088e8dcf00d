"""Diagnostics figures: layer stats in (from ``tunelab.analysis.diagnostics``), figure out.

The histograms are drawn from the counts and bin edges already in the stats; nothing is
computed here. Each panel spans its own layer's range (the bin edges), and its title gives the
layer's std, so a signal that shrinks layer by layer shows as its scale, not as one bar at 0.

Example:
    >>> layer = dict(layer=1, kind="hidden", name="fc0", activation="sigmoid",
    ...              saturated_fraction=0.97, dead_fraction=None,
    ...              histogram={"counts": [3, 0, 5], "edges": [0.0, 0.33, 0.67, 1.0]})
    >>> fig = plot_activation_histograms([layer], [dict(layer, saturated_fraction=0.1)])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["plot_activation_histograms"]

_COLORS = {"init": "tab:blue", "trained": "tab:orange"}


def _title(layer: dict, phase: str) -> str:
    """'layer 2 fc1 (relu), init: dead 63%, std 0.41' — the fraction that applies to the
    activation, and the spread (the x range differs per panel, so the title says the scale)."""
    notes = []
    if layer.get("saturated_fraction") is not None:
        notes.append(f"saturated {layer['saturated_fraction']:.0%}")
    if layer.get("dead_fraction") is not None:
        notes.append(f"dead {layer['dead_fraction']:.0%}")
    if layer.get("std") is not None:
        notes.append(f"std {layer['std']:.2g}")
    head = f"layer {layer['layer']} {layer.get('name', '')} ({layer['activation']}), {phase}"
    return f"{head}: {', '.join(notes)}" if notes else head


def _draw(ax: Axes, layer: Optional[dict], phase: str) -> None:
    if layer is None:
        ax.text(0.5, 0.5, f"no {phase} stats", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    hist = layer["histogram"]
    ax.stairs(hist["counts"], hist["edges"], fill=True, color=_COLORS.get(phase, "tab:gray"), alpha=0.8)
    ax.set_xlim(hist["edges"][0], hist["edges"][-1])  # the layer's own range: a tiny signal fills the panel
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))  # 1e-05 scales read as such
    ax.set_title(_title(layer, phase), fontsize=9)
    ax.set_ylabel("count", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def plot_activation_histograms(init_stats: Sequence[dict], trained_stats: Sequence[dict] = ()) -> Figure:
    """A row per hidden layer, columns init and trained: the activation histograms.

    ``*_stats`` are lists from ``layer_stats``; entries of ``kind='output'`` are skipped. A
    phase with no entry for a layer (say, no training) shows an empty panel.
    """
    init = [s for s in init_stats if s.get("kind", "hidden") == "hidden"]
    trained = {s["layer"]: s for s in trained_stats if s.get("kind", "hidden") == "hidden"}
    rows = max(len(init), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 2.4 * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    if not init:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no hidden layers", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    for row, layer in zip(axes, init):
        _draw(row[0], layer, "init")
        _draw(row[1], trained.get(layer["layer"]), "trained")
    for ax in axes[-1]:
        ax.set_xlabel("activation value", fontsize=8)
    fig.suptitle("hidden-layer activations: at init (left) and after training (right)")
    return fig
