"""history.csv and result.json are written as the run goes: a run killed without warning
(SIGKILL: no handler, no final write) leaves both, and they agree with each other."""

import csv
import json
import signal
import subprocess
import sys

import pytest

import tunelab
from tunelab.config import from_dict
from tunelab.trainer.live import LiveFolder, read_status, running_result

CFG = {"model": {"hidden": [16]}, "training": {"epochs": 5, "threads": 1, "checkpoint": {"every": 0}}}

# The child trains and kills itself at the first step of its third epoch (on_batch's epoch is
# 0-based): two epochs are done, the third never ends.
_KILLED = r"""
import json, os, signal, sys
import tunelab

def on_batch(epoch, step, steps):
    if epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)

tunelab.train(json.loads(sys.argv[1]), out=sys.argv[2], on_batch=on_batch)
sys.exit("the run was not killed")
"""


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if k != "interventions"} for row in csv.DictReader(f)]


def test_a_sigkilled_run_leaves_history_and_result_that_agree(tmp_path):
    run_dir = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", _KILLED, json.dumps(CFG), str(run_dir)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    history = _history(run_dir)
    result = json.loads((run_dir / "result.json").read_text())
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    assert result["status"] == "running" and result["epochs_run"] == 2
    best = max(history, key=lambda h: h["val_accuracy"])
    assert result["best_val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert result["best_epoch"] == int(best["epoch"])
    assert result["val_accuracy"] == pytest.approx(history[-1]["val_accuracy"])
    assert result["val_loss"] == pytest.approx(history[-1]["val_loss"])
    assert result["seconds"] == pytest.approx(sum(h["seconds"] for h in history))
    assert result["test_accuracy"] is None  # the test set is read once, at the end
    assert read_status(run_dir)["status"] == "killed"  # status.json still tells the kill apart
    assert not list(run_dir.glob(".*.tmp"))  # every write was renamed into place


def test_the_final_result_replaces_the_running_one(tmp_path):
    seen = []

    def on_epoch(event):  # the files as they are at the end of each epoch
        if event.epoch == 2:
            seen.append(json.loads((tmp_path / "run" / "result.json").read_text()))

    result = tunelab.train(CFG, ["training.epochs=3"], out=tmp_path / "run",
                           on_epoch=on_epoch)
    final = json.loads((tmp_path / "run" / "result.json").read_text())
    # on_epoch runs before the epoch's files are written: at epoch 2 it sees epoch 1's
    assert seen and seen[0]["status"] == "running" and seen[0]["epochs_run"] == 1
    assert final["status"] == "completed" and final["epochs_run"] == 3
    assert final["test_accuracy"] == pytest.approx(result.test_accuracy) and "versions" in final


def test_a_resumed_folder_keeps_the_fields_of_its_earlier_result(tmp_path):
    cfg = from_dict(CFG)
    (tmp_path / "result.json").write_text(json.dumps({"status": "stopped", "custom_model": True, "epochs_run": 1}))
    history = [dict(epoch=1, val_loss=0.5, val_accuracy=0.8, seconds=1.0)]
    LiveFolder(tmp_path, cfg, fresh=False).epoch_done(history, [], 0.8)
    kept = json.loads((tmp_path / "result.json").read_text())
    # a resume after a kill must still know the run trained a model of its own
    assert kept["custom_model"] is True and kept["status"] == "running"
    LiveFolder(tmp_path, cfg, fresh=True).epoch_done(history, [], 0.8)
    assert "custom_model" not in json.loads((tmp_path / "result.json").read_text())


def test_running_result_of_diverged_and_empty_histories():
    nan = float("nan")
    r = running_result([dict(epoch=1, val_loss=0.7, val_accuracy=0.6, seconds=1.0),
                        dict(epoch=2, val_loss=nan, val_accuracy=0.1, seconds=1.0)])
    assert r["best_epoch"] == 1 and r["val_loss"] is None and r["val_accuracy"] == 0.1
    json.dumps(r, allow_nan=False)
    empty = running_result([])
    assert empty["epochs_run"] == 0 and empty["best_epoch"] is None and empty["val_accuracy"] is None
