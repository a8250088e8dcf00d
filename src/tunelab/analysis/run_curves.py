"""Any run folders side by side: their per-epoch histories and a one-line summary each, for
``tunelab runs compare`` (``report.compare_runs`` draws them).

Example:
    >>> best_of([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.4}], "val_loss")
    (2, 0.4)
    >>> read_runs(["no-such-run"])
    Traceback (most recent call last):
    tunelab.errors.ConfigError: run folder 'no-such-run' does not exist
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from tunelab.errors import ConfigError
from tunelab.trainer.live import read_status
from tunelab.trainer.runfolder import read_history

__all__ = ["METRICS", "RunCurves", "read_runs", "best_of"]

METRICS = ("train_accuracy", "train_loss", "train_eval_accuracy", "train_eval_loss", "val_accuracy", "val_loss")


@dataclass
class RunCurves:
    """One run folder: its label (the folder name), history rows, status, and the best epoch and
    value of the compared metric (None before any finite value); test accuracy once it ended."""

    name: str
    path: Path
    history: list[dict] = field(default_factory=list)
    status: str = "?"
    epochs_run: int = 0
    best_epoch: Optional[int] = None
    best_value: Optional[float] = None
    test_accuracy: Optional[float] = None


def best_of(history: Sequence[dict], metric: str) -> tuple[Optional[int], Optional[float]]:
    """(epoch, value) of the best finite ``metric`` (lowest loss, highest accuracy; the first of ties)."""
    rows = [h for h in history if isinstance(h.get(metric), (int, float)) and math.isfinite(h[metric])]
    if not rows:
        return None, None
    sign = 1 if metric.endswith("loss") else -1
    best = min(rows, key=lambda h: sign * h[metric])
    return int(best["epoch"]), float(best[metric])


def _result(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "result.json").read_text())
    except (OSError, ValueError):  # none yet (a run starting) or half written: only the history counts
        return {}


def _labels(paths: Sequence[Path]) -> list[str]:
    """Folder names; the paths as given where two folders share a name."""
    names = [p.resolve().name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def read_runs(paths: Sequence[str | Path], metric: str = "val_accuracy") -> list[RunCurves]:
    """The runs at ``paths`` (in that order), each summarized on ``metric`` (one of METRICS).
    A path that is not a run folder (no config.yaml) is one ConfigError naming it."""
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r} is not known; choose one of {list(METRICS)}")
    if not paths:
        raise ConfigError("paths is empty; give one or more run folders")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"run folder {str(p)!r} does not exist")
        if not (p / "config.yaml").is_file():
            raise ConfigError(f"{str(p)!r} is not a run folder (no config.yaml); give folders written by "
                              f"tunelab train --out RUN")
    out = []
    for p, name in zip(paths, _labels(paths)):
        history, res, st = read_history(p), _result(p), read_status(p)
        epoch, value = best_of(history, metric)
        test = res.get("test_accuracy")
        out.append(RunCurves(name, p, history, st.get("status") or res.get("status") or "?", len(history),
                             epoch, value, test if isinstance(test, (int, float)) else None))
    return out
