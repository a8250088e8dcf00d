"""The trainer: fit(), early stopping, the run folder."""

from tunelab.trainer.callbacks import EarlyStopState, early_stop_step
from tunelab.trainer.fit import EpochEvent, RunResult, evaluate, fit, resolve_device
from tunelab.trainer.runfolder import HISTORY_COLUMNS, default_run_dir, write_run

__all__ = ["fit", "evaluate", "RunResult", "EpochEvent", "resolve_device", "EarlyStopState",
           "early_stop_step", "write_run", "default_run_dir", "HISTORY_COLUMNS"]
