"""The run folder: config.yaml, history.csv, result.json, curves.png, model.pt.

Example:
    >>> default_run_dir("runs", "digits", "mlp").parent.name
    'runs'
"""

from __future__ import annotations

import csv
import json
import os
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from tunelab.config import RunConfig, dump_config
from tunelab.errors import ConfigError
from tunelab.trainer.fit import RunResult

__all__ = ["write_run", "default_run_dir", "fresh_dir", "check_writable", "HISTORY_COLUMNS"]

HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def fresh_dir(root: str | Path, name: str) -> Path:
    """``root/name``, ``{stamp}`` in ``name`` replaced by the time and any character unsafe in a
    file name by ``_``; ``-1``, ``-2``... appended while the folder exists.

    Example:
        >>> fresh_dir("runs", "inspect-{stamp}").name.startswith("inspect-20")
        True
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    pieces = ("".join(c if c.isalnum() or c in "-_." else "_" for c in p) for p in name.split("{stamp}"))
    base = Path(root) / stamp.join(pieces)
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def check_writable(path: str | Path, option: str, kind: str = "folder") -> Path:
    """Fail before any work if ``path`` cannot become the output ``kind`` (folder or file).

    Nothing is created: the nearest existing ancestor must be a writable folder.

    Example:
        >>> check_writable("runs/new-run", "--out").name
        'new-run'
    """
    path = Path(path)
    shown = f"{option}={str(path)!r}"
    if path.exists() and kind == "folder" and not path.is_dir():
        raise ConfigError(f"{shown} is a file; give a folder")
    if path.exists() and kind == "file" and path.is_dir():
        raise ConfigError(f"{shown} is a folder; give a file name")
    ancestor = path if kind == "folder" else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{shown} cannot be created: {str(ancestor)!r} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown} cannot be created: no permission to write in {str(ancestor)!r}")
    return path


def default_run_dir(root: str | Path, data: str, model: str) -> Path:
    """``runs/20261123-201501-digits-mlp`` (a suffix is added if it already exists)."""
    return fresh_dir(root, f"{{stamp}}-{data}-{model}")


def _versions() -> dict[str, str]:
    import tunelab

    return {"tunelab": tunelab.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def write_run(out: str | Path, cfg: RunConfig, result: RunResult, extra: dict[str, Any] | None = None) -> Path:
    """Write everything a run leaves behind into ``out`` (created if needed)."""
    from tunelab.report.figures import plot_curves

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.history)
    summary = {**result.summary(), "versions": _versions(), **(extra or {})}
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    if result.history:
        fig = plot_curves(result.history, title=f"{cfg.data.name} / {cfg.model.name}")
        fig.savefig(out / "curves.png", dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
    if result.model is not None:
        torch.save(result.model.state_dict(), out / "model.pt")
    return out
