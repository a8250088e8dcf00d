"""One run preparation: ``training.threads`` is honoured on every path that trains, and only
``trainer/prepare.py`` builds a model (and only ``trainer/threads.py``, which it calls, sets torch's
thread count).

The thread count is observed *during* training: a global module forward hook records
``torch.get_num_threads()`` at every forward pass of any model. The process starts each test
with 2 threads, so a path that ignored ``training.threads=1`` would record 2.
"""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import pytest
import torch

import tunelab
from tunelab.config import from_dict
from tunelab.trainer.prepare import prepare, set_threads

SRC = Path(tunelab.__file__).resolve().parent
SMALL = {"model": {"hidden": [16]}, "training": {"epochs": 1, "threads": 1}}


@contextlib.contextmanager
def thread_probe():
    """A list that receives torch.get_num_threads() at every forward pass of any module."""
    seen: list[int] = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: seen.append(torch.get_num_threads()))
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture
def two_threads():
    """The process runs with 2 torch threads when the path starts (restored afterwards)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    assert torch.get_num_threads() == 2
    yield
    torch.set_num_threads(saved)


# ---------------------------------------------------------------------------- the probe itself
def test_the_probe_sees_the_thread_count_of_a_forward_pass(two_threads):
    with thread_probe() as seen:
        torch.nn.Linear(2, 2)(torch.zeros(1, 2))
        torch.set_num_threads(1)
        torch.nn.Linear(2, 2)(torch.zeros(1, 2))
    assert seen == [2, 1]


def test_set_threads_none_applies_the_auto_policy(two_threads, monkeypatch):
    """None is no longer "keep torch's count": it is the cores other work leaves free
    (tests/trainer/test_threads.py has the policy itself)."""
    from tunelab.trainer import threads as prep

    monkeypatch.setattr(prep, "usable_cores", lambda: 2)
    monkeypatch.setattr(prep, "machine_load", lambda: 1.7)  # one core busy elsewhere
    set_threads(None)
    assert torch.get_num_threads() == 1
    set_threads(2)
    assert torch.get_num_threads() == 2


# ---------------------------------------------------------------------------- in-process paths
def test_train_honours_training_threads(two_threads):
    with thread_probe() as seen:
        result = tunelab.train(SMALL, save=False)
    assert result.status == "completed"
    assert seen and set(seen) == {1}


def test_a_tune_trial_run_inline_honours_training_threads(two_threads, tmp_path):
    space = {"base": SMALL, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-2]}}}
    with thread_probe() as seen:
        res = tunelab.tune(space, trials=1, workers=1, storage=f"sqlite:///{tmp_path / 't.db'}",
                           study="threads", seed=0)
    assert res.study.get_trials()[0].state.name == "COMPLETE"
    assert seen and set(seen) == {1}


def test_a_compare_trial_honours_training_threads(two_threads, tmp_path):
    from tunelab.analysis.designs import Arm
    from tunelab.search.compare import run_compare

    with thread_probe() as seen:
        study = run_compare(SMALL, [Arm("base", {}, baseline=True)], [0], name="threads",
                            storage=f"sqlite:///{tmp_path / 'c.db'}")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
    assert seen and set(seen) == {1}


def test_inspect_honours_training_threads(two_threads):
    from tunelab.analysis.diagnostics import diagnose

    with thread_probe() as seen:
        report = diagnose(from_dict(SMALL), epochs=1, batch=64)
    assert report["trained"]
    assert seen and set(seen) == {1}


def test_lr_find_honours_training_threads(two_threads):
    from tunelab.analysis.lr_find import lr_find

    with thread_probe() as seen:
        result = lr_find(from_dict(SMALL), steps=20, lr_min=1e-4, lr_max=1.0)
    assert result["lrs"]
    assert seen and set(seen) == {1}


def test_ensemble_members_honour_training_threads(two_threads):
    from tunelab.analysis.ensemble import models_from_configs

    with thread_probe() as seen:
        models = models_from_configs([SMALL, {**SMALL, "training": {**SMALL["training"], "seed": 1}}])
    assert len(models) == 2
    assert seen and set(seen) == {1}


# ---------------------------------------------------------------------------- process executor
# Module-level objectives, so the worker process can unpickle them (it imports this module).
_SEEN: list[int] = []
_HOOK: list = []


def install_probe(config: dict, reporter) -> float:
    """Start recording torch.get_num_threads() at every forward pass in this worker."""
    if not _HOOK:
        _HOOK.append(torch.nn.modules.module.register_module_forward_hook(
            lambda module, args, output: _SEEN.append(torch.get_num_threads())))
    return 0.0


def read_probe(config: dict, reporter) -> float:
    """Report the thread counts recorded since the last read (as metrics), then forget them."""
    seen = sorted(set(_SEEN))
    reporter.report(float(len(_SEEN)), 1, seen=seen)
    _SEEN.clear()
    return float(len(seen))


def test_process_workers_keep_their_share_unless_training_threads_is_set():
    """A worker sets its share of the cores (2 here); a tunelab trial's training.threads=1
    then wins for that trial's training; a trial without it trains on the worker's share."""
    from tunelab.execute import ProcessExecutor, TrialSpec

    without = {"model": {"hidden": [16]}, "training": {"epochs": 1}}
    specs = [TrialSpec(0, {}, fn=install_probe),
             TrialSpec(1, without),
             TrialSpec(2, {}, fn=read_probe, objective="value"),
             TrialSpec(3, SMALL),
             TrialSpec(4, {}, fn=read_probe, objective="value")]
    events = []

    def on_event(ev):
        events.append(ev)
        return "continue"

    with ProcessExecutor(1, threads_per_worker=2) as ex:  # one worker: the specs run in order, in it
        ex.run(iter(specs), on_event)
    finals = {ev.number: ev for ev in events if ev.kind in ("done", "pruned", "failed")}
    assert [finals[n].kind for n in range(5)] == ["done"] * 5, [finals[n].error for n in range(5)]
    seen = {ev.number: ev.metrics["seen"] for ev in events if ev.kind == "epoch" and "seen" in ev.metrics}
    assert seen == {2: [2], 4: [1]}


# ---------------------------------------------------------------------------- one preparation
def _calls_outside(names: set[str], allowed: tuple[str, ...]) -> list[str]:
    """``file:line name`` for every call of (or import of) ``names`` in src/tunelab, except in the
    files (or folders, ending in /) ``allowed``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in allowed or any(a.endswith("/") and rel.startswith(a) for a in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in names:
                    found.append(f"{rel}:{node.lineno} {name}()")
            elif isinstance(node, ast.ImportFrom):
                found += [f"{rel}:{node.lineno} import {a.name}" for a in node.names if a.name in names]
    return found


def _called_in(rel: str) -> set:
    tree = ast.parse((SRC / rel).read_text())
    return {getattr(n.func, "attr", getattr(n.func, "id", None)) for n in ast.walk(tree) if isinstance(n, ast.Call)}


def test_nothing_but_prepare_builds_a_model_and_nothing_but_the_thread_policy_sets_threads():
    assert (SRC / "trainer" / "prepare.py").is_file() and (SRC / "nn").is_dir()
    assert _calls_outside({"build_model"}, ("trainer/prepare.py", "nn/")) == []
    assert _calls_outside({"set_num_threads"}, ("trainer/threads.py",)) == []
    # the scan finds what it looks for: the two files call them
    assert "build_model" in _called_in("trainer/prepare.py")
    assert "set_num_threads" in _called_in("trainer/threads.py")


def test_prepare_builds_the_same_initial_weights_for_a_seed():
    a, b = prepare(from_dict(SMALL)), prepare(from_dict(SMALL))
    c = prepare(from_dict({**SMALL, "training": {**SMALL["training"], "seed": 1}}))
    wa, wb, wc = (torch.cat([p.detach().flatten() for p in r.model.parameters()]) for r in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.data.name == "digits" and a.device.type == "cpu"


def test_prepare_uses_a_given_model_and_data():
    base = prepare(from_dict(SMALL))
    own = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    run = prepare(from_dict(SMALL), data=base.data, model=own)
    assert run.model is own and run.data is base.data
