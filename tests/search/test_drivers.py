"""Several study drivers on one study: every trial asked, run and told once, the study stops at its
total, a compare's (arm, seed) pairs are claimed, and a driver never recovers another live driver's
running trials. SQLite here; the same on PostgreSQL with the postgres marker (TUNELAB_PG_URL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import tunelab
from tunelab.search.drivers import Heartbeat, counts, driver_alive

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("TUNELAB_PG_URL")

DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import optuna, tunelab
    from search import objectives
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {{"base": {{"epochs": 3, "sleep": 0.03}}, "space": {{"x": {{"uniform": [0.0, 1.0]}}}}}}
    if __name__ == "__main__":
        tunelab.tune(space, trials={trials}, storage={url!r}, study={study!r}, objective=objectives.quadratic,
                     seed=int(sys.argv[1]), workers={workers}{extra})
""")

COMPARE = textwrap.dedent("""
    import optuna
    from tunelab.analysis.designs import Arm
    from tunelab.search.compare import run_compare
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = {{"data": {{"name": "digits"}}, "model": {{"hidden": [8]}}, "training": {{"epochs": 2, "threads": 1}}}}
    arms = [Arm("baseline", {{}}), Arm("lr", {{"optimizer.lr": 0.01}}), Arm("sgd", {{"optimizer.name": "sgd"}})]
    if __name__ == "__main__":
        run_compare(base, arms, [0, 1, 2], name={name!r}, storage={url!r}, executor="inline")
""")


def _drivers(tmp_path: Path, script: str, n: int = 2) -> None:
    path = tmp_path / f"driver-{uuid.uuid4().hex[:6]}.py"
    path.write_text(script)
    procs = [subprocess.Popen([sys.executable, str(path), str(i)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(n)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, "\n".join(outs)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if not PG_URL:
        pytest.skip("TUNELAB_PG_URL is not set (run: export TUNELAB_PG_URL=$(bash .ci/postgres-setup.sh))")
    return PG_URL


@pytest.mark.parametrize("workers", [1, 2])
def test_two_drivers_share_a_study_and_stop_at_its_total(tmp_path, url, workers):
    study = f"shared-{uuid.uuid4().hex[:8]}"
    _drivers(tmp_path, DRIVER.format(tests=str(ROOT / "tests"), trials=16, url=url, study=study, workers=workers,
                                   extra=""))
    trials = optuna.load_study(study_name=study, storage=url).get_trials()
    assert len(trials) == 16 and [t.state for t in trials] == [TrialState.COMPLETE] * 16
    assert len({t.user_attrs["driver"] for t in trials}) == 2  # both drivers asked trials
    assert all(len(t.intermediate_values) == 3 and "history" in t.user_attrs for t in trials)  # each told once
    optuna.delete_study(study_name=study, storage=url)


def test_two_coarse_to_fine_drivers_share_each_rounds_ranges(tmp_path, url):
    """Rounds are claimed, not duplicated: each round's ranges are fixed once (by whichever driver asks
    its first trial, under the study's ask lock) and every trial of the round, from either driver,
    is sampled inside them."""
    from tunelab.search.coarse_to_fine import stored_rounds

    study = f"c2f-{uuid.uuid4().hex[:8]}"
    _drivers(tmp_path, DRIVER.format(tests=str(ROOT / "tests"), trials=24, url=url, study=study, workers=1,
                                     extra=', sampler="coarse-to-fine", round_size=8'))
    st = optuna.load_study(study_name=study, storage=url)
    trials = st.get_trials()
    assert len(trials) == 24 and [t.state for t in trials] == [TrialState.COMPLETE] * 24
    assert len({t.user_attrs["driver"] for t in trials if t.number >= 8}) == 2  # both in narrowed rounds
    rounds = stored_rounds(st)
    assert len(rounds) == 3
    assert rounds[-1]["x"]["uniform"][1] - rounds[-1]["x"]["uniform"][0] < 1.0  # the ranges did narrow
    for t in trials:
        lo, hi = rounds[t.number // 8]["x"]["uniform"]
        assert lo <= t.params["x"] <= hi, (t.number, t.params, rounds)
    optuna.delete_study(study_name=study, storage=url)


def test_two_compare_drivers_run_each_arm_and_seed_once(tmp_path, url):
    name = f"cmp-{uuid.uuid4().hex[:8]}"
    _drivers(tmp_path, COMPARE.format(name=name, url=url))
    trials = optuna.load_study(study_name=f"compare:{name}", storage=url).get_trials()
    pairs = sorted((t.user_attrs["arm"], t.user_attrs["seed"]) for t in trials)
    assert pairs == [(a, s) for a in range(3) for s in range(3)]  # nine runs, none twice
    assert all(t.state == TrialState.COMPLETE for t in trials)
    optuna.delete_study(study_name=f"compare:{name}", storage=url)


def test_a_driver_does_not_recover_a_live_drivers_trials_but_does_a_dead_ones(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="s")
    # another driver, alive: a process of this machine that exists and beats
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        beats = {"tunelab.driver.alive": {"host": socket.gethostname(), "pid": sleeper.pid, "time": time.time()},
                 "tunelab.driver.dead": {"host": socket.gethostname(), "pid": 2 ** 22 + 7, "time": time.time()},
                 "tunelab.driver.old": {"host": "elsewhere", "pid": 1, "time": time.time() - 3600}}
        for key, value in beats.items():
            study._storage.set_study_system_attr(study._study_id, key, value)
        for driver in ("alive", "dead", "old", None):
            t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            if driver:
                t.set_user_attr("driver", driver)
        from tunelab.search.study import recover_stale

        swept = recover_stale(study)
        states = [t.state for t in study.get_trials() if not t.system_attrs.get("fixed_params")]
        assert swept == [1, 2, 3]  # the dead driver's, the one silent for an hour, the driverless one
        assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.FAIL, TrialState.FAIL]
        assert counts(study) == {"finished": 0, "running": 1}  # requeued failures do not count
    finally:
        sleeper.kill()
        sleeper.wait()
    beats = study._storage.get_study_system_attrs(study._study_id)
    assert not driver_alive(study, "alive", beats=beats)  # its process ended: dead at once


def test_heartbeat_beats_and_says_when_it_ended(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'h.db'}", study_name="h")
    heart = Heartbeat(study, "me", every=0.05)
    try:
        first = study._storage.get_study_system_attrs(study._study_id)["tunelab.driver.me"]["time"]
        time.sleep(0.3)
        later = study._storage.get_study_system_attrs(study._study_id)["tunelab.driver.me"]["time"]
        assert later > first and driver_alive(study, "me")
    finally:
        heart.stop()
    assert not driver_alive(study, "me")


def test_a_killed_driver_is_recovered_by_a_rerun_while_another_driver_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    script = tmp_path / "slow.py"
    script.write_text(DRIVER.format(tests=str(ROOT / "tests"), trials=40, url=url, study="k", workers=1, extra="")
                      .replace('"sleep": 0.03', '"sleep": 0.2'))
    a = subprocess.Popen([sys.executable, str(script), "0"], cwd=tmp_path)
    b = subprocess.Popen([sys.executable, str(script), "1"], cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # until driver a has a trial running
            time.sleep(0.2)
            try:
                st = optuna.load_study(study_name="k", storage=url)
                if any(t.state == TrialState.RUNNING and t.user_attrs.get("driver") for t in st.get_trials()):
                    break
            except Exception:  # noqa: BLE001 - the study is not there yet
                pass
        a.send_signal(signal.SIGKILL)
        a.wait()
        rerun = subprocess.run([sys.executable, str(script), "2"], cwd=tmp_path, capture_output=True, text=True,
                               timeout=240)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.wait(timeout=240)
    assert b.returncode == 0
    trials = optuna.load_study(study_name="k", storage=url).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 40 and not [t for t in trials if t.state == TrialState.RUNNING]
    requeued = [t for t in trials if t.state == TrialState.FAIL]
    assert requeued and all(t.user_attrs.get("requeued") for t in requeued)  # the killed driver's trial(s)


def test_a_driver_takes_a_trial_another_process_queued_after_its_cache_was_filled(tmp_path):
    """What a second driver hit after a rerun re-queued a killed driver's trial: the queued trial
    was claimed through ``queue_by_state`` but Optuna's cache in front of the database had never
    read it, so ``ask`` failed with KeyError when it set the trial's first parameter."""
    from tunelab.search.storage import queue_by_state

    url = f"sqlite:///{tmp_path / 'q.db'}"
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 2.0)}
    mine = optuna.create_study(study_name="q", storage=url)
    queue_by_state(mine)
    for _ in range(2):  # the cache has read finished trials: it reads only newer ones from now on
        trial = mine.ask(dist)
        mine.tell(trial, 1.0)
    other = optuna.load_study(study_name="q", storage=url)  # another process: its own storage object
    other.enqueue_trial({"x": 1.5})
    taken = mine.ask(dist)
    assert taken.params == {"x": 1.5}
    mine.tell(taken, 0.5)
    assert [t.state for t in optuna.load_study(study_name="q", storage=url).get_trials()] == [
        optuna.trial.TrialState.COMPLETE] * 3
