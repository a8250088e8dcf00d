"""A trained run put to use: its loss and accuracy on a split of its data or of other data
(``evaluate_run``), and its predictions for inputs read from files (``predict_files``).

Other data (``data=["name=fashion-mnist"]``) is scaled with the statistics fitted on the run's
*original* training set, as the model saw its inputs in training; only ``data.scaling`` cannot
change. Labels of a csv or npz file are matched to the run's classes by value, so a file holding
only some of the classes keeps their numbers.

Example:
    >>> import tempfile, tunelab
    >>> from tunelab.trainer.load import load_run
    >>> out = tempfile.mkdtemp()
    >>> r = tunelab.train({"model": {"hidden": [16]}, "training": {"epochs": 1, "threads": 1}}, out=out)
    >>> ev = evaluate_run(load_run(out))
    >>> ev.split, ev.examples, ev.accuracy == r.test_accuracy
    ('test', 359, True)
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import numpy as np
import torch

from tunelab.config import DataConfig, replace
from tunelab.errors import ConfigError, DataError
from tunelab.trainer.load import LoadedRun

__all__ = ["SPLITS", "ClassScore", "Evaluation", "Predictions", "evaluate_run", "predict_files", "labelled_split"]

SPLITS = ("all", "test", "train", "val")


@dataclass
class ClassScore:
    """One class of an evaluation: its index, name, examples, correct predictions, accuracy."""

    index: int
    name: str
    examples: int
    correct: int
    accuracy: Optional[float]  # None when the split holds no example of the class


@dataclass
class Evaluation:
    """Loss and accuracy of a saved model on one split; ``data`` the data keys that differ from the
    run's own (empty: its own data); ``per_class`` one ClassScore per class."""

    run: str
    source: str
    split: str
    examples: int
    loss: float
    accuracy: float
    per_class: list[ClassScore]
    data: list[str] = field(default_factory=list)
    scaling: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass
class Predictions:
    """One row per input: ``names`` (row index or file), ``classes`` (predicted indices),
    ``labels`` (their class names, or the indices as text), ``probabilities`` of the predicted
    class; ``targets`` the true class indices when the inputs carry labels, and then ``accuracy``."""

    names: list[str]
    classes: list[int]
    labels: list[str]
    probabilities: list[float]
    targets: Optional[list[int]] = None
    accuracy: Optional[float] = None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per input: input, class, class_name, probability (and true_class when known)."""
        out = [dict(input=n, **{"class": c}, class_name=lab, probability=p)
               for n, c, lab, p in zip(self.names, self.classes, self.labels, self.probabilities)]
        for row, t in zip(out, self.targets or []):
            row["true_class"] = t
        return out

    def write_csv(self, out: str | Path | TextIO) -> None:
        """The rows as csv (probability to 4 decimals) to a file path (its folder created) or an
        open text stream."""
        if not hasattr(out, "write"):
            from tunelab.fileio import atomic_open

            with atomic_open(out, "w", newline="") as f:
                return self.write_csv(f)
        columns = ["input", "class", "class_name", "probability"] + (["true_class"] if self.targets else [])
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "probability": f"{row['probability']:.4f}"} for row in self.rows())


# --------------------------------------------------------------------------- data

def _data_overrides(data: Sequence[str]) -> list[str]:
    """``name=x`` or ``data.name=x`` -> ``data.name=x``."""
    out = []
    for text in data:
        key, eq, value = text.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"data={text!r} must look like key=value with a data key "
                              f"(name, path, target, dir, split_seed, val_fraction, test_fraction)")
        key = key.strip().removeprefix("data.")
        out.append(f"data.{key}={value}")
    return out


def _label_names(run: LoadedRun) -> list[str]:
    """What a label in a file is matched against: a csv/npz run's label values; else the class
    indices (Fashion-MNIST files hold 0..9, not the article names)."""
    if run.cfg.data.name in ("csv", "npz") and run.class_names is not None:
        return run.class_names
    return [str(i) for i in range(run.num_classes)]


def _whole_source(run: LoadedRun, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, Optional[tuple]]:
    """(x, y codes, (x_test, y_test) or None) of a source, raw, in the run's class indices."""
    from tunelab.data.inputs import fit_shape, label_codes, read_csv_inputs, read_npz_inputs
    from tunelab.data.sources import DATASETS

    if cfg.name in ("csv", "npz"):
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.path={cfg.path!r}: file {path} does not exist")
        if cfg.name == "csv":
            parts = [read_csv_inputs(path, run.input_shape, cfg.target, run.feature_names)]
        else:
            with np.load(path, allow_pickle=False) as z:
                keys = ["x", "x_test"] if "x_test" in z.files else ["x"]
            parts = [read_npz_inputs(path, run.input_shape, k) for k in keys]
        for p in parts:
            if p.labels is None:
                what = f"column {cfg.target!r} (data.target)" if cfg.name == "csv" else "array 'y'"
                raise DataError(f"{path} has no {what}; evaluation needs the true labels")
        xy = [(p.x, label_codes(p.labels, _label_names(run), str(path))) for p in parts]
        return xy[0][0], xy[0][1], xy[1] if len(xy) > 1 else None
    raw = DATASETS.get(cfg.name)(cfg)
    where = f"data.name={cfg.name!r}"
    y_train, y_test = raw.y_train, raw.y_test
    if cfg.name == "images" and run.class_names is not None:
        # another folder codes its classes by its own sorted names: match them by name instead
        from tunelab.data.imagefolder import image_classes

        names = np.array(image_classes(cfg.path))
        y_train = label_codes(names[raw.y_train], run.class_names, f"data.path={cfg.path!r}")
        if y_test is not None:
            y_test = label_codes(names[raw.y_test], run.class_names, f"data.path={cfg.path!r}")
    x = fit_shape(raw.x_train, run.input_shape, where)
    test = None if raw.x_test is None else (fit_shape(raw.x_test, run.input_shape, where), y_test)
    if raw.num_classes > run.num_classes:
        raise DataError(f"{where} has {raw.num_classes} classes; the model of run {run.path.name!r} "
                        f"predicts {run.num_classes}")
    return x, y_train, test


def labelled_split(run: LoadedRun, cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw inputs and class indices of ``split`` (or ``all``) of source ``cfg``, split as
    ``data.splits.load_data`` splits it."""
    from tunelab.data.splits import split_indices

    x, y, test = _whole_source(run, cfg)
    if split == "all":
        return (x, y) if test is None else (np.concatenate([x, test[0]]), np.concatenate([y, test[1]]))
    train, val, carved = split_indices(len(y), test is not None, cfg)
    if split == "test":
        return test if carved is None else (x[carved], y[carved])
    idx = train if split == "train" else val
    return x[idx], y[idx]


# --------------------------------------------------------------------------- evaluate, predict

def _class_scores(run: LoadedRun, y: torch.Tensor, pred: torch.Tensor) -> list[ClassScore]:
    k = run.num_classes
    counts = torch.bincount(y, minlength=k).tolist()
    correct = torch.bincount(y[pred == y], minlength=k).tolist()
    names = run.class_names or [str(i) for i in range(k)]
    return [ClassScore(i, names[i], counts[i], correct[i], correct[i] / counts[i] if counts[i] else None)
            for i in range(k)]


def evaluate_run(run: LoadedRun, split: str = "test", data: Sequence[str] = (),
                 batch_size: Optional[int] = None) -> Evaluation:
    """Loss and accuracy of ``run.model`` on ``split`` (test, val, train or all) of the run's data,
    or of other data: ``data`` overrides data keys (``["name=fashion-mnist"]``,
    ``["name=csv", "path=other.csv"]``), scaled as the run's training set was. Loss and accuracy
    are ``trainer.fit.evaluate``'s, so the default equals result.json's test metrics."""
    from tunelab.trainer.fit import evaluate

    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not known; choose one of {list(SPLITS)}")
    overrides = _data_overrides(data)
    cfg = replace(run.cfg, overrides).data if overrides else run.cfg.data
    if cfg.scaling != run.cfg.data.scaling:
        raise ConfigError(f"data.scaling={cfg.scaling!r} cannot change: the model was trained on inputs "
                          f"scaled with {run.cfg.data.scaling!r}; allowed: {run.cfg.data.scaling!r}")
    x_raw, y_raw = labelled_split(run, cfg, split)
    x, y = run.preprocess(x_raw), torch.as_tensor(y_raw, dtype=torch.int64, device=run.device)
    batch = batch_size or run.cfg.training.eval_batch_size
    loss, acc = evaluate(run.model, x, y, batch)
    pred = run.predict(x, batch, scaled=True)
    changed = [o.split("=", 1)[0] for o in overrides]
    shown = [f"{k}={getattr(cfg, k.split('.', 1)[1])}" for k in dict.fromkeys(changed)]
    scaling = (f"inputs scaled with data.scaling={cfg.scaling!r} fitted on the run's original training set "
               f"({run.cfg.data.name})") if overrides else ""
    return Evaluation(run.path.name, cfg.name, split, len(y), loss, acc, _class_scores(run, y, pred),
                      shown, scaling)


def predict_files(run: LoadedRun, paths: Sequence[str | Path], invert: bool = False) -> Predictions:
    """Predictions for one .csv (the training feature columns; the label column optional), one .npz
    (array ``x``, optional ``y``) or image files (gray, resized to the model's input; ``invert``
    for dark strokes on a light background). Values are raw, in the units of the run's source."""
    from tunelab.data.inputs import label_codes, read_inputs

    inp = read_inputs(paths, run.input_shape, target=run.cfg.data.target, features=run.feature_names,
                      pixel_max=run.pixel_max, invert=invert)
    proba = run.predict_proba(inp.x)
    best, classes = proba.max(1) if len(proba) else (proba[:, 0], proba[:, 0].long())
    names = run.class_names or [str(i) for i in range(run.num_classes)]
    out = Predictions(inp.names, classes.tolist(), [names[c] for c in classes.tolist()], best.tolist())
    if inp.labels is not None:
        targets = label_codes(inp.labels, _label_names(run), str(paths[0]))
        out.targets = targets.tolist()
        out.accuracy = float((targets == np.array(out.classes)).mean()) if len(targets) else None
    return out
