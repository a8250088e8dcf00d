"""Figures (data in, figure out).

Every figure is drawn with matplotlib's Agg backend (files only) and without mathtext: a ``$`` in a
user's string (an arm value, a study name, a run folder) is drawn as it is, never parsed.
"""

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False

from tunelab.report.figures import plot_curves  # noqa: E402

__all__ = ["plot_curves"]
