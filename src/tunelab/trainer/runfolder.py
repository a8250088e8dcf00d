"""The run folder's final files: config.yaml, history.csv, result.json, curves.png, model.pt.

The files a running trainer keeps up to date (status.json, events.jsonl, checkpoints/) are
written by ``trainer.live.LiveFolder``.

Example:
    >>> default_run_dir("runs", "digits", "mlp").parent.name
    'runs'
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from tunelab.config import RunConfig, dump_config
from tunelab.errors import ConfigError
if TYPE_CHECKING:
    from tunelab.trainer.fit import RunResult

__all__ = ["write_run", "write_history", "read_history", "default_run_dir", "fresh_dir", "check_writable",
           "HISTORY_COLUMNS"]

# train_loss / train_accuracy: running averages over the epoch's steps (dropout on, weights moving);
# train_eval_*: the training set (or a fixed subset) measured in evaluation mode at the epoch's end
HISTORY_COLUMNS = ["epoch", "steps", "train_loss", "train_accuracy", "train_eval_loss", "train_eval_accuracy",
                   "val_loss", "val_accuracy", "lr", "seconds", "interventions"]


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


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def is_utf8(text: str) -> bool:
    """Whether ``text`` is valid Unicode (a name the file system gave as bytes that are not UTF-8
    arrives as lone surrogates, which no UTF-8 file, database or figure can hold).

    Example:
        >>> is_utf8("café"), is_utf8("caf" + chr(0xDCE9))
        (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_writable(path: str | Path, option: str, kind: str = "folder") -> Path:
    """Fail before any work if ``path`` cannot become the output ``kind`` (folder or file).

    Nothing is created: the nearest existing ancestor must be a writable folder.

    Example:
        >>> check_writable("runs/new-run", "--out").name
        'new-run'
    """
    path = Path(path)
    shown = f"{option}={str(path)!r}"
    if not is_utf8(str(path)):  # it would end in a figure's title or a report, which need text
        raise ConfigError(f"{option}={ascii(str(path))} is not valid UTF-8; allowed: a name in UTF-8")
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
        reason = "the file system is read-only" if _read_only(ancestor) else "no permission to write"
        raise ConfigError(f"{shown} cannot be created: {reason} in {str(ancestor)!r}")
    return path


def default_run_dir(root: str | Path, data: str, model: str) -> Path:
    """``runs/20261123-201501-digits-mlp`` (a suffix is added if it already exists)."""
    return fresh_dir(root, f"{{stamp}}-{data}-{model}")


def _history_rows(history: Sequence[dict], events: Sequence[dict]) -> list[dict]:
    """History rows with an ``interventions`` column: the commands applied during each epoch."""
    by_epoch: dict[int, list[str]] = {}
    for e in events:
        if e.get("kind") == "control":
            by_epoch.setdefault(int(e["epoch"]), []).append(f"{e['command']}@{e['step']}")
    return [{**h, "interventions": " ".join(by_epoch.get(int(h["epoch"]), []))} for h in history]


def write_history(path: Path, history: Sequence[dict], events: Sequence[dict] = ()) -> None:
    """history.csv (atomically: a live reader never sees half a file)."""
    from tunelab.fileio import atomic_open

    with atomic_open(path, "w", sync=False, newline="") as f:  # rewritten every epoch
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_history_rows(history, events))


def read_history(run_dir: str | Path) -> list[dict]:
    """history.csv of a run folder as numbers, without the interventions column (empty when
    there is none)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: float(v) for k, v in row.items() if k != "interventions" and v not in ("", None)}
                    for row in csv.DictReader(f)]
    except (ValueError, TypeError, csv.Error) as e:  # edited or damaged by hand: not a run's history
        from tunelab.errors import DataError

        raise DataError(f"{path} is not a run's history ({str(e)[:80]}); expected the numbers a run "
                        f"writes, one row per epoch") from None


FigureWriter = Callable[[Path, RunConfig, "RunResult"], None]


def write_run(out: str | Path, cfg: RunConfig, result: "RunResult", extra: dict[str, Any] | None = None,
              figure: Optional[FigureWriter] = None) -> Path:
    """Write everything a run leaves behind into ``out`` (created if needed). ``figure``
    draws curves.png (the caller passes it in: the trainer never imports the report layer).
    Each file is written atomically and result.json last: a folder whose write failed (a full
    disk) never holds a result.json beside a broken model.pt; the failure is a WriteError."""
    from tunelab.fileio import WriteError, torch_save, why, write_text

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create the run folder {str(out)!r}: {why(e)}") from None
    if result.model is not None:
        torch_save(result.model.state_dict(), out / "model.pt")
    dump_config(cfg, out / "config.yaml")
    write_history(out / "history.csv", result.history, result.events)
    if result.history and figure is not None:
        figure(out, cfg, result)
    summary = {**result.summary(), **(extra or {})}
    write_text(out / "result.json", json.dumps(summary, indent=2) + "\n")
    return out
