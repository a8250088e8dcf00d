"""Steering runs from the command line: ``tunelab control`` on a running ``tunelab train``,
``tunelab resume`` of a stopped or killed run, ``tunelab fork`` and ``tunelab runs``.

Runs that must be steered while they train are real ``tunelab train`` processes started with
many epochs; the commands are sent from this process through the run folder. Every wait on
such a process has a generous limit that only guards against a hang (nothing is timed).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.trainer import state as run_state
from tunelab.trainer.live import read_status

SMALL = ["--set", "model.hidden=[16]", "--set", "training.threads=1"]
ALLOWED = "allowed: ['lr=VALUE', 'lr*=FACTOR', 'pause', 'resume', 'stop'"
HANG_GUARD_S = 120


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _history(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "interventions")} for r in rows]


def _runs_row(out: str, name: str) -> str:
    """The line of ``tunelab runs`` output that lists run ``name``."""
    rows = [line for line in out.splitlines() if re.search(rf"[│|]\s*{re.escape(name)}\s*[│|]", line)]
    assert len(rows) == 1, out
    return rows[0]


def _train(capsys, run: Path, epochs: int, *extra: str) -> None:
    code, _, err = _run(capsys, "train", "--out", run, "-q", "--set", f"training.epochs={epochs}", *SMALL, *extra)
    assert code == 0, err


class TrainProcess:
    """``tunelab train --out RUN`` in a child process with many epochs (killed at teardown)."""

    def __init__(self, run: Path, cwd: Path) -> None:
        self.run, self.log = run, cwd / f"{run.name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tunelab.cli.main", "train", "--out", str(run), "-q",
                 "--set", "training.epochs=100000", *SMALL],
                cwd=cwd, stdout=log, stderr=subprocess.STDOUT)

    def wait_until(self, what: str, predicate) -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while not predicate():
            if self.proc.poll() is not None:
                pytest.fail(f"train exited ({self.proc.returncode}) before {what}: {self.log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"hang guard: still no {what}")
            time.sleep(0.05)

    def wait_running(self) -> None:
        self.wait_until("status running", lambda: read_status(self.run).get("status") == "running")

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            pytest.fail("hang guard: train did not exit after stop")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def start_train(workdir):
    started: list[TrainProcess] = []

    def start(name: str = "run") -> TrainProcess:
        started.append(TrainProcess(workdir / name, workdir))
        return started[-1]

    yield start
    for p in started:
        p.close()


# ---------------------------------------------------------------------------- control
def test_control_steers_a_running_train_and_resume_keeps_the_new_lr(capsys, start_train):
    p = start_train()
    run = p.run
    p.wait_running()
    code, out, err = _run(capsys, "control", run, "lr*=0.5", "--wait", HANG_GUARD_S)
    assert code == 0, err
    m = re.fullmatch(r"lr\*=0\.5: applied at epoch (\d+) step (\d+) \(lr 0\.0005\)\n", out)
    assert m, out
    lr_epoch, lr_step = int(m.group(1)), int(m.group(2))
    # the run goes on with the halved lr: wait for a finished epoch after the command
    p.wait_until("an epoch after lr*=0.5", lambda: read_status(run).get("epoch", 0) > lr_epoch)
    code, out, err = _run(capsys, "control", run, "stop", "--wait", HANG_GUARD_S)
    assert code == 0, err
    m = re.fullmatch(r"stop: applied at epoch (\d+) step (\d+) \(lr 0\.0005\)\n", out)
    assert m, out
    stop_epoch = int(m.group(1))
    assert p.finish() == 0, p.log.read_text()

    assert json.loads((run / "result.json").read_text())["status"] == "stopped"
    assert _status(run)["status"] == "stopped"
    control = [e for e in _events(run) if e["kind"] == "control"]
    assert [(e["command"], e["epoch"], e["step"], e["source"]) for e in control] == [
        ("lr*=0.5", lr_epoch, lr_step, "control"), ("stop", stop_epoch, int(m.group(2)), "control")]
    rows = _history(run)
    assert len(rows) == stop_epoch - 1  # stopped before its epoch ended: that epoch is not recorded
    assert {float(r["lr"]) for r in rows if int(r["epoch"]) < lr_epoch} == {0.001}
    after = [r for r in rows if int(r["epoch"]) > lr_epoch]
    assert after and {float(r["lr"]) for r in after} == {0.0005}
    assert rows[lr_epoch - 1]["interventions"] == f"lr*=0.5@{lr_step}"
    assert not list((run / "control").glob("*.json"))  # the inbox is drained

    # the run continues where it stopped, the intervention included
    done = run_state.load(run / "checkpoints" / "last.pt")["state"]["epoch"]
    assert done == stop_epoch - 1
    code, _, err = _run(capsys, "resume", run, "--epochs", done + 2, "-q")
    assert code == 0, err
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, done + 3))
    assert {float(r["lr"]) for r in rows[done:]} == {0.0005}
    assert _events(run)[-1]["kind"] == "resume" and _events(run)[-1]["epoch"] == stop_epoch


def test_control_refuses_a_finished_run(capsys, workdir):
    run = workdir / "done"
    _train(capsys, run, 2)
    code, _, err = _run(capsys, "control", run, "stop")
    line = _one_line(err)
    assert code == 2 and "is not running (status: completed)" in line and "tunelab resume" in line
    assert not (run / "control").exists()  # nothing was sent


@pytest.mark.parametrize("commands,bad", [(["lr=abc"], "needs a positive number"),
                                          (["stop", "jump"], "'jump' is not known"),
                                          (["lr*=-2"], "needs a positive number")])
def test_control_refuses_a_bad_command_listing_the_allowed_forms(capsys, workdir, commands, bad):
    run = workdir / "done"
    _train(capsys, run, 1)
    code, _, err = _run(capsys, "control", run, *commands)
    line = _one_line(err)
    assert code == 2 and bad in line and ALLOWED in line
    assert not (run / "control").exists()  # no command is sent when one is bad


def test_control_refuses_a_folder_that_is_not_a_run(capsys, workdir):
    (workdir / "plain").mkdir()
    code, _, err = _run(capsys, "control", workdir / "plain", "stop")
    assert code == 2 and "has no config.yaml; is it a tunelab run folder?" in _one_line(err)
    code, _, err = _run(capsys, "control", "missing", "stop")
    assert code == 2 and _one_line(err) == "error: run folder 'missing' does not exist"


def test_a_command_left_in_the_inbox_does_not_reach_the_next_run(capsys, workdir):
    from tunelab.trainer.control import send_to_folder

    run = workdir / "done"
    _train(capsys, run, 2)
    send_to_folder(run, "stop")  # what `tunelab control` leaves behind when the run ends before reading it
    code, _, err = _run(capsys, "resume", run, "--epochs", 4, "-q")
    assert code == 0, err
    assert json.loads((run / "result.json").read_text())["status"] == "completed" and len(_history(run)) == 4
    assert [e["kind"] for e in _events(run)] == ["resume"]


# ---------------------------------------------------------------------------- resume
@pytest.fixture
def stopped(workdir):
    """A run of 10 epochs stopped at the end of epoch 2 (through the Python API)."""
    run = workdir / "stopped"
    cfg = {"model": {"hidden": [16]}, "training": {"epochs": 10, "threads": 1}}
    result = tunelab.train(cfg, out=run, on_epoch=lambda ev: "stop" if ev.epoch == 2 else None)
    assert result.status == "stopped" and _status(run)["status"] == "stopped"
    return run


def test_resume_continues_a_stopped_run_in_its_folder(capsys, stopped, workdir):
    before = _history(stopped)
    code, out, err = _run(capsys, "resume", stopped, "--epochs", 4, "-q")
    assert code == 0 and out == "" and err == ""
    rows = _history(stopped)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and rows[:2] == before
    events = _events(stopped)
    assert [e["kind"] for e in events] == ["resume"]
    assert events[0]["epoch"] == 3 and events[0]["step"] == 0 and events[0]["changes"] == ["training.epochs=4"]
    result = json.loads((stopped / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_run"] == 4
    assert _status(stopped)["status"] == "completed" and load_config(stopped / "config.yaml").training.epochs == 4
    # the same as a run that was never stopped
    straight = workdir / "straight"
    _train(capsys, straight, 4)
    assert _without_seconds(rows) == _without_seconds(_history(straight))


def test_resume_records_a_changed_lr(capsys, stopped):
    code, _, err = _run(capsys, "resume", stopped, "--epochs", 3, "--set", "optimizer.lr=0.0005", "-q")
    assert code == 0, err
    event = _events(stopped)[-1]
    assert event["kind"] == "resume" and event["changes"] == ["optimizer.lr=0.0005", "training.epochs=3"]
    assert load_config(stopped / "config.yaml").optimizer.lr == 0.0005
    assert [float(r["lr"]) for r in _history(stopped)] == [0.001, 0.001, 0.0005]


def test_resume_without_a_checkpoint_is_one_line(capsys, stopped):
    import shutil

    shutil.rmtree(stopped / "checkpoints")
    history = (stopped / "history.csv").read_text()
    code, out, err = _run(capsys, "resume", stopped, "--epochs", 4)
    line = _one_line(err)
    assert code == 2 and "checkpoints/last.pt" in line and "does not exist" in line
    assert out == ""  # nothing printed before the error
    assert (stopped / "history.csv").read_text() == history and _status(stopped)["status"] == "stopped"


# ---------------------------------------------------------------------------- fork and runs
def test_fork_branches_off_a_checkpoint(capsys, workdir):
    parent, child = workdir / "runs" / "parent", workdir / "runs" / "child"
    _train(capsys, parent, 3)
    code, _, err = _run(capsys, "fork", parent, "--from", 2, "--set", "optimizer.lr=0.0005", "--out", child,
                        "--epochs", 4, "-q")
    assert code == 0, err
    lineage = json.loads((child / "lineage.json").read_text())
    assert lineage["epoch"] == 2 and lineage["step"] == 0 and lineage["checkpoint"] == "epoch-0002.pt"
    assert (child / lineage["parent"]).resolve() == parent.resolve()
    assert lineage["overrides"] == ["optimizer.lr=0.0005", "training.epochs=4"]
    p_rows, c_rows = _history(parent), _history(child)
    assert [int(r["epoch"]) for r in c_rows] == [1, 2, 3, 4]
    assert _without_seconds(c_rows[:2]) == _without_seconds(p_rows[:2])
    assert [float(r["lr"]) for r in c_rows] == [0.001, 0.001, 0.0005, 0.0005]
    assert c_rows[2]["train_loss"] != p_rows[2]["train_loss"]  # the branch really trains differently
    cfg = load_config(child / "config.yaml")
    assert cfg.optimizer.lr == 0.0005 and cfg.training.epochs == 4
    assert json.loads((child / "result.json").read_text())["status"] == "completed"
    forks = [json.loads(line) for line in (parent / "forks.jsonl").read_text().splitlines()]
    assert len(forks) == 1 and (parent / forks[0]["child"]).resolve() == child.resolve() and forks[0]["epoch"] == 2

    code, out, _ = _run(capsys, "runs", workdir / "runs")
    assert code == 0
    assert re.search(r"completed\s*[│|]\s*4/4\s*[│|].*parent @ 2", _runs_row(out, "child"))
    assert re.search(r"completed\s*[│|]\s*3/3\s*[│|][^│|]*[│|]\s*[│|]", _runs_row(out, "parent"))  # no parent


def test_fork_from_a_missing_epoch_lists_the_checkpoints(capsys, workdir):
    parent = workdir / "parent"
    _train(capsys, parent, 2)
    code, out, err = _run(capsys, "fork", parent, "--from", 99, "--out", workdir / "child")
    line = _one_line(err)
    assert code == 2 and "--from='99'" in line and "epoch-0099.pt" in line
    assert "available: ['best.pt', 'epoch-0001.pt', 'epoch-0002.pt', 'last.pt']" in line
    assert not (workdir / "child").exists() and not (parent / "forks.jsonl").exists()


def test_fork_refuses_a_change_the_checkpoint_cannot_follow(capsys, workdir):
    parent = workdir / "parent"
    _train(capsys, parent, 2)
    code, _, err = _run(capsys, "fork", parent, "--set", "model.hidden=[32]", "--out", workdir / "child", "-q")
    assert code == 2 and "model.hidden" in _one_line(err)
    assert not (workdir / "child").exists() and not (parent / "forks.jsonl").exists()


def test_fork_no_run_makes_a_ready_child_that_resume_runs(capsys, workdir):
    parent, child = workdir / "runs" / "parent", workdir / "runs" / "child"
    _train(capsys, parent, 3)
    code, out, err = _run(capsys, "fork", parent, "--from", 1, "--set", "optimizer.lr=0.002", "--out", child,
                          "--no-run")
    assert code == 0 and f"tunelab resume {child}" in out, err
    assert _status(child)["status"] == "ready" and not (child / "history.csv").exists()
    code, out, _ = _run(capsys, "runs", workdir / "runs")
    assert re.search(r"ready\s*[│|]\s*1/3\s*[│|].*parent @ 1", _runs_row(out, "child"))
    code, _, err = _run(capsys, "resume", child, "-q")
    assert code == 0, err
    rows = _history(child)
    assert [float(r["lr"]) for r in rows] == [0.001, 0.002, 0.002]
    assert _without_seconds(rows[:1]) == _without_seconds(_history(parent)[:1])
    code, out, _ = _run(capsys, "runs", workdir / "runs")
    assert re.search(r"completed\s*[│|]\s*3/3\s*[│|].*parent @ 1", _runs_row(out, "child"))


def test_runs_shows_paused_then_killed(capsys, start_train, workdir):
    p = start_train("live")
    run = p.run
    p.wait_running()
    code, out, err = _run(capsys, "control", run, "pause", "--wait", HANG_GUARD_S)
    assert code == 0 and out.startswith("pause: applied at epoch"), err
    assert _status(run)["status"] == "paused"
    code, out, _ = _run(capsys, "runs", workdir)
    assert code == 0 and re.search(r"[│|]\s*paused\s*[│|]", _runs_row(out, "live"))
    code, out, err = _run(capsys, "control", run, "resume", "--wait", HANG_GUARD_S)
    assert code == 0 and out.startswith("resume: applied at epoch"), err
    p.wait_until("a running epoch after resume", lambda: _status(run)["status"] == "running")

    os.kill(p.proc.pid, signal.SIGKILL)
    p.proc.wait()
    assert _status(run)["status"] == "running"  # as the killed process left it
    code, out, _ = _run(capsys, "runs", workdir)
    assert code == 0 and re.search(r"[│|]\s*killed\s*[│|]", _runs_row(out, "live"))
    code, _, err = _run(capsys, "control", run, "stop")
    assert code == 2 and "(status: killed)" in _one_line(err)
    # a killed run resumes from its last checkpoint
    done = run_state.load(run / "checkpoints" / "last.pt")["state"]["epoch"]
    code, _, err = _run(capsys, "resume", run, "--epochs", done + 1, "-q")
    assert code == 0, err
    assert len(_history(run)) == done + 1 and _status(run)["status"] == "completed"
    assert [e["command"] for e in _events(run) if e["kind"] == "control"] == ["pause", "resume"]
