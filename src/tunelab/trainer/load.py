"""A trained run folder loaded for use: ``load_run(run_dir)`` -> LoadedRun.

model.pt is a bare state_dict; config.yaml says which model to build for it, and the source and
its split say how training scaled its inputs. The scaling statistics are not stored in the run
folder, so they are fitted again on the same training split (deterministic: ``data.split_seed``),
which needs the run's training data to be readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from tunelab.config import RunConfig
from tunelab.errors import ConfigError, DataError

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A trained model with what it takes to use it.

    ``model`` is in eval mode on ``device``; ``cfg`` the run's config; ``result`` its
    result.json (empty when there is none); ``input_shape`` one example's shape, e.g. (1, 8, 8);
    ``class_names`` the names of the class indices (None for a source without names);
    ``feature_names`` a csv run's feature columns, in the order the model reads them;
    ``shift`` and ``scale``: the scaling fitted on the training split, x -> (x - shift) / scale;
    ``pixel_max``: the raw pixel range of an image source (what image files are mapped to).
    """

    path: Path
    cfg: RunConfig
    result: dict[str, Any]
    model: torch.nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: Optional[list[str]]
    feature_names: Optional[list[str]]
    shift: np.ndarray
    scale: np.ndarray
    pixel_max: Optional[float] = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def preprocess(self, x: Any) -> torch.Tensor:
        """Raw inputs -> the scaled float32 tensor the model reads, as training scaled them.

        ``x``: an array or tensor of raw values (the source's units: digits 0..16, MNIST 0..255),
        shaped (N, *input_shape), (N, H, W) for one-channel images, (N, features) flat, or one
        example without the batch axis.
        """
        from tunelab.data.inputs import fit_shape

        if isinstance(x, torch.Tensor):
            t = x
        else:
            a = np.asarray(x)
            if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
                raise ConfigError(f"x has dtype {a.dtype}; expected numbers")
            # a read-only array (a memory-mapped data set) is copied: torch cannot share it safely
            t = torch.from_numpy(a) if a.flags.writeable else torch.tensor(a)
        if tuple(t.shape) == self.input_shape or (t.dim() == 1 and t.numel() == int(np.prod(self.input_shape))):
            t = t[None]  # one example
        try:
            t = torch.as_tensor(fit_shape(t, self.input_shape, "x"))
        except DataError as e:
            raise ConfigError(str(e)) from None
        t = t.to(self.device, torch.float32)
        # the same float32 subtract and divide as data.splits.apply_scaling: equal bit for bit
        return (t - torch.from_numpy(self.shift).to(self.device)) / torch.from_numpy(self.scale).to(self.device)

    @torch.inference_mode()
    def predict_proba(self, x: Any, batch_size: Optional[int] = None, scaled: bool = False) -> torch.Tensor:
        """Class probabilities (N, classes) for raw inputs ``x`` (``scaled``: x is already
        ``preprocess``-ed)."""
        x = x if scaled else self.preprocess(x)
        batch = batch_size or self.cfg.training.eval_batch_size
        return torch.cat([torch.softmax(self.model(x[i:i + batch]), 1) for i in range(0, len(x), batch)]
                         or [torch.empty(0, self.num_classes, device=self.device)])

    def predict(self, x: Any, batch_size: Optional[int] = None, scaled: bool = False) -> torch.Tensor:
        """Predicted class indices (N,) for raw inputs ``x``; names: ``class_names[i]``."""
        return self.predict_proba(x, batch_size, scaled).argmax(1)


def _read_result(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "result.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"result.json of run folder {str(run_dir)!r} is not valid JSON: {e}") from None


def _weights(run_dir: Path, result: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    path = run_dir / "model.pt"
    if result.get("custom_model"):
        raise ConfigError(f"run folder {str(run_dir)!r} trained a model of your own (result.json: "
                          f"custom_model true), which config.yaml cannot rebuild; build your module and load "
                          f"{str(path)!r} with module.load_state_dict(torch.load(path, weights_only=True))")
    if not path.is_file():
        status = result.get("status")
        if status in ("running", "paused"):
            why = f"; the run is still going (status {status!r}) and writes it when it ends"
        else:
            why = f" (status {status!r}); train the run again or restore the file" if status else ""
        raise ConfigError(f"run folder {str(run_dir)!r} has no model.pt{why}")
    try:
        weights = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file; all mean the same here
        raise ConfigError(f"{str(path)!r} cannot be read as model weights ({type(e).__name__}); "
                          f"train the run again or restore the file") from None
    if not isinstance(weights, dict):
        raise ConfigError(f"{str(path)!r} holds a {type(weights).__name__}, not a state_dict of weights")
    return weights


def _scaling(cfg: RunConfig, run_dir: Path):
    """The source's raw data and the (shift, scale) training fitted on its training split."""
    from tunelab.data.sources import DATASETS
    from tunelab.data.splits import fit_scaling, split_indices

    try:
        raw = DATASETS.get(cfg.data.name)(cfg.data)
    except DataError as e:
        raise DataError(f"run folder {str(run_dir)!r}: its input scaling is fitted again on its training "
                        f"data, which cannot be read: {e}") from None
    train, _, _ = split_indices(len(raw.y_train), raw.x_test is not None, cfg.data)
    return raw, fit_scaling(raw.x_train[train], raw, cfg.data.scaling)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load a run folder's model.pt into the model its config.yaml builds, in eval mode on
    ``device``, with the scaling training applied (see LoadedRun).

    A folder that is not a run, a missing or unreadable model.pt, weights that do not fit the
    model, or a run trained on a model of your own (Python API) are one ConfigError naming the
    file. The caller's torch random state is left as it was.

    Example:
        >>> import tempfile, tunelab
        >>> out = tempfile.mkdtemp()
        >>> _ = tunelab.train({"model": {"hidden": [16]}, "training": {"epochs": 1, "threads": 1}}, out=out)
        >>> run = load_run(out)
        >>> from sklearn.datasets import load_digits
        >>> images = load_digits().images[:5]          # raw pixels 0..16, shaped (5, 8, 8)
        >>> run.predict(images).shape, run.predict_proba(images).sum(1).round().tolist()
        (torch.Size([5]), [1.0, 1.0, 1.0, 1.0, 1.0])
        >>> run.class_names[:3], run.input_shape, run.model.training
        (['0', '1', '2'], (1, 8, 8), False)
    """
    from tunelab.data.inputs import source_labels
    from tunelab.trainer.lineage import run_config
    from tunelab.trainer.prepare import new_model

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is a file; give a run folder (tunelab train --out RUN)")
    cfg = run_config(run_dir)  # names config.yaml when the folder is not a run
    result = _read_result(run_dir)
    device = torch.device(device)
    weights = _weights(run_dir, result, device)
    raw, (shift, scale) = _scaling(cfg, run_dir)
    shape = tuple(int(s) for s in raw.x_train.shape[1:])
    with torch.random.fork_rng(devices=[]):  # building draws initial weights; keep the caller's stream
        model = new_model(cfg, shape, raw.num_classes)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ConfigError(f"{str(run_dir / 'model.pt')!r} does not fit the model config.yaml builds "
                          f"({first})") from None
    names, features = source_labels(cfg.data)
    return LoadedRun(run_dir, cfg, result, model.to(device).eval(), shape, raw.num_classes, names, features,
                     shift, scale, raw.pixel_max, device)
