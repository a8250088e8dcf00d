"""Weight initialization schemes, by name: ``model.init`` resolves through ``INITS``.

Each scheme is ``fn(weight, std) -> None`` and fills a Linear or Conv1d/2d/3d weight in
place. ``std`` is used only by ``normal``. ``torch_default`` is the exception: it leaves
every layer, biases included, as PyTorch constructed it (weight and bias uniform in
+-1/sqrt(fan_in), i.e. Var(w) = 1 / (3 fan_in)). Fans follow torch: for a weight of shape
(out, in, *kernel), fan_in = in * prod(kernel) and fan_out = out * prod(kernel).

| scheme        | Var(w)               | uniform bound       |
|---------------|----------------------|---------------------|
| lecun         | 1 / fan_in           | sqrt(3 / fan_in)    |
| xavier        | 2 / (fan_in+fan_out) | sqrt(3 * Var)       |
| he            | 2 / fan_in           | sqrt(6 / fan_in)    |
| torch_default | 1 / (3 fan_in)       | 1 / sqrt(fan_in)    |

Example:
    >>> import torch
    >>> from tunelab.nn.init import INITS
    >>> w = torch.empty(500, 1000)
    >>> INITS.get("he_normal")(w, 0.01)
    >>> round(w.var().item() * 1000, 1)  # 2 / fan_in = 0.002
    2.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tunelab.registry import Registry

__all__ = ["INITS", "fans", "init_model"]

INITS = Registry("model.init")

# Layers whose affine parameters start at weight=1, bias=0 whatever the scheme.
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.GroupNorm,
               nn.LayerNorm)
# Layers whose weight a scheme fills.
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, *kernel) weight.

    Example:
        >>> fans(torch.empty(32, 16, 3, 3))
        (144, 288)
    """
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@INITS.register("lecun_normal")
def lecun_normal(weight: Tensor, std: float) -> None:
    """Normal with Var = 1/fan_in (LeCun 1998), untruncated."""
    nn.init.normal_(weight, 0.0, math.sqrt(1.0 / fans(weight)[0]))


@INITS.register("lecun_uniform")
def lecun_uniform(weight: Tensor, std: float) -> None:
    """Uniform(-b, b) with b = sqrt(3/fan_in), so Var = 1/fan_in."""
    bound = math.sqrt(3.0 / fans(weight)[0])
    nn.init.uniform_(weight, -bound, bound)


@INITS.register("xavier_normal")
def xavier_normal(weight: Tensor, std: float) -> None:
    """Normal with Var = 2/(fan_in+fan_out) (Glorot & Bengio 2010)."""
    nn.init.xavier_normal_(weight)


@INITS.register("xavier_uniform")
def xavier_uniform(weight: Tensor, std: float) -> None:
    """Uniform with bound sqrt(6/(fan_in+fan_out)), so Var = 2/(fan_in+fan_out)."""
    nn.init.xavier_uniform_(weight)


@INITS.register("he_normal")
def he_normal(weight: Tensor, std: float) -> None:
    """Normal with Var = 2/fan_in (He et al. 2015, gain sqrt(2) for relu)."""
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


@INITS.register("he_uniform")
def he_uniform(weight: Tensor, std: float) -> None:
    """Uniform with bound sqrt(6/fan_in), so Var = 2/fan_in."""
    nn.init.kaiming_uniform_(weight, mode="fan_in", nonlinearity="relu")


@INITS.register("normal")
def normal(weight: Tensor, std: float) -> None:
    """Normal(0, std^2), independent of the fans (``model.init_std``)."""
    nn.init.normal_(weight, 0.0, std)


@INITS.register("zeros")
def zeros(weight: Tensor, std: float) -> None:
    """All zeros: every unit of a layer gets the same gradient (the symmetry problem)."""
    nn.init.zeros_(weight)


@INITS.register("torch_default")
def torch_default(weight: Tensor, std: float) -> None:
    """Keep what PyTorch's constructor drew: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    ``init_model`` leaves the whole model alone for this scheme, biases included.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = nn.Linear(4, 3)
        >>> before = layer.weight.clone(), layer.bias.clone()
        >>> _ = init_model(layer, "torch_default")
        >>> torch.equal(layer.weight, before[0]), torch.equal(layer.bias, before[1])
        (True, True)
    """


def init_model(model: nn.Module, name: str, std: float = 0.01) -> nn.Module:
    """Initialize every Linear/Conv weight with scheme ``name`` in place; return ``model``.

    Biases become zero; normalization layers get weight=1, bias=0. With ``torch_default``
    nothing changes: every layer keeps the weights and biases its constructor drew.

    Example:
        >>> m = init_model(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), "zeros")
        >>> m[0].weight.abs().sum().item(), m[1].weight.sum().item()
        (0.0, 3.0)
    """
    scheme = INITS.get(name)
    if scheme is torch_default:
        return model  # as constructed: weights, biases and norm affines alike
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _WEIGHTED):
                scheme(m.weight, std)
                _zero_bias(m)
            elif isinstance(m, _NORM_TYPES) and getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                _zero_bias(m)
    return model


def _zero_bias(m: nn.Module) -> None:
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)
