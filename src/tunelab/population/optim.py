"""The eight optimizers of tunelab for K stacked members, written from their update rules.

``StackedOptimizer(name, params, hyper)`` updates tensors of shape (K, ...) with per-member
hyperparameters (each a (K,) tensor): lr, weight_decay, momentum, beta1, beta2, eps, rho, alpha.
The rules are torch.optim's (the defaults tunelab builds: no dampening, no lr decay, not centered,
no amsgrad; rmsprop's momentum as torch applies it); weight decay is the coupled L2 term added to the gradient, except adamw's decoupled
one. ``state_for(i)`` / ``keep(index)`` read and compact the per-member state.

Example:
    >>> import torch
    >>> p = torch.ones(2, 3, requires_grad=True)
    >>> opt = StackedOptimizer("sgd", [p], {"lr": torch.tensor([0.1, 0.2])})
    >>> p.grad = torch.ones(2, 3)
    >>> opt.step()
    >>> [round(v, 6) for v in p[:, 0].tolist()]
    [0.9, 0.8]
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["StackedOptimizer", "HYPER", "NAMES", "FAMILY", "family"]

NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
# optimizers whose rules differ only by coefficients share one stack: sgd is momentum 0, nesterov a
# per-member flag of momentum SGD, adamw adam with its weight decay decoupled (each member's own
# choice exactly: the shared rule reduces to its own bit for bit; see StackedOptimizer)
FAMILY = {"sgd": "momentum", "nesterov": "momentum", "adamw": "adam"}


def family(name: str) -> str:
    """The stacked rule that trains optimizer ``name`` (its own, or the one its family shares)."""
    return FAMILY.get(name, name)
# the per-member hyperparameters each optimizer reads (lr and weight_decay: all of them)
HYPER = {"sgd": (), "momentum": ("momentum",), "nesterov": ("momentum",), "adagrad": ("eps",),
         "rmsprop": ("alpha", "eps", "momentum"), "adadelta": ("rho", "eps"), "adam": ("beta1", "beta2", "eps"),
         "adamw": ("beta1", "beta2", "eps")}
# per-parameter state buffers (zeros of the parameter's shape) of each optimizer
_BUFFERS = {"sgd": (), "momentum": ("buf",), "nesterov": ("buf",), "adagrad": ("sum",),
            "rmsprop": ("square_avg", "momentum_buffer"), "adadelta": ("square_avg", "acc_delta"), "adam": ("exp_avg", "exp_avg_sq"),
            "adamw": ("exp_avg", "exp_avg_sq")}


def _b(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) hyperparameter shaped to broadcast over a (K, ...) tensor."""
    return h.view(-1, *([1] * (like.dim() - 1)))


# members at least this large (parameters each) are updated one by one with torch.optim's own
# functional kernels (fused where torch has them): memory-bound updates of big members run faster in
# one fused pass than in the vectorized chain of elementwise ops, which wins for small members
PER_MEMBER_AT = 20_000


class StackedOptimizer:
    """Vectorized updates; ``hyper`` maps names to (K,) tensors on the parameters' device.

    ``per_member`` (None: members of at least PER_MEMBER_AT parameters) updates each member with
    torch.optim's functional optimizer on views of its rows instead: the reference's own kernels,
    one call per member.
    """

    def __init__(self, name: str, params: Sequence[torch.Tensor], hyper: dict[str, torch.Tensor],
                 per_member: Optional[bool] = None, names: Optional[Sequence[str]] = None) -> None:
        k = params[0].shape[0]
        self.names = list(names) if names is not None else [name] * k  # each member's own optimizer
        if any(n not in NAMES for n in self.names) or name not in NAMES:
            raise ValueError(f"optimizer {name!r} is not one of {list(NAMES)}")
        if len({family(n) for n in self.names}) != 1:
            raise ValueError(f"optimizers {sorted(set(self.names))} do not share one stacked rule")
        # ``names`` given: the family's rule (momentum SGD with a per-member nesterov flag, or adam with
        # a per-member decoupled-decay flag), so members of any name of the family may join later
        self.shared = names is not None
        self.name = family(self.names[0]) if self.shared else name
        self.params, self.hyper = list(params), dict(hyper)
        device = self.params[0].device
        self.hyper.setdefault("weight_decay", torch.zeros(k, device=device))
        if self.shared:
            self.hyper.update(_flags(self.name, self.names, device))
        self._note_names()
        size = sum(p[0].numel() for p in self.params)
        self.per_member = size >= PER_MEMBER_AT if per_member is None else per_member
        self.steps = torch.zeros(k, device=device, dtype=torch.float64)  # steps taken, per member
        if self.per_member:  # each member's own state, as torch.optim keeps it
            self.members = [_member_state(self.names[i], [p[i] for p in self.params]) for i in range(k)]
            self.state = []
        else:
            self.state = [{b: torch.zeros_like(p, memory_format=torch.preserve_format).detach()
                           for b in _BUFFERS[self.name]} for p in self.params]
        self.started = False  # momentum buffers start as the first gradient (torch's rule)

    def _note_names(self) -> None:
        """Which branch of a family's rule the members need (a shared stack of one name takes that
        name's own rule, without the per-member select): ``all_flagged`` every member nesterov (or
        adamw), ``mixed_*`` some are."""
        special = {"momentum": "nesterov", "adam": "adamw"}.get(self.name) if self.shared else None
        n = sum(name == special for name in self.names)
        self.all_flagged = special is not None and n == len(self.names)
        self.mixed_nesterov = special == "nesterov" and 0 < n < len(self.names)
        self.mixed_decay = special == "adamw" and 0 < n < len(self.names)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        if self.per_member:
            self._step_members()
            self.started = True
            return
        h = self.hyper
        for p, st in zip(self.params, self.state):
            g = p.grad
            if g is None:
                continue
            lr, wd = _b(h["lr"], p), _b(h["weight_decay"], p)
            if self.mixed_decay:  # adam and adamw in one stack: each member's decay where it belongs
                g = g + _b(h["weight_decay"] * (1 - h["decoupled"]), p) * p  # 0 * p for an adamw member
            elif self.name != "adamw" and not (self.name == "adam" and self.all_flagged):  # (adamw only: none)
                g = g + wd * p  # coupled L2 (zero weight decay adds nothing)
            getattr(self, f"_{self.name}")(p, g, st, lr)
        self.started = True

    # ------------------------------------------------------------------ the rules
    def _sgd(self, p, g, st, lr):
        p.sub_(lr * g)

    def _momentum(self, p, g, st, lr, nesterov: bool = False):
        mu = _b(self.hyper["momentum"], p)
        buf = st["buf"]
        if not self.started:
            buf.copy_(g)
        else:
            buf.mul_(mu).add_(g)  # a zero buffer (a member that joined later, or plain sgd's mu 0) takes g
        if self.mixed_nesterov:  # nesterov members beside sgd or momentum ones in one stack
            p.sub_(lr * torch.where(_b(self.hyper["nesterov"], p) > 0, g + mu * buf, buf))
            return
        p.sub_(lr * (g + mu * buf if nesterov or self.all_flagged else buf))

    def _nesterov(self, p, g, st, lr):
        self._momentum(p, g, st, lr, nesterov=True)

    def _adagrad(self, p, g, st, lr):
        st["sum"].addcmul_(g, g)
        p.sub_(lr * g / (st["sum"].sqrt() + _b(self.hyper["eps"], p)))

    def _rmsprop(self, p, g, st, lr):
        alpha = _b(self.hyper["alpha"], p)
        sq = st["square_avg"]
        sq.mul_(alpha).add_((1 - alpha) * g * g)
        avg = sq.sqrt() + _b(self.hyper["eps"], p)
        mu = self.hyper.get("momentum")
        if mu is None or not bool((mu > 0).any()):
            p.sub_(lr * g / avg)
            return
        buf = st["momentum_buffer"]  # torch's rule: buf = mu * buf + g / avg, from zeros
        buf.mul_(_b(mu, p)).add_(g / avg)
        p.sub_(lr * buf)

    def _adadelta(self, p, g, st, lr):
        rho, eps = _b(self.hyper["rho"], p), _b(self.hyper["eps"], p)
        sq, acc = st["square_avg"], st["acc_delta"]
        sq.mul_(rho).add_((1 - rho) * g * g)
        delta = (acc + eps).sqrt() / (sq + eps).sqrt() * g
        acc.mul_(rho).add_((1 - rho) * delta * delta)
        p.sub_(lr * delta)

    def _adam(self, p, g, st, lr):
        if self.mixed_decay:  # adamw members' decoupled decay (1 - 0 for adam members)
            p.mul_(1 - lr * _b(self.hyper["weight_decay"] * self.hyper["decoupled"], p))
        elif self.all_flagged and self.name == "adam":  # adamw members only: adamw's own rule
            p.mul_(1 - lr * _b(self.hyper["weight_decay"], p))
        b1, b2, eps = _b(self.hyper["beta1"], p), _b(self.hyper["beta2"], p), _b(self.hyper["eps"], p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).add_((1 - b2) * g * g)
        t = _b(self.steps, p)
        bc1 = (1 - b1.double() ** t).to(p.dtype)
        bc2_sqrt = (1 - b2.double() ** t).sqrt().to(p.dtype)
        p.sub_((lr / bc1) * m / (v.sqrt() / bc2_sqrt + eps))

    def _adamw(self, p, g, st, lr):
        p.mul_(1 - lr * _b(self.hyper["weight_decay"], p))
        self._adam(p, g, st, lr)

    # ------------------------------------------------------------------ one member at a time
    def _step_members(self) -> None:
        """torch.optim's functional optimizer on each member's rows (views of the stacked tensors)."""
        import importlib

        h = {k: v.tolist() for k, v in self.hyper.items()}
        params = [p.detach() for p in self.params]
        grads = [p.grad for p in self.params]
        for i, st in enumerate(self.members):
            name = self.names[i]
            fn = getattr(importlib.import_module(f"torch.optim.{_FUNCTIONAL[name]}"), _FUNCTIONAL[name])
            ps = [p[i] for p, g in zip(params, grads) if g is not None]
            gs = [g[i] for g in grads if g is not None]
            lr, wd = h["lr"][i], h["weight_decay"][i]
            if name in ("sgd", "momentum", "nesterov"):
                mu = 0.0 if name == "sgd" else h["momentum"][i]
                fn(ps, gs, st["buf"], fused=True, weight_decay=wd, momentum=mu, lr=lr, dampening=0.0,
                   nesterov=name == "nesterov", maximize=False)
            elif name == "adagrad":
                fn(ps, gs, st["sum"], st["step"], fused=True, lr=lr, weight_decay=wd, lr_decay=0.0,
                   eps=h["eps"][i], maximize=False)
            elif name == "rmsprop":
                mu = h["momentum"][i] if "momentum" in h else 0.0
                fn(ps, gs, st["square_avg"], [], st["momentum_buffer"] if mu > 0 else [], st["step"], foreach=False,
                   lr=lr, alpha=h["alpha"][i], eps=h["eps"][i], weight_decay=wd, momentum=mu, centered=False)
            elif name == "adadelta":
                fn(ps, gs, st["square_avg"], st["acc_delta"], st["step"], foreach=False, lr=lr, rho=h["rho"][i],
                   eps=h["eps"][i], weight_decay=wd, maximize=False)
            else:  # adam, adamw
                fn(ps, gs, st["exp_avg"], st["exp_avg_sq"], [], st["step"], fused=True, amsgrad=False,
                   beta1=h["beta1"][i], beta2=h["beta2"][i], lr=lr, weight_decay=wd, eps=h["eps"][i],
                   maximize=False)

    # ------------------------------------------------------------------ members
    @torch.no_grad()
    def copy_member(self, dst: int, src: int) -> None:
        """Member ``dst`` takes member ``src``'s optimizer state (population-based training)."""
        self.steps[dst] = self.steps[src]
        if self.per_member:
            self.members[dst] = {k: [None if t is None else t.clone() for t in v]
                                 for k, v in self.members[src].items()}
        for st in self.state:
            for t in st.values():
                t[dst] = t[src]

    def extend(self, params: Sequence[torch.Tensor], hyper: dict[str, torch.Tensor],
               names: Optional[Sequence[str]] = None) -> None:
        """New members at the end of the stack (``params``: the widened tensors; ``hyper``: the new
        members' (n,) hyperparameters): zero state and no steps taken, as a fresh torch.optim would
        start them. A zero momentum buffer takes the first gradient exactly (0 * mu + g), so the new
        members follow torch's first step although the stack has started."""
        old = self.params[0].shape[0]
        self.params = list(params)
        added = self.params[0].shape[0] - old
        device = self.params[0].device
        new_names = list(names) if names is not None else [self.names[0]] * added
        allowed = (lambda n: family(n) == self.name) if self.shared else (lambda n: n == self.name)
        if not all(allowed(n) for n in new_names):
            raise ValueError(f"optimizers {sorted(set(new_names))} cannot join a stack of {self.name!r}")
        hyper = {**hyper, **(_flags(self.name, new_names, device) if self.shared else {})}
        hyper.setdefault("weight_decay", torch.zeros(added, device=device))
        self.names += new_names
        self._note_names()
        self.hyper = {k: torch.cat([v, hyper[k].to(v.device, v.dtype)]) for k, v in self.hyper.items()}
        self.steps = torch.cat([self.steps, torch.zeros(added, device=self.steps.device, dtype=self.steps.dtype)])
        if self.per_member:
            self.members += [_member_state(self.names[i], [p[i] for p in self.params]) for i in range(old, old + added)]
        self.state = [{b: torch.cat([t, torch.zeros_like(p[old:])]) for b, t in st.items()}
                      for st, p in zip(self.state, self.params)]

    def keep(self, index: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        """Keep the members at ``index``; ``params`` are the compacted parameter tensors."""
        self.params = list(params)
        self.hyper = {k: v[index] for k, v in self.hyper.items()}
        self.names = [self.names[i] for i in index.tolist()]
        self._note_names()
        self.steps = self.steps[index]
        if self.per_member:
            self.members = [self.members[i] for i in index.tolist()]
        self.state = [{b: t[index].clone() for b, t in st.items()} for st in self.state]


# the functional optimizer of torch.optim behind each name (module and function share the name)
_FUNCTIONAL = {"sgd": "sgd", "momentum": "sgd", "nesterov": "sgd", "adagrad": "adagrad", "rmsprop": "rmsprop",
               "adadelta": "adadelta", "adam": "adam", "adamw": "adamw"}


def _flags(rule: str, names: Sequence[str], device) -> dict[str, torch.Tensor]:
    """Per-member flags of a family's rule: nesterov (momentum SGD; sgd members have momentum 0) and
    decoupled decay (adam); none for the other rules."""
    if rule == "momentum":
        return {"nesterov": torch.tensor([float(n == "nesterov") for n in names], device=device)}
    if rule == "adam":
        return {"decoupled": torch.tensor([float(n == "adamw") for n in names], device=device)}
    return {}


def _member_state(name: str, params: Sequence[torch.Tensor]) -> dict[str, list]:
    """One member's optimizer state, laid out as torch.optim keeps it (float32 step counters;
    momentum buffers None until the first step, as SGD starts them from the first gradient)."""
    zeros = lambda: [torch.zeros_like(p) for p in params]  # noqa: E731
    steps = lambda: [torch.tensor(0.0) for _ in params]  # noqa: E731
    if name in ("sgd", "momentum", "nesterov"):
        return {"buf": [None for _ in params]}
    if name == "adagrad":
        return {"sum": zeros(), "step": steps()}
    if name == "rmsprop":
        return {"square_avg": zeros(), "momentum_buffer": zeros(), "step": steps()}
    if name == "adadelta":
        return {"square_avg": zeros(), "acc_delta": zeros(), "step": steps()}
    return {"exp_avg": zeros(), "exp_avg_sq": zeros(), "step": steps()}
