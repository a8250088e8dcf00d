"""Figures (data in, figure out)."""

from tunelab.report.figures import plot_curves

__all__ = ["plot_curves"]
