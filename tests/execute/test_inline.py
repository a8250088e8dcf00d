"""InlineExecutor: events in order, pruning, failures, real training, interrupts, laziness."""

from __future__ import annotations

import os

import pytest

from tests.execute import objectives
from tunelab.execute import Event, InlineExecutor, TrialSpec


def collect(prune_at: dict[int, int] | None = None, interrupt_at: int | None = None):
    """An on_event that records events; prunes trial n at step prune_at[n]."""
    events: list[Event] = []

    def on_event(ev: Event):
        events.append(ev)
        if ev.kind == "epoch" and interrupt_at is not None and ev.step == interrupt_at:
            raise KeyboardInterrupt
        if ev.kind == "epoch" and (prune_at or {}).get(ev.number) == ev.step:
            return "prune"
        return "continue"

    return events, on_event


def kinds(events: list[Event], number: int) -> list[str]:
    return [e.kind for e in events if e.number == number]


def test_user_objective_events_arrive_in_order():
    events, on_event = collect()
    specs = [TrialSpec(n, {"x": float(n), "epochs": 3}, fn=objectives.quadratic) for n in range(2)]
    InlineExecutor().run(iter(specs), on_event)
    assert [(e.number, e.kind) for e in events] == [
        (0, "start"), (0, "epoch"), (0, "epoch"), (0, "epoch"), (0, "done"),
        (1, "start"), (1, "epoch"), (1, "epoch"), (1, "epoch"), (1, "done")]
    assert events[0].metrics["pid"] == os.getpid()
    assert [e.step for e in events[1:4]] == [1, 2, 3]
    assert events[3].value == pytest.approx(4.0 + 1 / 3)
    assert events[4].value == pytest.approx(4.0) and events[9].value == pytest.approx(1.0)


def test_prune_at_step_two_stops_the_trial():
    events, on_event = collect(prune_at={0: 2})
    specs = [TrialSpec(0, {"epochs": 5}, fn=objectives.quadratic),
             TrialSpec(1, {"epochs": 3}, fn=objectives.quadratic)]
    InlineExecutor().run(iter(specs), on_event)
    assert kinds(events, 0) == ["start", "epoch", "epoch", "pruned"]
    assert events[3].step == 2 and events[3].value is None
    assert kinds(events, 1) == ["start", "epoch", "epoch", "epoch", "done"]  # the next is unaffected


def test_raising_objective_gives_failed_event_naming_the_exception():
    events, on_event = collect()
    InlineExecutor().run(iter([TrialSpec(7, {"x": 3}, fn=objectives.raises)]), on_event)
    assert kinds(events, 7) == ["start", "epoch", "failed"]
    assert events[-1].error.startswith("ValueError: bad x=3")


def test_nan_objective_fails():
    events, on_event = collect()
    InlineExecutor().run(iter([TrialSpec(0, {}, fn=objectives.nan)]), on_event)
    assert kinds(events, 0) == ["start", "failed"]
    assert "nan" in events[-1].error


def test_real_training_spec_on_digits():
    events, on_event = collect()
    spec = TrialSpec(0, {"training": {"epochs": 2}, "model": {"hidden": [16]}})
    InlineExecutor().run(iter([spec]), on_event)
    assert kinds(events, 0) == ["start", "epoch", "epoch", "done"]
    epochs, done = events[1:3], events[3]
    assert [e.step for e in epochs] == [1, 2]
    assert all(e.value == e.metrics["val_accuracy"] for e in epochs)
    assert 0.0 < done.value <= 1.0
    assert done.value == done.metrics["val_accuracy"] and len(done.metrics["history"]) == 2


def test_specs_are_pulled_one_at_a_time():
    events, on_event = collect()
    finished_at_pull: list[int] = []

    def specs():
        for n in range(3):
            finished_at_pull.append(sum(e.kind == "done" for e in events))
            yield TrialSpec(n, {"epochs": 1}, fn=objectives.quadratic)

    InlineExecutor().run(specs(), on_event)
    assert finished_at_pull == [0, 1, 2]


def test_keyboard_interrupt_in_on_event_propagates_and_names_the_running_trial():
    events, on_event = collect(interrupt_at=2)
    ex = InlineExecutor()
    with pytest.raises(KeyboardInterrupt):
        ex.run(iter([TrialSpec(4, {"epochs": 5}, fn=objectives.quadratic)]), on_event)
    assert ex.running() == [4]
    assert kinds(events, 4) == ["start", "epoch", "epoch"]


def test_keyboard_interrupt_during_real_training_propagates():
    # fit() turns Ctrl-C into an 'interrupted' run; the executor must not report it as done
    events, on_event = collect(interrupt_at=1)
    spec = TrialSpec(3, {"training": {"epochs": 3}, "model": {"hidden": [16]}})
    ex = InlineExecutor()
    with pytest.raises(KeyboardInterrupt):
        ex.run(iter([spec, TrialSpec(4, {})]), on_event)
    assert kinds(events, 3) == ["start", "epoch"] and ex.running() == [3]
    assert not any(e.number == 4 for e in events)


def test_context_manager_and_empty_iterator():
    events, on_event = collect()
    with InlineExecutor() as ex:
        ex.run(iter([]), on_event)
    assert events == [] and ex.running() == []
