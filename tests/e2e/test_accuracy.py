"""Real-data accuracy targets (slow: run with `pytest -m slow`)."""

from pathlib import Path

import pytest

import tunelab

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_digits_default_mlp_reaches_097():
    assert tunelab.train(None, save=False).test_accuracy >= 0.97


def test_mnist_reference_mlp_with_adam_reaches_098_in_10_epochs(shared_data):
    result = tunelab.train(ROOT / "examples/mnist/mlp_adam.yaml", [f"data.dir={shared_data}"], save=False)
    assert result.config.model.hidden == [256, 128] and result.config.optimizer.name == "adam"
    assert result.epochs_run == 10 and result.test_accuracy >= 0.98


def test_fashion_mnist_mlp_reaches_088(shared_data):
    result = tunelab.train(ROOT / "examples/mnist/fashion_mlp.yaml", [f"data.dir={shared_data}"], save=False)
    assert result.test_accuracy >= 0.88
