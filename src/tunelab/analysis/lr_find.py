"""Learning-rate range test: sweep the lr exponentially, one step per batch, watch the loss.

``lr_range_test`` trains a model for ``steps`` batches with lr_i = lr_min *
(lr_max / lr_min) ** (i / (steps - 1)), records the loss of each batch (before its step), an
exponentially smoothed, bias-corrected copy of it, and stops early once the smoothed loss
exceeds ``diverge`` x its minimum or the loss is not finite. It suggests the lr where the
smoothed loss falls fastest (most negative d(loss)/d(log lr), ignoring the moving average's
warm-up and the last few points) and also reports the lr of the smallest smoothed loss (min_loss_lr; a common rule
is to train at min_loss_lr / 10). The model's weights and train/eval mode are restored at
the end: the test is a probe, not training.

``lr_find(cfg)`` runs it on a tunelab config: its data, model (built with its seed),
optimizer (lr overridden per step), cross-entropy, batches of ``training.batch_size`` from
seeded permutations of the training set.

Example:
    >>> from tunelab.config import from_dict
    >>> r = lr_find(from_dict({"model": {"hidden": [32]}}), steps=60)
    >>> 1e-7 <= r["suggestion"] <= 10.0
    True
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor, nn

from tunelab.errors import ConfigError

__all__ = ["lr_range_test", "lr_find", "lr_schedule", "smooth_losses", "steepest_lr", "warmup_points", "MIN_STEPS"]

MIN_STEPS = 10  # fewer points leave nothing between the skipped ends


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """The exponential sweep: ``steps`` lrs from lr_min to lr_max, equally spaced in log.

    Example:
        >>> lr_schedule(1e-3, 1e-1, 3).round(6).tolist()
        [0.001, 0.01, 0.1]
    """
    return lr_min * (lr_max / lr_min) ** (np.arange(steps) / (steps - 1))


def smooth_losses(losses: list[float], smooth: float) -> list[float]:
    """Exponential moving average with bias correction (the first value is the first loss).

    Example:
        >>> [round(v, 4) for v in smooth_losses([1.0, 3.0], 0.5)]  # (0.25 + 1.5) / (1 - 0.5**2)
        [1.0, 2.3333]
    """
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = smooth * avg + (1 - smooth) * loss
        out.append(avg / (1 - smooth ** (i + 1)))
    return out


def steepest_lr(lrs: list[float], smoothed: list[float], skip_start: int = 0) -> Optional[float]:
    """The lr of the most negative d(smoothed loss)/d(log lr), skipping the first
    max(skip_start, 10%) points (the moving average's warm-up, where a few noisy losses move it
    a lot) and the last 5% (the divergence tail); None if fewer than 3 points are left.

    Example:
        >>> lrs = np.logspace(-4, 0, 41).tolist()
        >>> loss = [1 / (1 + math.exp(4 * (math.log10(lr) + 2))) for lr in lrs]  # drops at 1e-2
        >>> round(steepest_lr(lrs, loss), 6)
        0.01
    """
    n = len(lrs)
    lo, hi = max(1, skip_start, n // 10), n - max(1, n // 20)
    if hi - lo < 3:
        return None
    slope = np.gradient(np.asarray(smoothed), np.log(np.asarray(lrs)))  # d loss / d log lr
    return float(lrs[lo + int(np.argmin(slope[lo:hi]))])


def warmup_points(smooth: float, steps: int) -> int:
    """Points the smoothed curve needs to average a full window, 1 / (1 - smooth), but at
    most a quarter of the sweep.

    Example:
        >>> warmup_points(0.98, 200), warmup_points(0.98, 100), warmup_points(0.0, 100)
        (50, 25, 1)
    """
    return min(round(1 / (1 - smooth)), steps // 4)


def _check(lr_min: float, lr_max: float, steps: int, smooth: float, diverge: float) -> None:
    if not 0 < lr_min < lr_max:
        raise ConfigError(f"--lr-min={lr_min:g} and --lr-max={lr_max:g} are not allowed; "
                          f"need 0 < lr-min < lr-max")
    if steps < MIN_STEPS:
        raise ConfigError(f"--steps={steps} is out of range; allowed: {MIN_STEPS} or more")
    if not 0 <= smooth < 1:
        raise ConfigError(f"smooth={smooth:g} is out of range; allowed: [0, 1)")
    if not diverge > 1:
        raise ConfigError(f"diverge={diverge:g} is out of range; allowed: more than 1")


def _sweep(model: nn.Module, batches: Iterator, loss_fn: Callable, opt: torch.optim.Optimizer,
           lrs: np.ndarray, smooth: float, diverge: float) -> tuple[list[float], str]:
    """Raw losses, one optimizer step per lr; stops at divergence or when batches run out."""
    losses: list[float] = []
    best, avg = math.inf, 0.0
    for i, lr in enumerate(lrs):
        xb, yb = next(batches, (None, None))
        if xb is None:
            return losses, f"the batches ran out after {i} steps"
        for g in opt.param_groups:
            g["lr"] = float(lr)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()  # one sync per step: the stop rule needs the value now
        if not math.isfinite(value):
            return losses, f"the loss became {value} at lr={lr:.3g}"
        losses.append(value)
        avg = smooth * avg + (1 - smooth) * value
        smoothed = avg / (1 - smooth ** (i + 1))
        best = min(best, smoothed)
        if smoothed > diverge * best:
            return losses, f"the smoothed loss exceeded {diverge:g} x its minimum at lr={lr:.3g}"
    return losses, "completed"


def lr_range_test(model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], loss_fn: Callable,
                  make_optimizer: Callable[[Any, float], torch.optim.Optimizer], *, lr_min: float = 1e-7,
                  lr_max: float = 10.0, steps: int = 200, smooth: float = 0.98,
                  diverge: float = 4.0) -> dict[str, Any]:
    """Run the range test (see the module docstring); the model is left as it was.

    Returns lrs, losses (raw), smoothed, suggestion (steepest descent), min_loss_lr
    (smallest smoothed loss), stopped (why the sweep ended) and steps_run.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model, x = nn.Linear(4, 1), torch.randn(256, 4)
        >>> y = x.sum(1, keepdim=True) + 0.1 * torch.randn(256, 1)  # noise: a loss floor
        >>> batches = iter([(x, y)] * 100)
        >>> r = lr_range_test(model, batches, nn.functional.mse_loss,
        ...                   lambda p, lr: torch.optim.SGD(p, lr=lr), lr_min=1e-4, steps=100)
        >>> r["stopped"].startswith("the smoothed loss exceeded"), 0.01 < r["suggestion"] < 1.0
        (True, True)
    """
    _check(lr_min, lr_max, steps, smooth, diverge)
    lrs = lr_schedule(lr_min, lr_max, steps)
    state, mode = copy.deepcopy(model.state_dict()), model.training
    try:
        model.train()
        opt = make_optimizer(model.parameters(), lr_min)
        losses, stopped = _sweep(model, iter(batches), loss_fn, opt, lrs, smooth, diverge)
    finally:
        model.load_state_dict(state)
        model.train(mode)
    lrs_run, smoothed = lrs[:len(losses)].tolist(), smooth_losses(losses, smooth)
    min_loss_lr = lrs_run[int(np.argmin(smoothed))] if smoothed else None
    # only the descent before the smallest loss counts: past it the model has broken, and a
    # flat, collapsed tail can look "steep" again (a short sweep never hits `diverge`)
    upto = int(np.argmin(smoothed)) + 1 if smoothed else 0
    suggestion = steepest_lr(lrs_run[:upto], smoothed[:upto], skip_start=warmup_points(smooth, steps))
    return dict(lrs=lrs_run, losses=losses, smoothed=smoothed, suggestion=suggestion,
                min_loss_lr=min_loss_lr, stopped=stopped, steps_run=len(losses))


# --------------------------------------------------------------------------- on a tunelab config

def _batches(data, batch_size: int, seed: int, augment) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless batches from seeded per-epoch permutations of the training set (augmented
    as in training when the config asks for it)."""
    from tunelab.data.augment import augment_batch

    x, y = data.x_train, data.y_train
    gen = torch.Generator(device="cpu").manual_seed(seed)
    aug_gen = torch.Generator(device=x.device).manual_seed(seed + 1)
    while True:
        perm = torch.randperm(len(y), generator=gen).to(x.device)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            xb = augment_batch(x[idx], augment, aug_gen) if augment.active else x[idx]
            yield xb, y[idx]


def lr_find(cfg, *, steps: int = 200, lr_min: float = 1e-7, lr_max: float = 10.0) -> dict[str, Any]:
    """The range test on ``cfg`` (a RunConfig): its data, model, optimizer and batch size.

    Example:
        >>> from tunelab.config import from_dict
        >>> r = lr_find(from_dict({"optimizer": {"name": "sgd"}}), steps=50, lr_min=1e-4)
        >>> r["optimizer"], len(r["lrs"]) <= 50
        ('sgd', True)
    """
    from tunelab.optim import build_optimizer
    from tunelab.trainer.prepare import prepare

    _check(lr_min, lr_max, steps, 0.0, 2.0)  # before loading anything
    run = prepare(cfg)  # threads (training.threads), data, the initial weights as in tunelab.train
    data, model = run.data, run.model
    make = lambda params, lr: build_optimizer(params, dataclasses.replace(cfg.optimizer, lr=lr))  # noqa: E731
    batches = _batches(data, cfg.training.batch_size, cfg.training.seed, cfg.augment)
    result = lr_range_test(model, batches, nn.functional.cross_entropy, make, lr_min=lr_min,
                           lr_max=lr_max, steps=steps)
    return dict(result, optimizer=cfg.optimizer.name, batch_size=cfg.training.batch_size)
