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
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import torch
import torch.nn.functional as F

from tunelab.config import RunConfig, to_dict
from tunelab.data.augment import augment_batch, check_augment
from tunelab.data.bundle import DataBundle
from tunelab.optim import LrSchedule, build_optimizer
from tunelab.timing import Stopwatch, startup, startup_lap
from tunelab.trainer.control import Control, apply_command
from tunelab.trainer.live import LiveFolder
from tunelab.trainer.policy import diverged_loss, early_stopping_on, epoch_end, keep_best
from tunelab.trainer.prepare import resolve_device
from tunelab.trainer.state import FORMAT, RunState, rng_state, set_rng_state, state_from_dict, state_to_dict

__all__ = ["fit", "evaluate", "RunResult", "EpochEvent", "resolve_device", "period_steps", "epoch_steps",
           "train_eval_subset", "finish_run"]

Decision = Optional[Literal["continue", "stop"]]
Status = Literal["completed", "early_stopped", "stopped", "diverged", "interrupted"]


@dataclass(frozen=True)
class EpochEvent:
    """What the trainer reports at the end of each epoch (epoch is 1-based)."""

    epoch: int
    epochs: int
    metrics: dict[str, float]
    grad_norms: dict[str, float] = field(default_factory=dict)  # per parameter, last step
    next_lr: float = math.nan  # the lr in use at the end of the epoch (schedule x plateau x user), before the epoch-end policy


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
    events: list = field(default_factory=list)  # interventions and lineage, in order
    num_classes: Optional[int] = None  # of the data (chance accuracy is 1 / num_classes)
    # wall seconds of fit's parts: train, eval (validation and the train-eval subset), callback
    # (the caller's on_epoch: a search trial waits there for the driver's prune answer), folder
    # (checkpoints, history, status) and finish (restoring the best weights, the test set)
    timing: dict = field(default_factory=dict)
    startup: Optional[dict] = None  # the process's start-up to its first step (``timing.startup``), first run only
    # what a seeded result is bit-identical under (docs/reproductions.md): torch's intra-op threads
    # at the end of the run, the device, and the versions of tunelab, torch and Python
    threads: Optional[int] = None
    device: Optional[str] = None
    versions: dict = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (NaN becomes None)."""
        keys = ["status", "test_accuracy", "test_loss", "val_accuracy", "val_loss",
                "best_val_accuracy", "best_epoch", "restored_epoch", "epochs_run", "seconds", "message",
                "num_classes", "threads", "device", "versions"]
        out = {k: getattr(self, k) for k in keys}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


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


class _Live:
    """The trainer's working set: the tensors a checkpoint captures and the scalar RunState.

    Steps read ``control`` between them; commands change ``state`` through the pure
    ``apply_command`` and act here (lr at the next step, pause, checkpoint, stop, fork).
    """

    def __init__(self, cfg, data, model, opt, sched, gen, aug_gen, control, folder, on_event) -> None:
        self.cfg, self.data, self.model, self.opt, self.sched = cfg, data, model, opt, sched
        self.gen, self.aug_gen, self.control, self.folder, self.on_event = gen, aug_gen, control, folder, on_event
        self.state, self.best_weights, self.stop_message = RunState(), None, ""
        self.loss_sum = self.correct = None  # the running sums of the epoch (period) in progress
        self.seen = 0  # examples stepped on in the epoch in progress
        self.perm, self.perm_pass = None, -1  # the data order of the pass over the data in progress
        self.steps = period_steps(cfg, len(data.y_train))
        self.stepped = self.started_process = False  # a first step taken; it closed the process's start-up

    # ---- where a step falls: epochs are evaluation periods of ``steps`` optimizer steps; the
    # data is read in passes of ceil(n / batch_size) steps, each in its own order (with
    # training.epochs the two coincide; with training.steps a period may span passes)
    def locate(self, step: int) -> tuple[int, int]:
        """(pass over the data, step within it) of step ``step`` of the current epoch."""
        spe = math.ceil(len(self.data.y_train) / self.cfg.training.batch_size)
        g = self.state.epoch * self.steps + step
        return g // spe, g % spe

    def order(self, data_pass: int) -> torch.Tensor:
        """The permutation of pass ``data_pass``, drawn from the data-order generator at its start."""
        if self.perm_pass != data_pass:
            self.perm = torch.randperm(len(self.data.y_train), generator=self.gen, device="cpu").to(
                self.data.x_train.device)
            self.perm_pass = data_pass
        return self.perm

    # ---- learning rate: schedule x plateau x the user's multiplier
    def lr(self, step: int) -> float:
        return self.sched.lr(self.state.epoch, step, self.state.plateau.scale) * self.state.lr_mult

    def set_lr(self, step: int) -> float:
        lr = self.lr(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    # ---- checkpoints
    def payload(self) -> dict[str, Any]:
        partial = order = None
        if self.loss_sum is not None:  # an epoch in progress (even before its first step): its sums
            partial = {"loss_sum": self.loss_sum.cpu(), "correct": self.correct.cpu(), "seen": self.seen}
        if self.perm is not None:  # a pass over the data in progress: its order
            order = {"perm": self.perm.cpu(), "pass": self.perm_pass}
        return {"format": FORMAT, "state": state_to_dict(self.state), "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "best_weights": self.best_weights,
                "rng": rng_state(self.gen, self.aug_gen), "partial": partial, "order": order,
                "config": to_dict(self.cfg)}

    def checkpoint(self, **kinds: bool):
        return self.folder.save(self.payload(), **kinds) if self.folder is not None else None

    # ---- the control channel
    def record(self, event: dict) -> None:
        if self.folder is not None:
            self.folder.event(event)
        if self.on_event is not None:
            self.on_event(event)

    def obey(self, step: int) -> bool:
        """Apply waiting commands before ``step``; wait while paused. False: stop now."""
        commands = self.control.poll()
        while commands or self.state.paused:
            for command in commands:
                self.state = dataclasses.replace(self.state, step=step)
                self.state, event = apply_command(self.state, command, self.lr(step))
                event["steps"] = self.steps
                self._act(command["cmd"], event, step)
            if self.stop_message:
                return False
            commands = self.control.poll()
            if self.state.paused and not commands:
                time.sleep(0.05)
        return True

    def _act(self, cmd: str, event: dict, step: int) -> None:
        if cmd in ("lr", "lr_scale"):
            self.set_lr(step)  # from the next step on
        elif cmd == "stop":
            self.stop_message = f"stopped by the user at epoch {self.state.epoch + 1}, step {step}"
        elif cmd in ("checkpoint", "fork") and self.folder is not None:
            path = self.checkpoint(snapshot=True)
            event["checkpoint"] = str(path.relative_to(self.folder.path))
            if cmd == "fork":
                from tunelab.trainer.lineage import make_fork

                event["fork"] = str(make_fork(self.folder.path, str(path)))
        elif cmd in ("pause", "resume") and self.folder is not None:
            self.folder.set_status("paused" if self.state.paused else "running", step=step)
        self.record(event)

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint (see ``tunelab.trainer.resume``)."""
        self.state = dataclasses.replace(state_from_dict(payload["state"]), paused=False)  # resumed: running
        self.model.load_state_dict(payload["model"])
        if payload.get("optimizer") is not None:  # None: another optimizer, fresh state
            load_optimizer_state(self.opt, payload["optimizer"])
        self.best_weights = payload.get("best_weights")
        set_rng_state(payload["rng"], self.gen, self.aug_gen)
        device = self.data.x_train.device
        partial, order = payload.get("partial"), payload.get("order")
        if partial is not None:
            self.loss_sum, self.correct = partial["loss_sum"].to(device), partial["correct"].to(device)
            self.seen = int(partial.get("seen", min(self.state.step * self.cfg.training.batch_size,
                                                    len(self.data.y_train))))
            if order is None and "perm" in partial:  # a checkpoint of an older version: the epoch's order
                order = {"perm": partial["perm"], "pass": self.locate(0)[0]}
        if order is not None:
            self.perm, self.perm_pass = order["perm"].to(device), int(order["pass"])


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load an optimizer's saved state but keep the hyperparameters it was built with (so a
    changed ``optimizer.*`` on resume takes effect; torch would restore the old ones)."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(saved)
    for g, fresh in zip(opt.param_groups, groups):
        g.update(fresh)


def period_steps(cfg: RunConfig, n_train: int) -> int:
    """Optimizer steps per epoch: one pass over the data, or training.eval_every with training.steps.

    Example:
        >>> from tunelab.config import from_dict
        >>> period_steps(from_dict({}, ["training.batch_size=100"]), 1050)
        11
        >>> period_steps(from_dict({}, ["training.steps=250", "training.eval_every=100"]), 1050)
        100
    """
    tc = cfg.training
    return tc.eval_every if tc.steps is not None else math.ceil(n_train / tc.batch_size)


def epoch_steps(cfg: RunConfig, epoch: int, period: int) -> int:
    """Steps of epoch ``epoch`` (0-based) of ``period`` steps: a full period, or what is left of
    training.steps.

    Example:
        >>> from tunelab.config import from_dict
        >>> epoch_steps(from_dict({}, ["training.steps=250"]), 2, 100)
        50
    """
    tc = cfg.training
    return period if tc.steps is None else min(period, tc.steps - epoch * period)


def _epoch_steps(live: _Live) -> int:
    return epoch_steps(live.cfg, live.state.epoch, live.steps)


def _train_epoch(live: _Live, on_batch) -> Optional[tuple[float, float]]:
    """One epoch (a pass over the data, or training.eval_every steps), continuing a resumed one;
    returns the running (mean loss, accuracy) over its steps, read once, or None when a command
    stopped the run mid-epoch."""
    cfg, data, model, opt = live.cfg, live.data, live.model, live.opt
    x, y, bs = data.x_train, data.y_train, cfg.training.batch_size
    every_steps = cfg.training.checkpoint.every_steps
    steps = _epoch_steps(live)
    start = live.state.step
    if live.loss_sum is None:  # a new epoch (not one resumed or stopped before its first step)
        live.loss_sum = torch.zeros((), device=x.device)
        live.correct = torch.zeros((), device=x.device, dtype=torch.int64)
        live.seen = 0
    live.set_lr(start)
    model.train()
    for step in range(start, steps):
        # ---- commands between steps (one deque check and one clock read when there are none)
        if live.control is not None and not live.obey(step):
            live.state = dataclasses.replace(live.state, step=step)
            return None
        if step == 0:  # after the commands read before it: history's lr is the one the epoch used
            live.state = dataclasses.replace(live.state, epoch_lr=live.lr(0))
        if live.sched.per_step:
            live.set_lr(step)
        # ---- one step
        data_pass, j = live.locate(step)
        idx = live.order(data_pass)[j * bs:(j + 1) * bs]
        xb, yb = x[idx], y[idx]  # (B, ...) gathered on the device
        if cfg.augment.active:
            xb = augment_batch(xb, cfg.augment, live.aug_gen)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not live.stepped:  # the process's start-up ends here (torch.optim's first step imports torch._dynamo)
            live.stepped, live.started_process = True, startup_lap("first step", last=True)
        live.loss_sum += loss.detach() * len(yb)
        live.correct += (logits.detach().argmax(1) == yb).sum()
        live.seen += len(yb)
        if (j + 1) * bs >= len(y):  # the pass is done: the next one draws its own order
            live.perm, live.perm_pass = None, -1
        # ---- a mid-epoch checkpoint (resume continues at the next step)
        if every_steps and (step + 1) % every_steps == 0 and step + 1 < steps and live.folder is not None:
            live.state = dataclasses.replace(live.state, step=step + 1)
            live.checkpoint()
        if on_batch is not None:
            on_batch(live.state.epoch, step + 1, steps)
    seen, loss_sum, correct = live.seen, live.loss_sum, live.correct
    live.loss_sum = live.correct = None
    return loss_sum.item() / seen, correct.item() / seen


def train_eval_subset(data: DataBundle, cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training examples measured in evaluation mode each epoch: all of them, or a fixed subset
    drawn with data.split_seed (the same for every run seed and arm) of training.train_eval_size
    examples (null: as many as the validation set, 10000 without one; 0: none).

    Example:
        >>> from tunelab.config import from_dict
        >>> from tunelab.data import load_data
        >>> cfg = from_dict({})
        >>> data = load_data(cfg.data)
        >>> x, y = train_eval_subset(data, cfg)
        >>> len(y) == len(data.y_val), len(train_eval_subset(data, from_dict({}, ["training.train_eval_size=0"]))[1])
        (True, 0)
    """
    n, size = len(data.y_train), cfg.training.train_eval_size
    if size is None:
        size = len(data.y_val) if len(data.y_val) else 10_000
    if size >= n:
        return data.x_train, data.y_train
    gen = torch.Generator(device="cpu").manual_seed(cfg.data.split_seed + 7919)  # not the run's streams
    idx = torch.randperm(n, generator=gen)[:size].sort().values.to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def _grad_norms(model: torch.nn.Module) -> dict[str, float]:
    """Per-parameter gradient norms of the last step (read once per epoch)."""
    named = [(k, p.grad) for k, p in model.named_parameters() if p.grad is not None]
    if not named:
        return {}
    norms = torch.stack([g.detach().norm() for _, g in named]).tolist()
    return {k: v for (k, _), v in zip(named, norms)}


def fit(cfg: RunConfig, data: DataBundle, model: torch.nn.Module,
        on_epoch: Optional[Callable[[EpochEvent], Decision]] = None,
        on_batch: Optional[Callable[[int, int, int], None]] = None,
        schedule_fn: Optional[Callable[[int], float]] = None, test: bool = True, *,
        control: Optional[Control] = None, folder: Optional[LiveFolder] = None,
        resume: Optional[dict[str, Any]] = None,
        on_event: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Train ``model`` on ``data`` as ``cfg`` says; see the module docstring.

    ``test=False`` never reads the test set (search trials choose on validation only).
    ``control`` is read between steps; ``folder`` (a LiveFolder) receives status, events and
    checkpoints; ``resume`` is a checkpoint payload to continue from; ``on_event`` sees every
    intervention as it is recorded.
    """
    tc = cfg.training
    if data.is_image or cfg.augment.active:
        check_augment(cfg.augment, data)
    device = data.x_train.device
    model.to(device)
    gen = torch.Generator(device="cpu").manual_seed(tc.seed)
    aug_gen = torch.Generator(device=device).manual_seed(tc.seed + 1)  # augmentation draws
    torch.manual_seed(tc.seed)  # dropout draws
    startup_lap("run folder and loop set-up")
    opt = build_optimizer(model.parameters(), cfg.optimizer)
    startup_lap("optimizer")
    sched = LrSchedule(cfg.schedule, cfg.optimizer.lr, tc.epochs, period_steps(cfg, len(data.y_train)), schedule_fn)
    live = _Live(cfg, data, model, opt, sched, gen, aug_gen, control, folder, on_event)
    x_fit, y_fit = train_eval_subset(data, cfg)
    if resume is not None:
        live.restore(resume)
    status: Status = "completed"
    message = ""
    start = time.perf_counter()
    if folder is not None:
        folder.set_status("running", epoch=live.state.epoch, step=live.state.step)
    trained: Optional[tuple] = ()
    watch = Stopwatch()
    try:
        while live.state.epoch < tc.epochs:
            epoch, t0 = live.state.epoch, time.perf_counter()
            # ---- train, then evaluate on validation
            with watch.part("train"):
                trained = _train_epoch(live, on_batch)
            if trained is None:  # stopped by a command between two steps
                status, message = "stopped", live.stop_message
                break
            train_loss, train_acc = trained
            lr = live.state.epoch_lr
            with watch.part("eval"):
                fit_loss, fit_acc = evaluate(model, x_fit, y_fit, tc.eval_batch_size)
                val_loss, val_acc = evaluate(model, data.x_val, data.y_val, tc.eval_batch_size)
            metrics = dict(epoch=epoch + 1, steps=epoch * live.steps + _epoch_steps(live),
                           train_loss=train_loss, train_accuracy=train_acc,
                           train_eval_loss=fit_loss, train_eval_accuracy=fit_acc,
                           val_loss=val_loss, val_accuracy=val_acc, lr=lr,
                           seconds=time.perf_counter() - t0)
            # ---- the caller's answer, then the pure epoch-end policy
            finite = diverged_loss(metrics) is None
            event = EpochEvent(epoch + 1, tc.epochs, metrics, _grad_norms(model), live.lr(live.steps - 1) if finite else lr)
            with watch.part("callback"):
                answer = on_epoch(event) if on_epoch and finite else None
            live.state, action = epoch_end(live.state, metrics, cfg, answer)
            if keep_best(live.state, cfg, action):
                live.best_weights = copy.deepcopy(model.state_dict())
            # ---- the run folder: checkpoint first, then history and status (a signal between
            # the two then finds the checkpoint of the epoch the status names)
            if folder is not None and action.stop != "diverged":
                every = tc.checkpoint.every
                on_schedule = every > 0 and live.state.epoch % every == 0
                with watch.part("folder"):
                    if on_schedule or action.best or action.stop or live.state.epoch == tc.epochs:
                        live.checkpoint(epoch_file=on_schedule, best=action.best)
                    folder.epoch_done(live.state.history, live.state.events, _best_val(live.state.history))
            if action.stop:
                status, message = action.stop, action.message
                break
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {len(live.state.history)} epochs"
    if status == "stopped" and trained is None and folder is not None:
        live.checkpoint()  # mid-epoch: resume continues at the next step
    best_weights = live.best_weights if early_stopping_on(live.state, cfg) else None  # switched off: none
    with watch.part("finish"):
        result = finish_run(cfg, data, model, list(live.state.history), live.state.early, best_weights,
                            status, message, time.perf_counter() - start, test)
    result.events, result.num_classes = list(live.state.events), data.num_classes
    result.timing = watch.seconds
    result.startup = startup() if live.started_process else None
    return result


def _best_val(history) -> Optional[float]:
    finite = [h["val_accuracy"] for h in history if math.isfinite(h["val_accuracy"])]
    return max(finite) if finite else None


def finish_run(cfg, data, model, history, stop_state, best_weights, status, message, seconds,
               test: bool = True) -> RunResult:
    """Restore the best weights if asked, then read the test set once (``stop_state``:
    the EarlyStopState, whose best epoch the restored weights come from)."""
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
        message=message, model=model, restored_epoch=stop_state.best_epoch + 1 if restored else None,
        threads=torch.get_num_threads(), device=str(data.x_test.device), versions=versions())


def versions() -> dict[str, str]:
    """The versions a seeded result depends on: tunelab, torch, Python."""
    import platform

    import tunelab

    return {"tunelab": tunelab.__version__, "torch": torch.__version__, "python": platform.python_version()}
