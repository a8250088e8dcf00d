"""K models of one structure as one stacked computation.

``StackedNet(models)`` takes K reference modules built by ``tunelab.nn.build_model`` with the same
structure (tunelab's mlp: flatten, hidden blocks of Linear / norm / activation / dropout, residual or
not, an output Linear; or its cnn: conv blocks first, run as one grouped convolution per layer) and holds their state stacked: every entry of the state dict becomes one tensor of
shape (K, *shape). The forward pass walks the first model's layers and applies each to all K members
at once: a Linear is one batched matmul (``baddbmm``), batch norm is one ``F.batch_norm`` over K x F
features (per-member running statistics, right in evaluation mode), layer and group norm normalize
per member and apply each member's affine, dropout draws each member's mask from that member's own
generator with the ops the reference's ``Dropout`` uses (``uniform_``, then the threshold), so a member
sees the masks it would see trained alone.

Example:
    >>> import torch
    >>> from tunelab.config import ModelConfig
    >>> from tunelab.nn import build_model
    >>> models = [build_model(ModelConfig(hidden=[8]), (4,), 3) for _ in range(2)]
    >>> net = StackedNet(models)
    >>> net(torch.zeros(2, 5, 4)).shape  # (K, B, classes)
    torch.Size([2, 5, 3])
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.nn.models import Residual, dropout_keep

__all__ = ["StackedNet", "supported", "UNSUPPORTED"]

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity)
_CONV = (nn.Conv1d, nn.Conv2d)
_PER_CHANNEL = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)  # act on each channel alone
UNSUPPORTED = "the population trains mlp and cnn models built by tunelab; other models run one by one"


def supported(model: nn.Module) -> bool:
    """Whether ``model`` is made only of the layers StackedNet knows.

    Example:
        >>> from tunelab.config import ModelConfig
        >>> from tunelab.nn import build_model
        >>> supported(build_model(ModelConfig(hidden=[4]), (4,), 2)), supported(build_model(
        ...     ModelConfig(name="cnn", channels=[2], hidden=[]), (1, 8, 8), 2))
        (True, True)
    """
    ok = (nn.Sequential, nn.Flatten, nn.Unflatten, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm,
          nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.Dropout, *_CONV, *_PER_CHANNEL, *_ELEMENTWISE)
    return all(isinstance(m, ok) for m in model.modules())


class StackedNet:
    """K members of one structure; ``state[name]`` is (K, *shape) for every state-dict entry."""

    def __init__(self, models: Sequence[nn.Module], template: Optional[nn.Module] = None) -> None:
        """``template`` (default the first model): the module whose layers the forward pass walks, of the
        members' structure; one with dropout layers lets members with and without dropout share a stack
        (a member whose rate is 0 keeps every unit: see ``_dropout``)."""
        self.template = models[0] if template is None else template
        states = [m.state_dict() for m in models]
        self.names = list(states[0])
        self.state = {n: torch.stack([s[n].detach() for s in states]).clone() for n in self.names}
        trainable = {n for n, _ in self.template.named_parameters()}
        for n in self.names:
            if n in trainable:
                self.state[n].requires_grad_(True)
        self.param_names = [n for n in self.names if n in trainable]
        self.training = True
        self.dropout_p: Optional[torch.Tensor] = None  # (K,) rates, set by the trainer
        self.generators: list[torch.Generator] = []  # each member's dropout stream

    @property
    def k(self) -> int:
        return next(iter(self.state.values())).shape[0]

    def params(self) -> list[torch.Tensor]:
        return [self.state[n] for n in self.param_names]

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's state dict (copies), loadable into a reference module."""
        return {n: self.state[n][i].detach().clone() for n in self.names}

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the members at ``index`` (compaction: finished members stop costing compute)."""
        for n in self.names:
            t = self.state[n].detach()[index].clone()
            self.state[n] = t.requires_grad_(True) if n in self.param_names else t
        if self.dropout_p is not None:
            self.dropout_p = self.dropout_p[index]
        self.generators = [self.generators[i] for i in index.tolist()] if self.generators else []

    def extend(self, models: Sequence[nn.Module]) -> None:
        """Add ``models`` (same structure) as new members at the end of the stack: a refilled slot.
        Their state enters as it is (initial weights, fresh batch-norm statistics); the existing
        members' tensors are copied into the wider ones unchanged."""
        states = [m.state_dict() for m in models]
        for n in self.names:
            t = torch.cat([self.state[n].detach(), torch.stack([s[n].detach() for s in states]).to(
                self.state[n].device)]).clone()
            self.state[n] = t.requires_grad_(True) if n in self.param_names else t

    # ------------------------------------------------------------------ forward
    def __call__(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """(K, B, *input) -> (K, B, classes); ``shared``: x is (B, *input), the same for every member
        (evaluation), and the first layer reads it once for all members.

        Two layouts: member-major (K, B, features) for dense layers, and channel-stacked
        (B, K*C, *spatial) for conv blocks, where a conv is one grouped convolution (groups=K) and
        batch, group and instance norm, pooling and activations act per channel as they are.
        """
        self._shared, self._stacked = shared, False  # _stacked: h is (B, K*C, *spatial)
        h = x
        for name, module in self.template.named_children():
            h = self._apply(name, module, h)
        return h

    def _to_channels(self, h: torch.Tensor) -> torch.Tensor:
        """(K, B, C, *S) or a shared (B, C, *S) -> (B, K*C, *S)."""
        if not self._stacked:
            if self._shared:
                h = h.repeat(1, self.k, *([1] * (h.dim() - 2)))
                self._shared = False
            else:
                k, b = h.shape[:2]
                h = h.transpose(0, 1).reshape(b, k * h.shape[2], *h.shape[3:])
            self._stacked = True
        return h

    def _apply(self, name: str, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.Unflatten):  # vectors (D,) as one channel (1, D)
            return h.unsqueeze(-2)
        if isinstance(module, _CONV):
            return self._conv(name, module, self._to_channels(h))
        if self._stacked:
            return self._apply_stacked(name, module, h)
        if self._shared and not isinstance(module, (nn.Flatten, nn.Linear, nn.Sequential)):
            h, self._shared = h.unsqueeze(0).expand(self.k, *h.shape), False  # a layer before any Linear
        if isinstance(module, nn.Flatten):
            return h.reshape(h.shape[0], -1) if self._shared else h.reshape(h.shape[0], h.shape[1], -1)
        if isinstance(module, nn.Sequential):
            out = h
            for sub_name, sub in module.named_children():
                out = self._apply(f"{name}.{sub_name}", sub, out)
            return h + out if isinstance(module, Residual) else out
        s = self.state
        if isinstance(module, nn.Linear):
            w = s[f"{name}.weight"]  # (K, out, in)
            b = s.get(f"{name}.bias")
            if self._shared:  # (B, in) @ (in, K*out): one matmul for every member, then (K, B, out)
                self._shared = False
                k, out_f, in_f = w.shape
                y = h @ w.reshape(k * out_f, in_f).t()  # (B, K*out)
                y = y.view(h.shape[0], k, out_f).transpose(0, 1)
                return y + b.unsqueeze(1) if b is not None else y
            if b is None:
                return torch.bmm(h, w.transpose(1, 2))
            return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (K, B, out)
        if isinstance(module, nn.BatchNorm1d):
            return self._batch_norm(name, module, h)
        if isinstance(module, nn.LayerNorm):
            out = F.layer_norm(h, module.normalized_shape, eps=module.eps)
            return self._affine(name, out) if module.elementwise_affine else out
        if isinstance(module, nn.GroupNorm):
            k, b, f = h.shape
            out = F.group_norm(h.reshape(k * b, f), module.num_groups, eps=module.eps).view(k, b, f)
            return self._affine(name, out) if module.affine else out
        if isinstance(module, nn.Dropout):
            return self._dropout(h)
        if isinstance(module, _ELEMENTWISE):
            return module(h)
        raise TypeError(f"StackedNet cannot apply {type(module).__name__} ({UNSUPPORTED})")

    def _conv(self, name: str, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """K convolutions as one grouped convolution on (B, K*C, *S)."""
        w = self.state[f"{name}.weight"]  # (K, out, C, *kernel)
        b = self.state.get(f"{name}.bias")
        conv = F.conv2d if isinstance(module, nn.Conv2d) else F.conv1d
        return conv(h, w.reshape(-1, *w.shape[2:]), None if b is None else b.reshape(-1), module.stride,
                    module.padding, module.dilation, self.k)

    def _apply_stacked(self, name: str, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """A layer of a conv block on (B, K*C, *S); Flatten returns to (K, B, features)."""
        if isinstance(module, nn.Sequential):
            for sub_name, sub in module.named_children():
                h = self._apply(f"{name}.{sub_name}", sub, h)
            return h
        s = self.state
        if isinstance(module, nn.Flatten):
            self._stacked = False
            b = h.shape[0]
            return h.reshape(b, self.k, -1).transpose(0, 1)  # (K, B, C*prod(S))
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out = F.batch_norm(h, s[f"{name}.running_mean"].view(-1), s[f"{name}.running_var"].view(-1),
                               s[f"{name}.weight"].reshape(-1), s[f"{name}.bias"].reshape(-1), self.training,
                               module.momentum, module.eps)
            if self.training:
                s[f"{name}.num_batches_tracked"] += 1
            return out
        if isinstance(module, nn.GroupNorm):  # each member's groups are contiguous channel blocks
            return F.group_norm(h, self.k * module.num_groups, s[f"{name}.weight"].reshape(-1),
                                s[f"{name}.bias"].reshape(-1), module.eps)
        if isinstance(module, (nn.InstanceNorm1d, nn.InstanceNorm2d)):
            return F.instance_norm(h, weight=s[f"{name}.weight"].reshape(-1), bias=s[f"{name}.bias"].reshape(-1),
                                   use_input_stats=True, eps=module.eps)
        if isinstance(module, nn.Dropout):
            if not self.training:
                return h
            b, kc = h.shape[:2]
            per = h.view(b, self.k, kc // self.k, *h.shape[2:]).transpose(0, 1)  # (K, B, C, *S)
            return self._dropout(per).transpose(0, 1).reshape(h.shape)
        if isinstance(module, (*_PER_CHANNEL, *_ELEMENTWISE)):
            return module(h)
        raise TypeError(f"StackedNet cannot apply {type(module).__name__} in a conv block ({UNSUPPORTED})")

    def _affine(self, name: str, h: torch.Tensor) -> torch.Tensor:
        return h * self.state[f"{name}.weight"].unsqueeze(1) + self.state[f"{name}.bias"].unsqueeze(1)

    def _batch_norm(self, name: str, module: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
        """Batch norm of K members as one over K x F features: (K, B, F) -> (B, K*F) and back."""
        k, b, f = h.shape
        s = self.state
        flat = h.transpose(0, 1).reshape(b, k * f)
        mean, var = s[f"{name}.running_mean"].view(-1), s[f"{name}.running_var"].view(-1)
        weight = s[f"{name}.weight"].reshape(-1) if module.affine else None
        bias = s[f"{name}.bias"].reshape(-1) if module.affine else None
        out = F.batch_norm(flat, mean, var, weight, bias, self.training, module.momentum, module.eps)
        if self.training:
            s[f"{name}.num_batches_tracked"] += 1
        return out.view(b, k, f).transpose(0, 1)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Each member's mask from its own generator, drawn as ``tunelab.nn.models.Dropout`` draws
        it (uniforms, then ``dropout_keep``); a member without dropout keeps every unit and draws
        nothing (its lone run has no dropout layer)."""
        if not self.training:
            return h
        ps = self.dropout_p.tolist()
        u = torch.empty(h.shape, dtype=h.dtype, device=h.device)
        for k, (p, gen) in enumerate(zip(ps, self.generators)):
            if p > 0:
                u[k].uniform_(generator=gen)
            else:
                u[k].fill_(1.0)
        shape = (-1, *([1] * (h.dim() - 1)))
        p = torch.tensor(ps, dtype=h.dtype, device=h.device).view(shape)
        keep = torch.tensor([1 - v for v in ps], dtype=h.dtype, device=h.device).view(shape)
        return h * dropout_keep(u, p, keep)
