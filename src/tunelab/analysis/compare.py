"""Analysis of a compare run: plain data from the stored runs (no drawing, no storage writes).

``diagnose_arms(base, arms)`` measures activations and gradients per arm (seed 0, after a short
training); ``analyze(design, runs)`` gives, per arm, summaries of every metric over seeds, the paired
comparison of each arm against the baseline (differences by seed, t-test or Wilcoxon, Holm
across arms, effect size, verdict with the seeds needed), divergence as an outcome (Fisher's
exact test per arm), the target of epochs_to_target and its rule, the mean learning curves with
their spread, and for factorial designs the main effects (balanced around cells in which every
seed diverged) and two-way interactions. A run "learned" when its best validation accuracy
is more than a margin above chance (stats.learned); the gap of one that did not is not compared.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tunelab.analysis.designs import get_key
from tunelab.analysis.stats import fisher_divergence, holm, paired_comparison, summarize, verdict
from tunelab.errors import ConfigError

__all__ = ["METRICS", "BOUNDS", "display_interval", "collect_runs", "run_context", "run_status", "chance_level", "check_target",
           "run_metrics", "analyze", "curve_bands", "diagnose_arms", "NOT_FAIR_GAP", "NO_GAP_VERDICT"]

# metric -> (label, higher is better, display scale, unit)
METRICS: dict[str, tuple[str, bool, float, str]] = {
    "test_accuracy": ("test accuracy", True, 100.0, "points"),
    "best_val_accuracy": ("best validation accuracy", True, 100.0, "points"),
    "epochs_to_target": ("epochs to reach the target validation accuracy", False, 1.0, "epochs"),
    "final_gap": ("final train - validation accuracy gap (evaluation mode)", False, 100.0, "points"),
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
    """One dict per finished (arm, seed) run of a compare study; diverged runs included. A pair
    that ran more than once (its failed run was run again by a later command) gives its finished
    run, else its latest failure."""
    best: dict[tuple[int, int], Any] = {}
    for t in study.get_trials(deepcopy=False):  # in trial order: a later run replaces a failure
        a = t.user_attrs
        if "arm" not in a or t.state.name not in ("COMPLETE", "FAIL") or a.get("requeued"):
            continue
        pair = (a["arm"], a["seed"])
        if pair not in best or best[pair].state.name == "FAIL":
            best[pair] = t
    runs = []
    for t in best.values():
        a = t.user_attrs
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


NOT_FAIR_GAP = "running average with dropout on: not a fair gap"
NO_GAP_VERDICT = "did not learn (val accuracy ≈ chance): no gap verdict"


def run_status(run: dict) -> str:
    """``completed``, ``diverged`` (the result says so) or ``failed`` (the trial failed otherwise).

    Example:
        >>> run_status(dict(status="failed", result=dict(status="diverged")))
        'diverged'
        >>> run_status(dict(status="failed", result={})), run_status(dict(status="early_stopped", result={}))
        ('failed', 'completed')
    """
    result = (run.get("result") or {}).get("status")
    if "diverged" in (result, run.get("status")):
        return "diverged"
    return "failed" if "failed" in (result, run.get("status")) else "completed"


def chance_level(config: dict) -> Optional[float]:
    """1 / num_classes of a train config's dataset where the dataset catalog knows the number of
    classes (digits, mnist, ...; a config without a data section means the default dataset);
    None for the user's own data (csv, npz, images), whose classes only the data tells.

    Example:
        >>> chance_level({"data": {"name": "mnist"}}), chance_level({"data": {"name": "csv"}})
        (0.1, None)
    """
    from tunelab.data.catalog import INFO

    name = (config.get("data") or {}).get("name")
    if name is None:
        from tunelab.config import DataConfig

        name = DataConfig().name
    k = INFO.get(name, {}).get("num_classes")
    return 1.0 / k if isinstance(k, int) and k > 1 else None


def _arm_chance(design: dict, arm: int, runs: list[dict]) -> Optional[float]:
    """Chance of one arm: the num_classes its runs recorded, else its dataset's (chance_level)."""
    recorded = [r["result"].get("num_classes") for r in runs if r["arm"] == arm]
    recorded = [k for k in recorded if isinstance(k, int) and k > 1]
    if recorded:
        return 1.0 / max(recorded)
    overrides = design["arms"][arm].get("overrides", {})
    name = overrides.get("data.name", get_key(design.get("base") or {}, "data.name"))
    return chance_level({"data": {"name": name}} if name is not None else {})


def check_target(target: float, chance: Optional[float], key: str = "--target") -> float:
    """A target validation accuracy for epochs_to_target: in (0, 1] and above chance (reaching
    chance says nothing), else a one-line ConfigError naming ``key``.

    Example:
        >>> check_target(0.9, 0.1)
        0.9
        >>> check_target(0.1, 0.1)
        Traceback (most recent call last):
        ...
        tunelab.errors.ConfigError: --target=0.1 is at or below chance (0.1 with 10 classes); allowed: (0.1, 1]
    """
    if not 0 < target <= 1:
        raise ConfigError(f"{key}={target!r} is out of range; allowed: (0, 1]")
    if chance is not None and target <= chance:
        raise ConfigError(f"{key}={target!r} is at or below chance ({chance:.4g} with {round(1 / chance)} "
                          f"classes); allowed: ({chance:.4g}, 1]")
    return float(target)


def _best_val(run: dict) -> float:
    best = _nan(run["result"].get("best_val_accuracy"))
    if math.isfinite(best):
        return best
    values = [_nan(e.get("val_accuracy")) for e in run["history"]]
    return max((v for v in values if math.isfinite(v)), default=math.nan)


def run_metrics(run: dict, target: Optional[float], chance: Optional[float] = None) -> dict[str, float]:
    """The compared metrics of one run: nan where it diverged or failed, epochs_to_target nan
    where it never reached ``target`` (or there is none), final_gap nan where the run did not
    learn (stats.learned at ``chance``). The gap is stats.final_gap: evaluation-mode train
    accuracy where measured.

    Example:
        >>> h = [dict(epoch=1, train_accuracy=0.9, train_eval_accuracy=0.97, val_accuracy=0.95, seconds=2.0)]
        >>> run = dict(status="completed", history=h, result=dict(test_accuracy=0.94, best_val_accuracy=0.95))
        >>> m = run_metrics(run, 0.9, 0.1)
        >>> m["epochs_to_target"], round(m["final_gap"], 4), math.isnan(run_metrics(run, None)["epochs_to_target"])
        (1.0, 0.02, True)
    """
    from tunelab.analysis.stats import final_gap, learned

    h, r = run["history"], run["result"]
    ok = run_status(run) == "completed"
    reached = None if target is None else next((e["epoch"] for e in h if e["val_accuracy"] >= target), None)
    return {"test_accuracy": _nan(r.get("test_accuracy")) if ok else math.nan,
            "best_val_accuracy": _nan(r.get("best_val_accuracy")) if ok else math.nan,
            "epochs_to_target": float(reached) if reached is not None and ok else math.nan,
            "final_gap": final_gap(h) if ok and h and learned(_best_val(run), chance) else math.nan,
            "seconds": sum(e["seconds"] for e in h) if ok and h else math.nan}


def run_context(result: dict) -> dict[str, Any]:
    """What a run's seeded numbers are bit-identical under: threads, device and versions (empty
    strings for a run stored before they were recorded, or one that failed before it trained).

    Example:
        >>> run_context(dict(threads=1, device="cpu", versions=dict(tunelab="0.2.0", torch="2.13.0", python="3.11.7")))
        {'threads': 1, 'device': 'cpu', 'tunelab': '0.2.0', 'torch': '2.13.0', 'python': '3.11.7'}
    """
    versions = result.get("versions") if isinstance(result.get("versions"), dict) else {}
    return {"threads": result.get("threads", ""), "device": result.get("device", ""),
            **{k: versions.get(k, "") for k in ("tunelab", "torch", "python")}}


def curve_bands(histories: list[list[dict]], metric: str) -> dict[str, list[float]]:
    """Mean and min/max over seeds per epoch (seeds that stopped early count while they ran;
    a row without the metric counts as nan)."""
    n = max((len(h) for h in histories), default=0)
    table = np.full((len(histories), n), np.nan)
    for i, h in enumerate(histories):
        table[i, :len(h)] = [_nan(e.get(metric)) for e in h]
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


def _of(c: int, arm: dict) -> str:
    """'5 of 5 runs' when every run completed, else '3 of 3 completed runs'."""
    return f"{c} runs" if arm["completed"] == arm["runs"] else f"{c} completed runs"


def _why(metric: str, arm: dict, base: dict, pairs: int) -> str:
    """Why a comparison has no verdict (fewer than 2 pairs of finite values)."""
    if metric == "final_gap":
        if arm["completed"] and not arm["learned"]:
            return NO_GAP_VERDICT
        if base["completed"] and not base["learned"]:
            return f"the baseline {NO_GAP_VERDICT}"
    if metric == "epochs_to_target":
        if arm["completed"] and not arm["reached"]:
            return f"never reached in {arm['completed']} of {_of(arm['completed'], arm)}"
        if base["completed"] and not base["reached"]:
            return f"the baseline never reached the target in {base['completed']} of {_of(base['completed'], base)}"
    lost = [f"{who} diverged in {a['diverged']} of {a['runs']} runs"
            for who, a in (("the baseline", base), ("this arm", arm)) if a["diverged"]]
    left = f"{pairs} pair{'s' if pairs != 1 else ''} left, 2 needed"
    if lost:
        return f"no paired comparison: {' and '.join(lost)} ({left})"
    return f"not enough runs ({left})"


def _arm_note(metric: str, arm: dict, has_target: bool) -> str:
    """What a reader must know about one arm's values of a metric ('' when nothing)."""
    c = arm["completed"]
    if not c:
        return ""
    if metric == "epochs_to_target" and has_target:
        k = arm["reached"]
        return f"never reached in {c} of {_of(c, arm)}" if not k else \
            f"reached in {k} of {_of(c, arm)}" if k < c else ""
    if metric != "final_gap":
        return ""
    if not arm["learned"]:
        return NO_GAP_VERDICT
    notes = []
    if arm["learned"] < c:
        notes.append(f"{c - arm['learned']} of {_of(c, arm)} did not learn (val accuracy ≈ chance): left out of the gap")
    k = arm["gap_from_train_accuracy"]
    if k:
        notes.append(f"gap from train_accuracy in {k} of {_of(c, arm)}: {NOT_FAIR_GAP}")
    return "; ".join(notes)


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
            rows.append(dict(arm=arm["name"], n=len(a), paired=None, verdict=None,
                             note=_why(metric, arm, arms[base], len(a))))
            continue
        p = paired_comparison(a, b, test=test, higher_is_better=higher)
        rows.append(dict(arm=arm["name"], n=len(a), paired=p, note=""))
        pvals.append(p.p_value)
    adjusted = iter(holm(pvals)) if pvals else iter(())
    for row in rows:  # the seeds needed count the comparisons Holm ran over and the test used
        if row["paired"] is not None:
            row["p_adjusted"] = next(adjusted)
            row["verdict"] = verdict(row["paired"], row["p_adjusted"], alpha=alpha,
                                     higher_is_better=higher, scale=scale, unit=unit,
                                     comparisons=len(pvals), test=test)
    return rows


def _divergence(arms: list[dict], base: int, alpha: float) -> list[dict]:
    """Fisher exact test of diverged vs completed runs, each arm against the baseline, Holm across
    the arms whose table holds a divergence (a table without one has p=1 whatever happens:
    it is left out of the family). Failed runs are errors, not outcomes: not counted."""
    b, rows = arms[base], []
    for i, a in enumerate(arms):
        n, bn = a["completed"] + a["diverged"], b["completed"] + b["diverged"]
        if i == base or not (a["diverged"] or b["diverged"]) or not n or not bn:
            continue
        rows.append(dict(arm=a["name"], diverged=a["diverged"], runs=n, baseline_diverged=b["diverged"],
                         baseline_runs=bn, p_value=fisher_divergence(a["diverged"], n, b["diverged"], bn)))
    for row, p in zip(rows, holm([r["p_value"] for r in rows]) if rows else []):
        row["p_adjusted"] = p
        row["label"], row["text"] = _divergence_words(row, alpha, len(rows))
    return rows


def _divergence_words(r: dict, alpha: float, comparisons: int) -> tuple[str, str]:
    p = r["p_adjusted"]
    stat = ("p < 0.001" if p < 0.001 else f"p = {p:.3g}") + (f", Holm over {comparisons} arms" if comparisons > 1 else "")
    counts = f"{r['diverged']}/{r['runs']} vs {r['baseline_diverged']}/{r['baseline_runs']} diverged (Fisher exact {stat})"
    rate, base_rate = r["diverged"] / r["runs"], r["baseline_diverged"] / r["baseline_runs"]
    if not p < alpha:
        return "no detectable difference", f"{r['arm']}: no detectable difference in divergence: {counts}" + \
            _fisher_floor(r["runs"], r["baseline_runs"], alpha, comparisons)
    if rate < base_rate:
        what = ("trains where the baseline diverges" if rate == 0 and base_rate == 1
                else "diverges less often than the baseline")
        return "diverges less", f"{r['arm']} {what}: {counts}"
    what = "diverges where the baseline trains" if rate == 1 and base_rate == 0 else "diverges more often than the baseline"
    return "diverges more", f"{r['arm']} {what}: {counts}"


def _fisher_floor(n: int, base_n: int, alpha: float, comparisons: int) -> str:
    """'' when these run counts could give a significant Fisher test, else what would."""
    smallest = min(1.0, fisher_divergence(n, n, 0, base_n) * comparisons)  # all vs none diverged
    if smallest < alpha:
        return ""
    k = 2
    while min(1.0, fisher_divergence(k, k, 0, k) * comparisons) >= alpha:
        k += 1
    holm_ = f" after Holm over {comparisons} arms" if comparisons > 1 else ""
    return (f"; {n} against {base_n} runs cannot reach p<{alpha:g}{holm_} (smallest possible p = {smallest:.3g}): "
            f"use at least {k} seeds")


def _target(runs: list[dict], base: dict, index: int, given: Optional[float]) -> tuple[Optional[float], str, str]:
    """(target, rule, note): the given target, or 99% of the baseline's mean best validation
    accuracy; none (with the reason as note) when the baseline has no completed run or did not learn."""
    from tunelab.analysis.stats import learned

    if given is not None:
        return check_target(given, base["chance"]), "given with --target", ""
    best = [_best_val(r) for r in runs if r["arm"] == index and run_status(r) == "completed"]
    best = [b for b in best if math.isfinite(b)]
    if not best:
        return None, "", f"the baseline has no completed run ({_lost(base)}): no automatic target; give --target"
    mean = float(np.mean(best))
    if not learned(mean, base["chance"]):
        return None, "", (f"the baseline does not learn (best val accuracy {mean:.2f}, chance {base['chance']:.2f}): "
                          "no automatic target; give --target")
    return round(0.99 * mean, 4), f"99% of the baseline's mean best validation accuracy, {mean:.4f}", ""


def analyze(design: dict, runs: list[dict], *, target: Optional[float] = None, test: str = "t",
            alpha: float = 0.05) -> dict[str, Any]:
    """Everything the report shows, as plain data.

    ``arms``: per arm its runs, completed / diverged / failed counts (run_status), chance
    (1 / num_classes, None when unknown), how many completed runs learned (stats.learned),
    reached the target and took their gap from train_accuracy, and the mean learning curves
    (train_eval_* where measured). ``metrics``: per metric the summaries, the comparisons (a
    ``note`` says why one has no verdict: divergence, did not learn, never reached) and per
    arm ``notes``; epochs_to_target has ``skipped`` when there is no target. ``divergence``:
    the Fisher exact test per arm (see _divergence). ``missing``: the [arm, seed] runs of the design
    with no result (failed, or never run), which the comparisons leave out. ``target`` (None when refused), its
    ``target_rule`` or ``target_note``. ``effects`` for factorial designs (see _effects).

    Example:
        >>> from dataclasses import asdict
        >>> from tunelab.analysis.designs import one_at_a_time
        >>> arms = one_at_a_time({"model": {"norm": "none"}}, [("model.norm", ["none", "batch"])])
        >>> h = [dict(epoch=1, train_accuracy=0.9, val_accuracy=0.9, seconds=1.0)]
        >>> runs = [dict(arm=a, seed=s, status="completed", history=h, result=dict(
        ...     status="diverged" if a == 0 else "completed", test_accuracy=0.9, best_val_accuracy=0.9))
        ...     for a in (0, 1) for s in range(5)]
        >>> out = analyze(dict(arms=[asdict(a) for a in arms], seeds=list(range(5)), base={}), runs)
        >>> out["divergence"][0]["text"]
        'model.norm=batch trains where the baseline diverges: 0/5 vs 5/5 diverged (Fisher exact p = 0.00794)'
    """
    from tunelab.analysis.stats import gap_source, learned

    arms = [dict(name=a["name"], levels=a["levels"], baseline=a["baseline"]) for a in design["arms"]]
    base = next(i for i, a in enumerate(arms) if a["baseline"])
    for i, arm in enumerate(arms):
        status = [run_status(r) for r in runs if r["arm"] == i]
        arm.update(runs=len(status), completed=status.count("completed"), diverged=status.count("diverged"),
                   failed=status.count("failed"), chance=_arm_chance(design, i, runs))
    target, rule, note = _target(runs, arms[base], base, target)
    per_run = {(r["arm"], r["seed"]): run_metrics(r, target, arms[r["arm"]]["chance"]) for r in runs}
    for i, arm in enumerate(arms):
        done = [r for r in runs if r["arm"] == i and run_status(r) == "completed"]
        arm["learned"] = sum(learned(_best_val(r), arm["chance"]) for r in done)
        arm["reached"] = None if target is None else \
            sum(math.isfinite(per_run[(i, r["seed"])]["epochs_to_target"]) for r in done)
        arm["gap_from_train_accuracy"] = sum(1 for r in done if r["history"] and learned(_best_val(r), arm["chance"])
                                             and gap_source(r["history"]) == "train_accuracy")
    finished = {(r["arm"], r["seed"]) for r in runs if run_status(r) in ("completed", "diverged")}
    missing = [[i, s] for i in range(len(arms)) for s in design["seeds"] if (i, s) not in finished]
    out: dict[str, Any] = dict(target=target, target_rule=rule, target_note=note, test=test, alpha=alpha,
                               arms=arms, metrics={}, missing=missing)
    for metric in METRICS:
        values = {i: {s: m[metric] for (a, s), m in per_run.items() if a == i} for i in range(len(arms))}
        summaries = [summarize([v for v in values[i].values() if math.isfinite(v)])
                     if any(math.isfinite(v) for v in values[i].values()) else None for i in range(len(arms))]
        entry = dict(summaries=summaries, comparisons=_compare_metric(arms, values, metric, test, alpha),
                     notes=[_arm_note(metric, a, target is not None) for a in arms])
        if metric == "epochs_to_target" and target is None:
            entry.update(comparisons=[], skipped=note)
        out["metrics"][metric] = entry
    out["divergence"] = _divergence(arms, base, alpha)
    for i, arm in enumerate(arms):
        mine = [r["history"] for r in runs if r["arm"] == i]
        keys = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]
        keys += [k for k in ("train_eval_loss", "train_eval_accuracy")  # measured in evaluation mode
                 if any(math.isfinite(_nan(e.get(k))) for h in mine for e in h)]
        arm["curves"] = {m: curve_bands(mine, m) for m in keys}
    if design.get("factorial"):
        out["effects"] = _effects(design, arms, per_run)
    return out


def _cell_label(levels: dict, factors: Sequence[str]) -> str:
    return ", ".join(f"{f}={_key(levels[f])}" for f in factors)


def _lost(arm: dict) -> str:
    parts = [f"{arm[k]}/{arm['runs']} {k}" for k in ("diverged", "failed") if arm[k]]
    return ", ".join(parts) or ("no runs" if not arm["runs"] else "no finite test accuracy")


def _effects(design: dict, arms: list[dict], per_run: dict) -> dict[str, Any]:
    """Main effects and two-way interactions of test accuracy. A cell without a finite value
    (every seed diverged) is named in ``empty_cells``; each main effect is balanced (see
    effects.main_effects) and its ``note`` names the cells left out to keep it so."""
    from tunelab.analysis.effects import interactions, main_effects

    factors = list(design["arms"][0]["levels"])
    cells = [dict(**{f: _key(arms[a]["levels"][f]) for f in factors}, value=m["test_accuracy"])
             for (a, s), m in per_run.items() if math.isfinite(m["test_accuracy"])]
    filled = {tuple(c[f] for f in factors) for c in cells}
    empty = [f"cell {_cell_label(a['levels'], factors)}: {_lost(a)}" for a in arms
             if tuple(_key(a["levels"][f]) for f in factors) not in filled]
    if not cells:
        return dict(main={}, interactions={}, empty_cells=empty)
    main = {}
    for i, (f, e) in enumerate(main_effects(cells, factors).items()):
        levels = list(dict.fromkeys(_key(a["levels"][f]) for a in arms))
        absent = [str(lvl) for lvl in levels if all(c[i] != lvl for c in filled)]
        left = [_cell_label(dict(zip(factors, c)), factors) for c in e.left_out]
        note = []
        if not e.means:
            note.append("no balanced comparison: no level combination of the other factors has a value at every level")
        elif left:
            note.append(f"left out to keep it balanced: {'; '.join(left)}")
        if absent:
            note.append(f"no value at {f}={', '.join(absent)}")
        main[f] = dict(means={str(k): v for k, v in e.means.items()}, effect=e.effect, left_out=left,
                       note="; ".join(note))
    pairs = {}
    for f1, f2 in combinations(factors, 2):
        i = interactions(cells, f1, f2)
        pairs[f"{f1} x {f2}"] = dict(means={f"{a} / {b}": v for (a, b), v in i.means.items()},
                                     strength=i.strength, contrast=i.contrast)
    return dict(main=main, interactions=pairs, empty_cells=empty)


def _key(value: Any) -> Any:
    """Levels must be hashable (hidden-layer lists become strings)."""
    return str(value) if isinstance(value, (list, dict)) else value
