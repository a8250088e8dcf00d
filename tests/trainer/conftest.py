import pytest
import torch

from tunelab.data.bundle import DataBundle


def make_bundle(n=600, d=12, classes=3, seed=0, noise=0.5):
    """A learnable synthetic problem: labels from a random linear teacher."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(d, classes, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ teacher + noise * torch.randn(n, classes, generator=g)).argmax(1)
    a, b = int(n * 0.6), int(n * 0.8)
    return DataBundle("synthetic", x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], classes)


@pytest.fixture
def bundle():
    return make_bundle()


def make_model(d=12, classes=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.ReLU(), torch.nn.Linear(32, classes))
