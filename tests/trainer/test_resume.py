"""Resume: a run interrupted (at an epoch end, or killed mid-epoch) and resumed ends bit for bit
like the uninterrupted run; ``--set`` on resume changes what it names and nothing else; what a
checkpoint cannot follow is one ConfigError; a corrupt checkpoint is one line from the CLI."""

import json
import math
import signal
import subprocess
import sys

import pytest
import torch

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.trainer.control import Control
from tunelab.trainer.lineage import run_config
from tunelab.trainer.live import read_status
from tunelab.trainer.state import load

from ._runs import StepLog, assert_same_run, config, strip


def _last(run_dir):
    return load(run_dir / "checkpoints" / "last.pt")


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_resume_after_a_stop_at_an_epoch_end_matches_the_uninterrupted_run(tmp_path):
    cfg = config()
    ref = tunelab.train(cfg, out=tmp_path / "ref")
    # the reference exercises what must be carried: it early-stops before its last epoch and
    # restores its best weights, and the plateau schedule lowered the lr more than once
    assert ref.status == "early_stopped" and 4 <= ref.epochs_run < cfg["training"]["epochs"]
    assert ref.restored_epoch is not None and ref.restored_epoch < ref.epochs_run
    lrs = [h["lr"] for h in ref.history]
    assert len(set(lrs)) >= 3 and lrs == sorted(lrs, reverse=True)

    k = ref.epochs_run - 1  # stop one epoch before early stopping fires: its wait must be carried
    run_dir = tmp_path / "run"
    first = tunelab.train(cfg, out=run_dir, on_epoch=lambda ev: "stop" if ev.epoch == k else None)
    assert first.status == "stopped" and first.epochs_run == k
    assert read_status(run_dir)["status"] == "stopped"
    saved = _last(run_dir)["state"]
    assert (saved["epoch"], saved["step"]) == (k, 0)
    assert saved["early"]["wait"] == 1 and saved["early"]["best_epoch"] == ref.restored_epoch - 1
    assert saved["plateau"]["scale"] < 1

    resumed = tunelab.resume(run_dir)
    assert_same_run(ref, resumed, tmp_path / "ref", run_dir)
    assert read_status(run_dir)["status"] == read_status(tmp_path / "ref")["status"] == "early_stopped"
    assert resumed.history[k]["lr"] < resumed.history[k - 1]["lr"]  # a reduction after the resume
    resume_events = [e for e in resumed.events if e["kind"] == "resume"]
    assert [(e["epoch"], e["step"], e["changes"]) for e in resume_events] == [(k + 1, 0, [])]


# The child trains and kills itself (SIGKILL: no cleanup, no final checkpoint) after step 5 of
# epoch 3; with every_steps=2 its last checkpoint is the one after step 4.
_KILLED_CHILD = r"""
import json, os, signal, sys
import tunelab

cfg, out = json.loads(sys.argv[1]), sys.argv[2]
at = tuple(json.loads(sys.argv[3]))

def on_batch(epoch, step, steps):
    if (epoch, step) == at:
        os.kill(os.getpid(), signal.SIGKILL)

tunelab.train(cfg, out=out, on_batch=on_batch)
sys.exit("the run was not killed")
"""


def test_resume_after_sigkill_mid_epoch_matches_the_uninterrupted_run(tmp_path):
    cfg = config(training={"checkpoint.every_steps": 2})
    run_dir = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", _KILLED_CHILD, json.dumps(cfg), str(run_dir), "[2, 5]"],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    status = read_status(run_dir)
    assert status["status"] == "killed" and status["epoch"] == 2
    payload = _last(run_dir)
    assert (payload["state"]["epoch"], payload["state"]["step"]) == (2, 4)
    assert payload["partial"] is not None and len(payload["state"]["history"]) == 2

    ref = tunelab.train(cfg, out=tmp_path / "ref")
    assert ref.status == "early_stopped" and ref.epochs_run > 3
    resumed = tunelab.resume(run_dir)
    assert_same_run(ref, resumed, tmp_path / "ref", run_dir)
    assert read_status(run_dir)["status"] == "early_stopped"
    assert [(e["epoch"], e["step"]) for e in resumed.events if e["kind"] == "resume"] == [(3, 4)]


def _stopped_after_two_epochs(tmp_path, **sections):
    cfg = config(**sections)
    run_dir = tmp_path / "run"
    first = tunelab.train(cfg, out=run_dir, on_epoch=lambda ev: "stop" if ev.epoch == 2 else None)
    assert first.status == "stopped" and first.epochs_run == 2
    return cfg, run_dir


_QUIET = {"name": "constant"}  # a constant lr: the history's lr column shows exactly what --set did
_NO_ES = {"epochs": 4, "early_stopping.enabled": False}
_ADAM = {"betas": [0.8, 0.99], "eps": 1e-7}


def test_set_lr_on_resume_equals_a_run_whose_lr_changed_at_that_epoch(tmp_path, monkeypatch):
    cfg, run_dir = _stopped_after_two_epochs(tmp_path, schedule=_QUIET, training=_NO_ES, optimizer=_ADAM)
    log = StepLog(monkeypatch)
    resumed = tunelab.resume(run_dir, ["optimizer.lr=0.0025"])
    opt = log.optimizers[-1]
    for group in opt.param_groups:  # the new lr; every other hyperparameter is the run's own
        assert group["lr"] == 0.0025 and tuple(group["betas"]) == (0.8, 0.99)
        assert group["eps"] == 1e-7 and group["weight_decay"] == 0.0
    steps = len(log.lrs) // 2
    assert log.lrs == [0.0025] * (2 * steps)
    # the optimizer state was carried: Adam's step count includes the first two epochs
    assert {int(s["step"]) for s in opt.state.values()} == {4 * steps}
    assert [h["lr"] for h in resumed.history] == [0.01, 0.01, 0.0025, 0.0025]
    assert run_config(run_dir).optimizer.lr == 0.0025
    assert [e["changes"] for e in _events(run_dir) if e["kind"] == "resume"] == [["optimizer.lr=0.0025"]]

    # reference: one uninterrupted run whose lr drops to a quarter (0.0025) from epoch 3 on
    ref = tunelab.train(cfg, out=tmp_path / "ref", schedule=lambda epoch: 1.0 if epoch < 2 else 0.25)
    assert_same_run(ref, resumed)


def test_set_weight_decay_on_resume_keeps_the_other_hyperparameters(tmp_path, monkeypatch):
    _, run_dir = _stopped_after_two_epochs(tmp_path, schedule=_QUIET, training=_NO_ES, optimizer=_ADAM)
    log = StepLog(monkeypatch)
    resumed = tunelab.resume(run_dir, ["optimizer.weight_decay=0.01"])
    assert resumed.status == "completed" and resumed.epochs_run == 4
    for group in log.optimizers[-1].param_groups:
        assert group["weight_decay"] == 0.01 and group["lr"] == 0.01
        assert tuple(group["betas"]) == (0.8, 0.99) and group["eps"] == 1e-7
    assert set(log.lrs) == {0.01}


@pytest.mark.parametrize("overrides,epochs,names", [
    (["data.name=mnist1d"], None, "data.name"),
    (["model.hidden=[64]"], None, "model.hidden"),
    (["training.seed=1"], None, "training.seed"),
    ([], 1, "epochs=1"),
    ([], 2, "epochs=2"),  # as many as are done: nothing would be trained
])
def test_resume_refuses_what_the_checkpoint_cannot_follow(tmp_path, overrides, epochs, names):
    _, run_dir = _stopped_after_two_epochs(tmp_path, schedule=_QUIET, training=_NO_ES)
    before = _snapshot(run_dir)
    with pytest.raises(ConfigError) as err:
        tunelab.resume(run_dir, overrides, epochs=epochs)
    message = str(err.value)
    assert "\n" not in message and names in message
    assert _snapshot(run_dir) == before  # nothing in the folder changed (no event, no status)


def _snapshot(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_resume_refuses_another_batch_size_in_the_middle_of_an_epoch(tmp_path):
    cfg = config(schedule=_QUIET, training=_NO_ES)
    run_dir = tmp_path / "run"
    control = Control()
    first = tunelab.train(cfg, out=run_dir, control=control,
                          on_batch=lambda e, s, n: control.send("stop") if (e, s) == (1, 4) else None)
    assert first.status == "stopped" and _last(run_dir)["state"]["step"] == 4
    with pytest.raises(ConfigError, match="training.batch_size=32 cannot change in the middle") as err:
        tunelab.resume(run_dir, ["training.batch_size=32"])
    assert "\n" not in str(err.value)


def test_resume_refuses_as_many_epochs_as_are_done_when_stopped_mid_epoch(tmp_path):
    run_dir, control = tmp_path / "run", Control()
    tunelab.train(config(schedule=_QUIET, training=_NO_ES), out=run_dir, control=control,
                  on_batch=lambda e, s, n: control.send("stop") if (e, s) == (2, 7) else None)
    assert (_last(run_dir)["state"]["epoch"], _last(run_dir)["state"]["step"]) == (2, 7)
    with pytest.raises(ConfigError, match="epochs=2 is out of range"):
        tunelab.resume(run_dir, epochs=2)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated", "random", "missing"])
def test_cli_resume_on_a_damaged_checkpoint_is_one_line_and_exit_2(tmp_path, capsys, damage):
    run_dir = tmp_path / "run"
    tunelab.train(config(training={"epochs": 1}), out=run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    if damage == "truncated":
        _truncate(last)
    elif damage == "random":
        last.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    else:
        last.unlink()
    capsys.readouterr()
    code = main(["resume", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "last.pt" in lines[0]


def test_cli_resume_continues_a_stopped_run(tmp_path, capsys):
    _, run_dir = _stopped_after_two_epochs(tmp_path, schedule=_QUIET, training=_NO_ES)
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert read_status(run_dir)["status"] == "completed"
    history = _last(run_dir)["state"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert all(math.isfinite(h["val_loss"]) for h in strip(history))
