"""Figures: plain data in, matplotlib Figure out. Drawing code computes no statistics.

Example:
    >>> fig = plot_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1,
    ...                     "train_accuracy": 0.5, "val_accuracy": 0.45}])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# read_history lives beside write_history (the run folder is read outside the report layer
# too); imported here because lineage_lines uses it and callers know it from this module.
from tunelab.trainer.runfolder import read_history  # noqa: E402
from tunelab.fileio import save_figure  # noqa: E402

__all__ = ["plot_curves", "write_curves", "Line"]


@dataclass(frozen=True)
class Line:
    """Another run drawn beside the main one (a fork's parent or a child): its label, history
    and the epoch it branched at (marked with a dot)."""

    label: str
    history: Sequence[dict]
    branch_epoch: Optional[float] = None


def _marker_x(event: dict) -> float:
    """An intervention at (epoch e, step s of n) sits at e - 1 + s / n on the epoch axis."""
    frac = event.get("step", 0) / event["steps"] if event.get("steps") else 0.0
    return event["epoch"] - 1 + min(frac, 1.0)


def plot_curves(history: Sequence[dict[str, float]], title: str = "", events: Sequence[dict] = (),
                others: Sequence[Line] = (), chance: Optional[float] = None) -> Figure:
    """Loss and accuracy for train and validation per epoch (the over-fitting picture);
    ``events`` (interventions) are drawn as labelled vertical markers, ``others`` (parent and
    forks) as thinner lines, ``chance`` (1 / classes) as a dotted line with the accuracy axis
    kept from it to 1, so a run stuck at chance is not auto-scaled into big swings.

    "train" is the training set measured in evaluation mode (``train_eval_*``) where the history
    has it; the running average over the epoch's steps (dropout on, weights moving) is drawn thin
    beside it, so the gap to validation is read between the two measured the same way."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epochs = [h["epoch"] for h in history]
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        measured = any(_finite(h.get(f"train_eval_{metric}")) for h in history)
        if measured:
            ax.plot(epochs, [h.get(f"train_eval_{metric}", float("nan")) for h in history], "-", marker="o",
                    markersize=3, label="train (evaluation mode)")
            ax.plot(epochs, [h[f"train_{metric}"] for h in history], ":", linewidth=1, color="grey",
                    label="train (running average)")
        for split, style in ((("val", "--"),) if measured else (("train", "-"), ("val", "--"))):
            ax.plot(epochs, [h[f"{split}_{metric}"] for h in history], style, marker="o",
                    markersize=3, label="validation" if split == "val" else split)
        for other in others:
            xs = [h["epoch"] for h in other.history]
            ax.plot(xs, [h[f"val_{metric}"] for h in other.history], ":", linewidth=1.2,
                    label=f"{other.label} (val)")
            if other.branch_epoch is not None:
                ax.axvline(other.branch_epoch, color="grey", linewidth=0.8, linestyle="-.")
        for e in events:
            if e.get("kind") == "control":
                x = _marker_x(e)
                ax.axvline(x, color="tab:red", alpha=0.5, linewidth=0.9)
                ax.annotate(e["command"], (x, 1), xycoords=("data", "axes fraction"), rotation=90,
                            fontsize=7, va="top", ha="right", color="tab:red")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if chance is not None:
        ax_acc.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
        ax_acc.set_ylim(min(chance, ax_acc.get_ylim()[0]) - 0.02, 1.01)
        ax_acc.legend(fontsize=8)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def lineage_lines(run_dir: Path) -> list[Line]:
    """The parent of a fork and the forks of a run, as extra lines."""
    from tunelab.trainer.lineage import read_forks, read_lineage

    lines = []
    lineage = read_lineage(run_dir)
    if lineage and lineage["parent_dir"] is not None:
        # the whole parent: up to the branch it lies under the fork's own line
        lines.append(Line(f"parent {lineage['parent_dir'].name}", read_history(lineage["parent_dir"]),
                          lineage["epoch"]))
    for fork in read_forks(run_dir):
        if fork["child_dir"] is not None:
            lines.append(Line(f"fork {fork['child_dir'].name}", read_history(fork["child_dir"]), fork["epoch"]))
    return lines


def _save_curves(out: Path, history, title: str, events, classes: Optional[int] = None) -> None:
    chance = 1 / classes if classes else None
    fig = plot_curves(history, title=title, events=events, others=lineage_lines(out), chance=chance)
    save_figure(fig, Path(out) / "curves.png", dpi=110)
    plt.close(fig)


def write_curves(out: Path, cfg: Any, result: Any) -> None:
    """curves.png of a run folder: its curves, its interventions, its parent and forks. A fork
    that finishes draws its parent's curves.png again, so the parent shows its children too."""
    from tunelab.trainer.lineage import read_lineage

    _save_curves(out, result.history, f"{Path(out).name}: {cfg.data.name} / {cfg.model.name}", result.events,
                 getattr(result, "num_classes", None))
    lineage = read_lineage(out)
    if lineage and lineage["parent_dir"] is not None:
        redraw_curves(lineage["parent_dir"])


def redraw_curves(run_dir: Path) -> None:
    """Draw a finished run folder's curves.png again from its files (a running one is left to
    its own trainer)."""
    from tunelab.analysis.run_report import read_events
    from tunelab.trainer.lineage import run_config
    from tunelab.trainer.live import read_status

    run_dir = Path(run_dir)
    history = read_history(run_dir)
    if not history or read_status(run_dir).get("status") in ("running", "paused"):
        return
    cfg = run_config(run_dir)
    _save_curves(run_dir, history, f"{run_dir.name}: {cfg.data.name} / {cfg.model.name}", read_events(run_dir))
