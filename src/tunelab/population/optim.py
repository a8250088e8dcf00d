"""The eight optimizers of tunelab for K stacked members, written from their update rules.

``StackedOptimizer(name, params, hyper)`` updates tensors of shape (K, ...) with per-member
hyperparameters (each a (K,) tensor): lr, weight_decay, momentum, beta1, beta2, eps, rho, alpha.
The rules are torch.optim's (the defaults tunelab builds: no dampening, no lr decay, not centered,
no amsgrad); weight decay is the coupled L2 term added to the gradient, except adamw's decoupled
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

from typing import Sequence

import torch

__all__ = ["StackedOptimizer", "HYPER", "NAMES"]

NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
# the per-member hyperparameters each optimizer reads (lr and weight_decay: all of them)
HYPER = {"sgd": (), "momentum": ("momentum",), "nesterov": ("momentum",), "adagrad": ("eps",),
         "rmsprop": ("alpha", "eps"), "adadelta": ("rho", "eps"), "adam": ("beta1", "beta2", "eps"),
         "adamw": ("beta1", "beta2", "eps")}
# per-parameter state buffers (zeros of the parameter's shape) of each optimizer
_BUFFERS = {"sgd": (), "momentum": ("buf",), "nesterov": ("buf",), "adagrad": ("sum",),
            "rmsprop": ("square_avg",), "adadelta": ("square_avg", "acc_delta"), "adam": ("exp_avg", "exp_avg_sq"),
            "adamw": ("exp_avg", "exp_avg_sq")}


def _b(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) hyperparameter shaped to broadcast over a (K, ...) tensor."""
    return h.view(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """Vectorized updates; ``hyper`` maps names to (K,) tensors on the parameters' device."""

    def __init__(self, name: str, params: Sequence[torch.Tensor], hyper: dict[str, torch.Tensor]) -> None:
        if name not in NAMES:
            raise ValueError(f"optimizer {name!r} is not one of {list(NAMES)}")
        self.name, self.params, self.hyper = name, list(params), dict(hyper)
        k = self.params[0].shape[0]
        device = self.params[0].device
        self.hyper.setdefault("weight_decay", torch.zeros(k, device=device))
        self.steps = torch.zeros(k, device=device, dtype=torch.float64)  # steps taken, per member
        self.state = [{b: torch.zeros_like(p, memory_format=torch.preserve_format).detach() for b in _BUFFERS[name]}
                      for p in self.params]
        self.started = False  # momentum buffers start as the first gradient (torch's rule)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        h = self.hyper
        for p, st in zip(self.params, self.state):
            g = p.grad
            if g is None:
                continue
            lr, wd = _b(h["lr"], p), _b(h["weight_decay"], p)
            if self.name != "adamw":
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
            buf.mul_(mu).add_(g)
        p.sub_(lr * (g + mu * buf if nesterov else buf))

    def _nesterov(self, p, g, st, lr):
        self._momentum(p, g, st, lr, nesterov=True)

    def _adagrad(self, p, g, st, lr):
        st["sum"].addcmul_(g, g)
        p.sub_(lr * g / (st["sum"].sqrt() + _b(self.hyper["eps"], p)))

    def _rmsprop(self, p, g, st, lr):
        alpha = _b(self.hyper["alpha"], p)
        sq = st["square_avg"]
        sq.mul_(alpha).add_((1 - alpha) * g * g)
        p.sub_(lr * g / (sq.sqrt() + _b(self.hyper["eps"], p)))

    def _adadelta(self, p, g, st, lr):
        rho, eps = _b(self.hyper["rho"], p), _b(self.hyper["eps"], p)
        sq, acc = st["square_avg"], st["acc_delta"]
        sq.mul_(rho).add_((1 - rho) * g * g)
        delta = (acc + eps).sqrt() / (sq + eps).sqrt() * g
        acc.mul_(rho).add_((1 - rho) * delta * delta)
        p.sub_(lr * delta)

    def _adam(self, p, g, st, lr):
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

    # ------------------------------------------------------------------ members
    def keep(self, index: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        """Keep the members at ``index``; ``params`` are the compacted parameter tensors."""
        self.params = list(params)
        self.hyper = {k: v[index] for k, v in self.hyper.items()}
        self.steps = self.steps[index]
        self.state = [{b: t[index].clone() for b, t in st.items()} for st in self.state]
