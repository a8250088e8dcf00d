"""Figures of an Optuna study: small pure functions read the study into plain data, then draw.

Each ``*_data(study)`` returns dicts and lists only (no matplotlib); each ``plot_*`` takes
that data (or, for convenience, the study itself, which it reads with the matching
``*_data``) and returns a matplotlib Figure.

Example:
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study()
    >>> study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=3)
    >>> history_data(study)["number"]
    [0, 1, 2]
    >>> sorted(study_figures(study))
    ['best_curves', 'history', 'importance', 'parallel', 'slices']
"""

from __future__ import annotations

import math
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.distributions import CategoricalDistribution  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

__all__ = ["lineage_data", "plot_lineage", "history_data", "parallel_data", "importance_data", "slice_data", "best_curves_data",
           "plot_history", "plot_parallel", "plot_importance", "plot_slices", "plot_best_curves",
           "study_figures"]


# ---------------------------------------------------------------- reading the study
def _completed(study: optuna.Study) -> list[FrozenTrial]:
    if len(study.directions) != 1:
        raise ValueError(f"study {study.study_name!r} has {len(study.directions)} objectives; "
                         "these figures need exactly one")
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]


def _maximize(study: optuna.Study) -> bool:
    return study.direction == optuna.study.StudyDirection.MAXIMIZE


_MISSING = object()  # a trial without this parameter (conditional or staged spaces)


def _is_log(dist: Any) -> bool:
    return bool(getattr(dist, "log", False))


def history_data(study: optuna.Study) -> dict[str, Any]:
    """{"number", "value", "best" (best so far), "direction"} over completed trials in order."""
    trials = sorted(_completed(study), key=lambda t: t.number)
    pick = max if _maximize(study) else min
    best: list[float] = []
    for t in trials:
        best.append(t.value if not best else pick(best[-1], t.value))
    return {"number": [t.number for t in trials], "value": [t.value for t in trials],
            "best": best, "direction": "maximize" if _maximize(study) else "minimize"}


def _param_dists(trials: list[FrozenTrial]) -> dict[str, Any]:
    dists: dict[str, Any] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            dists.setdefault(name, dist)
    return dict(sorted(dists.items()))


def _axis(name: str, dist: Any, raw: list[Any]) -> tuple[list[float], list[float], list[str]]:
    """Positions in [0, 1] for one parameter (NaN where a trial lacks it) and its tick marks."""
    if isinstance(dist, CategoricalDistribution):
        n = len(dist.choices)
        level = {c: (i / (n - 1) if n > 1 else 0.5) for i, c in enumerate(dist.choices)}
        pos = [math.nan if v is _MISSING else level[v] for v in raw]
        return pos, list(level.values()), [str(c) for c in dist.choices]
    log = _is_log(dist)
    scaled = [math.nan if v is _MISSING else (math.log10(v) if log else float(v)) for v in raw]
    finite = [v for v in scaled if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = hi - lo
    pos = [(v - lo) / span if span > 0 else 0.5 for v in scaled]
    ticks = [0.0, 0.5, 1.0] if span > 0 else [0.5]
    raw_at = [lo + tk * span if span > 0 else lo for tk in ticks]
    return pos, ticks, [f"{(10 ** r if log else r):.3g}" for r in raw_at]


def parallel_data(study: optuna.Study) -> dict[str, Any]:
    """Per parameter: positions in [0, 1] (log10 first for log params; categorical choices
    as evenly spaced levels) with tick positions and labels; plus each trial's value."""
    trials = _completed(study)
    axes = {}
    for name, dist in _param_dists(trials).items():
        pos, ticks, labels = _axis(name, dist, [t.params.get(name, _MISSING) for t in trials])
        axes[name] = {"pos": pos, "ticks": ticks, "labels": labels, "log": _is_log(dist)}
    return {"params": list(axes), "axes": axes, "value": [t.value for t in trials],
            "direction": "maximize" if _maximize(study) else "minimize"}


def importance_data(study: optuna.Study, seed: int = 0) -> dict[str, Any]:
    """{"importance": {param: share}, most important first, "method", "note"}.

    fANOVA (Optuna's default) first; mean decrease in impurity if fANOVA fails. Fewer than
    two completed trials give no importances and a note saying why.
    """
    n = len(_completed(study))
    if n < 2:
        return {"importance": {}, "method": "", "note": f"{n} completed trial(s); need at least 2"}
    errors = []
    for method, evaluator in (("fANOVA", optuna.importance.FanovaImportanceEvaluator(seed=seed)),
                              ("mean decrease impurity",
                               optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed))):
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
            return {"importance": {k: float(v) for k, v in imp.items()}, "method": method, "note": ""}
        except Exception as e:  # noqa: BLE001 - try the next evaluator, report both if all fail
            errors.append(f"{method}: {e}")
    return {"importance": {}, "method": "", "note": "; ".join(errors)}


def slice_data(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Per parameter: the trials that have it, as {"x", "value", "number", "log", "choices"}
    (``choices`` is empty for numeric parameters)."""
    trials = _completed(study)
    out = {}
    for name, dist in _param_dists(trials).items():
        have = [t for t in trials if name in t.params]
        out[name] = {"x": [t.params[name] for t in have], "value": [t.value for t in have],
                     "number": [t.number for t in have], "log": _is_log(dist),
                     "choices": [str(c) for c in getattr(dist, "choices", ())]}
    return out


def best_curves_data(study: optuna.Study, k: int = 3,
                     metrics: tuple[str, ...] = ("val_accuracy", "val_loss")) -> dict[str, Any]:
    """The k best trials' per-epoch curves from ``user_attrs["history"]``.

    {"metrics": [...], "curves": [{"label", "epoch", metric: [...]}]}; trials without a
    history are skipped, and a metric no epoch recorded becomes NaN.
    """
    trials = sorted(_completed(study), key=lambda t: t.value, reverse=_maximize(study))
    curves = []
    for t in trials:
        hist = t.user_attrs.get("history") or []
        if not hist:
            continue
        curve = {"label": f"trial {t.number} ({t.value:.4g})",
                 "epoch": [h.get("epoch", i + 1) for i, h in enumerate(hist)]}
        for m in metrics:
            curve[m] = [float(h[m]) if h.get(m) is not None else math.nan for h in hist]
        curves.append(curve)
        if len(curves) == k:
            break
    return {"metrics": list(metrics), "curves": curves}


# ---------------------------------------------------------------- drawing
def _data(obj: Any, reader: Callable[[optuna.Study], Any]) -> Any:
    return reader(obj) if isinstance(obj, optuna.Study) else obj


def _note(fig: Figure, ax, text: str) -> Figure:
    for other in fig.axes:
        other.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes,
            color="#57606a")
    return fig


def plot_history(data: dict | optuna.Study, title: str = "optimization history") -> Figure:
    """Objective value of each completed trial (points) and the best so far (step line)."""
    d = _data(data, history_data)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(d["number"], d["value"], "o", alpha=0.6, label="trial")
    ax.step(d["number"], d["best"], where="post", color="#cf222e", label=f"best so far ({d['direction']})")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective value")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_parallel(data: dict | optuna.Study, title: str = "parallel coordinates") -> Figure:
    """One line per trial across one vertical axis per parameter, colored by value."""
    d = _data(data, parallel_data)
    names = d["params"]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(names) + 2), 4.5), constrained_layout=True)
    if not names or not d["value"]:
        return _note(fig, ax, "no completed trials with parameters")
    lo, hi = min(d["value"]), max(d["value"])
    norm = matplotlib.colors.Normalize(lo, hi if hi > lo else lo + 1)
    cmap = plt.get_cmap("viridis" if d["direction"] == "maximize" else "viridis_r")
    xs = list(range(len(names)))
    # best trials drawn last, so they stay visible on top
    order = sorted(range(len(d["value"])), key=lambda i: d["value"][i],
                   reverse=d["direction"] == "minimize")
    for i in order:
        value = d["value"][i]
        ax.plot(xs, [d["axes"][n]["pos"][i] for n in names], color=cmap(norm(value)), alpha=0.7)
    for x, n in zip(xs, names):
        ax.axvline(x, color="black", linewidth=0.8)
        for tick, label in zip(d["axes"][n]["ticks"], d["axes"][n]["labels"]):
            ax.text(x + 0.03, tick, label, fontsize="x-small", va="center")
    ax.set_xticks(xs, [f"{n} (log)" if d["axes"][n]["log"] else n for n in names])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="objective value")
    ax.set_title(title)
    return fig


def plot_importance(data: dict | optuna.Study, title: str = "parameter importance") -> Figure:
    """Horizontal bars, most important parameter on top; a note when there is nothing to rank."""
    d = _data(data, importance_data)
    imp = d["importance"]
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.4 * max(len(imp), 1)), constrained_layout=True)
    ax.set_title(f"{title} ({d['method']})" if d["method"] else title)
    if not imp:
        return _note(fig, ax, f"no importances: {d['note']}")
    names = list(imp)[::-1]  # barh draws bottom-up; most important last = on top
    ax.barh(names, [imp[n] for n in names], color="#0969da")
    ax.set_xlabel("share of objective variance")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_slices(data: dict | optuna.Study, title: str = "slices") -> Figure:
    """Objective value against each parameter, one panel per parameter."""
    d = _data(data, slice_data)
    n = max(len(d), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False, constrained_layout=True)
    if not d:
        return _note(fig, axes[0][0], "no completed trials with parameters")
    for ax, (name, s) in zip(axes[0], d.items()):
        choices = s["choices"]
        x = [choices.index(str(v)) for v in s["x"]] if choices else s["x"]
        ax.scatter(x, s["value"], c=s["number"], cmap="Blues", edgecolors="#57606a", s=24)
        if choices:
            ax.set_xticks(range(len(choices)), choices)
            ax.set_xlim(-0.5, len(choices) - 0.5)
        elif s["log"]:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("objective value")
    fig.suptitle(f"{title} (color: trial number, darker = later)")
    return fig


def plot_best_curves(data: dict | optuna.Study, title: str = "best trials") -> Figure:
    """Per-epoch curves of the best trials, one panel per metric."""
    d = _data(data, best_curves_data)
    metrics = d["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False,
                             constrained_layout=True)
    if not d["curves"]:
        return _note(fig, axes[0][0], "no completed trial recorded a per-epoch history")
    for ax, m in zip(axes[0], metrics):
        for c in d["curves"]:
            ax.plot(c["epoch"], c[m], marker="o", markersize=3, label=c["label"])
        ax.set_xlabel("epoch")
        ax.set_ylabel(m.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def lineage_data(study: optuna.Study) -> dict[str, Any]:
    """Population-based training: each trial's hyperparameter schedule (piecewise constant from its
    starting values, changed at each copy) and the copies (epoch, from trial, to trial).

    Example:
        >>> study = optuna.create_study()
        >>> lineage_data(study)["copies"]
        []
    """
    schedules, copies, keys = {}, [], []
    for t in study.get_trials(deepcopy=False):
        events = (t.user_attrs.get("result") or {}).get("pbt") or []
        history = t.user_attrs.get("history") or []
        if not history:
            continue
        keys = keys or list(t.params)
        epochs = len(history)
        points = [(0, dict(t.params))]
        for e in events:
            points.append((int(e["epoch"]), {**points[-1][1], **e["values"]}))
            copies.append(dict(epoch=int(e["epoch"]), source=e.get("from_trial", e.get("from")), target=t.number))
        schedules[t.number] = dict(points=points, epochs=epochs, value=t.value)
    return dict(keys=keys, schedules=schedules, copies=copies, dists=_param_dists(_completed(study)))


def plot_lineage(data: dict | optuna.Study, title: str = "population-based training: lineage") -> Figure:
    """One panel per searched hyperparameter: each trial's value over the epochs (a step line), and
    each copy as a dashed line from the source trial's value to the target's new value."""
    d = _data(data, lineage_data)
    keys = d["keys"] or ["-"]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False, constrained_layout=True)
    if not d["copies"]:
        return _note(fig, axes[0][0], "no member copied another (no population-based training step)")
    values = [s["value"] for s in d["schedules"].values() if s["value"] is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    cmap = plt.get_cmap("viridis")
    for ax, key in zip(axes[0], keys):
        def at(number: int, epoch: int) -> Any:
            return [v for e, v in d["schedules"][number]["points"] if e <= epoch][-1][key]

        for number, s in d["schedules"].items():
            shade = 0.5 if s["value"] is None or hi == lo else (s["value"] - lo) / (hi - lo)
            for (e, v), nxt in zip(s["points"], [*s["points"][1:], (s["epochs"], None)]):
                ax.plot([e, nxt[0]], [v[key], v[key]], color=cmap(shade), linewidth=1.4)  # one value, no jump
        for c in d["copies"]:
            if c["source"] in d["schedules"]:
                ax.plot([c["epoch"], c["epoch"]], [at(c["source"], c["epoch"] - 1), at(c["target"], c["epoch"])],
                        "--", color="grey", linewidth=0.8)
        if _is_log(d["dists"].get(key)):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} (colour: final objective, bright = high; dashed: a copy)")
    return fig


def study_figures(study: optuna.Study) -> dict[str, Figure]:
    """All study figures by name: history, parallel, importance, slices, best_curves, and lineage
    for population-based training."""
    figs = {"history": plot_history(study), "parallel": plot_parallel(study),
            "importance": plot_importance(study), "slices": plot_slices(study),
            "best_curves": plot_best_curves(study)}
    if study.user_attrs.get("sampler") == "pbt":
        figs["lineage"] = plot_lineage(study)
    return figs
