"""RunState: everything needed to continue a run bit for bit, and its checkpoint files.

``RunState`` holds the scalar side of a run (epoch, step within the epoch, history, the
interventions so far, plateau and early-stopping state, the user's lr multiplier and
switches). A checkpoint adds the tensor side: model and optimizer state, best weights, the
RNG states of torch, numpy and python, the data-order and augmentation generators, and the
partial sums of an epoch stopped mid-way. ``save`` writes atomically (a temporary file in the
same folder, flushed, then renamed over the old one), so a kill during a write leaves the
previous checkpoint loadable; ``load`` reads with ``torch.load(weights_only=True)``.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
    >>> save({"format": FORMAT, "state": state_to_dict(RunState(epoch=3))}, path)
    >>> state_from_dict(load(path)["state"]).epoch
    3
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from tunelab.errors import ConfigError
from tunelab.optim.schedules import PlateauState
from tunelab.trainer.callbacks import EarlyStopState

__all__ = ["RunState", "state_to_dict", "state_from_dict", "save", "load", "rng_state",
           "set_rng_state", "FORMAT"]

FORMAT = 1  # checkpoint layout version


@dataclass(frozen=True)
class RunState:
    """The scalar state of a run; replaced, never mutated.

    ``epoch`` counts completed epochs; ``step`` the completed steps of epoch ``epoch`` (0 at
    an epoch boundary). ``lr_mult`` multiplies the schedule's lr (the user's interventions);
    ``early_stopping`` overrides ``training.early_stopping.enabled`` when not None.
    """

    epoch: int = 0
    step: int = 0
    history: tuple = ()
    events: tuple = ()
    plateau: PlateauState = field(default_factory=PlateauState)
    early: EarlyStopState = field(default_factory=EarlyStopState)
    lr_mult: float = 1.0
    early_stopping: Optional[bool] = None
    paused: bool = False
    epoch_lr: Optional[float] = None  # the lr of the current epoch's first step (history's lr)


def state_to_dict(state: RunState) -> dict[str, Any]:
    """Plain types only (dicts, lists, numbers, strings), as ``weights_only`` loading needs."""
    out = dataclasses.asdict(state)
    out["history"] = [dict(h) for h in state.history]
    out["events"] = [dict(e) for e in state.events]
    return out


def state_from_dict(raw: dict[str, Any]) -> RunState:
    raw = dict(raw)
    raw["plateau"] = PlateauState(**raw["plateau"])
    raw["early"] = EarlyStopState(**raw["early"])
    raw["history"] = tuple(dict(h) for h in raw["history"])
    raw["events"] = tuple(dict(e) for e in raw["events"])
    return RunState(**raw)


def rng_state(gen: torch.Generator, aug_gen: torch.Generator) -> dict[str, Any]:
    """Every random stream a run draws from (global torch: dropout; gen: data order; aug_gen:
    augmentation; numpy and python for user code), as tensors and plain lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    out = {"torch": torch.get_rng_state(), "data_order": gen.get_state(), "augment": aug_gen.get_state(),
           "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
           "python": [version, list(internal), py_gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(rng: dict[str, Any], gen: torch.Generator, aug_gen: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    gen.set_state(rng["data_order"])
    aug_gen.set_state(rng["augment"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = rng["python"]
    random.setstate((version, tuple(internal), py_gauss))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` to ``path`` atomically: the old file stays whole until the rename."""
    from tunelab.fileio import torch_save

    torch_save(payload, path)


def load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint written by ``save``; a missing or unreadable file is one ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a torch file at all
        raise ConfigError(f"checkpoint {str(path)!r} is corrupt or not a tunelab checkpoint "
                          f"({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        raise ConfigError(f"checkpoint {str(path)!r} is not a tunelab checkpoint (format {FORMAT})")
    return payload
