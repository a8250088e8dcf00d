"""One run preparation for every command and executor: threads, device, data, seeds, model.

``prepare(cfg)`` is the only place that sets torch's thread count for a run, loads a run's
data and builds its model, so ``tunelab train``, tune and compare trials, ``inspect``,
``lr-find`` and ``ensemble`` start a run the same way (the same initial weights for a seed,
the same ``training.threads``).

Threads: ``training.threads: null`` means auto, the cores that other processes leave free now
(``tunelab.trainer.threads``: an instantaneous reading, not the load average). An integer wins.

Example:
    >>> from tunelab.config import from_dict
    >>> run = prepare(from_dict({"model": {"hidden": [16]}}))
    >>> run.device.type, run.data.name, sum(p.numel() for p in run.model.parameters())
    ('cpu', 'digits', 1210)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from tunelab.config import RunConfig
from tunelab.errors import ConfigError
from tunelab.timing import startup_lap
from tunelab.trainer.threads import auto_threads, free_cores, machine_load, set_threads, usable_cores

__all__ = ["Run", "prepare", "new_model", "set_threads", "auto_threads", "usable_cores", "machine_load",
           "free_cores", "resolve_device", "load_run_data"]

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

    startup_lap("imports and config")  # the process's start-up, once: where its seconds went
    set_threads(cfg.training.threads)
    startup_lap("threads")
    data = load_run_data(cfg, cache) if data is None else data
    if data.is_image or cfg.augment.active:
        check_augment(cfg.augment, data)
    startup_lap("data")
    device = data.x_train.device
    if model is None:
        check_memory(cfg, data.input_shape, data.num_classes, device)
    torch.manual_seed(cfg.training.seed)  # the initial weights
    net = model if model is not None else build_model(cfg.model, data.input_shape, data.num_classes)
    net = net.to(device)
    startup_lap("model")
    return Run(cfg, data, net, device)


def model_size(cfg: RunConfig, input_shape: tuple, num_classes: int) -> int:
    """Parameters of ``cfg``'s model for inputs of ``input_shape``, built on the meta device (shapes
    only: no memory, no initialization, no random draw).

    Example:
        >>> from tunelab.config import from_dict
        >>> model_size(from_dict({"model": {"hidden": [4]}}), (64,), 10)
        310
    """
    from tunelab.nn import build_model

    with torch.device("meta"):
        model = build_model(cfg.model, tuple(input_shape), num_classes, init=False)
    return sum(p.numel() for p in model.parameters())


SKIP_MEMORY_CHECK = "TUNELAB_SKIP_MEMORY_CHECK"  # set: train even when the estimate says it will not fit


def memory_estimate(cfg: RunConfig, input_shape: tuple, num_classes: int) -> Optional[tuple[int, int]]:
    """(parameters, bytes) a training step of ``cfg`` needs, estimated on the meta device (no
    memory used): weights, gradients and two optimizer states per parameter, and every layer's
    output for a batch of ``training.batch_size`` twice (kept for the backward pass, and its
    gradient), in float32. None when the model cannot run on the meta device.

    Example:
        >>> from tunelab.config import from_dict
        >>> p, b = memory_estimate(from_dict({"model": {"hidden": [4]}, "training": {"batch_size": 8}}), (64,), 10)
        >>> p, b > 4 * 4 * p
        (310, True)
    """
    from tunelab.nn import build_model

    outputs = [0]

    def count(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not list(module.children()) and isinstance(output, torch.Tensor):
            outputs[0] += output.numel()

    try:
        with torch.device("meta"):
            model = build_model(cfg.model, tuple(input_shape), num_classes, init=False)
            hooks = [m.register_forward_hook(count) for m in model.modules()]
            model.train()
            model(torch.empty((cfg.training.batch_size, *input_shape)))
        for h in hooks:
            h.remove()
    except Exception:  # noqa: BLE001 - a module the meta device cannot run: no estimate
        return None
    params = sum(p.numel() for p in model.parameters())
    return params, 4 * (4 * params + 2 * outputs[0])


def _mlp_bound(cfg: RunConfig, input_shape: tuple, num_classes: int) -> Optional[int]:
    """An upper bound of ``memory_estimate``'s bytes for an mlp, without running it: every leaf
    module's output is at most as wide as the widest of the input, a hidden layer and the classes.
    None for other models.

    Example:
        >>> from tunelab.config import from_dict
        >>> cfg = from_dict({"model": {"hidden": [4]}, "training": {"batch_size": 8}})
        >>> _mlp_bound(cfg, (64,), 10) >= memory_estimate(cfg, (64,), 10)[1]
        True
    """
    from tunelab.nn import build_model

    if cfg.model.name != "mlp":
        return None
    with torch.device("meta"):
        model = build_model(cfg.model, tuple(input_shape), num_classes, init=False)
    params = sum(p.numel() for p in model.parameters())
    leaves = sum(1 for m in model.modules() if not list(m.children()))
    widest = max([math.prod(input_shape), num_classes, *cfg.model.hidden])
    return 4 * (4 * params + 2 * leaves * widest * cfg.training.batch_size)


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free on ``device``: CUDA's free memory, else the machine's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(cfg: RunConfig, input_shape: tuple, num_classes: int, device: torch.device) -> None:
    """A one-line ConfigError when the model and a batch clearly do not fit in the memory free on
    ``device`` (the estimate above 90% of it), before anything is allocated."""
    if os.environ.get(SKIP_MEMORY_CHECK):
        return
    free = available_memory(device)
    bound = _mlp_bound(cfg, input_shape, num_classes)
    if free is None or (bound is not None and bound <= 0.9 * free):
        return  # fits for sure: no forward on the meta device (its first use imports a second of torch)
    estimate = memory_estimate(cfg, input_shape, num_classes)
    if estimate is None or estimate[1] <= 0.9 * free:
        return
    params, need = estimate
    raise ConfigError(f"model.{cfg.model.name} with training.batch_size={cfg.training.batch_size} needs about "
                      f"{need / 2**30:.1f} GiB to train ({params:,} parameters and the batch's activations), "
                      f"and {device.type} has {free / 2**30:.1f} GiB free; allowed: a smaller model or batch "
                      f"(or set {SKIP_MEMORY_CHECK}=1 to try anyway)")


def layer_template(cfg: RunConfig, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    """The layers of ``cfg``'s model with dropout layers (at rate 0.5 when ``cfg`` has none), weights
    left as built: what a population walks, so members with and without dropout share a stack.

    Example:
        >>> from tunelab.config import from_dict
        >>> type(layer_template(from_dict({"model": {"hidden": [4]}}), (64,), 10).fc0[-1]).__name__
        'Dropout'
    """
    import dataclasses

    from tunelab.nn import build_model

    model_cfg = cfg.model if cfg.model.dropout > 0 else dataclasses.replace(cfg.model, dropout=0.5)
    return build_model(model_cfg, input_shape, num_classes, init=False)


def new_model(cfg: RunConfig, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    """The model of ``cfg`` with the initial weights ``prepare`` gives it (seeded by
    ``training.seed``), for a caller that has its data already (loading a trained run).

    Example:
        >>> from tunelab.config import from_dict
        >>> new_model(from_dict({"model": {"hidden": [4]}}), (64,), 10).fc0[0].out_features
        4
    """
    from tunelab.nn import build_model

    torch.manual_seed(cfg.training.seed)
    return build_model(cfg.model, input_shape, num_classes)
