"""RunState and checkpoint files: RNG states round-trip, the state round-trips through plain
types, checkpoints load with weights_only=True, a kill during a write keeps the previous
checkpoint, and a damaged checkpoint is one ConfigError naming the file."""

import dataclasses
import math
import pickle
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import tunelab
from tunelab.errors import ConfigError
from tunelab.optim.schedules import PlateauState
from tunelab.trainer.control import Control
from tunelab.trainer.callbacks import EarlyStopState
from tunelab.trainer.state import (
    FORMAT,
    RunState,
    load,
    rng_state,
    save,
    set_rng_state,
    state_from_dict,
    state_to_dict,
)

from ._runs import config, same_tree


def _draws(gen, aug_gen):
    """One draw from every stream: global torch (dropout), data order, augmentation, numpy
    (uniform, and a normal that uses the cached second gaussian), python (likewise)."""
    return [torch.rand(5), torch.randperm(20, generator=gen), torch.rand(4, generator=aug_gen),
            torch.randn(3, generator=aug_gen), np.random.rand(3).tolist(), float(np.random.standard_normal()),
            random.random(), random.gauss(0.0, 1.0)]


def test_rng_states_round_trip_through_a_checkpoint_file(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    gen, aug_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    _draws(gen, aug_gen)  # advance every stream; one normal each leaves numpy's and python's second gaussian cached
    saved = rng_state(gen, aug_gen)
    assert saved["numpy"][3] == 1 and saved["python"][2] is not None  # the caches are part of it
    path = tmp_path / "rng.pt"
    save({"format": FORMAT, "state": state_to_dict(RunState()), "rng": saved}, path)
    expected = _draws(gen, aug_gen)

    # scramble every stream, then restore from the file
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    gen.manual_seed(0)
    aug_gen.manual_seed(0)
    assert _draws(gen, aug_gen)[0].tolist() != expected[0].tolist()
    set_rng_state(load(path)["rng"], gen, aug_gen)
    same_tree(_draws(gen, aug_gen), expected)


def test_data_order_and_augmentation_generators_are_kept_apart():
    gen, aug_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    saved = rng_state(gen, aug_gen)
    order, aug = torch.randperm(10, generator=gen), torch.rand(3, generator=aug_gen)
    set_rng_state(saved, gen, aug_gen)
    torch.rand(100, generator=aug_gen)  # draws on one stream do not move the other
    assert torch.equal(torch.randperm(10, generator=gen), order)
    set_rng_state(saved, gen, aug_gen)
    assert torch.equal(torch.rand(3, generator=aug_gen), aug)


def _plain(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def test_state_round_trips_through_plain_types_and_a_file(tmp_path):
    state = RunState(
        epoch=4, step=7,
        history=({"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "lr": 0.01},
                 {"epoch": 2, "train_loss": 0.4, "val_loss": 0.55, "lr": 0.005}),
        events=({"kind": "control", "command": "lr*=0.5", "epoch": 3, "step": 2, "id": None},),
        plateau=PlateauState(best=0.55, bad_epochs=1, cooldown_left=2, scale=0.25),
        early=EarlyStopState(best=0.55, best_epoch=1, wait=1, stop=False, improved=False),
        lr_mult=0.5, early_stopping=False, paused=True)
    raw = state_to_dict(state)
    assert _plain(raw)
    _same_state(state_from_dict(raw), state)
    path = tmp_path / "state.pt"
    save({"format": FORMAT, "state": raw}, path)
    _same_state(state_from_dict(load(path)["state"]), state)
    # the defaults too, whose NaN bests must come back as NaN
    fresh = state_from_dict(torch.load(_saved(tmp_path, RunState()), weights_only=True)["state"])
    assert math.isnan(fresh.plateau.best) and math.isnan(fresh.early.best)
    _same_state(fresh, RunState())


def _same_state(a, b):
    """Equal field by field, types included (NaN equals NaN)."""
    assert type(a.plateau) is PlateauState and type(a.early) is EarlyStopState
    assert isinstance(a.history, tuple) and isinstance(a.events, tuple)
    same_tree(dataclasses.asdict(a), dataclasses.asdict(b))


def _saved(tmp_path, state):
    path = tmp_path / "default.pt"
    save({"format": FORMAT, "state": state_to_dict(state)}, path)
    return path


def test_a_training_checkpoint_loads_with_weights_only(tmp_path):
    run_dir = tmp_path / "run"
    control = Control()
    tunelab.train(config(training={"epochs": 2, "early_stopping.enabled": False}), out=run_dir, control=control,
                  on_batch=lambda e, s, n: control.send("stop") if (e, s) == (1, 3) else None)
    path = run_dir / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)  # no pickled code: plain types and tensors only
    assert payload["format"] == FORMAT
    assert {"state", "model", "optimizer", "best_weights", "rng", "partial", "order", "config"} <= set(payload)
    state = state_from_dict(payload["state"])
    assert (state.epoch, state.step, len(state.history)) == (1, 3, 1)
    assert set(payload["partial"]) == {"seen", "loss_sum", "correct"} and payload["partial"]["seen"] > 0
    assert set(payload["order"]) == {"perm", "pass"} and payload["order"]["pass"] == 1
    assert set(payload["rng"]) >= {"torch", "data_order", "augment", "numpy", "python"}


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "last.pt"  # the folder is created
    save({"format": FORMAT, "state": state_to_dict(RunState(epoch=1)), "w": torch.zeros(3)}, path)
    save({"format": FORMAT, "state": state_to_dict(RunState(epoch=2)), "w": torch.ones(3)}, path)
    payload = load(path)
    assert payload["state"]["epoch"] == 2 and torch.equal(payload["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


# The child writes a first checkpoint, then dies (SIGKILL) halfway through writing the second:
# torch.save is replaced by one that writes half of the real bytes, syncs them, and kills.
_KILLED_WRITER = r"""
import io, os, signal, sys
import torch
from tunelab.trainer import state

path = sys.argv[1]
def payload(epoch, w):
    return {"format": state.FORMAT, "state": state.state_to_dict(state.RunState(epoch=epoch)), "model": {"w": w}}

state.save(payload(1, torch.arange(10000.0)), path)
real_save = torch.save

def half_then_die(obj, f, *args, **kwargs):
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = half_then_die
state.save(payload(2, torch.zeros(10000)), path)
sys.exit("not killed")
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    payload = load(path)
    assert payload["state"]["epoch"] == 1 and torch.equal(payload["model"]["w"], torch.arange(10000.0))
    # the second write really was cut short: its half-written temporary file is still there
    (partial,) = [p for p in path.parent.iterdir() if p.name != "last.pt"]
    assert partial.name.startswith(".last.pt.") and 0 < partial.stat().st_size < path.stat().st_size


def _one_line_naming(err, path):
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def _good(tmp_path):
    path = tmp_path / "last.pt"
    save({"format": FORMAT, "state": state_to_dict(RunState(epoch=1)), "w": torch.arange(5000.0)}, path)
    return path


def test_a_truncated_checkpoint_is_one_config_error(tmp_path):
    path = _good(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "corrupt" in _one_line_naming(err, path)


def test_random_bytes_are_one_config_error(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "corrupt" in _one_line_naming(err, path)


def test_a_missing_checkpoint_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "nothing.pt")
    assert "does not exist" in _one_line_naming(err, tmp_path / "nothing.pt")


@pytest.mark.parametrize("payload", [{"w": torch.zeros(2)}, {"format": FORMAT + 1, "state": {}}, [1, 2]])
def test_a_torch_file_that_is_no_tunelab_checkpoint_is_one_config_error(tmp_path, payload):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "not a tunelab checkpoint" in _one_line_naming(err, path)


class _Anything:  # pickled by reference: weights_only refuses to import it
    pass


def test_a_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"format": FORMAT, "state": {}, "x": _Anything()}, f, pickle_module=pickle)
    with pytest.raises(ConfigError) as err:
        load(path)
    _one_line_naming(err, path)
