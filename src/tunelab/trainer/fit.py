"""fit(): the reference trainer for any nn.Module on a resident DataBundle.

The whole dataset lives on the device; each epoch slices batches from one permutation; loss
and correct counts accumulate on the device and are read once per epoch (no host sync per
step); evaluation runs in large batches under inference mode. At each epoch end an event is
emitted and its answer obeyed ("stop" ends the run). A loss that turns NaN or infinite ends
the run with status ``diverged``; Ctrl-C ends it with status ``interrupted``; both keep the
history so far.

Example:
    >>> from tunelab.config import from_dict
    >>> from tunelab.data import load_data
    >>> from tunelab.nn import build_model
    >>> cfg = from_dict({}, ["training.epochs=1"])
    >>> data = load_data(cfg.data)
    >>> model = build_model(cfg.model, data.input_shape, data.num_classes)
    >>> fit(cfg, data, model).status
    'completed'
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import torch
import torch.nn.functional as F

from tunelab.config import RunConfig
from tunelab.data.augment import augment_batch, check_augment
from tunelab.data.bundle import DataBundle
from tunelab.errors import ConfigError
from tunelab.optim import LrSchedule, build_optimizer
from tunelab.trainer.callbacks import EarlyStopState, early_stop_step

__all__ = ["fit", "evaluate", "RunResult", "EpochEvent", "resolve_device"]

Decision = Optional[Literal["continue", "stop"]]
Status = Literal["completed", "early_stopped", "stopped", "diverged", "interrupted"]


@dataclass(frozen=True)
class EpochEvent:
    """What the trainer reports at the end of each epoch (epoch is 1-based)."""

    epoch: int
    epochs: int
    metrics: dict[str, float]


@dataclass
class RunResult:
    """Outcome of one training run. ``model`` holds the final (or restored best) weights."""

    status: Status
    history: list[dict[str, float]]
    test_loss: float
    test_accuracy: float
    val_loss: float
    val_accuracy: float
    best_val_accuracy: float
    best_epoch: Optional[int]  # the epoch of best_val_accuracy (None: no finite epoch)
    epochs_run: int
    seconds: float
    message: str = ""
    restored_epoch: Optional[int] = None  # early stopping restored this epoch's weights
    model: Any = field(default=None, repr=False)
    config: Any = field(default=None, repr=False)
    run_dir: Any = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (NaN becomes None)."""
        keys = ["status", "test_accuracy", "test_loss", "val_accuracy", "val_loss",
                "best_val_accuracy", "best_epoch", "restored_epoch", "epochs_run", "seconds", "message"]
        out = {k: getattr(self, k) for k in keys}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device='cuda' but no CUDA device is available; choose 'cpu' or 'auto'")
    return torch.device(name)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y), in large batches."""
    if len(y) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(y), batch_size):
        logits = model(x[i:i + batch_size])  # (B, classes)
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").double()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return loss.item() / len(y), correct.item() / len(y)


def _train_epoch(model, opt, data: DataBundle, cfg: RunConfig, sched: LrSchedule, epoch: int,
                 gen: torch.Generator, aug_gen: torch.Generator, on_batch) -> tuple[float, float]:
    """One pass over a fresh permutation; returns (mean loss, accuracy), read once."""
    x, y, bs = data.x_train, data.y_train, cfg.training.batch_size
    n = len(y)
    perm = torch.randperm(n, generator=gen, device="cpu").to(x.device)
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    steps = math.ceil(n / bs)
    model.train()
    for step in range(steps):
        if sched.per_step:
            lr = sched.lr(epoch, step)
            for g in opt.param_groups:
                g["lr"] = lr
        idx = perm[step * bs:(step + 1) * bs]
        xb, yb = x[idx], y[idx]  # (B, ...) gathered on the device
        if cfg.augment.active:
            xb = augment_batch(xb, cfg.augment, aug_gen)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        if on_batch is not None:
            on_batch(epoch, step + 1, steps)
    return loss_sum.item() / n, correct.item() / n


def fit(cfg: RunConfig, data: DataBundle, model: torch.nn.Module,
        on_epoch: Optional[Callable[[EpochEvent], Decision]] = None,
        on_batch: Optional[Callable[[int, int, int], None]] = None,
        schedule_fn: Optional[Callable[[int], float]] = None, test: bool = True) -> RunResult:
    """Train ``model`` on ``data`` as ``cfg`` says; see the module docstring.

    ``test=False`` never reads the test set (search trials choose on validation only).
    """
    tc, es_cfg = cfg.training, cfg.training.early_stopping
    if data.is_image or cfg.augment.active:
        check_augment(cfg.augment, data)
    device = data.x_train.device
    model.to(device)
    gen = torch.Generator(device="cpu").manual_seed(tc.seed)
    aug_gen = torch.Generator(device=device).manual_seed(tc.seed + 1)  # augmentation draws
    torch.manual_seed(tc.seed)  # dropout draws
    opt = build_optimizer(model.parameters(), cfg.optimizer)
    steps = math.ceil(len(data.y_train) / tc.batch_size)
    sched = LrSchedule(cfg.schedule, cfg.optimizer.lr, tc.epochs, steps, schedule_fn)
    history: list[dict[str, float]] = []
    stop_state, best_weights = EarlyStopState(), None
    status: Status = "completed"
    message = ""
    start = time.perf_counter()
    try:
        for epoch in range(tc.epochs):
            # ---- learning rate for this epoch (per-step rules set it inside the epoch)
            lr = sched.lr(epoch, 0)
            for g in opt.param_groups:
                g["lr"] = lr
            t0 = time.perf_counter()
            # ---- train, then evaluate on validation
            train_loss, train_acc = _train_epoch(model, opt, data, cfg, sched, epoch, gen, aug_gen, on_batch)
            val_loss, val_acc = evaluate(model, data.x_val, data.y_val, tc.eval_batch_size)
            metrics = dict(epoch=epoch + 1, train_loss=train_loss, train_accuracy=train_acc,
                           val_loss=val_loss, val_accuracy=val_acc, lr=lr,
                           seconds=time.perf_counter() - t0)
            history.append(metrics)
            # ---- divergence: never carry a NaN result forward
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                status = "diverged"
                message = (f"loss became {train_loss if not math.isfinite(train_loss) else val_loss} "
                           f"at epoch {epoch + 1}; lower optimizer.lr (now {cfg.optimizer.lr:g})")
                break
            # ---- callbacks: plateau, early stopping, the caller's decision
            sched.end_epoch(epoch, metrics)
            stop_state = early_stop_step(stop_state, epoch, metrics[es_cfg.monitor], es_cfg)
            if stop_state.improved and es_cfg.enabled and es_cfg.restore_best:
                best_weights = copy.deepcopy(model.state_dict())
            decision = on_epoch(EpochEvent(epoch + 1, tc.epochs, metrics)) if on_epoch else None
            if stop_state.stop:
                status, message = "early_stopped", (
                    f"{es_cfg.monitor} did not improve for {es_cfg.patience} epochs")
                break
            if decision == "stop":
                status, message = "stopped", "stopped by the caller"
                break
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {len(history)} epochs"
    return _finish(cfg, data, model, history, stop_state, best_weights, status, message,
                   time.perf_counter() - start, test)


def _finish(cfg, data, model, history, stop_state, best_weights, status, message, seconds,
            test: bool = True) -> RunResult:
    """Restore the best weights if asked, then read the test set once."""
    restored = best_weights is not None
    if restored:
        model.load_state_dict(best_weights)
        note = f"restored the weights of epoch {stop_state.best_epoch + 1}"
        message = f"{message}; {note}" if message else note
    if (status == "diverged" and best_weights is None) or not test:
        test_loss = test_acc = math.nan
    else:
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, cfg.training.eval_batch_size)
    pick = history[stop_state.best_epoch] if restored else (history[-1] if history else {})
    # an epoch whose validation loss is NaN has broken weights: its accuracy is not a "best"
    finite = [h for h in history if math.isfinite(h["val_accuracy"]) and math.isfinite(h["val_loss"])]
    best = max(finite, key=lambda h: h["val_accuracy"], default=None)  # first of ties
    return RunResult(
        status=status, history=history, test_loss=test_loss, test_accuracy=test_acc,
        val_loss=pick.get("val_loss", math.nan), val_accuracy=pick.get("val_accuracy", math.nan),
        best_val_accuracy=best["val_accuracy"] if best else math.nan,
        best_epoch=int(best["epoch"]) if best else None, epochs_run=len(history), seconds=seconds,
        message=message, model=model, restored_epoch=stop_state.best_epoch + 1 if restored else None)
