"""The live dashboard (--watch): keys, hooks, the rendered screen, a pseudo-terminal run, and the
plain progress lines it falls back to when the output is a pipe."""

import io
import json
import math
import os
import subprocess
import sys
import threading

import pytest
from rich.console import Console

from tunelab.api import train
from tunelab.cli.dashboard import KeyReader, _Hooks, run_dashboard
from tunelab.cli.dashboard_view import (
    KEYS, Throughput, View, event_line, key_command, keys_in, layer_norms, render,
)
from tunelab.config import from_dict
from tunelab.trainer.control import Control
from tunelab.trainer.fit import EpochEvent

termios = pytest.importorskip("termios")  # the key reader needs a POSIX terminal


def _event(command, epoch=3, step=5, lr=0.002, **extra):
    return {"kind": "control", "command": command, "epoch": epoch, "step": step, "lr": lr,
            "source": "dashboard", "steps": 12, **extra}


def _screen(view, width=120, height=40):
    console = Console(width=width, height=height, color_system=None, file=io.StringIO())
    with console.capture() as capture:
        console.print(render(view, width, height))
    return capture.get()


@pytest.mark.parametrize("key,state,command", [
    ("+", {}, "lr*=2"), ("=", {}, "lr*=2"), ("-", {}, "lr*=0.5"),
    ("p", {}, "pause"), ("p", {"paused": True}, "resume"),
    ("e", {}, "early-stopping=on"), ("e", {"early_stopping": True}, "early-stopping=off"),
    ("s", {}, "checkpoint"), ("f", {}, "fork"), ("q", {}, "stop"),
    ("x", {}, None), ("P", {}, None), ("[", {}, None),
])
def test_keys_map_to_control_commands(key, state, command):
    assert key_command(key, View(**state)) == command


def test_layer_norms_join_weight_and_bias_in_model_order():
    norms = layer_norms({"fc0.0.weight": 0.6, "fc0.0.bias": 0.8, "out.weight": 2.0, "scale": 0.5})
    assert [name for name, _ in norms] == ["fc0.0", "out", "scale"]
    assert [n for _, n in norms] == pytest.approx([1.0, 2.0, 0.5])


def test_escape_sequences_are_no_keys():
    assert keys_in("\x1b[A\x1b[1;5C+\x1bOP\x1bq-p") == ["+", "-", "p"]  # arrows, ctrl-arrow, F1, Alt+q
    assert keys_in("\x1b") == [] and keys_in("\x1b[") == []  # cut off at the end of a read


def test_event_lines_name_the_checkpoint_or_fork():
    line = event_line(_event("fork", checkpoint="checkpoints/snap.pt", fork="../run-fork-1"))
    assert line == "epoch 3 step 5: fork (lr 0.002, from dashboard) -> ../run-fork-1"
    assert event_line({"kind": "resume", "epoch": 4}) == "epoch 4: resume"


def test_throughput_is_samples_over_the_recent_window():
    t = Throughput(window=2.0)
    assert t.rate() is None
    t.add(0.0, 100)
    assert t.rate() is None  # one mark: no interval yet
    for now in (1.0, 2.0, 3.0, 4.0):
        t.add(now, 100)
    assert t.rate() == pytest.approx(100.0)
    t.add(4.5, 400)  # faster now; the marks before 2.0 have left the window
    assert t.rate() == pytest.approx((900 - 300) / (4.5 - 2.0))
    t.reset()
    t.add(10.0, 100)
    assert t.rate() is None  # a pause is not averaged in


def _overfit_history():
    train = [1.0, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15]
    val = [1.0, 0.7, 0.55, 0.5, 0.6, 0.7, 0.8, 0.9]
    return [dict(epoch=i + 1, train_loss=t, val_loss=v, train_accuracy=0.5 + 0.05 * i, val_accuracy=0.5 + 0.03 * i,
                 lr=0.001, seconds=0.1) for i, (t, v) in enumerate(zip(train, val))]


def test_the_screen_shows_curves_state_warnings_and_interventions():
    view = View(title="digits · mlp", run_dir="runs/x", epochs=200, lr=0.002, epoch=9, step=4, steps=12,
                samples_per_s=12345.0, paused=True, history=_overfit_history(),
                grad_norms={"fc0.0.weight": 0.25, "out.weight": 0.5}, events=[_event("lr*=2")])
    text = _screen(view)
    assert " PAUSED   epoch 9/200  step 4/12  lr 0.002  12,345 samples/s  early stopping off" in text
    assert "run folder runs/x" in text
    assert "loss: train / validation" in text and "accuracy: train / validation" in text
    assert "over-fitting from epoch 5" in text
    assert "epoch 3 step 5: lr*=2 (lr 0.002, from dashboard)" in text
    assert "fc0.0" in text and "out" in text and "█" in text  # the gradient norm bars
    assert KEYS in text
    assert "┤" in text  # plotext's y ticks: the curves are drawn
    assert len(text.splitlines()) == 40  # exactly one screen
    running = _screen(View(title="t", epochs=5, lr=0.001))
    assert "PAUSED" not in running and "running" in running and "waiting for the first epoch" in running


def test_a_small_terminal_still_renders_one_screen():
    view = View(title="a long title " * 10, history=_overfit_history(), paused=True)
    text = _screen(view, width=60, height=16)
    assert len(text.splitlines()) == 16 and "too small for plots" in text
    assert text.splitlines()[1].startswith(" PAUSED ")  # the title does not wrap it out of sight


def _hooks(tmp_path, **view):
    control = Control()
    return _Hooks(View(lr=0.001, **view), control, tmp_path, batch_size=64), control


def test_hooks_follow_the_trainer(tmp_path):
    hooks, _ = _hooks(tmp_path)
    hooks.on_batch(0, 1, 12)
    hooks.on_batch(0, 2, 12)
    v = hooks.view
    assert (v.epoch, v.step, v.steps) == (1, 2, 12) and v.samples_per_s is not None and v.samples_per_s > 0
    metrics = _overfit_history()[0]
    hooks.on_epoch(EpochEvent(1, 5, metrics, {"out.weight": 0.1}, next_lr=0.0005))
    assert v.history == [metrics] and v.grad_norms == {"out.weight": 0.1} and v.lr == 0.0005
    hooks.on_epoch(EpochEvent(2, 5, {**metrics, "epoch": 2}, {}, next_lr=math.nan))  # a diverged epoch
    assert v.lr == 0.0005 and len(v.history) == 2


def test_hooks_show_pause_early_stopping_and_lr_from_the_events(tmp_path):
    hooks, _ = _hooks(tmp_path)
    v = hooks.view
    hooks.on_event(_event("pause", epoch=4, step=0))
    assert v.paused and (v.epoch, v.step) == (4, 0) and v.samples_per_s is None
    assert "PAUSED" in _screen(v)
    hooks.on_event(_event("resume"))
    assert not v.paused
    hooks.on_event(_event("early-stopping=on"))
    assert v.early_stopping
    hooks.on_event(_event("early-stopping=off"))
    assert not v.early_stopping
    hooks.on_event(_event("lr*=2", lr=0.004))
    assert v.lr == 0.004
    hooks.on_event(_event("stop"))
    assert v.note.startswith("stopping")
    assert [e["command"] for e in v.events] == ["pause", "resume", "early-stopping=on", "early-stopping=off",
                                                "lr*=2", "stop"]


def test_keys_send_commands_through_the_control(tmp_path):
    hooks, control = _hooks(tmp_path)
    for key in "+x-pe":
        hooks.on_key(key)
    sent = control.poll()
    assert [c["text"] for c in sent] == ["lr*=2", "lr*=0.5", "pause", "early-stopping=on"]
    assert {c["source"] for c in sent} == {"dashboard"}
    assert hooks.view.note == "sent early-stopping=on"
    hooks.view.paused = True  # the trainer said so: p now resumes
    hooks.on_key("p")
    assert [c["text"] for c in control.poll()] == ["resume"]


def test_a_resumed_run_shows_its_folder_so_far(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n"
                                          "1,1.0,0.5,1.1,0.4,0.001,0.1\n2,0.8,0.6,0.9,0.5,0.001,0.1\n")
    earlier = [_event("early-stopping=on", epoch=1), _event("lr*=0.5", epoch=2), {"kind": "resume", "epoch": 3}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in earlier) + '{"cut')
    hooks, _ = _hooks(tmp_path)
    hooks.on_event(earlier[1])  # this run's first command arrives before its first step: not twice
    hooks.on_batch(2, 1, 12)  # epoch 3 starts: the folder holds epochs 1 and 2
    v = hooks.view
    assert [h["epoch"] for h in v.history] == [1.0, 2.0]
    assert v.events == [earlier[0], earlier[2], earlier[1]] and v.early_stopping
    hooks.on_batch(2, 2, 12)
    assert len(v.history) == 2 and len(v.events) == 3  # read once


def test_a_fresh_run_draws_no_earlier_epochs(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n"
                                          "1,1.0,0.5,1.1,0.4,0.001,0.1\n")
    hooks, _ = _hooks(tmp_path)
    hooks.on_batch(0, 1, 12)
    assert hooks.view.history == [] and hooks.view.events == []


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    slave_file = os.fdopen(slave, "r")
    try:
        yield master, slave_file
    finally:
        slave_file.close()
        os.close(master)


def test_key_reader_reads_single_keys_and_restores_the_terminal(pty_pair):
    master, stream = pty_pair
    before = termios.tcgetattr(stream.fileno())
    keys, got = [], threading.Event()

    def on_key(key):
        keys.append(key)
        if key == "q":
            got.set()

    with KeyReader(stream, on_key, poll_seconds=0.02) as reader:
        assert reader.thread is not None and reader.thread.daemon
        assert not termios.tcgetattr(stream.fileno())[3] & termios.ICANON  # cbreak: no Enter needed
        os.write(master, b"\x1b[A")  # an arrow key: no command
        os.write(master, b"+p")
        os.write(master, b"q")
        assert got.wait(10)
    assert keys == ["+", "p", "q"]
    assert not reader.thread.is_alive()
    assert termios.tcgetattr(stream.fileno()) == before


def test_key_reader_restores_the_terminal_after_an_exception(pty_pair):
    _, stream = pty_pair
    before = termios.tcgetattr(stream.fileno())
    with pytest.raises(RuntimeError):
        with KeyReader(stream, lambda key: None, poll_seconds=0.02):
            raise RuntimeError("boom")
    assert termios.tcgetattr(stream.fileno()) == before


def test_key_reader_without_a_terminal_reads_nothing():
    with KeyReader(io.StringIO("+q"), lambda key: pytest.fail("no keys without a terminal")) as reader:
        assert reader.thread is None


def test_run_dashboard_steers_a_real_run_from_keys(tmp_path, pty_pair, monkeypatch):
    master, stream = pty_pair
    monkeypatch.setattr(sys, "stdin", stream)
    cfg = from_dict({}, ["training.epochs=500", "training.threads=1", "model.hidden=[8]"])
    out = tmp_path / "run"
    pressed = []

    def runner(**hooks):
        on_batch = hooks["on_batch"]

        def first_batch_presses_keys(epoch, step, steps):
            if not pressed:
                pressed.append(os.write(master, b"+q"))  # lr x2, then stop
            on_batch(epoch, step, steps)

        return train(cfg, out=out, **{**hooks, "on_batch": first_batch_presses_keys})

    console = Console(file=io.StringIO(), force_terminal=True, width=100, height=30)
    result = run_dashboard(cfg, out, runner, console)
    assert result.status == "stopped" and result.epochs_run < 500
    control = [e for e in result.events if e["kind"] == "control"]
    assert [(e["command"], e["source"]) for e in control] == [("lr*=2", "dashboard"), ("stop", "dashboard")]
    assert control[0]["lr"] == pytest.approx(0.002)
    assert json.loads((out / "result.json").read_text())["status"] == "stopped"
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "model.pt").is_file()
    assert f"stopped after {result.epochs_run} epochs" in console.file.getvalue()


def test_watch_without_a_terminal_prints_plain_progress(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", "from tunelab.cli.main import entry; entry()", "train", "--watch",
                           "--set", "training.epochs=2", "--set", "training.threads=1", "--set", "model.hidden=[16]",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "epoch  loss train/val   acc train/val         lr  seconds" in lines
    assert [line.split()[0] for line in lines if line[:5].strip() in ("1", "2")] == ["1", "2"]
    assert "\x1b[?1049h" not in proc.stdout  # no full-screen switch in a pipe
    assert json.loads((out / "result.json").read_text())["status"] == "completed"
    for name in ("history.csv", "curves.png", "model.pt", "config.yaml", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
