"""One run folder read into plain data for its report: config, result, history, interventions,
lineage (the parent and the forks) and the layer statistics of the saved weights.

``read_run(run_dir)`` only reads and measures; ``tunelab.report.run_sections`` draws it. The
events of a fork start with the ones it inherited: the parent's events before the branch
point (the fork's own events.jsonl holds only what happened after it), marked ``inherited``
with the name of the run that recorded them.

Example:
    >>> read_run("no-such-run")
    Traceback (most recent call last):
    tunelab.errors.ConfigError: run folder 'no-such-run' does not exist
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from tunelab.config import from_dict, replace, to_dict
from tunelab.errors import ConfigError
from tunelab.trainer.lineage import read_forks, read_lineage, run_config
from tunelab.trainer.live import read_status
from tunelab.trainer.runfolder import read_history

__all__ = ["RunData", "Relative", "read_run", "read_events", "flatten"]


@dataclass
class Relative:
    """A run related by a fork: this run's parent or one of its forks.

    ``epoch`` and ``step`` are the branch point: epochs done, and steps into the next epoch.
    ``path`` is None when the folder is gone (moved or deleted); then status, best and history
    are unknown.
    """

    name: str
    path: Optional[Path]
    epoch: int
    step: int
    overrides: list[str]
    checkpoint: str = ""
    status: str = ""
    best_val_accuracy: Optional[float] = None
    history: list[dict] = field(default_factory=list)


@dataclass
class RunData:
    """What a run folder holds, as plain data. ``result`` is None before the run ends;
    ``diagnostics`` is None when the weights were not measured, and ``note`` says why."""

    name: str
    path: Path
    config: dict[str, Any]
    config_text: str
    changed: list[dict[str, Any]]  # key, value, default: the settings that differ from the defaults
    status: dict[str, Any]
    result: Optional[dict[str, Any]]
    history: list[dict]
    events: list[dict]
    parent: Optional[Relative]
    forks: list[Relative]
    diagnostics: Optional[dict[str, Any]] = None
    note: str = ""


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists stay values.

    Example:
        >>> flatten({"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}, "seed": 0})
        {'optimizer.lr': 0.1, 'optimizer.betas': [0.9, 0.99], 'seed': 0}
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path.name} of run folder {str(path.parent)!r} is not valid JSON: {e}") from None


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """events.jsonl of a run folder (empty when there is none).

    A last line without its newline is a write in progress (the trainer appends while it
    runs) and is left out; any other unreadable line is one ConfigError.
    """
    path = Path(run_dir) / "events.jsonl"
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.split("\n")
    complete, partial = lines[:-1], lines[-1]  # partial is "" when the file ends with a newline
    events = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError as e:
            raise ConfigError(f"events.jsonl of run folder {str(run_dir)!r}, line {number}, "
                              f"is not valid JSON: {e}") from None
    if partial.strip():
        try:
            events.append(json.loads(partial))
        except ValueError:
            pass  # half written right now; the next read has it
    return events


def _all_events(run_dir: Path, seen: frozenset = frozenset()) -> list[dict[str, Any]]:
    """The run's own events after the ones it inherited from its ancestors."""
    lineage = read_lineage(run_dir)
    parent = lineage["parent_dir"] if lineage else None
    inherited: list[dict] = []
    if parent is not None and parent not in seen:  # seen: a copied folder cannot loop forever
        # Events recorded before the branch point; one at the branch step itself came after
        # the checkpoint the fork started from (commands are read before a step is taken).
        cut = (lineage["epoch"] + 1, lineage["step"])
        inherited = [{"inherited": parent.name, **e} for e in _all_events(parent, seen | {parent})
                     if (e.get("epoch", 0), e.get("step", 0)) < cut]
    return inherited + read_events(run_dir)


def _relative(path: Optional[Path], name: str, record: Mapping[str, Any]) -> Relative:
    rel = Relative(name=name, path=path, epoch=int(record["epoch"]), step=int(record.get("step", 0)),
                   overrides=list(record.get("overrides", [])), checkpoint=record.get("checkpoint", ""))
    if path is None:
        return rel
    result = _read_json(path / "result.json") or {}
    rel.history = read_history(path)
    rel.status = read_status(path).get("status") or result.get("status", "")
    best = result.get("best_val_accuracy")
    if best is None and rel.history:  # still running: the best epoch so far
        best = max(h.get("val_accuracy", float("-inf")) for h in rel.history)
    rel.best_val_accuracy = best
    return rel


def _changed(config: dict[str, Any]) -> list[dict[str, Any]]:
    defaults = flatten(to_dict(from_dict({})))
    return [dict(key=k, value=v, default=defaults.get(k)) for k, v in flatten(config).items()
            if k not in defaults or defaults[k] != v]


def _diagnose(run_dir: Path, cfg, result: Optional[dict], batch: int) -> tuple[Optional[dict], str]:
    import torch

    from tunelab.analysis.diagnostics import diagnose_weights

    weights_file = run_dir / "model.pt"
    if result and result.get("custom_model"):
        return None, ("Not measured: the run trained a model of its own (Python API), which "
                      "config.yaml cannot rebuild.")
    if not weights_file.is_file():
        return None, "Not measured: there is no model.pt yet (it is written when the run ends)."
    try:
        weights = torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file; all mean the same here
        raise ConfigError(f"model.pt of run folder {str(run_dir)!r} cannot be read: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    # On the CPU: the report is read anywhere, also where the run's GPU is not.
    return diagnose_weights(replace(cfg, ["training.device=cpu"]), weights, batch=batch), ""


def read_run(run_dir: str | Path, *, diagnostics: bool = True, batch: int = 512) -> RunData:
    """Read a run folder (``tunelab train --out RUN``) into a RunData.

    ``diagnostics`` loads model.pt into the model config.yaml builds and measures its layers
    on ``batch`` training examples (the run's data is loaded for that); False skips it. A
    folder without config.yaml is one ConfigError; missing events, lineage, history or
    result (a fresh fork, a run still going) are simply empty.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is a file; give a run folder")
    cfg = run_config(run_dir)  # the checks that make it a run folder, and a valid config
    result = _read_json(run_dir / "result.json")
    lineage = read_lineage(run_dir)
    parent = None
    if lineage is not None:
        name = lineage["parent_dir"].name if lineage["parent_dir"] else Path(lineage["parent"]).name
        parent = _relative(lineage["parent_dir"], name, lineage)
    forks = [_relative(f["child_dir"], f["child_dir"].name if f["child_dir"] else Path(f["child"]).name, f)
             for f in read_forks(run_dir)]
    config = to_dict(cfg)
    data = RunData(name=run_dir.resolve().name, path=run_dir, config=config,
                   config_text=(run_dir / "config.yaml").read_text(), changed=_changed(config),
                   status=read_status(run_dir), result=result, history=read_history(run_dir),
                   events=_all_events(run_dir), parent=parent, forks=forks)
    if diagnostics:
        data.diagnostics, data.note = _diagnose(run_dir, cfg, result, batch)
    else:
        data.note = "Not measured for this report (diagnostics were turned off)."
    return data
