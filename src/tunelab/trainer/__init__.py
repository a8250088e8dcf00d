"""The trainer: fit(), early stopping, the run folder."""

import importlib
from typing import Any

__all__ = ["fit", "evaluate", "RunResult", "EpochEvent", "resolve_device", "EarlyStopState",
           "early_stop_step", "write_run", "default_run_dir", "HISTORY_COLUMNS"]

# Loaded on first use, so `tunelab control` or `tunelab runs` (which read run folders) and
# `--help` never import torch through this package.
_LAZY = {"fit": "fit", "evaluate": "fit", "RunResult": "fit", "EpochEvent": "fit", "resolve_device": "prepare",
         "EarlyStopState": "callbacks", "early_stop_step": "callbacks", "write_run": "runfolder",
         "default_run_dir": "runfolder", "HISTORY_COLUMNS": "runfolder"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tunelab.trainer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tunelab.trainer.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
