"""tunelab: train neural networks better through their hyperparameters and training techniques."""

__version__ = "0.1.0"

from tunelab.api import as_config, resume, train  # noqa: E402
from tunelab.config import RunConfig, from_dict, load_config  # noqa: E402
from tunelab.errors import ConfigError, DataError, TrialError, TunelabError  # noqa: E402
from tunelab.trainer.control import Control  # noqa: E402
from tunelab.trainer.fit import EpochEvent, RunResult, fit  # noqa: E402
from tunelab.trainer.prepare import Run, prepare  # noqa: E402

__all__ = [
    "__version__", "train", "resume", "prepare", "Run", "Control", "tune", "TuneResult", "as_config", "fit", "RunConfig", "RunResult", "EpochEvent",
    "from_dict", "load_config", "TunelabError", "ConfigError", "DataError", "TrialError",
]


def __getattr__(name: str):
    """``tunelab.tune`` and ``TuneResult`` load Optuna only when first used."""
    if name in ("tune", "TuneResult"):
        import importlib

        return getattr(importlib.import_module("tunelab.search.tune"), name)
    raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
