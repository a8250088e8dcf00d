"""Forks: a new run folder that starts from a checkpoint of another run, with changes.

``make_fork(parent, source, overrides, out)`` copies the chosen checkpoint into a new folder
as its ``checkpoints/last.pt``, writes the child's config (the parent's plus ``overrides``) and
``lineage.json`` (parent folder, checkpoint, epoch and step it branched at), and appends the
child to the parent's ``forks.jsonl``. The child is then run by ``tunelab resume``.

Example:
    >>> pick_checkpoint("no-such-run", "best")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tunelab.errors.ConfigError: --from='best': checkpoint 'no-such-run/checkpoints/best.pt' does not exist; ...
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

from tunelab.config import dump_config, replace
from tunelab.errors import ConfigError
from tunelab.trainer import state as run_state
from tunelab.trainer.live import CHECKPOINTS
from tunelab.trainer.runfolder import fresh_dir

__all__ = ["make_fork", "pick_checkpoint", "read_lineage", "read_forks", "run_config"]


def run_config(run_dir: str | Path, overrides: Sequence[str] = ()):
    """The RunConfig of a run folder (its config.yaml) with ``overrides`` applied."""
    from tunelab.config import load_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"run folder {str(run_dir)!r} has no config.yaml; is it a tunelab run folder?")
    return load_config(run_dir / "config.yaml", overrides)


def pick_checkpoint(run_dir: str | Path, source: str = "last") -> Path:
    """``last``, ``best``, an epoch number (its epoch-N.pt or a snapshot at that epoch's end)
    or a checkpoint file's path; a missing one is one ConfigError listing what exists."""
    ckpt = Path(run_dir) / CHECKPOINTS
    if source in ("last", "best"):
        path = ckpt / f"{source}.pt"
    elif source.isdigit():
        path = ckpt / f"epoch-{int(source):04d}.pt"
        if not path.is_file():
            snaps = sorted(ckpt.glob(f"snap-epoch{int(source):04d}-step00000.pt"))
            path = snaps[0] if snaps else path
    else:
        path = Path(source)
    if not path.is_file():
        have = sorted(p.name for p in ckpt.glob("*.pt")) if ckpt.is_dir() else []
        raise ConfigError(f"--from={source!r}: checkpoint {str(path)!r} does not exist; "
                          f"available: {have or 'none'} (last, best, an epoch number or a file)")
    return path


def make_fork(parent: str | Path, source: str = "last", overrides: Sequence[str] = (),
              out: Optional[str | Path] = None) -> Path:
    """Create the child folder, ready to resume; returns its path."""
    parent = Path(parent)
    cfg = run_config(parent, overrides)  # every config error before anything is written
    path = pick_checkpoint(parent, source)
    payload = run_state.load(path)  # a corrupt checkpoint: one line, nothing written
    st = payload["state"]
    child = Path(out) if out is not None else fresh_dir(parent.parent, f"{parent.name}-fork")
    if child.exists() and any(child.iterdir()):
        raise ConfigError(f"--out={str(child)!r} is not empty; give a new folder for the fork")
    (child / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, child / CHECKPOINTS / "last.pt")
    dump_config(cfg, child / "config.yaml")
    lineage = {"parent": os.path.relpath(parent.resolve(), child.resolve()), "parent_abs": str(parent.resolve()),
               "checkpoint": path.name, "epoch": st["epoch"], "step": st["step"], "overrides": list(overrides)}
    (child / "lineage.json").write_text(json.dumps(lineage, indent=1) + "\n")
    (child / "status.json").write_text(json.dumps({"status": "ready", "epoch": st["epoch"],
                                                   "epochs": cfg.training.epochs}) + "\n")
    with open(parent / "forks.jsonl", "a") as f:
        f.write(json.dumps({"child": os.path.relpath(child.resolve(), parent.resolve()),
                            "epoch": st["epoch"], "step": st["step"], "overrides": list(overrides)}) + "\n")
    return child


def _resolve(base: Path, rel: str, absolute: Optional[str]) -> Optional[Path]:
    for candidate in (base / rel, Path(absolute) if absolute else None):
        if candidate is not None and candidate.is_dir():
            return candidate.resolve()
    return None


def read_lineage(run_dir: str | Path) -> Optional[dict[str, Any]]:
    """lineage.json of a fork with ``parent_dir`` resolved (None for a run that is no fork)."""
    path = Path(run_dir) / "lineage.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return {**raw, "parent_dir": _resolve(Path(run_dir), raw["parent"], raw.get("parent_abs"))}


def read_forks(run_dir: str | Path) -> list[dict[str, Any]]:
    """The forks made from a run (forks.jsonl), each with ``child_dir`` resolved."""
    path = Path(run_dir) / "forks.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{**r, "child_dir": _resolve(Path(run_dir), r["child"], None)} for r in rows]
