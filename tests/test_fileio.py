"""Atomic writes under interruption: a Ctrl-C that lands inside torch.save stays an interrupt."""

import pytest
import torch

from tunelab.fileio import atomic_open, torch_save


class _InterruptedFile:
    """A file whose second write is cut by a Ctrl-C (what SIGINT's handler raises mid-save)."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 2:
            raise KeyboardInterrupt
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_a_ctrl_c_inside_torch_save_is_an_interrupt_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    torch_save({"w": torch.ones(3)}, target)
    with pytest.raises(KeyboardInterrupt):  # torch's zip writer alone turns it into a RuntimeError
        with atomic_open(target, "wb") as f:
            torch.save({"w": torch.zeros(1000)}, _InterruptedFile(f))
    assert torch.equal(torch.load(target)["w"], torch.ones(3))  # the previous checkpoint, whole
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_torch_save_really_turns_the_interrupt_into_a_runtime_error(tmp_path):
    # the reason for the conversion above: if torch ever stops doing this, the test says so
    with open(tmp_path / "x.pt", "wb") as f, pytest.raises(RuntimeError) as info:
        torch.save({"w": torch.zeros(1000)}, _InterruptedFile(f))
    assert isinstance(info.value.__context__, KeyboardInterrupt)


def test_other_runtime_errors_are_not_taken_for_an_interrupt(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(tmp_path / "a.bin", "wb"):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
