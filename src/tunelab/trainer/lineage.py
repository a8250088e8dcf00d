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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from tunelab.config import RunConfig, dump_config, replace, to_dict
from tunelab.errors import ConfigError
from tunelab.trainer.live import CHECKPOINTS, read_status
from tunelab.trainer.runfolder import fresh_dir
from tunelab.fileio import write_json, write_text

__all__ = ["make_fork", "pick_checkpoint", "read_lineage", "read_forks", "run_config", "plan_resume",
           "ResumePlan", "check_changes"]


def run_config(run_dir: str | Path, overrides: Sequence[str] = ()):
    """The RunConfig of a run folder (its config.yaml) with ``overrides`` applied."""
    from tunelab.config import from_dict, read_yaml, saved_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"run folder {str(run_dir)!r} has no config.yaml; is it a tunelab run folder?")
    raw = saved_config(read_yaml(run_dir / "config.yaml", "config file"), before_0_2=_before_0_2(run_dir))
    return from_dict(raw, overrides)


def _before_0_2(run_dir: Path) -> bool:
    """Whether the run folder was written by tunelab 0.1.0 (its result.json says so, or records no versions)."""
    import json

    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return False
    versions = result.get("versions") if isinstance(result, dict) else None
    return isinstance(result, dict) and (not isinstance(versions, dict) or versions.get("tunelab") == "0.1.0")


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


def check_changes(old: RunConfig, new: RunConfig, done: int, step: int, epochs: Optional[int] = None) -> None:
    """What a checkpoint cannot follow: other data, another architecture (only model.dropout
    may change), a new seed, another batch size mid-epoch, no epochs left to run."""
    for section, allowed in (("data", {"dir"}), ("model", {"dropout"})):
        a, b = to_dict(getattr(old, section)), to_dict(getattr(new, section))
        for key in sorted(k for k in a if a[k] != b[k] and k not in allowed):
            raise ConfigError(f"{section}.{key}={b[key]!r} cannot change from a checkpoint (it was trained "
                              f"with {a[key]!r}); start a new run with tunelab train")
    if new.training.seed != old.training.seed:
        raise ConfigError(f"training.seed={new.training.seed} cannot change from a checkpoint (the random "
                          f"streams continue from it); start a new run with tunelab train")
    if step > 0 and new.training.batch_size != old.training.batch_size:
        raise ConfigError(f"training.batch_size={new.training.batch_size} cannot change in the middle of "
                          f"epoch {done + 1}; start from an epoch-end checkpoint (--from EPOCH) to change it")
    if new.training.epochs < done or (new.training.epochs == done and (epochs is not None or step > 0)):
        raise ConfigError(f"epochs={new.training.epochs} is out of range; the checkpoint has done {done} "
                          f"epochs, allowed: more than {done}")


@dataclass
class ResumePlan:
    """What resuming a run folder needs: the new config, the checkpoint payload (adjusted to the
    changes) and the event that records the resume."""

    cfg: RunConfig
    payload: dict
    event: dict
    threads: Optional[int] = None  # the thread count the run used, kept when training.threads is auto


def plan_resume(run_dir: str | Path, overrides: Sequence[str] = (), epochs: Optional[int] = None,
                checkpoint: str = "last", model_given: bool = False) -> ResumePlan:
    """Check everything before any work: the folder, the config changes, the checkpoint, that the
    run is not running now, and that a custom model is given again."""
    run_dir = Path(run_dir)
    old = run_config(run_dir)
    changes = list(overrides) + ([f"training.epochs={epochs}"] if epochs is not None else [])
    cfg = replace(old, changes) if changes else old
    status = read_status(run_dir)
    if status.get("status") in ("running", "paused"):
        raise ConfigError(f"run {str(run_dir)!r} is {status['status']} (pid {status.get('pid')}); "
                          f"stop it first: tunelab control {run_dir} stop")
    if _custom_model(run_dir) and not model_given:
        raise ConfigError("the run was trained with a custom model (Python API); resume it from Python "
                          "with tunelab.resume(run_dir, model=...)")
    from tunelab.trainer import state as run_state  # torch: only once a checkpoint is read

    payload = run_state.load(pick_checkpoint(run_dir, checkpoint))
    done, step = payload["state"]["epoch"], payload["state"]["step"]
    check_changes(old, cfg, done, step, epochs)
    if cfg.optimizer.name != old.optimizer.name:
        payload = {**payload, "optimizer": None}  # another optimizer starts with a fresh state
    if cfg.optimizer.lr != old.optimizer.lr:  # an lr set on resume is the lr: earlier multipliers end
        payload = {**payload, "state": {**payload["state"], "lr_mult": 1.0}}
    event = {"kind": "resume", "epoch": done + 1, "step": step, "checkpoint": checkpoint,
             "changes": changes, "optimizer_state": payload["optimizer"] is not None}
    return ResumePlan(cfg, payload, event, _recorded_threads(run_dir) if cfg.training.threads is None else None)


def _recorded_threads(run_dir: Path) -> Optional[int]:
    """The thread count the run trained with (result.json): another count sums floats in
    another order, so a resume with the auto policy reuses it to stay bit for bit."""
    try:
        threads = json.loads((run_dir / "result.json").read_text()).get("threads")
    except (OSError, ValueError):
        return None
    return threads if isinstance(threads, int) and threads > 0 else None


def _custom_model(run_dir: Path) -> bool:
    try:
        result = json.loads((run_dir / "result.json").read_text())
        return isinstance(result, dict) and bool(result.get("custom_model"))
    except (OSError, ValueError):
        return False


def make_fork(parent: str | Path, source: str = "last", overrides: Sequence[str] = (),
              out: Optional[str | Path] = None) -> Path:
    """Create the child folder, ready to resume; returns its path."""
    parent = Path(parent)
    cfg = run_config(parent, overrides)  # every config error before anything is written
    path = pick_checkpoint(parent, source)
    from tunelab.trainer import state as run_state

    payload = run_state.load(path)  # a corrupt checkpoint: one line, nothing written
    st = payload["state"]
    check_changes(run_config(parent), cfg, st["epoch"], st["step"])
    child = Path(out) if out is not None else fresh_dir(parent.parent, f"{parent.name}-fork")
    if child.exists() and any(child.iterdir()):
        raise ConfigError(f"--out={str(child)!r} is not empty; give a new folder for the fork")
    (child / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, child / CHECKPOINTS / "last.pt")
    dump_config(cfg, child / "config.yaml")
    lineage = {"parent": os.path.relpath(parent.resolve(), child.resolve()), "parent_abs": str(parent.resolve()),
               "checkpoint": path.name, "epoch": st["epoch"], "step": st["step"], "overrides": list(overrides)}
    write_json(child / "lineage.json", lineage)
    write_text(child / "events.jsonl", json.dumps({  # the child's story starts with its branch
        "kind": "fork", "parent": lineage["parent"], "checkpoint": path.name, "epoch": st["epoch"] + 1,
        "step": st["step"], "overrides": list(overrides)}) + "\n")
    write_json(child / "status.json", {"status": "ready", "epoch": st["epoch"], "epochs": cfg.training.epochs},
               indent=None)
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
