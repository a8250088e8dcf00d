"""The Ray executor on a real multi-node Ray cluster on this machine (marker: ray).

``ray.cluster_utils.Cluster`` starts a head and worker nodes as separate processes (each its own
raylet) on 127.0.0.1; the tests run a tune study and a compare to completion on it, then kill a
worker node in the middle of a study. Without Ray installed the executor says how to install it."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

import tunelab
from tunelab.errors import ConfigError

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")
PG_URL = os.environ.get("TUNELAB_PG_URL")

# the trials the kill tests kill: long enough (~8 s on one busy core) that a kill aimed at a trial
# that has just started still finds it training, under CI's load too
KILL_EPOCHS = 400
SPACE = {"base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "training": {"epochs": 3}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}


@pytest.fixture(scope="module")
def cluster():
    """A head (no CPU: it schedules nothing) and two worker nodes of one CPU each."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, nodes
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def test_a_tune_study_and_a_compare_run_on_a_multi_node_cluster(cluster, tmp_path):
    c, _ = cluster
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    res = tunelab.tune(SPACE, trials=6, storage=storage, study="ray", seed=0, executor="ray",
                       ray={"address": c.address}, overrides=["training.threads=1"])
    trials = res.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert all(len(t.user_attrs["history"]) == 3 and len(t.intermediate_values) == 3 for t in trials)
    assert len({t.user_attrs["node"] for t in trials}) == 2  # both worker nodes trained trials
    # a compare on the same cluster: every (arm, seed) once
    from tunelab.analysis.designs import Arm
    from tunelab.search.compare import run_compare

    arms = [Arm("baseline", {}), Arm("sgd", {"optimizer.name": "sgd"})]
    study = run_compare(SPACE["base"], arms, [0, 1], name="ray-cmp", storage=storage, executor="ray",
                        ray={"address": c.address})
    runs = study.get_trials()
    assert sorted((t.user_attrs["arm"], t.user_attrs["seed"]) for t in runs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(t.state == TrialState.COMPLETE and "test_accuracy" in t.user_attrs["result"] for t in runs)


def test_population_buckets_train_on_actors_as_the_population_executor_trains_them(cluster, tmp_path):
    c, _ = cluster
    kw = dict(trials=8, seed=3, sampler="random", population_size=4, overrides=["training.threads=1"])
    res = tunelab.tune(SPACE, storage=f"sqlite:///{tmp_path / 'b.db'}", study="bucket", executor="ray",
                       ray={"address": c.address}, **kw)
    ref = tunelab.tune(SPACE, storage=f"sqlite:///{tmp_path / 'ref.db'}", study="ref", executor="population", **kw)
    trials = res.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    assert all(t.user_attrs["population"] == 4 for t in trials)  # two buckets of four, each one actor
    assert len({(t.user_attrs["node"], t.user_attrs["pid"]) for t in trials}) == 2
    got = sorted((t.params["optimizer.lr"], t.value) for t in trials)
    want = sorted((t.params["optimizer.lr"], t.value) for t in ref.study.get_trials())
    assert [lr for lr, _ in got] == [lr for lr, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-6)  # the same training


@pytest.mark.parametrize("population_size", [None, 5])
def test_pruning_decisions_reach_trials_on_the_cluster(cluster, tmp_path, population_size):
    c, _ = cluster
    space = {"base": {**SPACE["base"], "training": {"epochs": 8}}, "space": {"optimizer.lr": {"log_uniform": [1e-5, 1.0]}}}
    # with buckets of five, two train at once and the third is pruned against their results
    res = tunelab.tune(space, trials=15 if population_size else 10, storage=f"sqlite:///{tmp_path / 'p.db'}",
                       study="prune", seed=1,
                       executor="ray", ray={"address": c.address}, pruner="median", grace_epochs=2,
                       population_size=population_size)
    trials = res.study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(len(t.user_attrs["history"]) < 8 for t in pruned)  # stopped where pruned
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def _wait_for_a_completed_trial(storage: str, study: str, limit: float = 120, count: int = 1) -> None:
    """Until the study has ``count`` COMPLETE trials (or ``limit`` seconds have passed)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            if sum(t.state == TrialState.COMPLETE
                   for t in optuna.load_study(study_name=study, storage=storage).get_trials()) >= count:
                return
        except Exception:  # noqa: BLE001 - not created yet
            pass


def _cpu(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])  # utime + stime, in ticks
    except OSError:
        return -1


def _parent(pid: str) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _wait_for_a_training_actor(under: int | None = None, limit: float = 120) -> str | None:
    """The pid of a Ray trial actor that is training now (>= 0.05 s of CPU in half a second: an idle
    one uses none, a training one at least that on a busy machine); with
    ``under``, only the children of that raylet (the actors of one node)."""
    import subprocess

    deadline = time.time() + limit
    while time.time() < deadline:
        pids = subprocess.run(["pgrep", "-f", "TrialActor"], capture_output=True, text=True).stdout.split()
        try:
            pids = [pid for pid in pids if under is None or _parent(pid) == under]
        except OSError:
            continue
        before = {pid: _cpu(pid) for pid in pids}
        time.sleep(0.5)
        busy = [pid for pid in pids if before[pid] >= 0 and _cpu(pid) - before[pid] >= 5]
        if busy:
            return busy[0]
    return None


def _kill_a_trial_actor_when_one_trial_is_done(storage: str, study: str, count: int = 1) -> threading.Thread:
    """SIGKILL a Ray worker process that is training, once the study has ``count`` completed trials."""
    import signal

    def kill():
        _wait_for_a_completed_trial(storage, study, count=count)
        busy = _wait_for_a_training_actor()
        if busy:
            os.kill(int(busy), signal.SIGKILL)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


@pytest.mark.parametrize("retries, population_size", [(1, None), (0, None), (1, 3)])
def test_a_worker_killed_mid_study_is_retried_or_fails_with_the_reason(cluster, tmp_path, retries, population_size):
    c, _ = cluster
    storage, name = f"sqlite:///{tmp_path / 'k.db'}", f"kill{retries}"
    space = {"base": {**SPACE["base"], "training": {"epochs": KILL_EPOCHS, "threads": 1}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    # buckets of 3, 3 and 1: the last one trains alone, and is killed once the two buckets are done
    # (killed any earlier, a bucket's actor can die after its trials' last events: nothing to retry);
    # without buckets, once the first two trials are done (the next two have just started)
    n = 7 if population_size else 5
    killer = _kill_a_trial_actor_when_one_trial_is_done(storage, name, count=6 if population_size else 2)
    res = tunelab.tune(space, trials=n, storage=storage, study=name, seed=0, executor="ray",
                       ray={"address": c.address, "max_retries": retries}, population_size=population_size)
    killer.join()
    trials = res.study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(len(t.user_attrs["history"]) == KILL_EPOCHS for t in done)
    if retries:  # the killed trial (or the bucket's unfinished trials) ran again on a new actor and completed
        assert len(done) == n and not failed
        retried = [t.number for t in done if t.user_attrs.get("retries") == 1]
        # the killed worker's trial (or its bucket's unfinished trials) and no other was retried
        assert retried and len(retried) <= (population_size or 1), retried
    else:  # no retry: it failed, with the reason, and the study went on
        assert len(done) == 4 and len(failed) == 1
        assert "died" in failed[0].user_attrs["fail_reason"]


def test_a_retry_goes_to_another_node_when_one_has_room(cluster, tmp_path):
    """Two trials in flight on a cluster of three one-CPU nodes: the actor of one is SIGKILLed, and
    its retry is placed on the free node, not back on the node it died on (which has room too)."""
    c, _ = cluster
    spare = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        storage, name = f"sqlite:///{tmp_path / 'a.db'}", "avoid"
        space = {"base": {**SPACE["base"], "training": {"epochs": KILL_EPOCHS, "threads": 1}},
                 "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
        killer = _kill_a_trial_actor_when_one_trial_is_done(storage, name, count=2)  # #2, #3 just started
        res = tunelab.tune(space, trials=4, storage=storage, study=name, seed=0, executor="ray", workers=2,
                           ray={"address": c.address, "max_retries": 1})
        killer.join()
        trials = res.study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        retried = [t for t in trials if t.user_attrs.get("retries") == 1]
        assert len(retried) == 1
        assert retried[0].user_attrs["died_on"] != retried[0].user_attrs["node"]
        assert retried[0].user_attrs["died_on"] in {n.node_id for n in c.list_all_nodes()}
    finally:
        c.remove_node(spare)


@pytest.mark.parametrize("trials, population_size", [(6, None), (12, 2)])
def test_a_node_killed_mid_study_leaves_no_trial_running_and_keeps_every_completed_one(cluster, tmp_path, trials,
                                                                                       population_size):
    c, _ = cluster
    victim = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    storage = f"sqlite:///{tmp_path / 'n.db'}"
    space = {"base": {**SPACE["base"], "training": {"epochs": KILL_EPOCHS, "threads": 1}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}

    def kill_node():  # once a trial is complete and the victim node trains one
        _wait_for_a_completed_trial(storage, "node")
        _wait_for_a_training_actor(under=victim.all_processes["raylet"][0].process.pid)
        c.remove_node(victim, allow_graceful=False)  # the node's raylet and its workers, SIGKILLed

    killer = threading.Thread(target=kill_node)
    killer.start()
    res = tunelab.tune(space, trials=trials, storage=storage, study="node", seed=0, executor="ray",
                       ray={"address": c.address, "max_retries": 1}, population_size=population_size)
    killer.join()
    runs = res.study.get_trials()
    assert not [t for t in runs if t.state == TrialState.RUNNING]
    done = [t for t in runs if t.state == TrialState.COMPLETE]
    failed = [t for t in runs if t.state == TrialState.FAIL]
    assert len(done) + len(failed) == trials and len(done) >= trials - 2
    assert all(len(t.user_attrs["history"]) == KILL_EPOCHS for t in done)
    assert all("died" in t.user_attrs["fail_reason"] for t in failed)
    assert failed or [t for t in done if t.user_attrs.get("retries")]  # the node's trials were hit


@pytest.mark.postgres
def test_two_drivers_one_on_ray_share_a_postgres_study(cluster, tmp_path):
    import subprocess
    import textwrap

    if not PG_URL:
        pytest.skip("TUNELAB_PG_URL is not set (run: export TUNELAB_PG_URL=$(bash .ci/postgres-setup.sh))")
    c, _ = cluster
    name = f"pg-ray-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "other.py"
    script.write_text(textwrap.dedent(f"""
        import tunelab
        if __name__ == "__main__":
            tunelab.tune({SPACE!r}, trials=8, storage={PG_URL!r}, study={name!r}, seed=1, workers=2,
                         executor="processes", overrides=["training.threads=1"])
    """))
    other = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    tunelab.tune(SPACE, trials=8, storage=PG_URL, study=name, seed=2, executor="ray", ray={"address": c.address})
    assert other.wait(timeout=300) == 0
    trials = optuna.load_study(study_name=name, storage=PG_URL).get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["driver"] for t in trials}) == 2
    optuna.delete_study(study_name=name, storage=PG_URL)


def test_a_trial_past_the_trial_timeout_is_failed_and_its_actor_killed(cluster, tmp_path):
    c, _ = cluster
    space = {"base": {**SPACE["base"], "training": {"epochs": 5000, "threads": 1}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    t0 = time.monotonic()
    res = tunelab.tune(space, trials=3, storage=f"sqlite:///{tmp_path / 't.db'}", study="slow", seed=0,
                       executor="ray", ray={"address": c.address}, trial_timeout=3)
    trials = res.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert all("timed out" in t.user_attrs["fail_reason"] and "--trial-timeout=3 s" in t.user_attrs["fail_reason"]
               for t in trials)
    assert time.monotonic() - t0 < 120  # 5000 epochs each would take far longer


def test_ray_options_are_checked_in_one_line():
    for ray_opts, match in (({"trial_cpus": 0}, "--trial-cpus=0 is out of range"),
                            ({"max_retries": -1}, "--max-retries=-1 is out of range"),
                            ({"nodes": 2}, "ray option 'nodes' is not known")):
        with pytest.raises(ConfigError, match=match):
            tunelab.tune(SPACE, trials=1, executor="ray", ray=ray_opts)
    with pytest.raises(ConfigError, match=r"^--population-size=0 is out of range; allowed: a whole number >= 1"):
        tunelab.tune(SPACE, trials=1, executor="ray", population_size=0)
    with pytest.raises(ConfigError, match=r"^--trial-timeout=-1 is out of range; allowed: a finite number of seconds > 0"):
        tunelab.tune(SPACE, trials=1, executor="ray", trial_timeout=-1)
    with pytest.raises(ConfigError, match="--address needs --executor ray"):
        tunelab.tune(SPACE, trials=1, ray={"address": "auto"})
