"""DataBundle: the whole dataset as tensors, split into train / validation / test."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["DataBundle"]


@dataclass(frozen=True)
class DataBundle:
    """Tensors of one dataset, already split and scaled.

    ``x_*`` are float32 of shape (N, *input_shape) — (N, C, H, W) for images, (N, D) for
    vectors; ``y_*`` are int64 class labels of shape (N,). Parameters learn on train,
    hyperparameters are chosen on validation, test is read once at the end.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    flippable: bool = False  # horizontal flip keeps the label (fashion-mnist yes, digits no)
    is_image: bool = False   # x is (N, C, H, W)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> "DataBundle":
        """The same bundle with every tensor on ``device`` (one copy, then resident)."""
        names = ["x_train", "y_train", "x_val", "y_val", "x_test", "y_test"]
        return replace(self, **{n: getattr(self, n).to(device) for n in names})

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}
