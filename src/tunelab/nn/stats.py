"""Model size and cost: parameter count and training FLOPs per sample.

A Linear or Conv1d/2d/3d layer doing M multiply-adds per sample costs, in one training step,
2M FLOPs forward, 2M for its weight gradient and 2M for its input gradient, the last only
where autograd needs it: the first layer's input is the data, which takes no gradient.
Biases, norms, activations, pooling and residual additions are left out: they are small.
A conv layer does (in_channels / groups) * prod(kernel) multiply-adds per output value,
whatever its stride and padding: the output shape says how many values there are.

For the 784-256-128-10 MLP: M = 784*256 + 256*128 + 128*10 = 234,752, of which the hidden
and output layers do 34,048; 2 * (2 * 234,752 + 34,048) = 1,007,104 FLOPs per sample,
about 6.04e10 per 60,000-image MNIST epoch. (The cruder 6M would say 1,408,512.)

Example:
    >>> from torch import nn
    >>> mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
    ...                     nn.Linear(128, 10))
    >>> flops_per_sample(mlp, (784,))
    1007104
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["count_params", "forward_macs", "flops_per_sample"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers counted


def count_params(model: nn.Module) -> int:
    """Number of scalar parameters (weights, biases, norm scales and shifts).

    Example:
        >>> count_params(nn.Linear(784, 10))
        7850
    """
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, out: Tensor) -> int:
    """Multiply-adds of one Linear/Conv call for one sample, from its output shape."""
    if isinstance(module, nn.Linear):
        per_output = module.in_features
    else:
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    return per_output * math.prod(out.shape[1:])  # out: (1, ...) -> outputs of one sample


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[int, bool, bool]]:
    """Run one sample through ``model``; per Linear/Conv call: (macs, needs dW, needs dX)."""
    calls: list[tuple[int, bool, bool]] = []

    def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
        calls.append((_layer_macs(module, out), module.weight.requires_grad,
                      args[0].requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, _WEIGHTED)]
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    try:
        model.eval()  # batch norm cannot train on a batch of one; running stats stay put
        with torch.enable_grad():  # so requires_grad tells which input gradients exist
            model(torch.zeros(1, *input_shape, device=param.device if param is not None else None))
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes.items():
            m.training = mode
    return calls


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of Linear/Conv layers in one forward pass of one sample.

    ``input_shape`` excludes the batch dimension.

    Example:
        >>> forward_macs(nn.Conv2d(1, 4, 3, padding=1), (1, 8, 8))  # 4*8*8 outputs x 9
        2304
        >>> forward_macs(nn.Conv1d(2, 4, 5, stride=2, padding=2), (2, 40))  # 4*20 outputs x 2*5
        800
    """
    return sum(macs for macs, _, _ in _trace(model, input_shape))


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Training FLOPs of one sample: forward, weight gradients and the input gradients needed.

    Example:
        >>> flops_per_sample(nn.Linear(784, 10), (784,))  # forward + dW; no dX for the data
        31360
    """
    calls = _trace(model, input_shape)
    return sum(2 * macs * (1 + needs_dw + needs_dx) for macs, needs_dw, needs_dx in calls)
