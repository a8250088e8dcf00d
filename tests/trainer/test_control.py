"""The control channel: parsing and applying commands (pure), the inbox folder, and commands
reaching a running run between two steps.

Timing convention checked here: ``on_batch(epoch0, step, steps)`` runs after step ``step``
(1-based) of epoch ``epoch0 + 1``; a command sent there is read before the next step, and its
event says ``epoch = epoch0 + 1`` and ``step = step`` (the steps done in that epoch).
"""

import dataclasses
import inspect
import json
import math
import threading
import time

import pytest

import tunelab
from tunelab.errors import ConfigError
from tunelab.trainer.control import COMMANDS, INBOX, Control, apply_command, parse_command, send_to_folder
from tunelab.trainer.live import read_status
from tunelab.trainer.state import RunState, load

from ._runs import StepLog, assert_same_run, config, same_tree, strip

# ---------------------------------------------------------------------------- parse_command


@pytest.mark.parametrize("text,cmd,value,canonical", [
    ("lr=3e-4", "lr", 3e-4, "lr=3e-4"),
    (" LR = 0.001 ", "lr", 0.001, "lr=0.001"),
    ("lr*=0.5", "lr_scale", 0.5, "lr*=0.5"),
    ("lr*=2", "lr_scale", 2.0, "lr*=2"),
    ("pause", "pause", None, "pause"),
    ("Resume", "resume", None, "resume"),
    ("stop", "stop", None, "stop"),
    ("checkpoint", "checkpoint", None, "checkpoint"),
    ("fork", "fork", None, "fork"),
    ("early-stopping=off", "early_stopping", False, "early-stopping=off"),
    ("early-stopping=on", "early_stopping", True, "early-stopping=on"),
    ("early_stopping=false", "early_stopping", False, "early-stopping=off"),
    ("es=true", "early_stopping", True, "early-stopping=on"),
])
def test_parse_command_accepts_the_documented_forms(text, cmd, value, canonical):
    parsed = parse_command(text)
    assert parsed["cmd"] == cmd and parsed.get("value") == value and parsed["text"] == canonical


@pytest.mark.parametrize("text", ["lr=0", "lr=-1", "lr=abc", "lr=nan", "lr=inf", "lr*=0", "lr*=-2", "lr=",
                                  "jump", "", "early-stopping=maybe", "pause now", "lr==0.1"])
def test_parse_command_rejects_anything_else_in_one_line_listing_the_forms(text):
    with pytest.raises(ConfigError) as err:
        parse_command(text)
    message = str(err.value)
    assert "\n" not in message and repr(text) in message
    assert all(form in message for form in COMMANDS)


# ---------------------------------------------------------------------------- apply_command


def test_lr_sets_the_multiplier_so_the_optimizer_lr_becomes_the_value():
    # schedule lr 0.1 (not seen directly: lr_now = 0.1 x the multiplier 2 already in place)
    state = RunState(epoch=3, step=7, lr_mult=2.0)
    new, event = apply_command(state, parse_command("lr=0.05"), lr_now=0.2)
    assert new.lr_mult == pytest.approx(0.5) and event["lr"] == pytest.approx(0.05)
    assert 0.1 * new.lr_mult == pytest.approx(0.05)
    assert {k: event[k] for k in ("kind", "command", "epoch", "step", "source")} == {
        "kind": "control", "command": "lr=0.05", "epoch": 4, "step": 7, "source": "api"}
    assert new.events == (event,) and state.events == () and state.lr_mult == 2.0  # state is replaced


def test_lr_scale_multiplies_the_multiplier():
    state, _ = apply_command(RunState(lr_mult=0.5), parse_command("lr*=0.5"), lr_now=0.05)
    assert state.lr_mult == 0.25
    state, event = apply_command(state, parse_command("lr*=4"), lr_now=0.025)
    assert state.lr_mult == 1.0 and event["lr"] == pytest.approx(0.1)
    assert [e["command"] for e in state.events] == ["lr*=0.5", "lr*=4"]


def test_pause_resume_and_early_stopping_switch():
    state = RunState()
    state, _ = apply_command(state, parse_command("pause"), 0.1)
    assert state.paused
    state, _ = apply_command(state, parse_command("resume"), 0.1)
    assert not state.paused
    state, _ = apply_command(state, parse_command("early-stopping=off"), 0.1)
    assert state.early_stopping is False
    state, _ = apply_command(state, parse_command("es=on"), 0.1)
    assert state.early_stopping is True


@pytest.mark.parametrize("text", ["stop", "checkpoint", "fork"])
def test_commands_the_trainer_acts_on_change_no_state_but_are_recorded(text):
    state = RunState(epoch=2, step=5, lr_mult=0.5)
    new, event = apply_command(state, {**parse_command(text), "source": "control", "id": "x1"}, 0.05)
    assert new.events == (event,)
    same_tree(dataclasses.asdict(dataclasses.replace(new, events=())), dataclasses.asdict(state))
    assert (event["command"], event["source"], event["id"], event["epoch"], event["step"]) == (
        text, "control", "x1", 3, 5)


# ---------------------------------------------------------------------------- Control and the inbox


def test_control_send_then_poll_in_order():
    control = Control()
    control.send("lr*=0.5")
    control.send("pause")
    assert [c["text"] for c in control.poll()] == ["lr*=0.5", "pause"]
    assert control.poll() == []
    with pytest.raises(ConfigError):
        control.send("faster")


def test_poll_drains_the_inbox_and_drops_unreadable_files(tmp_path):
    control = Control(tmp_path)
    assert control.poll(force=True) == []  # no inbox folder yet: nothing, no error
    first = send_to_folder(tmp_path, "lr=0.001")
    inbox = tmp_path / INBOX
    (inbox / "0-garbage.json").write_text("{not json")
    (inbox / "0-no-text.json").write_text(json.dumps({"id": "a"}))
    (inbox / "0-bad-command.json").write_text(json.dumps({"text": "jump", "id": "b"}))
    (inbox / "0-not-a-dict.json").write_text(json.dumps(["lr=1"]))
    (inbox / ".half-written.tmp").write_text("{")  # a file still being written is not read
    second = send_to_folder(tmp_path, "stop", source="dashboard")
    got = control.poll(force=True)
    assert [(c["cmd"], c["id"], c["source"]) for c in got] == [("lr", first, "control"), ("stop", second, "dashboard")]
    assert got[0]["value"] == 0.001
    assert sorted(p.name for p in inbox.iterdir()) == [".half-written.tmp"]  # every .json deleted
    assert control.poll(force=True) == []


def test_send_to_folder_validates_before_writing(tmp_path):
    with pytest.raises(ConfigError):
        send_to_folder(tmp_path, "lr=-1")
    assert not (tmp_path / INBOX).exists() or not any((tmp_path / INBOX).iterdir())


def test_poll_scans_the_inbox_at_most_every_poll_seconds(tmp_path):
    control = Control(tmp_path, poll_seconds=3600)
    assert control.poll() == []  # the first poll scans (and finds no inbox)
    send_to_folder(tmp_path, "pause")
    assert control.poll() == []  # not scanned again within poll_seconds
    assert [c["cmd"] for c in control.poll(force=True)] == ["pause"]


# ---------------------------------------------------------------------------- a running run

_STEP = {"name": "step", "step_size": 1, "gamma": 0.5}  # lr 0.01, 0.005, 0.0025: powers of two, exact
_THREE = {"epochs": 3, "early_stopping.enabled": False}


def test_lr_scale_reaches_the_next_step_and_survives_the_schedule(monkeypatch):
    control, events, seen = Control(), [], {}

    def on_batch(epoch, step, steps):
        seen["steps"] = steps
        if (epoch, step) == (1, 3):
            control.send("lr*=0.5")

    log = StepLog(monkeypatch)
    result = tunelab.train(config(schedule=_STEP, training=_THREE), save=False, control=control,
                           on_batch=on_batch, on_event=events.append)
    steps = seen["steps"]
    assert result.status == "completed" and len(log.lrs) == 3 * steps
    # hand-written expectation of the lr each optimizer step used
    expected = [0.01] * steps + [0.005] * 3 + [0.0025] * (steps - 3) + [0.00125] * steps
    assert log.lrs == expected
    assert [h["lr"] for h in result.history] == [0.01, 0.005, 0.00125]
    assert len(events) == 1 and result.events == events
    event = events[0]
    assert (event["kind"], event["command"], event["epoch"], event["step"], event["steps"]) == (
        "control", "lr*=0.5", 2, 3, steps)
    assert event["lr"] == 0.0025 and event["source"] == "api"


def test_pause_then_resume_from_another_thread_changes_nothing(tmp_path, monkeypatch):
    cfg = config(training=_THREE)
    ref = tunelab.train(cfg, out=tmp_path / "ref")
    run_dir, control, log = tmp_path / "run", Control(), StepLog(monkeypatch)
    paused, seen, steps = threading.Event(), {}, {}

    def on_batch(epoch, step, n):
        steps["n"] = n
        if (epoch, step) == (1, 5):
            control.send("pause")

    def on_event(event):
        if event["command"] == "pause":
            paused.set()

    def other_thread():
        try:
            if paused.wait(120):
                seen["status"] = read_status(run_dir)["status"]
                seen["steps_at_pause"] = len(log.lrs)
                time.sleep(0.3)  # the run is waiting: no step is taken meanwhile
                seen["steps_later"] = len(log.lrs)
        finally:
            control.send("resume")

    helper = threading.Thread(target=other_thread)
    helper.start()
    result = tunelab.train(cfg, out=run_dir, control=control, on_batch=on_batch, on_event=on_event)
    helper.join(60)
    n = steps["n"]
    assert seen == {"status": "paused", "steps_at_pause": n + 5, "steps_later": n + 5}
    assert [(e["command"], e["epoch"], e["step"]) for e in result.events] == [("pause", 2, 5), ("resume", 2, 5)]
    assert result.events[1]["source"] == "api"
    assert read_status(run_dir)["status"] == "completed"
    assert_same_run(ref, result, tmp_path / "ref", run_dir)


def test_early_stopping_on_switches_on_a_run_configured_without_it(tmp_path):
    ref = tunelab.train(config(), save=False)
    assert ref.status == "early_stopped" and ref.restored_epoch is not None
    control = Control()
    result = tunelab.train(config(training={"early_stopping.enabled": False}), save=False, control=control,
                           on_batch=lambda e, s, n: control.send("early-stopping=on") if (e, s) == (0, 3) else None)
    assert [(e["command"], e["epoch"], e["step"]) for e in result.events] == [("early-stopping=on", 1, 3)]
    assert_same_run(ref, result)


def test_early_stopping_off_runs_every_epoch_and_restores_nothing(tmp_path):
    ref = tunelab.train(config(), save=False)
    assert ref.status == "early_stopped" and ref.epochs_run >= 4
    control, run_dir = Control(), tmp_path / "run"
    result = tunelab.train(config(), out=run_dir, control=control,
                           on_batch=lambda e, s, n: control.send("early-stopping=off") if (e, s) == (2, 3) else None)
    assert result.status == "completed" and result.epochs_run == 10
    assert strip(result.history[:ref.epochs_run]) == strip(ref.history)
    assert [(e["command"], e["epoch"], e["step"]) for e in result.events] == [("early-stopping=off", 3, 3)]
    assert load(run_dir / "checkpoints" / "last.pt")["state"]["early_stopping"] is False
    # switched off, early stopping restores no best weights: the model is the last epoch's
    assert result.restored_epoch is None and "restored" not in result.message
    final = load(run_dir / "checkpoints" / "last.pt")["model"]
    assert all(final[k].equal(v) for k, v in result.model.state_dict().items())


def test_early_stopping_off_then_on_restores_the_weights_of_the_best_epoch(tmp_path):
    control, run_dir = Control(), tmp_path / "run"
    switch = {(1, 3): "early-stopping=off", (5, 3): "early-stopping=on"}

    def on_batch(epoch, step, steps):
        if (epoch, step) in switch:
            control.send(switch[epoch, step])

    cfg = config(training={"checkpoint.keep": 20})  # keep every epoch's checkpoint to compare with
    result = tunelab.train(cfg, out=run_dir, control=control, on_batch=on_batch)
    assert [e["command"] for e in result.events] == ["early-stopping=off", "early-stopping=on"]
    assert result.restored_epoch is not None
    # the best epoch by the monitor, over the whole run, on or off
    accs = [h["val_accuracy"] for h in result.history]
    assert result.restored_epoch == accs.index(max(accs)) + 1
    best = load(run_dir / "checkpoints" / f"epoch-{result.restored_epoch:04d}.pt")["model"]
    assert all(best[k].equal(v) for k, v in result.model.state_dict().items())


@pytest.mark.parametrize("at,step", [((2, 7), 7), ((1, "last"), 0)])
def test_stop_command_checkpoints_mid_epoch_and_resume_matches_the_uninterrupted_run(tmp_path, at, step):
    """Stopped after step 7 of epoch 3, or after the last step of epoch 2: the stop is then read
    before the first step of epoch 3, whose data order is already drawn (and must be kept)."""
    cfg = config()
    ref = tunelab.train(cfg, out=tmp_path / "ref")
    assert ref.status == "early_stopped" and ref.epochs_run > 3
    control, run_dir = Control(), tmp_path / "run"

    def on_batch(epoch, done, steps):
        if (epoch, done) == (at[0], steps if at[1] == "last" else at[1]):
            control.send("stop")

    first = tunelab.train(cfg, out=run_dir, control=control, on_batch=on_batch)
    assert first.status == "stopped" and first.epochs_run == 2 and f"epoch 3, step {step}" in first.message
    assert read_status(run_dir)["status"] == "stopped"
    payload = load(run_dir / "checkpoints" / "last.pt")
    assert (payload["state"]["epoch"], payload["state"]["step"]) == (2, step) and payload["partial"] is not None
    assert [(e["command"], e["epoch"], e["step"]) for e in first.events] == [("stop", 3, step)]
    resumed = tunelab.resume(run_dir)
    assert_same_run(ref, resumed, tmp_path / "ref", run_dir)
    assert [e["kind"] for e in resumed.events] == ["control", "resume"]


@pytest.mark.parametrize("at,step", [((2, 7), 7), ((1, "last"), 0)])
def test_checkpoint_command_writes_a_snapshot_that_resumes_like_the_uninterrupted_run(tmp_path, at, step):
    cfg = config()
    ref = tunelab.train(cfg, out=tmp_path / "ref")
    control, run_dir = Control(), tmp_path / "run"

    def on_batch(epoch, done, steps):
        if (epoch, done) == (at[0], steps if at[1] == "last" else at[1]):
            control.send("checkpoint")

    whole = tunelab.train(cfg, out=run_dir, control=control, on_batch=on_batch)
    assert_same_run(ref, whole)  # a snapshot changes nothing in the run itself
    (event,) = whole.events
    assert (event["command"], event["epoch"], event["step"]) == ("checkpoint", 3, step)
    snapshot = run_dir / event["checkpoint"]
    assert snapshot.name == f"snap-epoch0002-step{step:05d}.pt"
    assert (load(snapshot)["state"]["epoch"], load(snapshot)["state"]["step"]) == (2, step)
    resumed = tunelab.resume(run_dir, checkpoint=str(snapshot))
    assert_same_run(ref, resumed, tmp_path / "ref", run_dir)


def test_the_folder_inbox_reaches_a_run_training_in_a_thread(tmp_path, monkeypatch):
    cfg = config(schedule={"name": "constant"}, training=_THREE)
    run_dir, log = tmp_path / "run", StepLog(monkeypatch)
    reached, sent, out, seen = threading.Event(), threading.Event(), {}, {}

    def on_batch(epoch, step, steps):
        seen["steps"] = steps
        if (epoch, step) == (1, 3):
            reached.set()
            sent.wait(120)
            # past the inbox's scan interval (Control's default poll_seconds): the next poll reads the folder
            time.sleep(inspect.signature(Control).parameters["poll_seconds"].default + 0.05)

    def train():
        try:
            out["result"] = tunelab.train(cfg, out=run_dir, on_batch=on_batch)
        except BaseException as e:  # surfaced by the assertions below
            out["error"] = e

    runner = threading.Thread(target=train)
    runner.start()
    try:
        assert reached.wait(120), out.get("error")
        ident = send_to_folder(run_dir, "lr=0.0005")
    finally:
        sent.set()
        runner.join(120)
    assert "error" not in out, out.get("error")
    result, steps = out["result"], seen["steps"]
    assert result.status == "completed"
    assert not list((run_dir / INBOX).glob("*.json"))  # consumed
    (event,) = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert (event["command"], event["id"], event["source"], event["epoch"], event["step"]) == (
        "lr=0.0005", ident, "control", 2, 3)
    assert log.lrs[:steps + 3] == [0.01] * (steps + 3)
    assert log.lrs[steps + 3:] == pytest.approx([0.0005] * (2 * steps - 3), rel=1e-12)
    assert [h["lr"] for h in result.history][:2] == [0.01, 0.01]
    assert math.isclose(result.history[2]["lr"], 0.0005, rel_tol=1e-12)
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert rows[2].endswith(",lr=0.0005@3") and not rows[1].endswith("@3")
