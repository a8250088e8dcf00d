"""Report sections from plain analysis data (compare) or a stored study (tune).

Statistics come from tunelab.analysis; this module only arranges numbers into tables and
hands precomputed series to the figure functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from tunelab.report.compare_figs import (  # noqa: E402
    plot_learning_curves,
    plot_metric_intervals,
    plot_paired_differences,
)
from tunelab.report.html import Section, format_p  # noqa: E402

__all__ = ["compare_sections", "study_sections", "staged_sections", "plot_arm_histograms", "train_command", "FEW_TRIALS"]

# Below this many completed trials, importance and parallel coordinates describe a handful of
# points, not the search space: the report says so beside them.
FEW_TRIALS = 5


def _f(v: Optional[float], scale: float = 1.0, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v * scale:.{digits}f}"


_CI_NOTE = ("Note: the 95% CIs of the differences are unadjusted (per comparison); the verdicts use "
            "Holm-adjusted p-values across arms, so a CI can exclude zero while the verdict is "
            "\"no detectable difference\".")
_CLIP_NOTE = "The 95% CIs of the arm means are clipped to the metric's range for display."


def _runs_cell(arm: dict) -> str:
    """'5/5', or '0/5 (5 diverged)': completed of all runs, then what became of the rest."""
    lost = ", ".join(f"{arm[k]} {k}" for k in ("diverged", "failed") if arm.get(k))
    return f"{arm['completed']}/{arm['runs']}" + (f" ({lost})" if lost else "")


def _verdict_rows(analysis: dict, metric: str) -> list[dict[str, Any]]:
    """Table rows per arm. The 95% CI of an arm's mean is clipped for display to the metric's
    range (accuracies to 0-100 points; see analysis.compare.display_interval); the CI of the
    difference against the baseline is per comparison: unadjusted, not clipped. Where a
    comparison has no verdict the verdict column says why (divergence, did not learn, never
    reached, not enough runs); a ``note`` column carries the arms' notes when there are any."""
    from tunelab.analysis.compare import METRICS, display_interval

    label, higher, scale, unit = METRICS[metric]
    m = analysis["metrics"][metric]
    comps = {c["arm"]: c for c in m["comparisons"]}
    notes = m.get("notes") or [""] * len(analysis["arms"])
    rows = []
    for arm, s, note in zip(analysis["arms"], m["summaries"], notes):
        c = comps.get(arm["name"], {})
        p, v = c.get("paired"), c.get("verdict")
        low, high = display_interval(metric, s.ci_low, s.ci_high) if s else (None, None)
        why = "not computed" if m.get("skipped") else c.get("note") or "not enough runs"
        rows.append({
            "arm": arm["name"], "completed runs": _runs_cell(arm),
            f"mean ({unit})": _f(s.mean if s else None, scale), "sd": _f(s.sd if s else None, scale),
            "95% CI": f"{_f(low, scale)} to {_f(high, scale)}" if s else "-",
            "diff vs baseline (95% CI, unadjusted)": (f"{_f(p.mean_diff, scale, 2)} ({_f(p.ci_low, scale)} to {_f(p.ci_high, scale)})"
                                          if p else ("baseline" if arm["baseline"] else "-")),
            "p (Holm)": format_p(c.get("p_adjusted")) if p else "-",
            "d_z": _f(p.effect_size if p else None),
            "verdict": v.label if v else ("baseline" if arm["baseline"] else why),
            "_class": (v.label.split()[0] if v else ("baseline" if arm["baseline"] else "")),
        })
        if any(notes):
            rows[-1]["note"] = note or ""
    return rows


def _interval_rows(analysis: dict, metric: str) -> list[dict[str, Any]]:
    """Points and intervals per arm; intervals clipped for display as in _verdict_rows."""
    from tunelab.analysis.compare import METRICS, display_interval

    _, _, scale, _ = METRICS[metric]
    m = analysis["metrics"][metric]
    comps = {c["arm"]: c for c in m["comparisons"]}
    rows = []
    for arm, s in zip(analysis["arms"], m["summaries"]):
        if s is None:
            continue
        v = comps.get(arm["name"], {}).get("verdict")
        low, high = display_interval(metric, s.ci_low, s.ci_high)
        rows.append(dict(arm=arm["name"], mean=s.mean * scale, ci_low=low * scale, ci_high=high * scale,
                         verdict=v.label if v else "", baseline=arm["baseline"]))
    return rows


def _diff_rows(analysis: dict, metric: str) -> list[dict[str, Any]]:
    from tunelab.analysis.compare import METRICS

    _, _, scale, _ = METRICS[metric]
    return [dict(arm=c["arm"], diff=c["paired"].mean_diff * scale, ci_low=c["paired"].ci_low * scale,
                 ci_high=c["paired"].ci_high * scale, verdict=c["verdict"].label)
            for c in analysis["metrics"][metric]["comparisons"] if c.get("paired") is not None]


def _curve_groups(design: dict, analysis: dict) -> list[tuple[str, list[int]]]:
    """Arms to overlay per factor: the baseline plus the arms that change that factor."""
    arms = design["arms"]
    base = next(i for i, a in enumerate(arms) if a["baseline"])
    if design.get("factorial"):
        return [("all arms", list(range(len(arms))))] if len(arms) <= 8 else []
    keys = list(dict.fromkeys(k for a in arms for k in a["overrides"]))
    return [(k, [base] + [i for i, a in enumerate(arms) if k in a["overrides"]]) for k in keys]


def plot_arm_histograms(per_arm: dict[str, Sequence[dict]]) -> Any:
    """Activation histograms after training: a row per arm, a column per hidden layer."""
    names = list(per_arm)
    hidden = {n: [l for l in per_arm[n] if l.get("kind", "hidden") != "output"] for n in names}
    cols = max((len(v) for v in hidden.values()), default=0)
    fig, axes = plt.subplots(max(len(names), 1), max(cols, 1), figsize=(4.0 * max(cols, 1), 1.9 * max(len(names), 1)),
                             squeeze=False, constrained_layout=True)
    for r, name in enumerate(names):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(hidden[name]):
                ax.set_axis_off()
                continue
            layer = hidden[name][c]
            ax.stairs(layer["histogram"]["counts"], layer["histogram"]["edges"], fill=True, alpha=0.8)
            extra = [f"{k.split('_')[0]} {layer[k]:.0%}" for k in ("saturated_fraction", "dead_fraction")
                     if layer.get(k) is not None]
            if layer.get("std") is not None:  # each panel spans its own range: the title gives the scale
                extra.append(f"std {layer['std']:.2g}")
            ax.set_title(f"{name}: layer {c + 1} ({layer['activation']}) {' '.join(extra)}", fontsize=8)
            ax.tick_params(labelsize=7)
    return fig


def _words(analysis: dict, metric: str) -> list[str]:
    """Divergence verdicts, then each arm's verdict on ``metric`` or why it has none, with the
    arm's note (never reached, fallback gap, ...)."""
    from tunelab.analysis.compare import METRICS

    m = analysis["metrics"][metric]
    notes = dict(zip((a["name"] for a in analysis["arms"]), m.get("notes") or []))
    texts = [d["text"] for d in analysis.get("divergence", [])]
    if m.get("skipped"):
        return texts + [f"{METRICS[metric][0]}: not computed: {m['skipped']}."]
    for c in m["comparisons"]:
        text = c["verdict"].text if c.get("verdict") else c.get("note") or "not enough runs"
        extra = notes.get(c["arm"])
        texts.append(f"{c['arm']}: {text}" + (f" ({extra})" if extra and extra != text else ""))
    base = next((a for a in analysis["arms"] if a["baseline"]), None)
    if base is not None and notes.get(base["name"]):
        who = base["name"] if base["name"] == "baseline" else f"{base['name']} (baseline)"
        texts.append(f"{who}: {notes[base['name']]}")
    return texts


def _target_text(analysis: dict) -> str:
    """The target of epochs_to_target and its rule, or why there is none."""
    if analysis.get("target") is None:
        return f"No target validation accuracy: {analysis.get('target_note') or 'none given'}."
    rule = analysis.get("target_rule") or "given with --target"
    return f"Target validation accuracy {analysis['target']:.4f}: {rule}."


def _gap_text(analysis: dict) -> str:
    """How the gap was measured, and the arms whose runs lacked the evaluation-mode numbers."""
    from tunelab.analysis.compare import NOT_FAIR_GAP

    fallback = [f"{a['name']} ({a['gap_from_train_accuracy']} of {a['learned']} runs)"
                for a in analysis["arms"] if a.get("gap_from_train_accuracy")]
    text = ("The gap is train minus validation accuracy at the last epoch, the train accuracy measured in "
            "evaluation mode (dropout off, batch norm in inference mode). Runs that did not learn "
            "(best validation accuracy within a margin of chance) get no gap and no gap verdict.")
    if fallback:
        text += (f" No evaluation-mode train accuracy was recorded for {', '.join(fallback)} (an older study, or "
                 f"training.train_eval_size=0): their gap uses train_accuracy, a {NOT_FAIR_GAP}.")
    return text


def _curve_pairs(bands: dict[str, dict]) -> tuple[tuple[tuple[str, str], ...], str]:
    """Train curves in evaluation mode when any arm of the panel has them (an arm without them,
    e.g. one whose every seed diverged, then draws validation only), else the running averages."""
    eval_mode = [a for a, b in bands.items() if "train_eval_loss" in b or "train_eval_accuracy" in b]
    if eval_mode:
        missing = [a for a in bands if a not in eval_mode]
        return (("train_eval_loss", "val_loss"), ("train_eval_accuracy", "val_accuracy")), \
            "train (evaluation mode, solid" + (f"; not recorded for {', '.join(missing)}" if missing else "") + ")"
    return (("train_loss", "val_loss"), ("train_accuracy", "val_accuracy")), \
        "train (running average over the epoch with dropout on, solid)"


def compare_sections(design: dict, analysis: dict, *, metric: str = "test_accuracy",
                     diagnostics: Optional[dict[str, dict]] = None, command: str = "") -> list[Section]:
    from tunelab.analysis.compare import BOUNDS, METRICS

    label = METRICS[metric][0]
    arms, seeds = design["arms"], design["seeds"]
    varied = list(dict.fromkeys(k for a in arms for k in a["levels"]))
    sections = [Section("Question", "text",
                        f"Which of these changes help {label}, by how much, and can {len(seeds)} seeds tell? "
                        f"Varied: {', '.join(varied)}. Design: {'full factorial' if design.get('factorial') else 'one at a time around the base config'}; "
                        f"{len(arms)} arms x {len(seeds)} seeds (paired: seed s of every arm shares the data order and, "
                        f"where shapes allow, the initial weights). Test: {'paired t-test' if analysis['test'] == 't' else 'Wilcoxon signed-rank'}, "
                        f"Holm-corrected across arms at alpha={analysis['alpha']}; divergence: Fisher's exact test "
                        f"per arm, Holm-corrected across the arms with a divergence.")]
    if analysis["metrics"][metric].get("skipped"):
        sections.append(Section(f"Verdicts on {label}", "text", f"Not computed: {analysis['metrics'][metric]['skipped']}."))
    else:
        sections.append(Section(f"Verdicts on {label}", "table", _verdict_rows(analysis, metric)))
    texts = _words(analysis, metric)
    if any(c.get("verdict") for c in analysis["metrics"][metric]["comparisons"]):
        texts.append(_CI_NOTE + (" " + _CLIP_NOTE if metric in BOUNDS else ""))
    if metric == "epochs_to_target" and not analysis["metrics"][metric].get("skipped"):
        texts.append(_target_text(analysis))
    if metric == "final_gap":
        texts.append(_gap_text(analysis))
    sections.append(Section("In words", "text", "\n\n".join(texts) or "Not enough runs to compare."))
    clipped = " (clipped to the metric's range for display)" if metric in BOUNDS else ""
    intervals = _interval_rows(analysis, metric)
    if intervals:
        sections.append(Section(f"{label} per arm", "figure", plot_metric_intervals(intervals, label),
                                caption=f"Mean {label} with its 95% confidence interval per arm{clipped}."))
    diffs = _diff_rows(analysis, metric)
    if diffs:
        sections.append(Section("Paired differences", "figure", plot_paired_differences(diffs, f"{label}: arm - baseline"),
                                caption="Mean paired difference against the baseline with its 95% CI "
                                        "(unadjusted: per comparison, not Holm-corrected)."))
    for factor, idx in _curve_groups(design, analysis):
        bands = {analysis["arms"][i]["name"]: analysis["arms"][i]["curves"] for i in idx}
        pairs, train = _curve_pairs(bands)
        sections.append(Section(f"Learning curves: {factor}", "figure",
                                plot_learning_curves(bands, metric_pairs=pairs, title=factor),
                                caption=f"Mean over seeds (lines) with the min-max band; {train}, validation dashed."))
    for other in METRICS:
        if other == metric:
            continue
        if other == "epochs_to_target":
            sections.append(Section("Target", "text", _target_text(analysis)))
        if analysis["metrics"][other].get("skipped"):
            sections.append(Section(f"{METRICS[other][0]}", "text", f"Not computed: {analysis['metrics'][other]['skipped']}."))
            continue
        sections.append(Section(f"{METRICS[other][0]}", "table", _verdict_rows(analysis, other)))
        if other == "final_gap":
            sections.append(Section("About the gap", "text", _gap_text(analysis)))
    if "effects" in analysis:
        sections += _effect_sections(analysis["effects"])
    if diagnostics:
        trained = {name: d["trained"] for name, d in diagnostics.items()}
        sections.append(Section("Inside the network", "figure", plot_arm_histograms(trained),
                                caption="Activation histograms after one epoch of training (seed 0): a row per arm, a column per hidden layer."))
        warn = [f"{name}: {w}" for name, d in diagnostics.items() for w in d.get("warnings", [])]
        sections.append(Section("Diagnostics", "text", "\n\n".join(warn) or "No saturation, dead units or vanishing gradients flagged."))
    counts = {a["name"]: a for a in analysis["arms"]}
    sections.append(Section("Arms", "table", [dict(arm=a["name"], overrides=json.dumps(a["overrides"]),
                                                   **{k: counts.get(a["name"], {}).get(k, "-")
                                                      for k in ("completed", "diverged", "failed")})
                                              for a in arms]))
    sections.append(Section("Base config", "code", yaml.safe_dump(design["base"], sort_keys=False)))
    sections.append(Section("Reproduce", "code", command or "(command not recorded)"))
    return sections


def _effect_sections(effects: dict) -> list[Section]:
    main = [dict(factor=f, effect=_f(e["effect"], 100),
                 **{f"mean at {lvl}": _f(v, 100) for lvl, v in e["means"].items()},
                 **({"left out": e.get("note") or "-"} if any(x.get("note") for x in effects["main"].values()) else {}))
            for f, e in effects["main"].items()]
    inter = [dict(pair=k, strength=_f(v["strength"], 100), contrast=_f(v["contrast"], 100),
                  cells=", ".join(f"{c}: {_f(m, 100)}" for c, m in v["means"].items()))
             for k, v in effects["interactions"].items()]
    out = []
    if effects.get("empty_cells"):
        out.append(Section("Cells without a value", "text",
                           "\n\n".join(effects["empty_cells"]) + "\n\nEach main effect compares its levels only where the "
                           "other factors' levels hold a value at every one of them (balanced); the cells left out "
                           "are named beside it."))
    if main:
        out.append(Section("Main effects (test accuracy, points; effect = max - min of the level means, balanced)",
                           "table", main))
    if inter:
        out.append(Section("Two-way interactions (points; strength = residual sd after the additive fit)", "table", inter))
    return out


def _yaml_value(value: Any) -> str:
    """A config value as ``--set`` reads it back (YAML): plain words bare, the rest as JSON."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, separators=(",", ":"))


def train_command(config: dict) -> str:
    """The ``tunelab train`` command that trains ``config``: a ``--set`` for every key that
    differs from the defaults.

    Example:
        >>> from tunelab.config import from_dict, to_dict
        >>> train_command(to_dict(from_dict({"model": {"hidden": [64], "activation": "tanh"}})))
        "tunelab train --set 'model.hidden=[64]' --set model.activation=tanh"
    """
    from tunelab.analysis.run_report import flatten
    from tunelab.config import from_dict, to_dict

    defaults = flatten(to_dict(from_dict({})))
    parts = ["tunelab", "train"]
    for key, value in flatten(config).items():
        if key not in defaults or defaults[key] != value:
            parts += ["--set", f"{key}={_yaml_value(value)}"]
    return " ".join(shlex.quote(p) for p in parts)


def _range_text(spec: Any) -> str:
    """A stored coarse-to-fine range: '1e-05 .. 0.1 (log)', '[64] | [128]'."""
    if not isinstance(spec, dict):
        return json.dumps(spec)
    kind = next((k for k in spec if k != "points"), None)
    args = spec.get(kind)
    if kind == "choice":
        return " | ".join(json.dumps(v) for v in args)
    if isinstance(args, (list, tuple)) and len(args) == 2:
        scale = {"log_uniform": " (log)", "log_int": " (log)", "one_minus_log": " (1-b log)"}.get(kind, "")
        return f"{args[0]:.4g} .. {args[1]:.4g}{scale}"
    return json.dumps(spec)


def _rounds_section(study) -> Optional[Section]:
    """Coarse-to-fine: the ranges each round sampled from, as stored in the study."""
    from tunelab.search.coarse_to_fine import stored_rounds

    rounds = stored_rounds(study)
    if not rounds:
        return None
    size = study.user_attrs.get("c2f_round_size")
    keys = sorted({k for r in rounds for k in r})
    rows = []
    for i, ranges in enumerate(rounds):
        row: dict[str, Any] = {"round": i}
        if isinstance(size, int):
            row["trials"] = f"#{i * size} to #{(i + 1) * size - 1}"
        rows.append({**row, **{k: _range_text(ranges[k]) if k in ranges else "-" for k in keys}})
    return Section("Coarse-to-fine rounds", "table", rows)


def _few_trials_note(completed: int) -> str:
    if completed >= FEW_TRIALS:
        return ""
    return (f"Only {completed} completed trial{'s' if completed != 1 else ''}: parameter importance, parallel "
            f"coordinates and slices rest on fewer than {FEW_TRIALS} points and say little about the search "
            "space (pruned and failed trials are not in them). Run more trials, or prune less, before reading them.")


def _is_train_config(config: dict) -> bool:
    from tunelab.config import from_dict
    from tunelab.errors import ConfigError

    try:
        from_dict(config)
    except ConfigError:
        return False
    return True


def _reproduce(name: str, command: str, config: Optional[dict]) -> str:
    lines = []
    if command:
        lines += ["# the search (rerunning it continues the study up to its --trials)", command]
    if config and _is_train_config(config):  # a custom objective's config is not tunelab train's
        lines += ["# the best trial alone, trained and tested", train_command(config)]
    if not lines:  # neither recorded: say so rather than print a command that does not run
        lines = [f"(not recorded: study {name!r} stores no command and no completed trial config)"]
    return "\n".join(lines)


_FEW_TRIAL_FIGURES = ("parallel", "importance", "slices")  # figures that compare trials with each other


def study_sections(study, command: str = "") -> list[Section]:
    """A tune study: leaderboard, counts, coarse-to-fine rounds, Optuna-style figures (with a
    note when they rest on fewer than FEW_TRIALS completed trials), the best config and the
    commands that reproduce the search and its best trial. ``command`` overrides the command
    stored in the study's user attribute ``command``."""
    from tunelab.report.study_figs import study_figures
    from tunelab.search.results import counts, leaderboard

    c = counts(study)
    completed = c.get("complete", 0)
    rows = [dict(trial=r["number"], value=r["value"], epochs=r["epochs"], seconds=r["seconds"],
                 **{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r["params"].items()})
            for r in leaderboard(study, 15)]
    few = _few_trials_note(completed)
    sections = [Section("Study", "text", f"{study.study_name}: {' '.join(f'{k} {v}' for k, v in c.items() if v)}. "
                        f"Objective: {study.user_attrs.get('objective', 'value')} ({study.direction.name.lower()}); "
                        f"sampler {study.user_attrs.get('sampler', '?')}, pruner {study.user_attrs.get('pruner', '?')}."
                        + (f"\n\n{few}" if few else "")),
                Section("Best trials", "table", rows)]
    rounds = _rounds_section(study)
    if rounds is not None:
        sections.append(rounds)
    for name, fig in study_figures(study).items():
        caption = few if name in _FEW_TRIAL_FIGURES else ""
        sections.append(Section(name.replace("_", " "), "figure", fig, caption=caption))
    best = leaderboard(study, 1)
    cfg = None
    if best:
        cfg = study.trials[best[0]["number"]].user_attrs.get("config")
        sections.append(Section("Best config", "code", yaml.safe_dump(cfg, sort_keys=False) if cfg else "-"))
    stored = study.user_attrs.get("command")
    sections.append(Section("Reproduce", "code", _reproduce(study.study_name, command or stored or "", cfg)))
    return sections


def _json_items(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "-"


def staged_sections(name: str, studies: Sequence) -> list[Section]:
    """A ``--stages`` tune as a whole: a summary row per stage (keys tuned, trials, best value,
    its best values and the values fixed from earlier stages), then each stage's
    ``study_sections`` with titles prefixed by the stage."""
    from tunelab.search.results import stage_summaries

    rows = [{"stage": r["index"], "study": r["study"], "keys tuned": ", ".join(r["keys"]) or "-",
             "trials": f"{r['complete']} completed of {r['trials']}", "best value": r["best"],
             "best values (carried forward)": _json_items(r["best_params"]),
             "fixed from earlier stages": _json_items(r["fixed"])} for r in stage_summaries(studies)]
    sections = [Section("Stages", "text", f"Study {name} was tuned in {len(rows)} stages; each stage searched "
                        "its keys with the best values of the earlier stages fixed."),
                Section("Stage summary", "table", rows)]
    for row, st in zip(rows, studies):
        for sec in study_sections(st):
            sections.append(dataclasses.replace(sec, title=f"Stage {row['stage']}: {sec.title}"))
    return sections
