"""augment_batch (batched tensor ops) and check_augment (config vs dataset)."""

from __future__ import annotations

import pytest
import torch

from tunelab.config import AugmentConfig
from tunelab.data import DataBundle, augment_batch, check_augment
from tunelab.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bundle(name: str, is_image: bool, flippable: bool) -> DataBundle:
    x = torch.zeros(4, 1, 8, 8) if is_image else torch.zeros(4, 40)
    y = torch.zeros(4, dtype=torch.int64)
    return DataBundle(name, x, y, x, y, x, y, num_classes=10, flippable=flippable,
                      is_image=is_image)


def test_identity_when_inactive() -> None:
    x = torch.rand(5, 1, 8, 8)
    assert augment_batch(x, AugmentConfig(), _gen()) is x


@pytest.mark.parametrize("cfg", [AugmentConfig(translate=2), AugmentConfig(rotate=15.0),
                                 AugmentConfig(hflip=True), AugmentConfig(noise=0.1),
                                 AugmentConfig(cutout=3),
                                 AugmentConfig(translate=2, rotate=10, hflip=True, noise=0.1,
                                               cutout=4)])
def test_shape_dtype_and_determinism(cfg: AugmentConfig) -> None:
    x = torch.rand(16, 3, 12, 10)
    a, b = augment_batch(x, cfg, _gen(7)), augment_batch(x, cfg, _gen(7))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, cfg, _gen(8)))


def test_translate_moves_a_bright_pixel_by_at_most_translate() -> None:
    x = torch.zeros(256, 1, 15, 15)
    x[:, :, 7, 7] = 1.0
    out = augment_batch(x, AugmentConfig(translate=3), _gen())
    flat = out.reshape(256, -1)
    assert torch.equal(flat.sum(1), torch.ones(256))  # integer shift: the pixel moves exactly
    pos = flat.argmax(1)
    dy, dx = pos // 15 - 7, pos % 15 - 7
    assert dy.abs().max() <= 3 and dx.abs().max() <= 3
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 30  # of the 49 shifts, many are used


def test_translate_zero_fills_the_border() -> None:
    out = augment_batch(torch.ones(64, 1, 8, 8), AugmentConfig(translate=2), _gen())
    zero_rows = (out[:, 0].sum(2) == 0).sum(1) + (out[:, 0].sum(1) == 0).sum(1)  # (B,)
    assert zero_rows.max() <= 4 and zero_rows.sum() > 0
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_rotation_angle_stays_within_rotate() -> None:
    x = torch.zeros(64, 1, 41, 41)
    x[:, :, 20, 4:37] = 1.0  # a horizontal bar through the centre pixel
    out = augment_batch(x, AugmentConfig(rotate=30.0), _gen())[:, 0]  # (B, H, W)
    torch.testing.assert_close(out[:, 20, 20], torch.ones(64))  # the centre stays
    # orientation of the bar from the second moments of its pixels
    ys, xs = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    m = out / out.sum(dim=(1, 2), keepdim=True)
    cxx, cyy, cxy = ((m * v).sum(dim=(1, 2)) for v in (xs * xs, ys * ys, xs * ys))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * cxy, cxx - cyy))  # (B,)
    assert angle.abs().max() <= 31.0
    assert angle.min() < -15 and angle.max() > 15  # both directions, large angles used


def test_flip_is_an_exact_mirror() -> None:
    x = torch.rand(64, 2, 5, 6)
    out = augment_batch(x, AugmentConfig(hflip=True), _gen())
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


def test_cutout_zeroes_a_square() -> None:
    side = 4
    out = augment_batch(torch.ones(200, 2, 20, 20), AugmentConfig(cutout=side), _gen())
    assert torch.equal(out[:, 0], out[:, 1])  # the same hole in every channel
    inside = 0
    for img in out[:, 0]:  # checking loop over results, not part of the augmentation
        rows, cols = torch.nonzero(img == 0, as_tuple=True)
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == h * w and h <= side and w <= side  # a filled rectangle
        if 0 < rows.min() and rows.max() < 19 and 0 < cols.min() and cols.max() < 19:
            assert (h, w) == (side, side)
            inside += 1
    assert inside > 100


def test_noise_std() -> None:
    x = torch.full((64, 1, 32, 32), 0.5)
    out = augment_batch(x, AugmentConfig(noise=0.2), _gen())
    assert abs(float((out - x).std()) - 0.2) < 0.005
    assert abs(float((out - x).mean())) < 0.005
    vec = augment_batch(torch.zeros(1000, 40), AugmentConfig(noise=0.1), _gen())  # vectors too
    assert abs(float(vec.std()) - 0.1) < 0.005


def test_geometric_on_vectors_is_refused() -> None:
    with pytest.raises(ValueError, match=r"augment.translate needs image batches"):
        augment_batch(torch.zeros(4, 40), AugmentConfig(translate=1), _gen())


def test_check_augment() -> None:
    with pytest.raises(ConfigError) as e:
        check_augment(AugmentConfig(hflip=True), _bundle("mnist", True, False))
    assert str(e.value) == ("augment.hflip=True is not allowed for data.name='mnist': flipping "
                            "changes the class; allowed only for ['fashion-mnist']")
    check_augment(AugmentConfig(hflip=True, translate=2), _bundle("fashion-mnist", True, True))
    for key, value in [("translate", 2), ("rotate", 5.0), ("cutout", 3), ("hflip", True)]:
        with pytest.raises(ConfigError, match=rf"augment.{key}=.* needs image data.*'mnist1d'"):
            check_augment(AugmentConfig(**{key: value}), _bundle("mnist1d", False, False))
    check_augment(AugmentConfig(noise=0.1), _bundle("mnist1d", False, False))


def test_translate_and_cutout_must_be_smaller_than_the_image() -> None:
    digits = _bundle("digits", True, False)  # 8x8 images
    for key in ("translate", "cutout"):
        check_augment(AugmentConfig(**{key: 7}), digits)
        for value in (8, 100):
            with pytest.raises(ConfigError) as e:
                check_augment(AugmentConfig(**{key: value}), digits)
            assert str(e.value) == (f"augment.{key}={value} is out of range for data.name='digits' "
                                    f"(8x8 images); allowed: [0, 7]")
    x = torch.zeros(4, 1, 28, 20)  # the shorter side sets the limit
    y = torch.zeros(4, dtype=torch.int64)
    wide = DataBundle("npz", x, y, x, y, x, y, num_classes=10, is_image=True)
    check_augment(AugmentConfig(translate=19, cutout=19), wide)
    with pytest.raises(ConfigError, match=r"augment.cutout=20 .*\(28x20 images\); allowed: \[0, 19\]"):
        check_augment(AugmentConfig(cutout=20), wide)


def test_oversized_augment_is_refused_before_training() -> None:
    import tunelab

    with pytest.raises(ConfigError, match=r"augment.translate=50 is out of range.*allowed: \[0, 7\]"):
        tunelab.train({"augment": {"translate": 50}, "training": {"epochs": 1}}, save=False)
