"""Analysis of a compare run: plain data from the stored runs (no drawing, no storage writes).

``diagnose_arms(base, arms)`` measures activations and gradients per arm (seed 0, after a short
training); ``analyze(design, runs)`` gives, per arm, summaries of every metric over seeds, the paired
comparison of each arm against the baseline (differences by seed, t-test or Wilcoxon, Holm
across arms, effect size, verdict with the seeds needed), the mean learning curves with
their spread, and for factorial designs the main effects and two-way interactions.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tunelab.analysis.stats import holm, paired_comparison, summarize, verdict

__all__ = ["METRICS", "BOUNDS", "display_interval", "collect_runs", "run_metrics", "analyze", "curve_bands",
           "diagnose_arms"]

# metric -> (label, higher is better, display scale, unit)
METRICS: dict[str, tuple[str, bool, float, str]] = {
    "test_accuracy": ("test accuracy", True, 100.0, "points"),
    "best_val_accuracy": ("best validation accuracy", True, 100.0, "points"),
    "epochs_to_target": ("epochs to reach the target validation accuracy", False, 1.0, "epochs"),
    "final_gap": ("final train - validation accuracy gap", False, 100.0, "points"),
    "seconds": ("training seconds", False, 1.0, "s"),
}

# metric -> (lowest, highest) value one run can have: accuracies are fractions, the gap a
# difference of two of them. Only these are clipped for display (see display_interval).
BOUNDS: dict[str, tuple[float, float]] = {
    "test_accuracy": (0.0, 1.0),
    "best_val_accuracy": (0.0, 1.0),
    "final_gap": (-1.0, 1.0),
}


def display_interval(metric: str, low: float, high: float) -> tuple[float, float]:
    """The confidence interval of an arm's mean, clipped for display to the metric's range.

    With few seeds the t interval of a bounded metric's mean can run past its bounds (an
    accuracy interval of -44.50 to 178.48 points with 2 seeds); values outside cannot occur,
    so the report shows the interval clipped to BOUNDS. Only for the display of an arm's
    mean: the stored Summary keeps the t interval, and paired differences are never clipped.
    Unbounded metrics and nan pass through unchanged.

    Example:
        >>> display_interval("test_accuracy", -0.445, 1.7848)
        (0.0, 1.0)
        >>> display_interval("seconds", -3.0, 5.0)
        (-3.0, 5.0)
    """
    if metric not in BOUNDS:
        return low, high
    lo, hi = BOUNDS[metric]
    clip = lambda v: v if math.isnan(v) else min(max(v, lo), hi)  # noqa: E731
    return clip(float(low)), clip(float(high))


def collect_runs(study) -> list[dict[str, Any]]:
    """One dict per finished (arm, seed) run of a compare study; diverged runs included."""
    runs = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if "arm" not in a or t.state.name not in ("COMPLETE", "FAIL") or a.get("requeued"):
            continue
        runs.append(dict(arm=a["arm"], arm_name=a["arm_name"], seed=a["seed"], status=(a.get("result") or {}).get(
            "status", "failed" if t.state.name == "FAIL" else "completed"), history=a.get("history", []),
            result=a.get("result") or {}, reason=a.get("fail_reason", "")))
    return sorted(runs, key=lambda r: (r["arm"], r["seed"]))


def diagnose_arms(base: dict, arms: Sequence[Any], *, epochs: int = 1,
                  on_progress: Optional[Callable[[int, int, dict[str, Any]], None]] = None) -> dict[str, dict]:
    """The compare's diagnostics pass: ``analysis.diagnostics.diagnose`` of every arm's config at
    seed 0 after ``epochs`` epochs, as JSON-ready dicts by arm name (``init``, ``trained``,
    ``warnings``), in arm order.

    It trains every arm once more, which takes a while: ``on_progress(done, total, info)`` is
    called after each arm, with ``info`` holding ``arm`` (its name), ``index`` (0-based),
    ``status`` and ``val_accuracy`` of the short training, and ``warnings`` (how many).

    Example:
        >>> from tunelab.analysis.designs import one_at_a_time
        >>> base = {"model": {"hidden": [8]}}
        >>> arms = one_at_a_time(base, [("model.activation", ["tanh"])])
        >>> seen = []
        >>> out = diagnose_arms(base, arms, on_progress=lambda done, total, info: seen.append((done, total)))
        >>> list(out) == [a.name for a in arms], seen
        (True, [(1, 2), (2, 2)])
    """
    import json

    from tunelab.analysis.designs import arm_config
    from tunelab.analysis.diagnostics import diagnose
    from tunelab.config import from_dict

    out = {}
    for i, arm in enumerate(arms):
        d = diagnose(from_dict(arm_config(base, arm, 0)), epochs=epochs)
        out[arm.name] = {"init": d["init"], "trained": d["trained"], "warnings": d["warnings"]}
        if on_progress is not None:
            on_progress(i + 1, len(arms), dict(arm=arm.name, index=i, status=d["context"]["status"],
                                               val_accuracy=d["context"]["val_accuracy"],
                                               warnings=len(d["warnings"])))
    # numpy and torch scalars become plain floats: the result is stored as a study attribute
    return json.loads(json.dumps(out, default=float))


def _nan(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def run_metrics(run: dict, target: float) -> dict[str, float]:
    """The compared metrics of one run (nan where a run diverged or never got there)."""
    h, r = run["history"], run["result"]
    reached = next((e["epoch"] for e in h if e["val_accuracy"] >= target), None)
    last = h[-1] if h else {}
    ok = run["status"] != "failed" and r.get("status") != "diverged"
    return {"test_accuracy": _nan(r.get("test_accuracy")) if ok else math.nan,
            "best_val_accuracy": _nan(r.get("best_val_accuracy")) if ok else math.nan,
            "epochs_to_target": float(reached) if reached is not None and ok else math.nan,
            "final_gap": (last["train_accuracy"] - last["val_accuracy"]) if ok and last else math.nan,
            "seconds": sum(e["seconds"] for e in h) if ok and h else math.nan}


def curve_bands(histories: list[list[dict]], metric: str) -> dict[str, list[float]]:
    """Mean and min/max over seeds per epoch (seeds that stopped early count while they ran)."""
    n = max((len(h) for h in histories), default=0)
    table = np.full((len(histories), n), np.nan)
    for i, h in enumerate(histories):
        table[i, :len(h)] = [e[metric] for e in h]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {"epoch": list(range(1, n + 1)), "mean": np.nanmean(table, 0).tolist(),
                    "low": np.nanmin(table, 0).tolist(), "high": np.nanmax(table, 0).tolist()}


def _paired(values: dict[int, dict[int, float]], arm: int, base: int) -> tuple[list[float], list[float]]:
    seeds = sorted(s for s in values[arm] if s in values[base]
                   and math.isfinite(values[arm][s]) and math.isfinite(values[base][s]))
    return [values[arm][s] for s in seeds], [values[base][s] for s in seeds]


def _compare_metric(arms: list[dict], values: dict[int, dict[int, float]], metric: str,
                    test: str, alpha: float) -> list[dict]:
    label, higher, scale, unit = METRICS[metric]
    base = next(i for i, a in enumerate(arms) if a["baseline"])
    rows, pvals = [], []
    for i, arm in enumerate(arms):
        if i == base:
            continue
        a, b = _paired(values, i, base)
        if len(a) < 2:
            rows.append(dict(arm=arm["name"], n=len(a), paired=None, verdict=None))
            continue
        p = paired_comparison(a, b, test=test, higher_is_better=higher)
        rows.append(dict(arm=arm["name"], n=len(a), paired=p))
        pvals.append(p.p_value)
    adjusted = iter(holm(pvals)) if pvals else iter(())
    for row in rows:  # the seeds needed count the comparisons Holm ran over and the test used
        if row["paired"] is not None:
            row["p_adjusted"] = next(adjusted)
            row["verdict"] = verdict(row["paired"], row["p_adjusted"], alpha=alpha,
                                     higher_is_better=higher, scale=scale, unit=unit,
                                     comparisons=len(pvals), test=test)
    return rows


def analyze(design: dict, runs: list[dict], *, target: Optional[float] = None, test: str = "t",
            alpha: float = 0.05) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    arms = [dict(name=a["name"], levels=a["levels"], baseline=a["baseline"]) for a in design["arms"]]
    base = next(i for i, a in enumerate(arms) if a["baseline"])
    if target is None:  # 99% of the baseline's mean best validation accuracy
        best = [r["result"].get("best_val_accuracy") for r in runs if r["arm"] == base]
        best = [b for b in best if isinstance(b, (int, float))]
        target = round(0.99 * float(np.mean(best)), 4) if best else 0.9
    per_run = {(r["arm"], r["seed"]): run_metrics(r, target) for r in runs}
    out: dict[str, Any] = dict(target=target, test=test, alpha=alpha, arms=arms, metrics={})
    for metric in METRICS:
        values = {i: {s: m[metric] for (a, s), m in per_run.items() if a == i} for i in range(len(arms))}
        summaries = [summarize([v for v in values[i].values() if math.isfinite(v)])
                     if any(math.isfinite(v) for v in values[i].values()) else None for i in range(len(arms))]
        out["metrics"][metric] = dict(summaries=summaries, comparisons=_compare_metric(arms, values, metric, test, alpha))
    for i, arm in enumerate(arms):
        mine = [r for r in runs if r["arm"] == i]
        arm["runs"], arm["failed"] = len(mine), sum(1 for r in mine if math.isnan(per_run[(i, r["seed"])]["test_accuracy"]))
        arm["curves"] = {m: curve_bands([r["history"] for r in mine], m)
                         for m in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")}
    if design.get("factorial"):
        out["effects"] = _effects(design, arms, per_run)
    return out


def _effects(design: dict, arms: list[dict], per_run: dict) -> dict[str, Any]:
    from tunelab.analysis.effects import interactions, main_effects

    factors = list(design["arms"][0]["levels"])
    cells = [dict(**{f: _key(arms[a]["levels"][f]) for f in factors}, value=m["test_accuracy"])
             for (a, s), m in per_run.items() if math.isfinite(m["test_accuracy"])]
    main = {f: dict(means={str(k): v for k, v in e.means.items()}, effect=e.effect)
            for f, e in main_effects(cells, factors).items()}
    pairs = {}
    for f1, f2 in combinations(factors, 2):
        i = interactions(cells, f1, f2)
        pairs[f"{f1} x {f2}"] = dict(means={f"{a} / {b}": v for (a, b), v in i.means.items()},
                                     strength=i.strength, contrast=i.contrast)
    return dict(main=main, interactions=pairs)


def _key(value: Any) -> Any:
    """Levels must be hashable (hidden-layer lists become strings)."""
    return str(value) if isinstance(value, (list, dict)) else value
