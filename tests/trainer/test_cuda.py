"""The trainer on CUDA gives the same learning as on CPU (marker: gpu; skipped without a GPU)."""

import pytest
import torch

from tunelab.config import from_dict
from tunelab.trainer.fit import fit

from .conftest import make_bundle, make_model

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_run_matches_cpu_closely():
    cfg = from_dict({}, ["training.epochs=3", "training.batch_size=50", "optimizer.name=sgd", "optimizer.lr=0.1"])
    cpu = fit(cfg, make_bundle(), make_model())
    gpu = fit(cfg, make_bundle().to("cuda"), make_model().to("cuda"))
    assert next(gpu.model.parameters()).is_cuda
    for a, b in zip(cpu.history, gpu.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert gpu.test_accuracy == pytest.approx(cpu.test_accuracy, abs=0.02)
