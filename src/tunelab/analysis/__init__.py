"""Analysis: statistics of compares and factorial effects, as plain data (no drawing).

The statistics are re-exported here; the heavier modules (``compare``, ``designs``,
``diagnostics``, which pull in storage or torch) are imported from their own paths.
"""

from tunelab.analysis.effects import Interaction, MainEffect, cell_means, interactions, main_effects
from tunelab.analysis.stats import (
    TESTS,
    Paired,
    Summary,
    Verdict,
    best_value,
    compare_arms,
    epochs_to_reach,
    final_gap,
    holm,
    paired_comparison,
    power_paired_t,
    seeds_needed,
    summarize,
    verdict,
)

__all__ = ["Summary", "Paired", "Verdict", "TESTS", "summarize", "paired_comparison", "holm",
           "power_paired_t", "seeds_needed", "verdict", "compare_arms", "epochs_to_reach",
           "final_gap", "best_value", "MainEffect", "Interaction", "cell_means", "main_effects",
           "interactions"]
