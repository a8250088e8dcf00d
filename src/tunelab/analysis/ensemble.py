"""Ensembles: combine several trained classifiers by soft or hard voting.

Tune trials and compare runs keep configs, not weights, so an ensemble is built in two steps:
pick the members (``top_configs`` of a study, or ``run_members`` of a folder of run folders),
retrain them (``models_from_configs``: deterministic for a config's seed on CPU), then
``ensemble_report`` scores the ensemble on the TEST split beside its members. The best single
model is chosen on validation and reported on test, so the comparison is honest.

- soft voting: argmax of the mean of the members' softmax probabilities;
- hard voting: the class most members predict; ties go to the class with the larger summed
  probability, then to the lowest class index.

Example:
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    >>> ensemble_predict([a, b], torch.zeros(4, 2), method="soft").shape
    torch.Size([4])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import optuna
import torch
import yaml
from optuna.trial import TrialState
from torch import Tensor, nn

from tunelab.data.bundle import DataBundle
from tunelab.errors import ConfigError, TrialError

__all__ = ["ensemble_predict", "ensemble_report", "models_from_configs", "top_configs",
           "study_members", "run_members", "pick_top", "vote", "check_method", "METHODS"]

METHODS = ("hard", "soft")


def check_method(method: str) -> None:
    """ConfigError unless ``method`` is 'soft' or 'hard'."""
    if method not in METHODS:
        raise ConfigError(f"--method={method!r} is not allowed; choose one of {list(METHODS)}")


def vote(probs: Tensor, method: str) -> Tensor:
    """Predicted classes (B,) from the members' probabilities ``probs`` (K, B, C).

    Example:
        >>> p = torch.tensor([[[0.6, 0.4]], [[0.6, 0.4]], [[0.0, 1.0]]])  # 3 members, 1 example
        >>> vote(p, "hard").tolist(), vote(p, "soft").tolist()
        ([0], [1])
    """
    check_method(method)
    summed = probs.sum(0)  # (B, C)
    if method == "soft":
        return summed.argmax(1)
    votes = nn.functional.one_hot(probs.argmax(2), probs.shape[2]).sum(0)  # (B, C) counts
    tied = votes == votes.max(1, keepdim=True).values  # the classes with the most votes
    # argmax returns the first maximum, so equal sums go to the lowest class
    return summed.masked_fill(~tied, -math.inf).argmax(1)


@torch.inference_mode()
def _member_probs(models: Sequence[nn.Module], x: Tensor) -> Tensor:
    """Softmax probabilities (K, B, C) of every member on one batch, in eval mode."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        return torch.stack([torch.softmax(m(x).float(), dim=1) for m in models])
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _probs(models: Sequence[nn.Module], x: Tensor, batch_size: int) -> Tensor:
    """Member probabilities (K, N, C) on all of ``x``, computed in batches."""
    if not models:
        raise ConfigError("models=[] is empty; an ensemble needs at least one model")
    parts = [_member_probs(models, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(parts, dim=1) if parts else torch.zeros(len(models), 0, 0, device=x.device)


def ensemble_predict(models: Sequence[nn.Module], x: Tensor, method: str = "soft",
                     batch_size: int = 8192) -> Tensor:
    """Predicted classes (N,) of the ensemble of ``models`` on inputs ``x`` (N, ...).

    Example:
        >>> m = torch.nn.Linear(2, 3)
        >>> x = torch.randn(5, 2)
        >>> torch.equal(ensemble_predict([m, m], x, "hard"), m(x).argmax(1))
        True
    """
    check_method(method)
    if not models:
        raise ConfigError("models=[] is empty; an ensemble needs at least one model")
    parts = [vote(_member_probs(models, x[i:i + batch_size]), method) for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=x.device)


def _accuracy(pred: Tensor, y: Tensor) -> float:
    return (pred == y).double().mean().item() if len(y) else math.nan


def ensemble_report(models: Sequence[nn.Module], data: DataBundle, method: str = "soft",
                    batch_size: int = 8192) -> dict[str, Any]:
    """Test accuracy of the ensemble beside its members' (and the validation accuracies).

    ``best_single`` is the test accuracy of the member with the best VALIDATION accuracy
    (the first on ties); ``max_single_test`` is the best test accuracy, for information only.

    Example:
        >>> from tunelab.data import load_data
        >>> from tunelab.config import DataConfig
        >>> data = load_data(DataConfig())
        >>> r = ensemble_report([torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))], data)
        >>> r["k"], r["ensemble_accuracy"] == r["best_single"]
        (1, True)
    """
    check_method(method)
    p_val, p_test = _probs(models, data.x_val, batch_size), _probs(models, data.x_test, batch_size)  # (K, N, C)
    val = [_accuracy(p.argmax(1), data.y_val) for p in p_val]
    test = [_accuracy(p.argmax(1), data.y_test) for p in p_test]
    best = max(range(len(models)), key=lambda i: (val[i], -i))
    return dict(ensemble_accuracy=_accuracy(vote(p_test, method), data.y_test),
                ensemble_val_accuracy=_accuracy(vote(p_val, method), data.y_val),
                single_accuracies=test, single_val_accuracies=val, best_single=test[best],
                best_single_index=best, mean_single=sum(test) / len(test), max_single_test=max(test),
                method=method, k=len(models))


# --------------------------------------------------------------------------- members

def _same_data(configs: Sequence[Any]) -> None:
    from tunelab.config import to_dict

    first = to_dict(configs[0].data)
    for i, cfg in enumerate(configs[1:], start=1):
        diff = sorted(k for k, v in to_dict(cfg.data).items() if first[k] != v)
        if diff:
            key = diff[0]
            raise ConfigError(f"configs[{i}] has data.{key}={getattr(cfg.data, key)!r} but configs[0] has "
                              f"{first[key]!r}; ensembles need the same data section in every member")


def models_from_configs(configs: Sequence[dict],
                        on_progress: Optional[Callable[[int, int, dict[str, Any]], None]] = None) -> list[nn.Module]:
    """Retrain every config with ``tunelab.train`` (no run folder) and return the models.

    Every config must have the same ``data`` section: members are judged on one split.
    ``on_progress(done, total, info)`` is called after each member (retraining K members takes
    minutes, and the caller decides how to show it); ``info`` holds ``index`` (0-based, in
    ``configs`` order), ``status``, ``epochs_run``, ``val_accuracy`` (of the weights kept),
    ``best_val_accuracy`` and ``seconds`` (of training).

    Example:
        >>> cfg = {"model": {"hidden": [16]}, "training": {"epochs": 1}}
        >>> seen = []
        >>> len(models_from_configs([cfg, cfg], on_progress=lambda done, total, info: seen.append((done, total))))
        2
        >>> seen
        [(1, 2), (2, 2)]
    """
    from tunelab.api import as_config, train

    if not configs:
        raise ConfigError("configs=[] is empty; an ensemble needs at least one config")
    parsed = [as_config(c) for c in configs]  # every config error before any training
    _same_data(parsed)
    models = []
    for i, cfg in enumerate(parsed):
        result = train(cfg, save=False)
        if result.status == "diverged":
            raise TrialError(f"configs[{i}] diverged when retrained ({result.message}); drop it from the ensemble")
        models.append(result.model)
        if on_progress is not None:
            summary = result.summary()
            on_progress(i + 1, len(parsed), dict(index=i, status=summary["status"], epochs_run=summary["epochs_run"],
                                                 val_accuracy=summary["val_accuracy"],
                                                 best_val_accuracy=summary["best_val_accuracy"],
                                                 seconds=summary["seconds"]))
    return models


def pick_top(members: Sequence[dict], k: int, source: str) -> list[dict]:
    """The first ``k`` of ``members`` (already best first); ConfigError if k is not 1..len.

    Example:
        >>> pick_top([{"label": "a"}, {"label": "b"}], 1, "study 's'")
        [{'label': 'a'}]
    """
    if not 1 <= k <= len(members):
        raise ConfigError(f"--top={k} is out of range; {source} has {len(members)} usable "
                          f"member{'s' if len(members) != 1 else ''}; choose 1 to {len(members)}")
    return list(members[:k])


def study_members(study: optuna.Study) -> list[dict]:
    """Complete trials that kept a config, best value first (respecting the direction):
    dicts with label ('#7'), number, value and config.

    Example:
        >>> study_members(optuna.create_study())
        []
    """
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and t.value is not None and "config" in t.user_attrs]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    done.sort(key=lambda t: (sign * t.value, t.number))
    return [dict(label=f"#{t.number}", number=t.number, value=t.value, config=t.user_attrs["config"])
            for t in done]


def top_configs(study: optuna.Study, k: int) -> list[dict]:
    """The configs of the ``k`` best complete trials of ``study`` (by value and direction).

    Example:
        >>> s = optuna.create_study(direction="maximize")
        >>> for v in (0.1, 0.9):
        ...     s.add_trial(optuna.trial.create_trial(value=v, user_attrs={"config": {"v": v}}))
        >>> top_configs(s, 1)
        [{'v': 0.9}]
    """
    return [m["config"] for m in pick_top(study_members(study), k, f"study {study.study_name!r}")]


def _read_run(folder: Path, root: Path) -> dict | None:
    import json

    try:
        result = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None  # unreadable or cut short (a disk that filled, an edit): not a finished run
    if not isinstance(result, dict) or result.get("status") == "running":
        return None  # still going, or killed: its result.json is written each epoch, not final
    value = result.get("val_accuracy")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None  # a diverged run has no validation accuracy to rank by
    label = str(folder.relative_to(root)) if folder != root else folder.name
    return dict(label=label, path=str(folder), value=float(value),
                config=yaml.safe_load((folder / "config.yaml").read_text()))


def run_members(root: str | Path) -> list[dict]:
    """Finished run folders (config.yaml + a final result.json) anywhere under ``root``, best
    result.json val_accuracy first: dicts with label, path, value and config. A folder whose
    result.json still says ``running`` (a run going on, or one that was killed) is skipped.

    Example:
        >>> run_members("no-such-folder")
        Traceback (most recent call last):
        ...
        tunelab.errors.ConfigError: --runs='no-such-folder' is not a folder; give a folder of tunelab run folders
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--runs={str(root)!r} is not a folder; give a folder of tunelab run folders")
    folders = sorted({p.parent for p in root.rglob("result.json") if (p.parent / "config.yaml").is_file()})
    members = [m for m in (_read_run(f, root) for f in folders) if m is not None]
    if not members:
        raise ConfigError(f"--runs={str(root)!r} holds no finished run folders "
                          f"(folders with config.yaml and result.json with a val_accuracy)")
    return sorted(members, key=lambda m: -m["value"])  # stable: ties keep the path order
