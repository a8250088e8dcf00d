"""One run preparation for every command and executor: threads, device, data, seeds, model.

``prepare(cfg)`` is the only place that sets torch's thread count for a run, loads a run's
data and builds its model, so ``tunelab train``, tune and compare trials, ``inspect``,
``lr-find`` and ``ensemble`` start a run the same way (the same initial weights for a seed,
the same ``training.threads``).

Example:
    >>> from tunelab.config import from_dict
    >>> run = prepare(from_dict({"model": {"hidden": [16]}}))
    >>> run.device.type, run.data.name, sum(p.numel() for p in run.model.parameters())
    ('cpu', 'digits', 1210)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from tunelab.config import RunConfig
from tunelab.errors import ConfigError

__all__ = ["Run", "prepare", "set_threads", "resolve_device", "load_run_data"]

_DATA_CACHE: dict[tuple, Any] = {}


@dataclass
class Run:
    """A prepared run: its config, resident data, freshly initialized model and device."""

    cfg: RunConfig
    data: Any  # DataBundle
    model: torch.nn.Module
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device='cuda' but no CUDA device is available; choose 'cpu' or 'auto'")
    return torch.device(name)


def set_threads(threads: Optional[int]) -> None:
    """Set torch's CPU thread count (None keeps the current one). The one caller of
    ``torch.set_num_threads`` in tunelab: runs pass ``training.threads``, process workers
    their share of the cores."""
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_run_data(cfg: RunConfig, cache: bool = False):
    """The DataBundle of ``cfg.data`` on the run's device; ``cache`` keeps one dataset
    resident per process (search workers reuse it across trials)."""
    from tunelab.data import load_data

    device = resolve_device(cfg.training.device)
    if not cache:
        return load_data(cfg.data, device=device)
    key = (repr(cfg.data), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset per process
        _DATA_CACHE[key] = load_data(cfg.data, device=device)
    return _DATA_CACHE[key]


def prepare(cfg: RunConfig, *, data: Any = None, model: Optional[torch.nn.Module] = None,
            cache: bool = False) -> Run:
    """Threads, device, data (``data`` if given), then the model built under
    ``training.seed`` (``model`` if given: the user's own module, moved to the device)."""
    from tunelab.data.augment import check_augment
    from tunelab.nn import build_model

    set_threads(cfg.training.threads)
    data = load_run_data(cfg, cache) if data is None else data
    if data.is_image or cfg.augment.active:
        check_augment(cfg.augment, data)
    device = data.x_train.device
    torch.manual_seed(cfg.training.seed)  # the initial weights
    net = model if model is not None else build_model(cfg.model, data.input_shape, data.num_classes)
    return Run(cfg, data, net.to(device), device)
