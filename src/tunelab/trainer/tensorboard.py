"""TensorBoard event files for a run (``training.log: [tensorboard]``).

``TensorBoardLog(logdir, cfg)`` is a sink: ``epoch(event)`` writes an epoch's scalars
(loss/train and accuracy/train: the training set in evaluation mode; loss/train_running and
accuracy/train_running: the epoch's running averages; loss/val, accuracy/val, lr,
grad_norm/<parameter>) at step =
the epoch and flushes, so ``tensorboard --logdir runs/`` follows a run live;
``intervention(event)`` records a control command as text; ``close(result)`` adds the final
metrics to the hyperparameters (the flattened resolved config, written when the log opens)
and closes the files. The trainer knows nothing of it: ``hooks`` wraps the ``on_epoch`` and
``on_event`` callbacks that fit() already calls.

tensorboard is an optional dependency: this module imports it only when a log is opened, and
``require_tensorboard`` turns its absence into a one-line ConfigError.

Example:
    >>> import tempfile
    >>> from tunelab.config import from_dict
    >>> from tunelab.trainer.fit import EpochEvent
    >>> cfg = from_dict({"training": {"epochs": 1}})
    >>> log = TensorBoardLog(tempfile.mkdtemp(), cfg)
    >>> log.epoch(EpochEvent(1, 1, {"train_loss": 0.5, "val_loss": 0.6, "train_accuracy": 0.8,
    ...                             "val_accuracy": 0.7, "lr": 0.001}))
    >>> log.close()
    >>> len(list(log.path.glob("events.out.tfevents.*")))
    1
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Optional, Union

from tunelab.config import RunConfig, to_dict
from tunelab.errors import ConfigError

__all__ = ["TensorBoardLog", "open_log", "require_tensorboard", "wants_tensorboard", "flat_hparams",
           "SCALARS", "FINAL_METRICS"]

# history key -> scalar tag; the tags group into TensorBoard's loss / accuracy panels
SCALARS = {"train_loss": "loss/train_running", "val_loss": "loss/val", "train_accuracy": "accuracy/train_running",
           "train_eval_loss": "loss/train", "train_eval_accuracy": "accuracy/train",
           "val_accuracy": "accuracy/val", "lr": "lr"}
# RunResult fields shown in the hparams table (as scalars tagged hparam/<name>)
FINAL_METRICS = ["best_val_accuracy", "val_accuracy", "val_loss", "test_accuracy", "test_loss"]


def wants_tensorboard(config: Union[RunConfig, dict, None]) -> bool:
    """Whether a config (a RunConfig or a plain, possibly partial, dict) asks for TensorBoard.

    Example:
        >>> wants_tensorboard({"training": {"log": ["tensorboard"]}}), wants_tensorboard({})
        (True, False)
    """
    if isinstance(config, RunConfig):
        return "tensorboard" in config.training.log
    training = (config or {}).get("training") or {}
    return isinstance(training, dict) and "tensorboard" in (training.get("log") or [])


def require_tensorboard() -> type:
    """torch's SummaryWriter, or a one-line ConfigError when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard raises it when the tensorboard package is missing
        raise ConfigError("training.log=['tensorboard'] needs the tensorboard package; "
                          "pip install tensorboard") from None
    return SummaryWriter


def flat_hparams(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as ``section.key -> value`` the hparams plugin accepts: numbers and
    strings as they are, booleans and lists as text (the plugin has no list type, and torch
    would file booleans as numbers); unset (None) keys are left out.

    Example:
        >>> from tunelab.config import from_dict
        >>> h = flat_hparams(from_dict({"model": {"hidden": [16]}}))
        >>> h["model.hidden"], h["optimizer.lr"], h["training.early_stopping.enabled"]
        ('[16]', 0.001, 'False')
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, bool):
            out[prefix] = str(node)
        elif isinstance(node, (list, tuple)):
            out[prefix] = json.dumps(node)
        elif isinstance(node, (int, float, str)):
            out[prefix] = node
        # None: a key left at "unset" has no value to show

    walk("", to_dict(cfg))
    return out


class TensorBoardLog:
    """TensorBoard event files for one run in ``logdir``; see the module docstring.

    Events from ``first_epoch`` on that an earlier writer left in ``logdir`` are hidden
    (TensorBoard's purge step): a resumed run (``first_epoch`` > 1) from an earlier checkpoint,
    or a new run in a reused folder, does not draw two curves.
    """

    def __init__(self, logdir: Union[str, Path], cfg: RunConfig, first_epoch: int = 1) -> None:
        writer_cls = require_tensorboard()
        from torch.utils.tensorboard.summary import hparams

        self.path = Path(logdir)
        self.writer = writer_cls(str(self.path), purge_step=first_epoch)
        self.step = first_epoch - 1  # the last epoch logged
        # the experiment and session start go in now, so the run is in the hparams table
        # while it trains; the session end and the metrics' values follow in close()
        exp, ssi, _ = hparams(flat_hparams(cfg), {f"hparam/{m}": 0.0 for m in FINAL_METRICS})
        self.writer.file_writer.add_summary(exp)
        self.writer.file_writer.add_summary(ssi)
        self.writer.flush()

    def epoch(self, event) -> None:
        """Write one EpochEvent's scalars at step = its epoch, then flush (live view)."""
        self.step = event.epoch
        for key, tag in SCALARS.items():
            if key in event.metrics and not (key.startswith("train_eval") and math.isnan(event.metrics[key])):
                self.writer.add_scalar(tag, event.metrics[key], event.epoch)  # (train_eval NaN: not measured)
        for name, norm in event.grad_norms.items():
            self.writer.add_scalar(f"grad_norm/{name}", norm, event.epoch)
        self.writer.flush()

    def intervention(self, event: dict) -> None:
        """Record a control event (``kind`` control) as text at its epoch; others are ignored."""
        if event.get("kind") != "control":
            return
        text = (f"epoch {event.get('epoch')} step {event.get('step')}: `{event.get('command')}` "
                f"from {event.get('source', '?')}, lr now {event.get('lr', math.nan):.6g}")
        self.writer.add_text("interventions", text, int(event.get("epoch", self.step + 1)))
        self.writer.flush()

    def hooks(self, on_epoch: Optional[Callable] = None, on_event: Optional[Callable] = None
              ) -> tuple[Callable, Callable]:
        """fit()'s callbacks that log first and then call the caller's (whose answer counts)."""
        def epoch_hook(event):
            self.epoch(event)
            return on_epoch(event) if on_epoch is not None else None

        def event_hook(event):
            self.intervention(event)
            if on_event is not None:
                on_event(event)

        return epoch_hook, event_hook

    def close(self, result=None) -> None:
        """Write the final metrics of ``result`` (a RunResult; None: the run raised) and close."""
        if result is not None:
            for name in FINAL_METRICS:
                value = getattr(result, name, None)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"hparam/{name}", value, max(self.step, 1))
            self.writer.file_writer.add_summary(_session_end(result.status))
        self.writer.close()


def _session_end(status: str):
    """The hparams plugin's session-end summary: a diverged run failed, an interrupted one was
    aborted (torch's ``hparams`` only writes success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    code = {"diverged": "STATUS_FAILURE", "interrupted": "STATUS_ABORTED"}.get(status, "STATUS_SUCCESS")
    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(code)),
        version=metadata.PLUGIN_DATA_VERSION)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                                  content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta)])


def open_log(cfg: RunConfig, logdir: Union[str, Path, None], first_epoch: int = 1) -> Optional[TensorBoardLog]:
    """A TensorBoardLog in ``logdir`` when ``cfg`` asks for one and there is a place for it
    (``logdir`` None: a run without a folder, nothing is written); else None.

    Example:
        >>> from tunelab.config import from_dict
        >>> open_log(from_dict({}), "runs/x") is None
        True
    """
    if logdir is None or not wants_tensorboard(cfg):
        return None
    return TensorBoardLog(logdir, cfg, first_epoch)
