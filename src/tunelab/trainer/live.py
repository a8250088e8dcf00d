"""The files a running trainer keeps up to date in its run folder.

- ``status.json``: running / paused / the final status, epoch, step, best validation accuracy,
  pid, time — what ``tunelab runs`` lists (a run whose pid is gone while it says running was
  killed);
- ``events.jsonl``: every intervention and lineage event, one JSON object a line, appended
  as it happens;
- ``history.csv`` and ``result.json``: rewritten after every epoch (atomically), so a run killed
  without warning (SIGKILL, a lost node) still leaves its history and a result that agrees with
  it; the running result.json says ``status: running`` and has no test metrics, and the final
  ``write_run`` replaces it;
- ``checkpoints/``: ``last.pt`` (every ``training.checkpoint.every`` epochs or ``every_steps``
  steps, and at the end), ``epoch-NNNN.pt`` (the newest ``keep``), ``best.pt`` (the best
  epoch of the early-stopping monitor), ``snap-*.pt`` (checkpoints asked for by the user).
  Every file is written once (atomically) and the others are hard links to it, so keeping
  several costs one write.

Example:
    >>> import tempfile
    >>> from tunelab.config import from_dict
    >>> folder = LiveFolder(tempfile.mkdtemp(), from_dict({}))
    >>> folder.set_status("running", epoch=0)["status"]
    'running'
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tunelab.config import RunConfig, dump_config
from tunelab.trainer.control import INBOX
from tunelab.fileio import write_text
from tunelab.trainer.runfolder import write_history

__all__ = ["LiveFolder", "read_status", "running_result", "CHECKPOINTS"]

CHECKPOINTS = "checkpoints"


class LiveFolder:
    """The run folder of a running trainer (the only writer of its live files)."""

    def __init__(self, path: str | Path, cfg: RunConfig, fresh: bool = True,
                 extra: Optional[dict[str, Any]] = None) -> None:
        self.path, self.cfg = Path(path), cfg
        self.ckpt = self.path / CHECKPOINTS
        self.ckpt.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.path / "config.yaml")
        if fresh:
            for stale in ("events.jsonl", "history.csv", "result.json", "status.json"):
                (self.path / stale).unlink(missing_ok=True)
        for left in (self.path / INBOX).glob("*.json"):  # commands sent to an earlier process of this folder
            left.unlink(missing_ok=True)
        self._status: dict[str, Any] = {}
        # Fields the final result.json carries beyond the summary (custom_model, versions, ...):
        # a resumed run keeps them in its running result.json, so a resume after a kill still
        # knows that the run trained a model of its own.
        self._kept = {**({} if fresh else _extra_fields(self.path / "result.json")), **(extra or {})}

    # ------------------------------------------------------------------ status and events
    def set_status(self, status: str, **fields: Any) -> dict[str, Any]:
        self._status.update(fields, status=status, pid=os.getpid(), updated=time.time(),
                            epochs=self.cfg.training.epochs)
        write_text(self.path / "status.json", json.dumps(self._status) + "\n", sync=False)
        return self._status

    def event(self, event: dict[str, Any]) -> None:
        with open(self.path / "events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    def epoch_done(self, history: Sequence[dict], events: Sequence[dict], best: Optional[float]) -> None:
        write_history(self.path / "history.csv", history, events)
        write_text(self.path / "result.json", json.dumps({**running_result(history), **self._kept}, indent=2) + "\n",
                   sync=False)
        self.set_status("running", epoch=len(history), step=0, best_val_accuracy=best)

    # ------------------------------------------------------------------ checkpoints
    def save(self, payload: dict[str, Any], epoch_file: bool = False, best: bool = False,
             snapshot: bool = False) -> Path:
        """Write last.pt, and link it as epoch-N.pt / best.pt / a snapshot as asked."""
        from tunelab.trainer import state as run_state

        last = self.ckpt / "last.pt"
        run_state.save(payload, last)
        st = payload["state"]
        if epoch_file and self.cfg.training.checkpoint.keep > 0:
            self._link(last, self.ckpt / f"epoch-{st['epoch']:04d}.pt")
            self._prune_epochs()
        if best and self.cfg.training.checkpoint.best:
            self._link(last, self.ckpt / "best.pt")
        if snapshot:
            snap = self.ckpt / f"snap-epoch{st['epoch']:04d}-step{st['step']:05d}.pt"
            self._link(last, snap)
            return snap
        return last

    def _link(self, src: Path, dst: Path) -> None:
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # a file system without hard links: copy
            import shutil

            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)

    def _prune_epochs(self) -> None:
        files = sorted(self.ckpt.glob("epoch-*.pt"))
        for old in files[:-self.cfg.training.checkpoint.keep]:
            old.unlink(missing_ok=True)


_SUMMARY_KEYS = ("status", "test_accuracy", "test_loss", "val_accuracy", "val_loss", "best_val_accuracy",
                 "best_epoch", "restored_epoch", "epochs_run", "seconds", "message")


def running_result(history: Sequence[dict]) -> dict[str, Any]:
    """The result.json of a run still going: its history so far, summarized with the keys the
    final result.json has (status ``running``; no test metrics, since the test set is read once
    at the end; val_* of the last epoch; NaN becomes None).

    Example:
        >>> h = [dict(epoch=1, val_loss=0.9, val_accuracy=0.7, seconds=1.5),
        ...      dict(epoch=2, val_loss=0.5, val_accuracy=0.8, seconds=1.0)]
        >>> r = running_result(h)
        >>> r["status"], r["epochs_run"], r["best_val_accuracy"], r["best_epoch"], r["val_loss"]
        ('running', 2, 0.8, 2, 0.5)
    """
    finite = [h for h in history if _finite(h.get("val_accuracy")) and _finite(h.get("val_loss"))]
    best = max(finite, key=lambda h: h["val_accuracy"], default=None)  # the first of ties, as fit()
    last = history[-1] if history else {}
    out = dict(status="running", test_accuracy=None, test_loss=None, val_accuracy=last.get("val_accuracy"),
               val_loss=last.get("val_loss"), best_val_accuracy=best["val_accuracy"] if best else None,
               best_epoch=int(best["epoch"]) if best else None, restored_epoch=None,
               epochs_run=len(history), seconds=sum(h.get("seconds", 0.0) for h in history),
               message=f"running: {len(history)} epochs done")
    return {k: (v if _finite(v) or not isinstance(v, float) else None) for k, v in out.items()}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _extra_fields(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in result.items() if k not in _SUMMARY_KEYS} if isinstance(result, dict) else {}


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """status.json of a run folder, with ``status`` 'killed' when it says running or paused
    but its process is gone, and {} when there is none."""
    path = Path(run_dir) / "status.json"
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if status.get("status") in ("running", "paused") and not pid_alive(status.get("pid")):
        status["status"] = "killed"
    return status


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
