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
    try:
        run = prepare(cfg, model=model)
    except KeyboardInterrupt:  # the CLI says what was lost: nothing yet
        raise KeyboardInterrupt("while loading the data and building the model; nothing was trained or "
                                "written") from None
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
    from tunelab.trainer.lineage import plan_resume

    plan = plan_resume(run_dir, overrides, epochs, checkpoint, model_given=model is not None)
    run = prepare(plan.cfg, model=model)
    if plan.threads is not None:  # auto threads: keep the count the run started with
        from tunelab.trainer.threads import set_threads

        set_threads(plan.threads)
    extra = {"custom_schedule": schedule is not None, "custom_model": model is not None}
    return _execute(run, Path(run_dir), plan.payload, extra, event=plan.event, schedule=schedule,
                    on_epoch=on_epoch, on_batch=on_batch, control=control, on_event=on_event)


def _execute(run, run_dir: Optional[Path], payload, extra: dict, event: Optional[dict] = None,
             schedule=None, on_epoch=None, on_batch=None, control=None, on_event=None, figure: bool = True,
             test: bool = True) -> RunResult:
    """fit() a prepared run, with a live run folder when ``run_dir`` is given (``figure``: draw
    curves.png in it; ``test``: read the test set at the end)."""
    from tunelab.trainer.live import LiveFolder
    from tunelab.trainer.runfolder import write_run
    from tunelab.trainer.tensorboard import open_log

    cfg = run.cfg
    # opened first: a missing tensorboard package fails before the run folder is touched
    tb = open_log(cfg, run_dir / "tensorboard" if run_dir is not None else None,
                  first_epoch=payload["state"]["epoch"] + 1 if payload is not None else 1)
    result = None
    try:
        if tb is not None:
            on_epoch, on_event = tb.hooks(on_epoch, on_event)
        extra = {"device": str(run.device), "data_sizes": run.data.sizes(), "threads": torch.get_num_threads(),
                 **extra}  # also in the running result.json: a resume after a kill needs them
        folder = LiveFolder(run_dir, cfg, fresh=payload is None, extra=extra) if run_dir is not None else None
        if control is None and run_dir is not None:
            control = Control(run_dir)
        if event is not None:
            if folder is not None:
                folder.event(event)
            if on_event is not None:
                on_event(event)
            payload = _with_event(payload, event)
        result = fit(cfg, run.data, run.model, on_epoch=on_epoch, on_batch=on_batch, schedule_fn=schedule,
                     control=control, folder=folder, resume=payload, on_event=on_event, test=test)
    finally:
        if tb is not None:  # closed even when fit raises: the events so far stay readable
            tb.close(result)
    result.config, result.run_dir = cfg, None
    if result.startup is not None:  # this process's first run: where its seconds before the first step went
        extra = {**extra, "startup": result.startup}
    if folder is not None:
        result.run_dir = write_run(run_dir, cfg, result, extra, figure=_write_curves if figure else None)
        folder.set_status(result.status, epoch=result.epochs_run, step=0,
                          best_val_accuracy=result.summary()["best_val_accuracy"])
    return result


def _write_curves(*args, **kwargs) -> None:
    """curves.png: matplotlib is imported when the run is over (0.4 s that were before the first step)."""
    from tunelab.report.figures import write_curves

    write_curves(*args, **kwargs)


def _with_event(payload: Optional[dict], event: dict) -> Optional[dict]:
    """The checkpoint payload with ``event`` added to its recorded events."""
    if payload is None:
        return None
    state = dict(payload["state"], events=[*payload["state"]["events"], event])
    return {**payload, "state": state}
