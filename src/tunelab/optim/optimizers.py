"""Optimizer names -> torch.optim, with their hyperparameters by name.

``weight_decay`` is torch's coupled L2 penalty (added to the gradient) for every optimizer
except ``adamw``, where it is decoupled (applied to the weights directly).

Example:
    >>> import torch
    >>> from tunelab.config import OptimizerConfig
    >>> opt = build_optimizer([torch.nn.Parameter(torch.zeros(2))],
    ...                       OptimizerConfig(name="nesterov", lr=0.1))
    >>> type(opt).__name__, opt.defaults["nesterov"]
    ('SGD', True)
"""

from __future__ import annotations

import inspect
from typing import Iterable

import torch

from tunelab.config import OptimizerConfig
from tunelab.registry import Registry

__all__ = ["OPTIMIZERS", "build_optimizer", "default_lr", "default_eps", "default_momentum", "MOMENTUM_USERS"]

OPTIMIZERS = Registry("optimizer.name")

# Sensible starting learning rates per optimizer (adadelta's 1.0 is the paper's and torch's).
_DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.01,
               "rmsprop": 1e-3, "adadelta": 1.0, "adam": 1e-3, "adamw": 1e-3}
# torch.optim's own defaults, so an unset eps means exactly what torch means.
_DEFAULT_EPS = {"adagrad": 1e-10, "adadelta": 1e-6}


# the optimizers that read optimizer.momentum, with its default for each; the others take none
_DEFAULT_MOMENTUM = {"momentum": 0.9, "nesterov": 0.9, "rmsprop": 0.0}
MOMENTUM_USERS = tuple(_DEFAULT_MOMENTUM)


def default_momentum(name: str) -> float:
    return _DEFAULT_MOMENTUM.get(name, 0.0)


def default_lr(name: str) -> float:
    return _DEFAULT_LR.get(name, 1e-3)


def default_eps(name: str) -> float:
    return _DEFAULT_EPS.get(name, 1e-8)


def _fused(cls: type) -> dict:
    """Ask for torch's fused kernel where the class has one: one kernel per step instead of
    a handful per tensor, about 1.5x faster for small MLPs on CPU (bench/bench_epoch.py)."""
    return {"fused": True} if "fused" in inspect.signature(cls).parameters else {}


def _sgd(momentum: float, nesterov: bool):
    return lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=momentum, nesterov=nesterov,
                                        weight_decay=c.weight_decay, **_fused(torch.optim.SGD))


OPTIMIZERS.register("sgd", _sgd(0.0, False))
OPTIMIZERS.register("momentum", lambda p, c: _sgd(c.momentum, False)(p, c))
OPTIMIZERS.register("nesterov", lambda p, c: _sgd(c.momentum, True)(p, c))
OPTIMIZERS.register("adagrad", lambda p, c: torch.optim.Adagrad(
    p, lr=c.lr, eps=c.eps, weight_decay=c.weight_decay, **_fused(torch.optim.Adagrad)))
OPTIMIZERS.register("rmsprop", lambda p, c: torch.optim.RMSprop(
    p, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum, weight_decay=c.weight_decay))
OPTIMIZERS.register("adadelta", lambda p, c: torch.optim.Adadelta(
    p, lr=c.lr, rho=c.rho, eps=c.eps, weight_decay=c.weight_decay))
OPTIMIZERS.register("adam", lambda p, c: torch.optim.Adam(
    p, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay, **_fused(torch.optim.Adam)))
OPTIMIZERS.register("adamw", lambda p, c: torch.optim.AdamW(
    p, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay, **_fused(torch.optim.AdamW)))


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The torch.optim optimizer named by ``cfg.name`` with ``cfg``'s hyperparameters."""
    if cfg.lr is None or cfg.eps is None or cfg.momentum is None:  # a config not passed through from_dict
        import dataclasses
        cfg = dataclasses.replace(cfg, lr=cfg.lr if cfg.lr is not None else default_lr(cfg.name),
                                  eps=cfg.eps if cfg.eps is not None else default_eps(cfg.name),
                                  momentum=cfg.momentum if cfg.momentum is not None else default_momentum(cfg.name))
    return OPTIMIZERS.get(cfg.name)(list(params), cfg)
