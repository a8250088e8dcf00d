"""Network diagnostics: what the activations and gradients of each hidden layer look like.

A *hidden layer* is an activation module (one of ``tunelab.nn.ACTIVATIONS``) together with
the Linear/Conv1d/Conv2d that feeds it: the nearest one before it in module order. In
tunelab's models that is one named block, ``fc{i}`` or ``conv{i}`` (Linear/Conv -> norm/act
-> pool -> dropout). The *output layer* is the last Linear/Conv after the last activation.
In a residual block (``model.residual``) the measured output is the block's own activation,
before the skip adds the block's input; conv maps may be (B, C, L) as well as (B, C, H, W).

``layer_stats`` runs one forward and one backward pass on a given batch and measures, per
hidden layer (statistics over every unit and sample of the activation's output):

- ``mean``, ``std`` and a 50-bin ``histogram`` over the observed range of the layer's output
  (for every activation: a fixed [-1, 1] for tanh drew a layer whose signal has shrunk to
  1e-4 as one bar at 0, hiding the shape and scale that show it vanishing);
- ``saturated_fraction`` (sigmoid and tanh only, else None): the fraction of unit values
  (units x samples x positions) in the flat tails, where the local gradient is below
  about 0.08 of its peak: sigmoid output outside [0.02, 0.98], tanh |output| > 0.98;
- ``dead_fraction`` (rectifiers relu, leaky_relu, elu, gelu, silu, else None): the fraction
  of units (features; channels of a conv map) whose output is <= 0 for EVERY sample and
  position of the batch;
- ``units_identical``: the units' pre-activations (the activation's input) agree on every
  sample AND the feeding layer's units (weight rows with their biases) are equal, so they
  compute one function: the symmetry a zeros init never breaks;
- ``grad_norm``: the L2 norm of the cross-entropy gradient of the feeding layer's weight.

``diagnose`` measures a freshly built model of a config at init and after ``epochs`` epochs
of ``fit``; ``diagnose_weights`` measures given weights (a run folder's model.pt);
``warnings_for`` turns the lists into advice in words.

Example:
    >>> from tunelab.config import from_dict
    >>> report = diagnose(from_dict({"model": {"hidden": [32], "activation": "sigmoid",
    ...                                        "init": "zeros"}}), epochs=1, batch=64)
    >>> report["warnings"][0]
    'layer 1: all units compute the same function (symmetry not broken); use a random init'
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tunelab.config import RunConfig, replace, to_dict
from tunelab.errors import ConfigError
from tunelab.nn.activations import ACTIVATIONS

__all__ = ["layer_stats", "diagnose", "diagnose_weights", "warnings_for", "hidden_layers", "activation_stats"]

BINS = 50
SATURATING = {"sigmoid": (0.02, 0.98), "tanh": (-0.98, 0.98)}  # inside = not saturated
RECTIFIERS = {"relu", "leaky_relu", "elu", "gelu", "silu"}      # output <= 0 iff input <= 0
SATURATED_WARN = 0.5   # fraction of unit values
DEAD_WARN = 0.5        # fraction of units
GRAD_RATIO_WARN = 1e3  # first/last hidden gradient norm outside [1e-3, 1e3]
IDENTICAL_RTOL = 1e-5  # spread across units / mean |pre-activation|
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _activation_names() -> dict[type, str]:
    """Module type -> registry name (nn.ReLU -> 'relu'), from the activation registry."""
    return {type(factory()): name for name, factory in ACTIVATIONS.items()}


# --------------------------------------------------------------------------- model walk

def hidden_layers(model: nn.Module) -> tuple[list[dict[str, Any]], Optional[tuple[str, nn.Module]]]:
    """The hidden layers of ``model`` in module order, and its output layer (name, module).

    Each hidden layer is ``{"name", "activation", "act", "weight_layer"}``; ``name`` is the
    feeding layer's qualified name without a trailing ``.0`` (``fc0``, ``conv1``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> layers, (out_name, _) = hidden_layers(net)
        >>> [(h["name"], h["activation"]) for h in layers], out_name
        ([('0', 'tanh')], '2')
    """
    names = _activation_names()
    layers: list[dict[str, Any]] = []
    last: Optional[tuple[str, nn.Module]] = None  # latest Linear/Conv not yet claimed
    for qualname, module in model.named_modules():
        if isinstance(module, _WEIGHTED):
            last = (qualname, module)
        elif type(module) in names and last is not None:
            name = last[0][:-2] if last[0].endswith(".0") else last[0]
            layers.append(dict(name=name, activation=names[type(module)], act=module,
                               weight_layer=last[1]))
            last = None
    return layers, last


# --------------------------------------------------------------------------- statistics

def _histogram(out: Tensor) -> dict[str, list]:
    """50 bins over the observed range of the finite values."""
    values = out.detach().double().flatten().cpu().numpy()
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = float(values.min()), float(values.max())
    else:
        lo, hi = 0.0, 1.0
    if hi <= lo:  # a constant output (all dead, all zero) still gets a visible bin
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=BINS, range=(lo, hi))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def _per_unit(t: Tensor) -> Tensor:
    """(B, F) or (B, C, *spatial) -> (B * spatial, units): one column per unit."""
    return t.movedim(1, -1).reshape(-1, t.shape[1]) if t.dim() > 2 else t


def _saturated(out: Tensor, activation: str) -> Optional[float]:
    if activation not in SATURATING:
        return None
    lo, hi = SATURATING[activation]
    return ((out < lo) | (out > hi)).double().mean().item()


def _dead(out: Tensor, activation: str) -> Optional[float]:
    if activation not in RECTIFIERS:
        return None
    never_on = (_per_unit(out) <= 0).all(dim=0)  # (units,)
    return never_on.double().mean().item()


def _units_identical(pre: Tensor) -> bool:
    """True when all units' pre-activations agree on every sample (needs >= 2 units)."""
    cols = _per_unit(pre).double()  # (samples, units)
    if cols.shape[1] < 2:
        return False
    spread = cols.std(dim=1).mean().item()  # spread across units, averaged over samples
    return spread <= IDENTICAL_RTOL * (cols.abs().mean().item() + 1e-12)


def _rows_identical(layer: nn.Module) -> bool:
    """True when every unit (weight row / filter, with its bias) of ``layer`` is the same."""
    w = layer.weight.detach().double().reshape(layer.weight.shape[0], -1)  # (units, fan_in)
    if getattr(layer, "bias", None) is not None:
        w = torch.cat([w, layer.bias.detach().double()[:, None]], dim=1)
    if w.shape[0] < 2:
        return False
    return (w - w[:1]).abs().max().item() <= IDENTICAL_RTOL * (w.abs().max().item() + 1e-12)


def activation_stats(pre: Tensor, out: Tensor, activation: str) -> dict[str, Any]:
    """Mean, std, histogram, saturated/dead fractions and symmetry of one layer's output.

    ``pre`` and ``out`` are the activation's input and output, (B, F), (B, C, L) or (B, C, H, W).

    Example:
        >>> s = activation_stats(torch.full((4, 3), -5.0), torch.zeros(4, 3), "relu")
        >>> s["dead_fraction"], s["saturated_fraction"], s["units_identical"]
        (1.0, None, True)
    """
    o = out.detach().double()
    return dict(
        units=int(out.shape[1]), mean=o.mean().item(), std=o.std(unbiased=False).item(),
        histogram=_histogram(o), saturated_fraction=_saturated(o, activation),
        dead_fraction=_dead(o, activation), units_identical=_units_identical(pre.detach()))


# --------------------------------------------------------------------------- one pass

def _forward_backward(model: nn.Module, x: Tensor, y: Tensor, acts: list[nn.Module],
                      weights: list[Tensor]) -> tuple[dict[int, tuple[Tensor, Tensor]], Tensor, list]:
    """One train-mode pass with hooks on ``acts``; returns captures, logits, weight grads.

    Gradients come from ``torch.autograd.grad``, so no ``.grad`` is written; dropout draws
    come from a forked RNG, so the caller's random stream is untouched.
    """
    captured: dict[int, tuple[Tensor, Tensor]] = {}

    def hook_for(i: int):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            captured.setdefault(i, (args[0].detach(), out.detach()))  # first call only
        return hook

    handles = [a.register_forward_hook(hook_for(i)) for i, a in enumerate(acts)]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            logits = model(x)  # (B, classes)
            loss = F.cross_entropy(logits, y)
            wanted = [w for w in weights if w.requires_grad]
            grads = torch.autograd.grad(loss, wanted, allow_unused=True) if wanted else []
    finally:
        for handle in handles:
            handle.remove()
    by_weight = dict(zip(map(id, wanted), grads))
    return captured, logits.detach(), [by_weight.get(id(w)) for w in weights]


def _norm(grad: Optional[Tensor]) -> Optional[float]:
    return None if grad is None else grad.double().norm().item()


def layer_stats(model: nn.Module, x: Tensor, y: Tensor) -> list[dict[str, Any]]:
    """Per hidden layer: activation statistics and weight gradient norm on one batch.

    Runs one forward and one backward pass (cross-entropy on ``y``) in train mode and
    changes nothing: parameters, buffers (batch-norm running stats), ``.grad``, train/eval
    modes and the global RNG are as before, and no hook is left behind. The list ends with
    the output layer (``kind='output'``: logits' mean/std and its weight's gradient norm).
    Layers are numbered from 1 (``layer``). See the module docstring for the definitions.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> stats = layer_stats(net, torch.randn(16, 4), torch.randint(0, 3, (16,)))
        >>> [(s["layer"], s["kind"], s["activation"]) for s in stats]
        [(1, 'hidden', 'relu'), (2, 'output', 'none')]
    """
    hidden, output = hidden_layers(model)
    weights = [h["weight_layer"].weight for h in hidden]
    if output is not None:
        weights.append(output[1].weight)
    modes = {m: m.training for m in model.modules()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        model.train()
        captured, logits, grads = _forward_backward(model, x, y, [h["act"] for h in hidden], weights)
    finally:
        for m, mode in modes.items():
            m.training = mode
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    stats = []
    for i, h in enumerate(hidden):
        pre, out = captured[i]
        s = dict(layer=i + 1, kind="hidden", name=h["name"], activation=h["activation"],
                 **activation_stats(pre, out, h["activation"]), grad_norm=_norm(grads[i]))
        # Identical pre-activations alone may come from a constant input (a dead layer
        # below); the symmetry problem needs identical units in the weights too.
        s["units_identical"] = s["units_identical"] and _rows_identical(h["weight_layer"])
        stats.append(s)
    if output is not None:
        o = logits.double()
        stats.append(dict(layer=len(hidden) + 1, kind="output", name=output[0], activation="none",
                          units=int(logits.shape[1]), mean=o.mean().item(),
                          std=o.std(unbiased=False).item(), saturated_fraction=None,
                          dead_fraction=None, grad_norm=_norm(grads[-1])))
    return stats


# --------------------------------------------------------------------------- warnings

def _fractions_message(layer: dict, init: Optional[float], trained: Optional[float],
                       threshold: float, what: str, advice: str) -> Optional[str]:
    """'layer 4 (sigmoid): 97% of units saturated at init; try ...' or None."""
    parts = []
    if init is not None and init >= threshold:
        parts.append(f"{init:.0%} of units {what} at init")
    if trained is not None and trained >= threshold:
        parts.append(f"{trained:.0%} after training" if parts else f"{trained:.0%} of units {what} after training")
    if not parts:
        return None
    return f"layer {layer['layer']} ({layer['activation']}): {', '.join(parts)}; {advice}"


def _grad_message(hidden: list[dict], phase: str) -> Optional[str]:
    """Vanishing/exploding: first over last hidden gradient norm outside [1e-3, 1e3]."""
    if len(hidden) < 2:
        return None
    first, last = hidden[0]["grad_norm"], hidden[-1]["grad_norm"]
    if first is None or last is None or not (last > 0 and math.isfinite(first) and math.isfinite(last)):
        return None  # no gradient reaches the last hidden layer: nothing to compare
    ratio = first / last
    if ratio < 1 / GRAD_RATIO_WARN:
        factor = f"{1 / ratio:.3g}x" if ratio > 0 else "to zero"
        return (f"gradient norm falls {factor} from the last layer to the first {phase}: "
                "vanishing gradients; try he/xavier init, batch norm or relu")
    if ratio > GRAD_RATIO_WARN:
        return (f"gradient norm grows {ratio:.3g}x from the last layer to the first {phase}: "
                "exploding gradients; try he/xavier init, batch norm or a lower lr")
    return None


SIGNAL_RATIO_WARN = 1e-2  # last / first hidden activation std below this: the signal dies out


def _signal_message(hidden: list[dict], phase: str) -> Optional[str]:
    """Vanishing activations: the spread of the last hidden layer's outputs against the first's.

    The gradient ratio alone misses a net whose every layer is tiny (std 0.01 init): all its
    gradients are small together, but the forward signal shrinks layer by layer.
    """
    if len(hidden) < 2:
        return None
    first, last = hidden[0].get("std"), hidden[-1].get("std")
    if not first or last is None or not (math.isfinite(first) and math.isfinite(last)):
        return None
    ratio = last / first
    if ratio < SIGNAL_RATIO_WARN:
        return (f"activation spread falls {1 / ratio:.3g}x from layer 1 to layer {hidden[-1]['layer']} "
                f"{phase}: the signal vanishes with depth; try xavier/he init or batch norm")
    return None


def _hidden(stats: Optional[Sequence[dict]]) -> list[dict]:
    return [s for s in (stats or []) if s.get("kind", "hidden") == "hidden"]


def warnings_for(stats_init: Sequence[dict], stats_trained: Optional[Sequence[dict]] = None) -> list[str]:
    """Advice in words from the layer stats at init and (optionally) after training.

    Rules: saturated >= 50% or dead >= 50% at init or after training; first/last hidden
    gradient norm ratio below 1e-3 (vanishing) or above 1e3 (exploding), per phase; last/first
    hidden activation std below 1e-2 (the signal vanishes with depth), per phase; units
    with identical pre-activations (symmetry not broken). Layers are numbered from 1.
    ``stats_init`` may be empty: the stats of trained weights alone (a saved model).

    Example:
        >>> layer = dict(layer=2, kind="hidden", activation="relu", saturated_fraction=None,
        ...              dead_fraction=0.63, units_identical=False, grad_norm=1.0)
        >>> warnings_for([dict(layer, dead_fraction=0.0)], [layer])
        ['layer 2 (relu): 63% of units dead after training; try he init, a lower lr or leaky_relu']
        >>> warnings_for([], [layer]) == warnings_for([dict(layer, dead_fraction=0.0)], [layer])
        True
    """
    init, trained = _hidden(stats_init), _hidden(stats_trained)
    before, after = {s["layer"]: s for s in init}, {s["layer"]: s for s in trained}
    out: list[str] = []
    # Every layer either phase measured: a saved model has trained stats and no init ones.
    for number in dict.fromkeys([*before, *after]):
        s, t = before.get(number, {}), after.get(number, {})
        layer = s or t
        if s.get("units_identical") or t.get("units_identical"):
            out.append(f"layer {number}: all units compute the same function "
                       "(symmetry not broken); use a random init")
        dead_advice = ("try he init, a lower lr or leaky_relu" if layer["activation"] == "relu"
                       else "try he init or a lower lr")
        for message in (
            _fractions_message(layer, s.get("saturated_fraction"), t.get("saturated_fraction"),
                               SATURATED_WARN, "saturated", "try xavier init or batch norm"),
            _fractions_message(layer, s.get("dead_fraction"), t.get("dead_fraction"), DEAD_WARN,
                               "dead", dead_advice),
        ):
            if message:
                out.append(message)
    for hidden, phase in ((init, "at init"), (trained, "after training")):
        for message in (_grad_message(hidden, phase), _signal_message(hidden, phase)):
            if message:
                out.append(message)
    return out


# --------------------------------------------------------------------------- a config

def _probe_batch(data, batch: int, seed: int) -> tuple[Tensor, Tensor]:
    """``batch`` training examples drawn without replacement by ``seed`` (all if fewer)."""
    n = len(data.y_train)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch]
    idx = idx.to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def _context(cfg: RunConfig, data, epochs: int, batch: int, result) -> dict[str, Any]:
    m, o = cfg.model, cfg.optimizer
    summary = result.summary()
    return dict(data=cfg.data.name, model=m.name, hidden=list(m.hidden), channels=list(m.channels),
                residual=m.residual,
                activation=m.activation, init=m.init, init_std=m.init_std, norm=m.norm,
                optimizer=o.name, lr=o.lr, seed=cfg.training.seed, split_seed=cfg.data.split_seed,
                epochs=epochs, batch=batch, device=str(data.x_train.device),
                status=summary["status"], val_accuracy=summary["val_accuracy"])


def diagnose(cfg: RunConfig, *, epochs: int = 1, batch: int = 512, data=None) -> dict[str, Any]:
    """Layer stats of ``cfg``'s model at init and after ``epochs`` epochs of ``fit``.

    The model is built with ``cfg.training.seed``; stats are measured on one batch of
    ``batch`` training examples drawn with the same seed, so the result is deterministic.
    ``data`` is a DataBundle to use instead of loading ``cfg.data``. Returns a JSON-ready
    dict (NaN aside): ``context``, ``config``, ``init``, ``trained``, ``warnings``.

    Example:
        >>> from tunelab.config import from_dict
        >>> report = diagnose(from_dict({"model": {"hidden": [16]}}), batch=64)
        >>> [s["name"] for s in report["init"]], report["context"]["epochs"]
        (['fc0', 'out'], 1)
    """
    from tunelab.trainer.fit import fit
    from tunelab.trainer.prepare import prepare

    if batch < 1:
        raise ConfigError(f"batch={batch} is out of range; allowed: [1, inf]")
    cfg = replace(cfg, [f"training.epochs={epochs}"])  # validates epochs >= 1
    run = prepare(cfg, data=data)  # threads, data, the initial weights as tunelab.train has them
    data, model = run.data, run.model
    xb, yb = _probe_batch(data, batch, cfg.training.seed)
    init = layer_stats(model, xb, yb)
    result = fit(cfg, data, model)
    trained = layer_stats(model, xb, yb)
    warnings = warnings_for(init, trained)
    if result.status == "diverged":
        warnings.append(f"training diverged: {result.message}")
    return dict(context=_context(cfg, data, epochs, len(yb), result), config=to_dict(cfg),
                init=init, trained=trained, warnings=warnings)


def diagnose_weights(cfg: RunConfig, weights: dict[str, Tensor], *, batch: int = 512,
                     data=None) -> dict[str, Any]:
    """Layer stats and warnings of ``weights`` (a state dict, say a run folder's model.pt)
    loaded into the model ``cfg`` builds, on the probe batch ``diagnose`` uses.

    Returns ``{"batch": examples measured, "trained": layer stats, "warnings": advice}``;
    weights that do not fit the model are one ConfigError.

    Example:
        >>> from tunelab.config import from_dict
        >>> from tunelab.trainer.prepare import prepare
        >>> cfg = from_dict({"model": {"hidden": [8]}})
        >>> zeros = {k: torch.zeros_like(v) for k, v in prepare(cfg).model.state_dict().items()}
        >>> diagnose_weights(cfg, zeros, batch=64)["warnings"][0]
        'layer 1: all units compute the same function (symmetry not broken); use a random init'
    """
    from tunelab.trainer.prepare import prepare

    if batch < 1:
        raise ConfigError(f"batch={batch} is out of range; allowed: [1, inf]")
    run = prepare(cfg, data=data)
    try:
        run.model.load_state_dict(weights)
    except RuntimeError as e:  # torch lists every mismatch over many lines; the first says enough
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        convs = f"channels={list(cfg.model.channels)}, " if cfg.model.name == "cnn" else ""
        raise ConfigError(f"the weights do not fit the model that model.* builds ({cfg.model.name}, "
                          f"{convs}hidden={list(cfg.model.hidden)}): {first}") from None
    xb, yb = _probe_batch(run.data, batch, cfg.training.seed)
    trained = layer_stats(run.model, xb, yb)
    return dict(batch=len(yb), trained=trained, warnings=warnings_for([], trained))
