"""train_population(): K runs of one structure trained as one stacked computation.

Every member is the run ``tunelab.trainer.fit`` would train alone, built on the same pieces: the
initial weights of ``prepare`` (``new_model`` under its seed), its own data order (a generator
seeded by its ``training.seed``, one permutation per pass), its own dropout and augmentation
streams, its schedule (``LrSchedule``: every kind, plateau included, through the pure epoch-end
policy), early stopping, divergence and the caller's answer (``epoch_end``), and the same end
(``finish_run``: best weights restored, test set read once). Only the arithmetic is shared: one
batched forward and backward for all members, one vectorized optimizer step. A member that stops
(early stopping, divergence, the caller's "stop") is finished and removed from the stack at the
epoch's end, so it stops costing compute; a NaN in one member never reaches another (separate
parameters, per-feature batch norm, per-member losses).

Members of one population share the data, the model structure (``bucket_key``), the optimizer
kind and the batch size; ``group`` sorts configs into such buckets.

Example:
    >>> from tunelab.config import from_dict
    >>> cfgs = [from_dict({"model": {"hidden": [16]}, "optimizer": {"lr": lr}}, ["training.epochs=2"])
    ...         for lr in (1e-3, 1e-2)]
    >>> [r.status for r in train_population(cfgs)]
    ['completed', 'completed']
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.config import RunConfig, to_dict
from tunelab.data.augment import augment_batch, check_augment
from tunelab.optim import LrSchedule
from tunelab.population.optim import StackedOptimizer, family
from tunelab.population.pbt import PBTConfig, check_space, explore, plan, value_of
from tunelab.population.stack import StackedNet, supported
from tunelab.trainer.fit import EpochEvent, RunResult, epoch_steps, finish_run, period_steps, train_eval_subset
from tunelab.trainer.policy import diverged_loss, early_stopping_on, epoch_end, keep_best
from tunelab.trainer.state import RunState

__all__ = ["train_population", "bucket_key", "group", "stackable"]

OnEpoch = Callable[[int, EpochEvent], Optional[str]]  # (member index, event) -> "stop" or None


def bucket_key(cfg: RunConfig) -> str:
    """What members of one population must share: data, model structure (not its dropout rate: a
    member without dropout keeps every unit), the optimizer's stacked rule (sgd, momentum and
    nesterov share one, as do adam and adamw: ``population.optim.family``), batch size, the step
    budget's period and the evaluation setup.

    Example:
        >>> from tunelab.config import from_dict
        >>> a = from_dict({"optimizer": {"lr": 0.1}, "model": {"dropout": 0.2}})
        >>> b = from_dict({"optimizer": {"lr": 0.01}, "model": {"dropout": 0.5}})
        >>> bucket_key(a) == bucket_key(b), bucket_key(a) == bucket_key(from_dict({"training": {"batch_size": 64}}))
        (True, False)
    """
    m, t = cfg.model, cfg.training
    model = {k: v for k, v in to_dict(m).items() if k not in ("dropout", "init", "init_std")}
    return json.dumps(dict(data=to_dict(cfg.data), model=model, optimizer=family(cfg.optimizer.name),
                           batch_size=t.batch_size, steps=t.steps, eval_every=t.eval_every,
                           train_eval_size=t.train_eval_size, eval_batch_size=t.eval_batch_size, device=t.device),
                      sort_keys=True)


def group(cfgs: Sequence[RunConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` by bucket, in order of first appearance.

    Example:
        >>> from tunelab.config import from_dict
        >>> group([from_dict({}), from_dict({"training": {"batch_size": 64}}), from_dict({"training": {"seed": 3}})])
        [[0, 2], [1]]
    """
    buckets: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        buckets.setdefault(bucket_key(cfg), []).append(i)
    return list(buckets.values())


def stackable(cfg: RunConfig) -> bool:
    """Whether the population can train ``cfg`` (tunelab's mlp and cnn; a user-registered model
    runs one by one).

    Example:
        >>> from tunelab.config import from_dict
        >>> stackable(from_dict({})), stackable(from_dict({"model": {"name": "cnn"}}))
        (True, True)
    """
    return cfg.model.name in ("mlp", "cnn")


@dataclass
class _Member:
    """One run of the population: its config, reference module, scalar state and streams."""

    index: int
    cfg: RunConfig
    model: torch.nn.Module
    sched: LrSchedule
    gen: torch.Generator  # data order
    aug_gen: torch.Generator  # augmentation
    drop_gen: torch.Generator  # dropout masks (the global stream of a run trained alone)
    state: RunState = field(default_factory=RunState)
    best_weights: Optional[dict] = None
    seconds: float = 0.0
    lineage: list = field(default_factory=list)  # population-based training: what it copied, when

    def lr(self, step: int) -> float:
        return self.sched.lr(self.state.epoch, step, self.state.plateau.scale) * self.state.lr_mult


def _hyper(members: Sequence[_Member], device) -> dict[str, torch.Tensor]:
    def col(fn) -> torch.Tensor:
        return torch.tensor([float(fn(m.cfg.optimizer)) for m in members], device=device, dtype=torch.float32)

    return {"lr": col(lambda o: o.lr), "weight_decay": col(lambda o: o.weight_decay),
            "momentum": col(lambda o: o.momentum if o.name != "sgd" else 0.0), "beta1": col(lambda o: o.betas[0]),
            "beta2": col(lambda o: o.betas[1]), "eps": col(lambda o: o.eps), "rho": col(lambda o: o.rho),
            "alpha": col(lambda o: o.alpha)}


@torch.inference_mode()
def _evaluate(net: StackedNet, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[list, list]:
    """Per member mean cross-entropy and accuracy on (x, y), shared by all members (nan: no data)."""
    k = net.k
    if len(y) == 0:
        return [math.nan] * k, [math.nan] * k
    net.training = False
    loss = torch.zeros(k, device=x.device, dtype=torch.float64)
    correct = torch.zeros(k, device=x.device, dtype=torch.int64)
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        logits = net(xb, shared=True)  # (K, B, C): the batch is the same for every member
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.repeat(k), reduction="none")
        loss += ce.view(k, -1).sum(1).double()
        correct += (logits.argmax(2) == yb).sum(1)
    net.training = True
    n = len(y)
    return (loss / n).tolist(), (correct.double() / n).tolist()


def _grad_norms(net: StackedNet) -> list[dict[str, float]]:
    """Per member, per parameter gradient norms of the last step (read once per epoch)."""
    names = [n for n in net.param_names if net.state[n].grad is not None]
    if not names:
        return [{} for _ in range(net.k)]
    norms = torch.stack([net.state[n].grad.flatten(1).norm(dim=1) for n in names], 1).tolist()  # (K, P)
    return [dict(zip(names, row)) for row in norms]


def train_population(cfgs: Sequence[RunConfig], data: Any = None, *,
                     on_epoch: Optional[OnEpoch] = None, test: bool = True,
                     on_member_done: Optional[Callable[[int, RunResult], None]] = None,
                     pbt: Optional[PBTConfig] = None,
                     refill: Optional[Callable[[int], Sequence[RunConfig]]] = None,
                     capacity: Optional[int] = None, stats: Optional[dict] = None) -> list[RunResult]:
    """Train ``cfgs`` (one bucket: see ``bucket_key``) together; a RunResult per config, in order.

    ``data`` is the DataBundle (None: loaded once for the first config, on its device);
    ``on_epoch(i, event)`` sees member i's epoch ends and may answer "stop"; ``on_member_done(i,
    result)`` is called as soon as member i finishes (before the others); ``test=False`` never
    reads the test set. ``pbt`` turns on population-based training: every ``pbt.interval`` epochs
    the bottom quantile copies the top (weights, optimizer and schedule state) and explores its
    hyperparameters (``population.pbt``); each copy is an event ``{"kind": "pbt", ...}`` in the
    member's ``result.events``.

    ``refill(free)`` keeps the stack full: at each epoch boundary where members have left, it is
    asked for up to ``free`` configs of the same bucket (``capacity``, default ``len(cfgs)``, less the
    members still training), which join as members ``len(cfgs)``, ``len(cfgs) + 1``, ... with their own
    initial weights, data order, streams and schedule, exactly as a fresh stack would start them; their
    results follow the first ones in the returned list. It needs epochs that are whole passes over the
    data (``training.epochs``, or ``training.steps`` with ``eval_every`` one pass), so every member's
    batch is at the same place of its own pass (a stack of other periods drains without refill), and
    no ``pbt``. ``stats`` (a dict) is added ``member_steps`` (members trained, summed over steps),
    ``slot_steps`` (capacity times steps), ``refilled`` (members that joined) and ``unrefillable`` (1
    when the periods ruled refill out): ``member_steps / slot_steps`` is the mean occupancy.
    """
    from tunelab.trainer.prepare import layer_template, load_run_data, new_model, set_threads

    cfgs = list(cfgs)
    keys = {bucket_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("train_population needs configs of one bucket; sort them with group()")
    if not all(stackable(c) for c in cfgs):
        raise ValueError("train_population trains tunelab's mlp and cnn models only")
    first = cfgs[0]
    set_threads(first.training.threads)
    if data is None:
        data = load_run_data(first, cache=True)
    device = data.x_train.device
    n, bs = len(data.y_train), first.training.batch_size
    period = period_steps(first, n)
    spe = math.ceil(n / bs)  # steps per pass over the data
    if refill is not None and pbt is not None:
        raise ValueError("refill and population-based training exclude each other (PBT keeps its members)")
    if refill is not None and period != spe:  # batches of members that joined later would fall elsewhere in
        refill = None  # their passes (and differ in size at a pass's end): this stack drains without refill
        counted_off = 1
    else:
        counted_off = 0
    capacity = len(cfgs) if capacity is None else max(capacity, len(cfgs))

    def new_member(i: int, cfg: RunConfig) -> _Member:
        if data.is_image or cfg.augment.active:
            check_augment(cfg.augment, data)
        model = new_model(cfg, data.input_shape, data.num_classes).to(device)  # prepare's initial weights
        if not supported(model):
            raise ValueError(f"config {i}: the population cannot train this model")
        seed = cfg.training.seed
        return _Member(
            i, cfg, model, LrSchedule(cfg.schedule, cfg.optimizer.lr, cfg.training.epochs, period),
            torch.Generator(device="cpu").manual_seed(seed), torch.Generator(device=device).manual_seed(seed + 1),
            torch.Generator(device=device).manual_seed(seed))

    members = [new_member(i, cfg) for i, cfg in enumerate(cfgs)]
    total = len(members)  # members so far, refilled ones included (the next one's index)
    # member_steps / slot_steps: occupancy over the whole stack; the *_open pair counts only while
    # refills kept coming (until a refill gave fewer configs than slots: the budget was spent)
    counted = {"member_steps": 0, "slot_steps": 0, "member_steps_open": 0, "slot_steps_open": 0, "refilled": 0,
               "unrefillable": counted_off}
    spent = refill is None
    # the layers walked: the members' structure with dropout layers, so members with and without
    # dropout (now or joining later) share the stack; its weights are never used
    template = layer_template(first, data.input_shape, data.num_classes).to(device)
    net = StackedNet([m.model for m in members], template=template)
    net.dropout_p = torch.tensor([m.cfg.model.dropout for m in members])
    net.generators = [m.drop_gen for m in members]
    opt = StackedOptimizer(first.optimizer.name, net.params(), _hyper(members, device),
                           names=[m.cfg.optimizer.name for m in members])
    x_fit, y_fit = train_eval_subset(data, first)
    if pbt is not None:
        check_space(list(pbt.space))
    pbt_rng = np.random.default_rng(pbt.seed if pbt is not None else 0)
    results: dict[int, RunResult] = {}
    perms: Optional[torch.Tensor] = None
    perm_pass = -1

    def finish(m: _Member, status: str, message: str) -> None:
        k = members.index(m)
        m.model.load_state_dict(net.member_state(k))
        best = m.best_weights if early_stopping_on(m.state, m.cfg) else None
        result = finish_run(m.cfg, data, m.model, list(m.state.history), m.state.early, best, status, message,
                            m.seconds, test)
        result.events, result.num_classes = [*m.state.events, *m.lineage], data.num_classes
        results[m.index] = result
        if on_member_done is not None:
            on_member_done(m.index, result)

    def compact(done: list[_Member]) -> None:
        nonlocal perms
        keep = torch.tensor([k for k, m in enumerate(members) if m not in done], dtype=torch.long)
        for m in done:
            members.remove(m)
        net.keep(keep.to(device))
        opt.keep(keep.to(device), net.params())
        if perms is not None:
            perms = perms[keep.to(perms.device)]

    def join(new_cfgs: Sequence[RunConfig]) -> None:
        """New members at the end of the stack; they draw their first data order at the next epoch."""
        nonlocal total
        key = bucket_key(first)
        joining = []
        for cfg in new_cfgs:
            if bucket_key(cfg) != key or not stackable(cfg):
                raise ValueError("refill must return configs of the population's bucket")
            joining.append(new_member(total, cfg))
            total += 1
        if not joining:
            return
        members.extend(joining)
        net.extend([m.model for m in joining])
        net.dropout_p = torch.cat([net.dropout_p, torch.tensor([m.cfg.model.dropout for m in joining])])
        net.generators = [*net.generators, *(m.drop_gen for m in joining)]
        opt.extend(net.params(), _hyper(joining, device), [m.cfg.optimizer.name for m in joining])
        counted["refilled"] += len(joining)

    epoch = members[0].state.epoch  # the stack's epochs (a refilled member counts its own)
    try:
        while members:
            t0 = time.perf_counter()
            steps = period if refill is not None else epoch_steps(first, epoch, period)
            k = len(members)
            loss_sum = torch.zeros(k, device=device)
            correct = torch.zeros(k, device=device, dtype=torch.int64)
            seen = 0
            per_step = any(m.sched.per_step for m in members)
            members_lr = [m.lr(0) for m in members]
            for m, lr in zip(members, members_lr):
                m.state = dataclasses.replace(m.state, epoch_lr=lr)
            opt.hyper["lr"] = torch.tensor(members_lr, device=device, dtype=torch.float32)
            augmenting = [i for i, m in enumerate(members) if m.cfg.augment.active]
            for step in range(steps):
                if per_step and step:
                    opt.hyper["lr"] = torch.tensor([m.lr(step) for m in members], device=device, dtype=torch.float32)
                g = epoch * period + step
                data_pass, j = g // spe, g % spe
                if data_pass != perm_pass:  # each member's own order for this pass
                    perms = torch.stack([torch.randperm(n, generator=m.gen) for m in members]).to(device)  # (K, n)
                    perm_pass = data_pass
                idx = perms[:, j * bs:(j + 1) * bs]  # (K, B)
                xb, yb = data.x_train[idx], data.y_train[idx]  # (K, B, ...), (K, B)
                for i in augmenting:
                    xb[i] = augment_batch(xb[i], members[i].cfg.augment, members[i].aug_gen)
                logits = net(xb)  # (K, B, C)
                b = yb.shape[1]
                per = F.cross_entropy(logits.reshape(k * b, -1), yb.reshape(-1), reduction="none").view(k, b).mean(1)
                opt.zero_grad()
                per.sum().backward()
                opt.step()
                loss_sum += per.detach() * b
                correct += (logits.detach().argmax(2) == yb).sum(1)
                seen += b
            counted["member_steps"] += k * steps
            counted["slot_steps"] += capacity * steps
            if not spent:
                counted["member_steps_open"] += k * steps
                counted["slot_steps_open"] += capacity * steps
            # ---- the epoch's end: measure every member, then each member's own policy
            train_loss, train_acc = (loss_sum / seen).tolist(), (correct.double() / seen).tolist()
            fit_loss, fit_acc = _evaluate(net, x_fit, y_fit, first.training.eval_batch_size)
            val_loss, val_acc = _evaluate(net, data.x_val, data.y_val, first.training.eval_batch_size)
            norms = _grad_norms(net)
            share = (time.perf_counter() - t0) / k  # each member's part of the shared epoch
            done: list[tuple[_Member, str, str]] = []
            for i, m in enumerate(members):
                mine = m.state.epoch  # this member's epochs so far (a refilled one started later)
                metrics = dict(epoch=mine + 1, steps=mine * period + steps, train_loss=train_loss[i],
                               train_accuracy=train_acc[i], train_eval_loss=fit_loss[i],
                               train_eval_accuracy=fit_acc[i], val_loss=val_loss[i], val_accuracy=val_acc[i],
                               lr=m.state.epoch_lr, seconds=share)
                finite = diverged_loss(metrics) is None
                event = EpochEvent(mine + 1, m.cfg.training.epochs, metrics, norms[i],
                                   m.lr(period - 1) if finite else m.state.epoch_lr)
                answer = on_epoch(m.index, event) if on_epoch is not None and finite else None
                m.state, action = epoch_end(m.state, metrics, m.cfg, answer)
                m.seconds += share
                if keep_best(m.state, m.cfg, action):
                    m.best_weights = net.member_state(i)
                if action.stop:
                    done.append((m, action.stop, action.message))
                elif m.state.epoch >= m.cfg.training.epochs:
                    done.append((m, "completed", ""))
            if pbt is not None and (epoch + 1) % pbt.interval == 0:
                leaving = {id(m) for m, _, _ in done}
                _exploit_explore([m for m in members if id(m) not in leaving], members, net, opt, pbt, pbt_rng,
                                 device, period)
            for m, status, message in done:
                finish(m, status, message)
            if done:
                compact([m for m, _, _ in done])
            if refill is not None and len(members) < capacity and not spent:
                free = capacity - len(members)
                new_cfgs = list(refill(free))
                spent = len(new_cfgs) < free  # the study's budget (or the waiting room) ran out
                join(new_cfgs)
            epoch += 1
    except KeyboardInterrupt:  # like fit(): the members end "interrupted" with their history so far
        for m in list(members):
            if m.index not in results:  # (one that finished before the interrupt keeps its result)
                finish(m, "interrupted", f"interrupted after {len(m.state.history)} epochs")
    finally:
        if stats is not None:  # added to what the caller's dict holds (an executor sums its stacks)
            for name, value in counted.items():
                stats[name] = stats.get(name, 0) + value
    return [results[i] for i in range(total)]


@torch.no_grad()
def _exploit_explore(ranked: list[_Member], members: list[_Member], net: StackedNet, opt: StackedOptimizer,
                     pbt: PBTConfig, rng: np.random.Generator, device, period: int) -> None:
    """One PBT step among ``ranked`` (members that go on): copy, then perturb or resample."""
    from tunelab.config import replace

    scores = [m.state.history[-1].get(pbt.metric, math.nan) for m in ranked]
    for dst_m, src_m in ((ranked[d], ranked[s]) for d, s in plan(scores, pbt.quantile, rng, pbt.maximize)):
        dst, src = members.index(dst_m), members.index(src_m)
        for name in net.names:  # weights and batch-norm statistics
            net.state[name].data[dst] = net.state[name].data[src]
        opt.copy_member(dst, src)
        values = explore({k: value_of(src_m.cfg, k) for k in pbt.space}, pbt, rng)
        dst_m.cfg = replace(dst_m.cfg, [f"{k}={v!r}" for k, v in values.items()])
        dst_m.sched = LrSchedule(dst_m.cfg.schedule, dst_m.cfg.optimizer.lr, dst_m.cfg.training.epochs, period)
        dst_m.state = dataclasses.replace(dst_m.state, plateau=src_m.state.plateau, early=src_m.state.early,
                                          lr_mult=src_m.state.lr_mult)
        dst_m.best_weights = src_m.best_weights
        for name, column in _hyper([dst_m], device).items():
            opt.hyper[name][dst] = column[0]
        net.dropout_p[dst] = dst_m.cfg.model.dropout
        dst_m.lineage.append({"kind": "pbt", "epoch": dst_m.state.epoch, "from": src_m.index,
                              "score": scores[ranked.index(dst_m)], "from_score": scores[ranked.index(src_m)],
                              "values": values})
