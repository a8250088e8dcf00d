"""tunelab: train neural networks better through their hyperparameters and training techniques.

The public names below load on first use: ``tunelab.train`` pulls in torch (seconds), and
``import tunelab`` (which every ``tunelab ...`` command does, ``--help`` included) should not
wait for it. ``from tunelab import train`` and ``tunelab.train`` work as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tunelab import timing as _timing  # noqa: F401 - marks the start: the clock and the CPU counters
from tunelab.errors import ConfigError, DataError, TrialError, TunelabError  # no dependencies: eager

__version__ = "0.2.0"

# public name -> the module that defines it
_LAZY = {
    "train": "tunelab.api", "resume": "tunelab.api", "as_config": "tunelab.api",
    "RunConfig": "tunelab.config", "from_dict": "tunelab.config", "load_config": "tunelab.config",
    "Control": "tunelab.trainer.control",
    "EpochEvent": "tunelab.trainer.fit", "RunResult": "tunelab.trainer.fit", "fit": "tunelab.trainer.fit",
    "Run": "tunelab.trainer.prepare", "prepare": "tunelab.trainer.prepare",
    "tune": "tunelab.search.tune", "TuneResult": "tunelab.search.tune",
    "load_run": "tunelab.trainer.load", "LoadedRun": "tunelab.trainer.load",
}

__all__ = [
    "__version__", "train", "resume", "prepare", "Run", "Control", "load_run", "LoadedRun", "tune", "TuneResult",
    "as_config", "fit", "RunConfig", "RunResult", "EpochEvent", "from_dict", "load_config", "TunelabError",
    "ConfigError", "DataError", "TrialError",
]

if TYPE_CHECKING:  # type checkers and editors see the names without the lazy lookup
    from tunelab.api import as_config, resume, train
    from tunelab.config import RunConfig, from_dict, load_config
    from tunelab.search.tune import TuneResult, tune
    from tunelab.trainer.control import Control
    from tunelab.trainer.fit import EpochEvent, RunResult, fit
    from tunelab.trainer.load import LoadedRun, load_run
    from tunelab.trainer.prepare import Run, prepare


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
