"""Batched data augmentation: one set of tensor ops per batch, on the batch's device.

Translation (integer pixel shifts, zero fill) and rotation are one affine warp
(``F.affine_grid`` + ``F.grid_sample``); then horizontal flip, gaussian noise and cutout.
Random draws come from the given ``torch.Generator`` only, so a seed fixes the result;
for speed the generator should live on the batch's device (draws are moved otherwise).

Example:
    >>> import torch
    >>> from tunelab.config import AugmentConfig
    >>> x = torch.rand(8, 1, 28, 28)
    >>> g = torch.Generator().manual_seed(0)
    >>> augment_batch(x, AugmentConfig(translate=2, cutout=8), g).shape
    torch.Size([8, 1, 28, 28])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tunelab.config import AugmentConfig
from tunelab.data.bundle import DataBundle
from tunelab.data.catalog import flippable_names
from tunelab.errors import ConfigError

__all__ = ["augment_batch", "check_augment", "GEOMETRIC"]

GEOMETRIC = ("translate", "rotate", "hflip", "cutout")  # need (B, C, H, W) images


def _uniform(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) uniform [0, 1) draws from ``g``, moved to ``device``."""
    return torch.rand(n, generator=g, device=g.device).to(device)


def _randint(lo: int, hi: int, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) integers in [lo, hi) drawn from ``g``, moved to ``device``."""
    return torch.randint(lo, hi, (n,), generator=g, device=g.device).to(device)


def _warp(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Random rotation and integer translation as one affine warp with zero fill."""
    b, _, h, w = x.shape
    angle = (_uniform(b, g, x.device) * 2 - 1) * math.radians(cfg.rotate)  # (B,)
    t = cfg.translate
    dx, dy = (_randint(-t, t + 1, b, g, x.device).to(x.dtype) for _ in range(2))  # (B,) pixels
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    # theta maps output to input in normalized coords; h/w factors keep the rotation rigid
    # on non-square images; a shift by +d pixels reads the input at -2d/size
    theta = torch.stack([torch.stack([cos, -sin * h / w, -2 * dx / w], 1),
                         torch.stack([sin * w / h, cos, -2 * dy / h], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # pure integer shifts land exactly on pixel centres: 'nearest' keeps them exact
    mode = "bilinear" if cfg.rotate else "nearest"
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _cutout(x: torch.Tensor, side: int, g: torch.Generator) -> torch.Tensor:
    """Zero a side x side square centred at a random pixel (clipped at the borders)."""
    b, _, h, w = x.shape
    top = _randint(0, h, b, g, x.device) - side // 2   # (B,)
    left = _randint(0, w, b, g, x.device) - side // 2  # (B,)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)     # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)   # (B, W)
    hole = in_rows[:, :, None] & in_cols[:, None, :]                    # (B, H, W)
    return x.masked_fill(hole[:, None], 0.0)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly augment a batch; returns a new tensor of the same shape and dtype.

    Geometric parts (translate, rotate, hflip, cutout) need images (B, C, H, W); noise works
    on any shape. With nothing active, ``x`` itself is returned.

    Example:
        >>> g = torch.Generator().manual_seed(1)
        >>> x = torch.zeros(2, 1, 4, 4)
        >>> bool((augment_batch(x, AugmentConfig(), g) == x).all())
        True
    """
    if not cfg.active:
        return x
    active = [k for k in GEOMETRIC if getattr(cfg, k)]
    if active and x.dim() != 4:
        raise ValueError(f"augment.{active[0]} needs image batches (B, C, H, W); "
                         f"got shape {tuple(x.shape)}")
    if cfg.translate or cfg.rotate:
        x = _warp(x, cfg, generator)
    if cfg.hflip:
        flip = _uniform(x.shape[0], generator, x.device) < 0.5  # (B,)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.noise:
        noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        x = x + cfg.noise * noise.to(x.device)
    if cfg.cutout:
        x = _cutout(x, cfg.cutout, generator)
    return x


def check_augment(aug: AugmentConfig, bundle: DataBundle) -> None:
    """Raise ConfigError for augmentation that does not fit the data (call before training).

    Example:
        >>> from tunelab.config import DataConfig
        >>> from tunelab.data.splits import load_data
        >>> check_augment(AugmentConfig(translate=2), load_data(DataConfig(name="digits")))
    """
    active = [k for k in GEOMETRIC if getattr(aug, k)]
    if active and not bundle.is_image:
        key = active[0]
        raise ConfigError(f"augment.{key}={getattr(aug, key)!r} needs image data, but "
                          f"data.name={bundle.name!r} gives vectors of shape "
                          f"{bundle.input_shape}; only augment.noise applies to vectors")
    if bundle.is_image and len(bundle.input_shape) == 3:
        # translate (shift) and cutout (square side) are pixels: a whole side or more
        # shifts the image out of view or blanks it
        h, w = bundle.input_shape[1:]
        side = min(h, w)
        for key in ("translate", "cutout"):
            value = getattr(aug, key)
            if value >= side:
                raise ConfigError(f"augment.{key}={value!r} is out of range for data.name="
                                  f"{bundle.name!r} ({h}x{w} images); allowed: [0, {side - 1}]")
    if aug.hflip and not bundle.flippable:
        raise ConfigError(f"augment.hflip=True is not allowed for data.name={bundle.name!r}: "
                          f"flipping changes the class; allowed only for {flippable_names()}")
