"""The files a running trainer keeps up to date in its run folder.

- ``status.json``: running / paused / the final status, epoch, step, best validation accuracy,
  pid, time — what ``tunelab runs`` lists (a run whose pid is gone while it says running was
  killed);
- ``events.jsonl``: every intervention and lineage event, one JSON object a line, appended
  as it happens;
- ``history.csv``: rewritten after every epoch;
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
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tunelab.config import RunConfig, dump_config
from tunelab.trainer import state as run_state
from tunelab.trainer.control import INBOX
from tunelab.trainer.runfolder import _atomic_text, write_history

__all__ = ["LiveFolder", "read_status", "CHECKPOINTS"]

CHECKPOINTS = "checkpoints"


class LiveFolder:
    """The run folder of a running trainer (the only writer of its live files)."""

    def __init__(self, path: str | Path, cfg: RunConfig, fresh: bool = True) -> None:
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

    # ------------------------------------------------------------------ status and events
    def set_status(self, status: str, **fields: Any) -> dict[str, Any]:
        self._status.update(fields, status=status, pid=os.getpid(), updated=time.time(),
                            epochs=self.cfg.training.epochs)
        _atomic_text(self.path / "status.json", json.dumps(self._status) + "\n")
        return self._status

    def event(self, event: dict[str, Any]) -> None:
        with open(self.path / "events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    def epoch_done(self, history: Sequence[dict], events: Sequence[dict], best: Optional[float]) -> None:
        write_history(self.path / "history.csv", history, events)
        self.set_status("running", epoch=len(history), step=0, best_val_accuracy=best)

    # ------------------------------------------------------------------ checkpoints
    def save(self, payload: dict[str, Any], epoch_file: bool = False, best: bool = False,
             snapshot: bool = False) -> Path:
        """Write last.pt, and link it as epoch-N.pt / best.pt / a snapshot as asked."""
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


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """status.json of a run folder, with ``status`` 'killed' when it says running or paused
    but its process is gone, and {} when there is none."""
    path = Path(run_dir) / "status.json"
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if status.get("status") in ("running", "paused") and not _alive(status.get("pid")):
        status["status"] = "killed"
    return status


def _alive(pid: Any) -> bool:
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
