"""runs compare: the best epoch of a metric, and the overlaid curves figure."""

from __future__ import annotations

import math

from matplotlib.colors import to_hex

from tunelab.analysis.run_curves import best_of
from tunelab.report.compare_runs import plot_runs


def _h(*val_acc):
    return [dict(epoch=i + 1, train_loss=1.0 / (i + 1), val_loss=1.2 / (i + 1), train_accuracy=a, val_accuracy=a)
            for i, a in enumerate(val_acc)]


def test_best_of_takes_the_highest_accuracy_and_lowest_loss() -> None:
    rows = [dict(epoch=1, val_accuracy=0.5, val_loss=0.9), dict(epoch=2, val_accuracy=math.nan, val_loss=0.3),
            dict(epoch=3, val_accuracy=0.8, val_loss=0.4), dict(epoch=4, val_accuracy=0.8, val_loss=0.5)]
    assert best_of(rows, "val_accuracy") == (3, 0.8)  # NaN skipped, the first of ties
    assert best_of(rows, "val_loss") == (2, 0.3)
    assert best_of([], "val_loss") == (None, None)


def test_one_color_per_run_train_dashed_validation_solid_best_starred() -> None:
    fig = plot_runs({"he": _h(0.5, 0.9), "xavier": _h(0.4, 0.6, 0.7)}, "val_accuracy",
                    marks={"he": (2, 0.9), "xavier": (3, 0.7)})
    ax_loss, ax_acc = fig.axes
    curves = [l for l in ax_acc.get_lines() if l.get_linestyle() in ("-", "--")]
    assert [(l.get_linestyle(), len(l.get_xdata())) for l in curves] == [("-", 2), ("--", 2), ("-", 3), ("--", 3)]
    assert to_hex(curves[0].get_color()) == to_hex(curves[1].get_color()) != to_hex(curves[2].get_color())
    stars = [l for l in ax_acc.get_lines() if l.get_marker() == "*"]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [([2], [0.9]), ([3], [0.7])]
    assert not [l for l in ax_loss.get_lines() if l.get_marker() == "*"]  # accuracy is starred on its panel
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["he", "xavier"]
