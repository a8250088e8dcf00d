"""Reading studies back from storage as plain data: summaries, leaderboards, CSV rows.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> leaderboard(study)
    []
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from tunelab.errors import ConfigError
from tunelab.search.storage import missing_sqlite_file, storage_errors

__all__ = ["leaderboard", "study_summaries", "trial_rows", "write_csv", "counts", "load_study",
           "thin_study_note", "HANDFUL", "load_stages", "stage_summaries"]

# Below this many completed trials, figures that compare trials with each other (importance,
# parallel coordinates, slices) describe a few points, not the search space.
HANDFUL = 5


def load_study(name: str, storage: str) -> optuna.Study:
    """Open an existing study or raise ConfigError listing the studies in ``storage``."""
    names = [s["name"] for s in study_summaries(storage)]
    if name not in names:
        missing = missing_sqlite_file(storage)
        there = f"choose one of {sorted(names)}" if names else "it holds no studies yet"
        if missing:
            there = f"the file {missing} does not exist (run `tunelab tune` or `tunelab compare` first)"
        raise ConfigError(f"study {name!r} is not in {storage}; {there}")
    return optuna.load_study(study_name=name, storage=storage)


def load_stages(name: str, storage: str) -> list[optuna.Study]:
    """The stage studies ``NAME.stage1``, ``NAME.stage2``, ... of a ``--stages`` tune, in order
    (stopping at the first missing index); none when ``NAME`` itself is a study or has no stages."""
    names = {s["name"] for s in study_summaries(storage)}
    if name in names:
        return []
    out = []
    while f"{name}.stage{len(out) + 1}" in names:
        out.append(optuna.load_study(study_name=f"{name}.stage{len(out) + 1}", storage=storage))
    return out


def stage_summaries(studies: list[optuna.Study]) -> list[dict[str, Any]]:
    """Per stage study: index, name, keys tuned, trial counts, best value and params, and the
    values fixed from earlier stages (the study's user attr ``stage``, written by ``tune``).

    Example:
        >>> import optuna
        >>> st = optuna.create_study(study_name="s.stage1", direction="maximize")
        >>> st.set_user_attr("stage", {"index": 1, "keys": ["x"], "fixed": {}})
        >>> st.optimize(lambda t: t.suggest_float("x", 0, 1) * 0 + 0.5, n_trials=2)
        >>> row = stage_summaries([st])[0]
        >>> row["index"], row["keys"], row["complete"], row["trials"], row["best"], row["fixed"]
        (1, ['x'], 2, 2, 0.5, {})
    """
    rows = []
    for i, st in enumerate(studies):
        info = st.user_attrs.get("stage") or {}
        c = counts(st)
        best = leaderboard(st, 1)
        rows.append(dict(index=info.get("index", i + 1), study=st.study_name, keys=list(info.get("keys", [])),
                         trials=sum(c.values()), complete=c["complete"],
                         best=best[0]["value"] if best else None, best_params=best[0]["params"] if best else {},
                         fixed=dict(info.get("fixed") or {})))
    return rows


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; ``interrupted`` counts the failed ones a stopped driver left (Ctrl-C,
    a kill), which run again and are not failures of their own.

    Example:
        >>> import optuna
        >>> counts(optuna.create_study())["interrupted"]
        0
    """
    out = {s.name.lower(): 0 for s in TrialState}
    out["interrupted"] = 0
    for t in study.get_trials(deepcopy=False):
        requeued = t.state == TrialState.FAIL and t.user_attrs.get("requeued")
        out["interrupted" if requeued else t.state.name.lower()] += 1
    return out


def thin_study_note(study: optuna.Study, handful: int = HANDFUL) -> Optional[str]:
    """A warning when importance and parallel coordinates would rest on fewer than ``handful``
    completed trials (pruned and failed trials are not in them); None when there are enough.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(direction="maximize")
        >>> for v in (0.5, 0.7, 0.9):
        ...     study.enqueue_trial({}); study.optimize(lambda t: v, n_trials=1)
        >>> thin_study_note(study).startswith("importance and parallel coordinates rest on only 3 completed")
        True
    """
    c = counts(study)
    done = c["complete"]
    if done >= handful:
        return None
    others = [f"{c[k]} {k}" for k in ("pruned", "fail") if c[k]]
    besides = f" ({', '.join(others).replace('fail', 'failed')} left out)" if others else ""
    trials = "trial" if done == 1 else "trials"
    return (f"importance and parallel coordinates rest on only {done} completed {trials}{besides}; "
            f"run more trials (or prune less) before reading them")


def _params(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return t.user_attrs.get("params") or dict(t.params)


def leaderboard(study: optuna.Study, top: int = 10) -> list[dict[str, Any]]:
    """Best completed trials first: number, value, epochs, seconds, params (no test metric:
    trials are chosen on validation; the test set is read once, by `tunelab train best.yaml`)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value, reverse=reverse)
    return [dict(number=t.number, value=t.value,
                 epochs=(t.user_attrs.get("result") or {}).get("epochs_run"),
                 seconds=t.user_attrs.get("duration_s"), params=_params(t)) for t in done[:top]]


def study_summaries(storage: str) -> list[dict[str, Any]]:
    """One row per study; none (and no file created) for a SQLite file that does not exist."""
    if missing_sqlite_file(storage):
        return []
    rows = []
    with storage_errors(storage):
        summaries = optuna.get_all_study_summaries(storage)
    for s in summaries:
        best = s.best_trial.value if s.best_trial is not None else None
        rows.append(dict(name=s.study_name, trials=s.n_trials, best=best,
                         direction=s.direction.name.lower(),
                         started=s.datetime_start.strftime("%Y-%m-%d %H:%M") if s.datetime_start else ""))
    return rows


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat row per trial (params as their own columns, then threads, device and versions) for CSV export."""
    from tunelab.analysis.compare import run_context

    rows = []
    for t in study.get_trials(deepcopy=False):
        res = t.user_attrs.get("result") or {}
        row = dict(number=t.number, state=t.state.name.lower(), value=t.value,
                   duration_s=t.user_attrs.get("duration_s"), epochs_run=res.get("epochs_run"),
                   pruned_at_epoch=t.user_attrs.get("pruned_at_epoch"),
                   fail_reason=(t.user_attrs.get("fail_reason") or "").split("\n", 1)[0])
        row.update({f"param:{k}": v for k, v in _params(t).items()})
        row.update(run_context(res))
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Any) -> Any:
    """Write ``rows`` (the union of their keys as columns) to a path or an open text stream."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]

    def _write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    if hasattr(path, "write"):
        _write(path)
        return path
    from tunelab.fileio import atomic_open

    with atomic_open(path, "w", newline="") as f:
        _write(f)
    return Path(path)
