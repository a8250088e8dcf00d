"""The Python entry points: ``tunelab.train(config)`` trains one model and returns its result;
``tunelab.resume(run_dir)`` continues a run folder from its checkpoint.

Example:
    >>> import tunelab
    >>> result = tunelab.train({"training": {"epochs": 1}}, save=False)
    >>> result.status, result.test_accuracy > 0.5
    ('completed', True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from tunelab.config import RunConfig, from_dict, load_config, replace
from tunelab.trainer.control import Control
from tunelab.trainer.fit import Decision, EpochEvent, RunResult, fit
from tunelab.trainer.prepare import prepare

__all__ = ["train", "resume", "as_config"]

ConfigLike = Union[RunConfig, dict, str, Path, None]


def as_config(config: ConfigLike, overrides: Sequence[str] = ()) -> RunConfig:
    """A RunConfig from a RunConfig, a dict, a YAML path or None (all defaults)."""
    if isinstance(config, RunConfig):
        return replace(config, overrides) if overrides else config
    if isinstance(config, dict):
        return from_dict(config, overrides)
    return load_config(config, overrides)


def train(config: ConfigLike = None, overrides: Sequence[str] = (), *, out: str | Path | None = None,
          save: bool = True, schedule: Optional[Callable[[int], float]] = None,
          on_epoch: Optional[Callable[[EpochEvent], Decision]] = None,
          on_batch: Optional[Callable[[int, int, int], None]] = None,
          model: Optional[torch.nn.Module] = None, control: Optional[Control] = None,
          on_event: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Load the data, build the model, fit it, and (if ``save``) write the run folder.

    ``schedule`` is any function epoch -> lr multiplier (it replaces ``schedule.name``);
    ``model`` is an optional nn.Module of your own, trained with the same loop. The run
    folder is ``out`` or a new one under ``runs/``; its path is in ``result.run_dir``. While
    it trains, the folder holds status.json, events.jsonl and checkpoints/, and ``tunelab
    control`` reaches it; ``control`` (a Control) steers it from this process.
    """
    from tunelab.trainer.runfolder import check_writable, default_run_dir

    cfg = as_config(config, overrides)
    if save and out is not None:
        check_writable(out, "out")  # before the work, not after it
    run = prepare(cfg, model=model)
    run_dir = None
    if save:
        run_dir = Path(out) if out is not None else default_run_dir("runs", cfg.data.name, cfg.model.name)
    extra = {"custom_schedule": schedule is not None, "custom_model": model is not None}
    return _execute(run, run_dir, None, extra, schedule=schedule, on_epoch=on_epoch, on_batch=on_batch,
                    control=control, on_event=on_event)


def resume(run_dir: str | Path, overrides: Sequence[str] = (), *, epochs: Optional[int] = None,
           checkpoint: str = "last", model: Optional[torch.nn.Module] = None,
           schedule: Optional[Callable[[int], float]] = None,
           on_epoch: Optional[Callable[[EpochEvent], Decision]] = None,
           on_batch: Optional[Callable[[int, int, int], None]] = None,
           control: Optional[Control] = None, on_event: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Continue a run folder from its checkpoint (``last`` by default), in the same folder.

    ``overrides`` change the config from here on (``optimizer.lr=1e-4``); ``epochs`` is the new
    total number of epochs. With no change the run ends with exactly the parameters and history
    of an uninterrupted one (on CPU).

    Example:
        >>> import tempfile
        >>> first = train({"training": {"epochs": 1}, "model": {"hidden": [8]}}, out=tempfile.mkdtemp())
        >>> resume(first.run_dir, epochs=2).epochs_run
        2
    """
    from tunelab.trainer import state as run_state
    from tunelab.trainer.lineage import pick_checkpoint, run_config

    run_dir = Path(run_dir)
    old = run_config(run_dir)
    changes = list(overrides) + ([f"training.epochs={epochs}"] if epochs is not None else [])
    cfg = replace(old, changes) if changes else old
    payload = run_state.load(pick_checkpoint(run_dir, checkpoint))
    done, step = payload["state"]["epoch"], payload["state"]["step"]
    _check_resume_changes(old, cfg, done, step, epochs, _custom_model(run_dir) and model is None)
    if cfg.optimizer.name != old.optimizer.name:
        payload = {**payload, "optimizer": None}  # another optimizer starts with a fresh state
    run = prepare(cfg, model=model)
    event = {"kind": "resume", "epoch": done + 1, "step": step, "checkpoint": checkpoint,
             "changes": list(changes), "optimizer_state": payload["optimizer"] is not None}
    extra = {"custom_schedule": schedule is not None, "custom_model": model is not None}
    return _execute(run, run_dir, payload, extra, event=event, schedule=schedule, on_epoch=on_epoch,
                    on_batch=on_batch, control=control, on_event=on_event)


def _custom_model(run_dir: Path) -> bool:
    import json

    try:
        return bool(json.loads((run_dir / "result.json").read_text()).get("custom_model"))
    except (OSError, ValueError):
        return False


def _check_resume_changes(old: RunConfig, new: RunConfig, done: int, step: int, epochs: Optional[int],
                          needs_model: bool) -> None:
    """What a checkpoint cannot follow: other data, another architecture, a new seed, another
    batch size mid-epoch, fewer epochs than are done."""
    from tunelab.config import to_dict
    from tunelab.errors import ConfigError

    if needs_model:
        raise ConfigError("the run was trained with a custom model (Python API); resume it from Python "
                          "with tunelab.resume(run_dir, model=...)")
    for section, allowed in (("data", {"dir"}), ("model", {"dropout"})):
        a, b = to_dict(getattr(old, section)), to_dict(getattr(new, section))
        for key in sorted(k for k in a if a[k] != b[k] and k not in allowed):
            raise ConfigError(f"{section}.{key}={b[key]!r} cannot change on resume (the checkpoint was trained "
                              f"with {a[key]!r}); start a new run with tunelab train")
    if new.training.seed != old.training.seed:
        raise ConfigError(f"training.seed={new.training.seed} cannot change on resume (the random streams "
                          f"continue from the checkpoint); start a new run with tunelab train")
    if step > 0 and new.training.batch_size != old.training.batch_size:
        raise ConfigError(f"training.batch_size={new.training.batch_size} cannot change in the middle of "
                          f"epoch {done + 1}; resume from an epoch-end checkpoint (--from EPOCH) to change it")
    if new.training.epochs < done or (epochs is not None and new.training.epochs <= done and step == 0):
        raise ConfigError(f"epochs={new.training.epochs} is out of range; the run has done {done} epochs, "
                          f"allowed: more than {done}")


def _execute(run, run_dir: Optional[Path], payload, extra: dict, event: Optional[dict] = None,
             schedule=None, on_epoch=None, on_batch=None, control=None, on_event=None) -> RunResult:
    """fit() a prepared run, with a live run folder when ``run_dir`` is given."""
    from tunelab.report.figures import write_curves
    from tunelab.trainer.live import LiveFolder
    from tunelab.trainer.runfolder import write_run

    cfg = run.cfg
    folder = LiveFolder(run_dir, cfg, fresh=payload is None) if run_dir is not None else None
    if control is None and run_dir is not None:
        control = Control(run_dir)
    if event is not None:
        if folder is not None:
            folder.event(event)
        payload = _with_event(payload, event)
    result = fit(cfg, run.data, run.model, on_epoch=on_epoch, on_batch=on_batch, schedule_fn=schedule,
                 control=control, folder=folder, resume=payload, on_event=on_event)
    result.config, result.run_dir = cfg, None
    if folder is not None:
        extra = {"device": str(run.device), "data_sizes": run.data.sizes(), **extra}
        result.run_dir = write_run(run_dir, cfg, result, extra, figure=write_curves)
        folder.set_status(result.status, epoch=result.epochs_run, step=0,
                          best_val_accuracy=result.summary()["best_val_accuracy"])
    return result


def _with_event(payload: Optional[dict], event: dict) -> Optional[dict]:
    """The checkpoint payload with ``event`` added to its recorded events."""
    if payload is None:
        return None
    state = dict(payload["state"], events=[*payload["state"]["events"], event])
    return {**payload, "state": state}
