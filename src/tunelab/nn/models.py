"""Model families, by name: ``model.name`` resolves through ``MODELS``; ``build_model`` builds.

Both families are one ``nn.Sequential`` of named blocks made by the same ``hidden_block``:

    mlp: flatten -> fc0 .. fc{n-1} -> out
    cnn: conv0 .. conv{m-1} -> flatten -> fc0 .. fc{n-1} -> out

A block is layer -> norm -> act (``norm_position='before'``) or layer -> act -> norm
(``'after'``), then 2x2 pooling (conv blocks), then dropout when ``model.dropout > 0``.
The output layer is a bare Linear: no norm, activation or dropout on the logits.

Example:
    >>> from tunelab.config import ModelConfig
    >>> model = build_model(ModelConfig(hidden=[32]), (1, 8, 8), 10)
    >>> [name for name, _ in model.named_children()]
    ['flatten', 'fc0', 'out']
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from tunelab.config import ModelConfig
from tunelab.errors import ConfigError
from tunelab.nn.activations import make_activation
from tunelab.nn.init import init_model
from tunelab.nn.norms import make_norm
from tunelab.registry import Registry

__all__ = ["MODELS", "build_model", "hidden_block"]

MODELS = Registry("model.name")

_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def hidden_block(layer: nn.Module, width: int, cfg: ModelConfig, *, spatial: bool,
                 norm: str, pool: nn.Module | None = None) -> nn.Sequential:
    """``layer`` followed by norm and activation in the configured order, pool, dropout.

    Example:
        >>> cfg = ModelConfig(norm="batch", norm_position="after", dropout=0.1)
        >>> block = hidden_block(nn.Linear(4, 8), 8, cfg, spatial=False, norm=cfg.norm)
        >>> [type(m).__name__ for m in block]
        ['Linear', 'ReLU', 'BatchNorm1d', 'Dropout']
    """
    norm_act = [make_norm(norm, width, spatial, cfg.groups), make_activation(cfg.activation)]
    parts = [layer, *(norm_act if cfg.norm_position == "before" else norm_act[::-1])]
    if pool is not None:
        parts.append(pool)
    if cfg.dropout > 0:
        parts.append(nn.Dropout(cfg.dropout))
    return nn.Sequential(*parts)


def _dense_blocks(in_features: int, cfg: ModelConfig, norm: str) -> tuple[list, int]:
    """Named hidden Linear blocks of widths ``cfg.hidden``; returns them and the last width."""
    blocks = []
    for i, width in enumerate(cfg.hidden):
        block = hidden_block(nn.Linear(in_features, width), width, cfg, spatial=False, norm=norm)
        blocks.append((f"fc{i}", block))
        in_features = width
    return blocks, in_features


@MODELS.register("mlp")
def mlp(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Flatten any input, hidden blocks of widths ``cfg.hidden``, Linear to the classes.

    ``hidden=[]`` is multinomial logistic regression.
    """
    blocks, width = _dense_blocks(math.prod(input_shape), cfg, cfg.norm)
    out = nn.Linear(width, num_classes)
    return nn.Sequential(OrderedDict([("flatten", nn.Flatten()), *blocks, ("out", out)]))


def _pool_after(kind: str, h: int, w: int) -> tuple[nn.Module | None, int, int]:
    """The 2x2 pooling layer and the map size after it; none where a side would reach 0."""
    if kind == "none" or h < 2 or w < 2:
        return None, h, w
    return _POOLS[kind](2), h // 2, w // 2


@MODELS.register("cnn")
def cnn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Conv blocks of ``cfg.channels``, flatten, a head of ``cfg.hidden`` widths, Linear out.

    Instance norm has no meaning on the head's (N, F) features, so with ``norm='instance'``
    only the conv blocks are normalized; every other norm applies to the head too.
    """
    if len(input_shape) != 3:
        raise ConfigError("model.name='cnn' needs image data with shape (C, H, W); "
                          f"got input shape {tuple(input_shape)}")
    c, h, w = input_shape
    k = cfg.kernel_size
    blocks = []
    for i, channels in enumerate(cfg.channels):
        conv = nn.Conv2d(c, channels, k, padding=k // 2)
        h, w = h + 2 * (k // 2) - k + 1, w + 2 * (k // 2) - k + 1  # same size for odd k
        pool, h, w = _pool_after(cfg.pool, h, w)
        blocks.append((f"conv{i}", hidden_block(conv, channels, cfg, spatial=True,
                                                norm=cfg.norm, pool=pool)))
        c = channels
    head_norm = "none" if cfg.norm == "instance" else cfg.norm
    head, width = _dense_blocks(c * h * w, cfg, head_norm)  # (N, C*H*W) -> (N, width)
    layers = [*blocks, ("flatten", nn.Flatten()), *head, ("out", nn.Linear(width, num_classes))]
    return nn.Sequential(OrderedDict(layers))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build model ``cfg.name`` for inputs of ``input_shape`` (no batch dim), then initialize.

    Every Linear/Conv2d weight (the output layer included) gets ``cfg.init`` with
    ``cfg.init_std``; biases are zero. Seed torch beforehand for reproducible weights.

    Example:
        >>> import torch
        >>> model = build_model(ModelConfig(name="cnn", hidden=[]), (1, 28, 28), 10)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    model = MODELS.get(cfg.name)(cfg, tuple(input_shape), num_classes)
    return init_model(model, cfg.init, cfg.init_std)
