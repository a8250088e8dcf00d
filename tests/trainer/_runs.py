"""Helpers shared by the resume and control tests: one small digits config, run comparisons,
and a recorder of the lr every optimizer step used."""

from __future__ import annotations

import copy
import importlib
import math
from pathlib import Path
from typing import Any

import torch

from tunelab.trainer.state import load

fit_module = importlib.import_module("tunelab.trainer.fit")  # the package exports fit() under that name


def config(**sections: dict) -> dict:
    """Small and fast (digits, one hidden layer of 32, 21 steps an epoch), but with every random
    stream in use: dropout, augmentation (translate + noise), shuffling. The plateau schedule
    (patience 0, a 50 % relative threshold) halves the lr after nearly every epoch; early stopping
    watches val_accuracy with patience 2, which the frozen-by-decay model soon stops improving."""
    base = {
        "data": {"name": "digits"},
        "model": {"hidden": [32], "dropout": 0.2},
        "optimizer": {"name": "adam", "lr": 0.01},
        "schedule": {"name": "plateau", "patience": 0, "threshold": 0.5, "factor": 0.5},
        "training": {"epochs": 10, "batch_size": 64, "threads": 1, "device": "cpu",
                     "early_stopping": {"enabled": True, "monitor": "val_accuracy", "patience": 2}},
        "augment": {"translate": 1, "noise": 0.05},
    }
    out = copy.deepcopy(base)
    for name, values in sections.items():
        for key, value in values.items():
            target = out[name]
            *parents, leaf = key.split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[leaf] = value
    return out


def strip(history: list[dict]) -> list[dict]:
    """History rows without the wall-clock column."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def same_tree(a: Any, b: Any, where: str = "") -> None:
    """Assert two nested checkpoint structures are identical (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(ref, got, ref_dir: Path | None = None, got_dir: Path | None = None) -> None:
    """The resumed/steered run ended exactly as the uninterrupted one: every parameter, the
    history (but its seconds), the status and outcome, and (with folders) last.pt's tensors."""
    assert got.status == ref.status
    assert got.epochs_run == ref.epochs_run
    assert strip(got.history) == strip(ref.history)
    ref_params, got_params = dict(ref.model.named_parameters()), dict(got.model.named_parameters())
    assert list(ref_params) == list(got_params)
    for name in ref_params:
        assert torch.equal(ref_params[name], got_params[name]), name
    assert got.restored_epoch == ref.restored_epoch
    assert got.test_accuracy == ref.test_accuracy and got.test_loss == ref.test_loss
    if ref_dir is not None and got_dir is not None:
        a, b = load(Path(ref_dir) / "checkpoints" / "last.pt"), load(Path(got_dir) / "checkpoints" / "last.pt")
        for key in ("model", "optimizer", "best_weights"):
            same_tree(a[key], b[key], key)
        # the streams the trainer draws from; numpy's and python's are saved for user code but
        # never seeded by the trainer, so they follow the process (another one in the kill test)
        for key in ("torch", "data_order", "augment"):
            same_tree(a["rng"][key], b["rng"][key], f"rng/{key}")
        sa, sb = a["state"], b["state"]
        for key in ("epoch", "step", "plateau", "early", "lr_mult", "early_stopping", "paused"):
            same_tree(sa[key], sb[key], key)
        assert strip(sa["history"]) == strip(sb["history"])


class StepLog:
    """Records the lr of every optimizer step of the runs started while installed (a
    pre-step hook on the optimizer fit() builds). ``lrs[i]``: the lr step i used (0-based,
    counted over the whole run); ``optimizers``: every optimizer built."""

    def __init__(self, monkeypatch) -> None:
        self.lrs: list[float] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        real = fit_module.build_optimizer

        def build(params, cfg):
            opt = real(params, cfg)
            opt.register_step_pre_hook(lambda o, args, kwargs: self.lrs.append(o.param_groups[0]["lr"]))
            self.optimizers.append(opt)
            return opt

        monkeypatch.setattr(fit_module, "build_optimizer", build)
