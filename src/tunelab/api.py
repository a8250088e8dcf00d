"""The Python entry point: ``tunelab.train(config)`` trains one model and returns its result.

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
from tunelab.trainer.fit import Decision, EpochEvent, RunResult, fit, resolve_device

__all__ = ["train", "as_config"]

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
          model: Optional[torch.nn.Module] = None) -> RunResult:
    """Load the data, build the model, fit it, and (if ``save``) write the run folder.

    ``schedule`` is any function epoch -> lr multiplier (it replaces ``schedule.name``);
    ``model`` is an optional nn.Module of your own, trained with the same loop. The run
    folder is ``out`` or a new one under ``runs/``; its path is in ``result.run_dir``.
    """
    from tunelab.data import load_data
    from tunelab.nn import build_model
    from tunelab.trainer.runfolder import check_writable, default_run_dir, write_run

    cfg = as_config(config, overrides)
    if save and out is not None:
        check_writable(out, "out")  # before the work, not after it
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    device = resolve_device(cfg.training.device)
    data = load_data(cfg.data, device=device)
    torch.manual_seed(cfg.training.seed)  # the initial weights
    net = model if model is not None else build_model(cfg.model, data.input_shape, data.num_classes)
    result = fit(cfg, data, net, on_epoch=on_epoch, on_batch=on_batch, schedule_fn=schedule)
    result.config = cfg
    result.run_dir = None
    if save:
        run_dir = Path(out) if out is not None else default_run_dir("runs", cfg.data.name, cfg.model.name)
        extra = {"device": str(device), "data_sizes": data.sizes(),
                 "custom_schedule": schedule is not None, "custom_model": model is not None}
        result.run_dir = write_run(run_dir, cfg, result, extra)
    return result
