"""The report of one run folder: its curves with interventions, parent and forks, a table of
interventions, its lineage, result, config and the diagnostics of its saved weights.

The data come from ``tunelab.analysis.run_report.read_run``; this module only arranges them
into sections and hands them to the figure functions.

Example:
    >>> write_run_report("no-such-run")
    Traceback (most recent call last):
    tunelab.errors.ConfigError: run folder 'no-such-run' does not exist
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tunelab.analysis.run_report import RunData, flatten, read_run
from tunelab.report.assemble import plot_arm_histograms
from tunelab.report.figures import Line, plot_curves
from tunelab.report.html import Section, build_report, format_value, write_report

__all__ = ["run_sections", "write_run_report"]

_CURVES_CAPTION = ("Train (solid) and validation (dashed) per epoch. Red lines: interventions, at "
                   "their step within the epoch. Dotted: the validation curves of the parent and "
                   "the forks; grey dash-dot lines: the epochs they branched at.")


def _text(value: Any) -> Any:
    """Lists and dicts as compact JSON in a cell; numbers stay numbers (right-aligned)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _event_row(e: dict) -> dict[str, Any]:
    details = []
    if e.get("kind") == "resume":
        command, source = "resume", ""
        details.append(f"from checkpoint {e.get('checkpoint', '?')}")
        if e.get("changes"):
            details.append("changes: " + " ".join(e["changes"]))
    else:
        command, source = e.get("command", e.get("kind", "?")), e.get("source", "")
    if e.get("checkpoint") and e.get("kind") != "resume":
        details.append(f"checkpoint {e['checkpoint']}")
    if e.get("fork"):
        details.append(f"fork {Path(e['fork']).name}")
    if e.get("inherited"):
        details.append(f"inherited from {e['inherited']}")
    return dict(epoch=e.get("epoch"), step=e.get("step"), command=command, lr=e.get("lr"),
                source=source, details="; ".join(details))


def _lineage_rows(run: RunData) -> list[dict[str, Any]]:
    best = (run.result or {}).get("best_val_accuracy", run.status.get("best_val_accuracy"))
    rows = []
    if run.parent is not None:
        p = run.parent
        rows.append({"relation": "parent", "run": p.name + ("" if p.path else " (folder not found)"),
                     "status": p.status, "best val accuracy": p.best_val_accuracy,
                     "branched after epoch": "", "step": "", "changes": ""})
    rows.append({"relation": "this run", "run": run.name, "status": run.status.get("status", ""),
                 "best val accuracy": best,
                 "branched after epoch": run.parent.epoch if run.parent else "",
                 "step": run.parent.step if run.parent else "",
                 "changes": " ".join(run.parent.overrides) if run.parent else "",
                 "_class": "baseline"})
    for f in run.forks:
        rows.append({"relation": "fork", "run": f.name + ("" if f.path else " (folder not found)"),
                     "status": f.status, "best val accuracy": f.best_val_accuracy,
                     "branched after epoch": f.epoch, "step": f.step, "changes": " ".join(f.overrides)})
    return rows


def _others(run: RunData) -> list[Line]:
    """The parent's whole curve (its part up to the branch is this run's own history, so only
    what follows shows the difference) and each fork's."""
    lines = []
    if run.parent is not None and run.parent.history:
        lines.append(Line(f"parent {run.parent.name}", run.parent.history, run.parent.epoch))
    lines += [Line(f"fork {f.name}", f.history, f.epoch) for f in run.forks if f.history]
    return lines


def _summary(run: RunData) -> str:
    r, st = run.result or {}, run.status
    status = r.get("status") or st.get("status") or "not started"
    epochs = r.get("epochs_run", len(run.history))
    t = run.config["training"]
    if t.get("steps"):  # a budget of steps: its epochs are evaluation periods of eval_every steps
        parts = [f"Status {status} after {epochs} evaluations of every {t.get('eval_every')} steps "
                 f"(budget {t['steps']} steps)."]
    else:
        parts = [f"Status {status} after {epochs} of {t.get('epochs') or 20} epochs."]
    if r.get("best_val_accuracy") is not None:
        parts.append(f"Best validation accuracy {format_value(r['best_val_accuracy'])} at epoch "
                     f"{r.get('best_epoch')}; test accuracy {format_value(r.get('test_accuracy'))}.")
    if r.get("message"):
        parts.append(str(r["message"]))
    if run.parent is not None:
        changes = " ".join(run.parent.overrides) or "no changes"
        # A checkpoint holds `epoch` finished epochs and `step` steps of the next one.
        where = (f"after epoch {run.parent.epoch}" if run.parent.step == 0
                 else f"at step {run.parent.step} of epoch {run.parent.epoch + 1}")
        parts.append(f"A fork of {run.parent.name} {where}, with {changes}.")
    controls = sum(1 for e in run.events if e.get("kind") == "control")
    parts.append(f"{controls} intervention{'s' * (controls != 1)}, {len(run.forks)} "
                 f"fork{'s' * (len(run.forks) != 1)}.")
    return " ".join(parts)


def _stat_row(s: dict) -> dict[str, Any]:
    return {"layer": s["layer"], "name": s["name"], "activation": s["activation"], "units": s["units"],
            "mean": s["mean"], "std": s["std"], "saturated": s.get("saturated_fraction"),
            "dead": s.get("dead_fraction"), "grad norm": s.get("grad_norm")}


def _diagnostics_sections(run: RunData) -> list[Section]:
    d = run.diagnostics
    if d is None:
        return [Section("Diagnostics", "text", run.note)]
    intro = (f"Layer statistics of the saved final weights (model.pt) on a probe batch of "
             f"{d['batch']} training examples: one forward and backward pass in train mode.")
    warnings = "\n\n".join(d["warnings"]) or "No saturation, dead units, symmetry or vanishing signal flagged."
    sections = [Section("Diagnostics", "text", f"{intro}\n\n{warnings}"),
                Section("Layer statistics", "table", [_stat_row(s) for s in d["trained"]])]
    if any(s.get("kind") == "hidden" for s in d["trained"]):
        sections.append(Section("Activations of the final weights", "figure",
                                plot_arm_histograms({run.name: d["trained"]}),
                                caption="Activation histogram per hidden layer on the probe batch."))
    return sections


def run_sections(run: RunData) -> list[Section]:
    """The report's sections for a run read by ``read_run``, in reading order."""
    sections = [Section("Summary", "text", _summary(run))]
    if run.history:
        title = f"{run.config['data']['name']} / {run.config['model']['name']}: {run.name}"
        sections.append(Section("Curves", "figure", plot_curves(run.history, title, run.events, _others(run)),
                                caption=_CURVES_CAPTION))
    else:
        sections.append(Section("Curves", "text", "No epoch has finished yet."))
    rows = [_event_row(e) for e in run.events]
    sections.append(Section("Interventions", "table", rows) if rows
                    else Section("Interventions", "text", "No interventions were recorded."))
    sections.append(Section("Lineage", "table", _lineage_rows(run)) if run.parent or run.forks
                    else Section("Lineage", "text", "This run is not a fork and has no forks."))
    if run.result is not None:
        sections.append(Section("Result", "table",
                                [dict(field=k, value=_text(v)) for k, v in flatten(run.result).items()]))
    else:
        sections.append(Section("Result", "text", "No result.json yet: the run has not ended."))
    sections.append(Section("Config: changed from the defaults", "table",
                            [{k: _text(v) for k, v in row.items()} for row in run.changed]))
    sections.append(Section("Config", "code", run.config_text))
    sections += _diagnostics_sections(run)
    return sections


def write_run_report(run_dir: str | Path, out: Optional[str | Path] = None, *,
                     diagnostics: bool = True) -> Path:
    """Read a run folder and write its self-contained HTML report to ``out`` (default
    ``RUN_DIR/report.html``); returns the file's path. ``diagnostics=False`` skips the layer
    statistics (they load the run's data and weights)."""
    run = read_run(run_dir, diagnostics=diagnostics)
    html = build_report(f"run {run.name}", run_sections(run), subtitle=str(Path(run_dir)))
    return write_report(Path(out) if out is not None else Path(run_dir) / "report.html", html)
