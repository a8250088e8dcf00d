"""The population executor against one by one, measured in the same run.

Four measurements (each printed as a markdown table with medians over --repeats, and appended as
a JSON line to bench/results/bench_population.jsonl):

1. study: the 64-trial study of digits MLPs in bench/spaces/population_digits.yaml (hidden
   [64, 32], 20 epochs, lr log-uniform, optimizer sgd/momentum/adam, dropout 0..0.5), run end to
   end with `tunelab tune` in a fresh process (imports, SQLite storage, sampler, report of the best)
   with --executor inline (1 thread: the fastest for such small nets), processes (--workers 2, one
   thread each), population (2 threads) and population with 2 workers (one population per
   process, one thread each).
2. samplers: the same study with random, TPE and TPE + ASHA, each on the population (size 32,
   refilled as trials finish or are pruned), processes (2 workers) and inline, end to end; the
   population's mean occupancy (members trained per step over the stack's slots) from the profile
   the study keeps.
3. training: the same kind of bucket trained in this process, without storage: train_population
   of K members against fit() of each member one by one (one thread), K = 8, 21 and 64; and 16
   digits CNNs.
4. mnist: 16 MNIST MLPs (784-256-128-10, adam, dropout varied, 2 epochs) with the population
   against the process executor (--workers 2), end to end (needs TUNELAB_DATA).
5. tiny: 256 tiny trials (bench/spaces/population_tiny.yaml: digits, hidden [16], 5 epochs) through
   ``tunelab.tune`` in this process (imports done, a fresh SQLite file each time), population against
   inline: trials per second and the driver's own split of the time (sampler, storage, the rest of
   the driver, the executor: training, evaluation, data).

The study rows (1, 4 and 5) also get their compute floor (bench/_floor.py): the epochs the study's
trials trained (their recorded histories, read back from the study's SQLite storage) x the
single-epoch time of one such model with one thread (measured at the start of the section, in the
same run) / the cores in use (workers x threads each, capped by the cores: 1 for inline, 2 for the
others), and wall / floor. A population row trains its models as one stacked computation, so it can
come in below 1x floor. The training microbenchmarks (3) and the sampler rows (2) have no floor column.

    python bench/bench_population.py                 # all four (about 6 minutes on 2 cores)
    python bench/bench_population.py --only training --repeats 3

The `uptime` lines before and after say how busy the machine was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _floor import FLOOR_NOTE, cores_in_use, epoch_seconds, epochs_trained, floor, ratio, study_epochs  # noqa: E402
from _results import append_record  # noqa: E402  (bench/_results.py)

# (workers, threads each) of every executor row: the cores in use of its floor
SHAPE = {"inline": (1, 1), "processes": (2, 1), "population": (1, 2), "population-2": (2, 1)}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _tune(space: Path, executor: str, trials: int, extra: list[str]) -> tuple[float, int]:
    """Wall seconds of one `tunelab tune` in a fresh process and a fresh storage, and the epochs its
    trials trained (read back from that storage)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tunelab", "tune", str(space), "--study", "bench", "--trials", str(trials),
               "--storage", f"sqlite:///{tmp}/b.db", "--out", f"{tmp}/out", "--seed", "0", *extra]
        # explicit threads: the auto policy reads the load average, which lags behind the run
        # before, so back-to-back runs would get different counts
        if executor == "processes":
            cmd += ["--executor", "processes", "--workers", "2", "--set", "training.threads=1"]
        elif executor == "population":
            cmd += ["--executor", executor, "--set", "training.threads=2"]
        elif executor == "population-2":  # one population per core: two worker processes
            cmd += ["--executor", "population", "--workers", "2", "--set", "training.threads=1"]
        else:
            cmd += ["--executor", executor, "--set", "training.threads=1"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        wall = time.perf_counter() - t0
        return wall, study_epochs(f"sqlite:///{tmp}/b.db", "bench")


def _tune_occupancy(space: Path, executor: str, trials: int, extra: list[str]) -> tuple[float, int, Optional[float]]:
    """``_tune``, and the population's mean occupancy from the profile the study keeps (None: not a population)."""
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/b.db"
        cmd = [sys.executable, "-m", "tunelab", "tune", str(space), "--study", "bench", "--trials", str(trials),
               "--storage", storage, "--out", f"{tmp}/out", "--seed", "0", *extra, *_EXECUTOR_ARGS[executor]]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        wall = time.perf_counter() - t0
        study = optuna.load_study(study_name="bench", storage=storage)
        pop = study.user_attrs.get("profile", {}).get("population") or {}
        occupancy = None if pop.get("occupancy") is None else (pop["occupancy"], pop.get("occupancy_open"))
        return wall, epochs_trained(study.get_trials(deepcopy=False)), occupancy


# explicit threads: the auto policy reads the machine's load, which back-to-back runs change
_EXECUTOR_ARGS = {"inline": ["--executor", "inline", "--set", "training.threads=1"],
                  "processes": ["--executor", "processes", "--workers", "2", "--set", "training.threads=1"],
                  "population": ["--executor", "population", "--set", "training.threads=2"]}
SAMPLERS = {"random": [], "tpe": ["--sampler", "tpe"], "tpe + asha": ["--sampler", "tpe", "--pruner", "asha"]}


def samplers(repeats: int) -> dict:
    """The 64-trial study with random, TPE and TPE + ASHA, each on the population (default size 32: it
    refills as trials finish or are pruned), the processes (2 workers) and inline; wall seconds
    (medians, executors interleaved), epochs trained and the population's mean occupancy."""
    space = ROOT / "bench" / "spaces" / "population_digits.yaml"
    rows: dict[str, dict] = {}
    for name, extra in SAMPLERS.items():
        runs = {ex: [] for ex in _EXECUTOR_ARGS}
        for _ in range(repeats):
            for ex in runs:
                runs[ex].append(_tune_occupancy(space, ex, 64, extra))
        rows[name] = {ex: {"wall": statistics.median(r[0] for r in v), "epochs": int(statistics.median(r[1] for r in v)),
                           "occupancy": v[0][2], "all": v} for ex, v in runs.items()}
    print("\n| 64-trial digits study | population s | processes s | inline s | population vs inline | "
          "population vs processes | epochs (pop / proc / inline) | occupancy (all / until the budget ran out) |"
          "\n|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        pop, proc, inl = (r[ex]["wall"] for ex in ("population", "processes", "inline"))
        occ = r["population"]["occupancy"]
        print(f"| {name} | {pop:.1f} | {proc:.1f} | {inl:.1f} | {inl / pop:.2f}x | {proc / pop:.2f}x | "
              f"{r['population']['epochs']} / {r['processes']['epochs']} / {r['inline']['epochs']} | "
              f"{'-' if occ is None else f'{occ[0]:.2f} / ' + ('-' if occ[1] is None else f'{occ[1]:.2f}')} |")
    return {"samplers": rows}


def _space_base(space: Path) -> dict:
    import yaml

    return yaml.safe_load(space.read_text())["base"]


def study(repeats: int) -> dict:
    space = ROOT / "bench" / "spaces" / "population_digits.yaml"
    # one such model (adam, lr at the geometric middle of the range, dropout 0.25), one thread
    one_epoch = epoch_seconds(_space_base(space), ["optimizer.name=adam", "optimizer.lr=0.003", "model.dropout=0.25"],
                              epochs=8)
    times, epochs = _executors(space, ("inline", "processes", "population", "population-2"), 64, repeats)
    med, floors = _table("64-trial digits study, end to end", times, epochs, one_epoch)
    return {"study": med, "study_all": times, "study_epochs_all": epochs, "study_epoch_s": one_epoch,
            "study_floor": floors}


def _executors(space: Path, executors: tuple, trials: int,
               repeats: int) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Wall seconds of each executor, ``repeats`` times, interleaved (a change in load hits all alike),
    and the epochs each run trained."""
    times: dict[str, list[float]] = {ex: [] for ex in executors}
    epochs: dict[str, list[int]] = {ex: [] for ex in executors}
    for _ in range(repeats):
        for ex in times:
            extra = ["--population-size", str(trials)] if ex.startswith("population") else []
            wall, n = _tune(space, ex, trials, extra)
            times[ex].append(wall)
            epochs[ex].append(n)
    return times, epochs


def _table(title: str, times: dict[str, list[float]], epochs: dict[str, list[int]],
           one_epoch: float) -> tuple[dict[str, float], dict[str, dict]]:
    """Print medians (the speed against the first executor, the epochs trained, the compute floor and
    wall / floor) as a markdown table; return the medians and each row's floor fields."""
    med = {ex: statistics.median(v) for ex, v in times.items()}
    floors = {ex: floor(m, int(statistics.median(epochs[ex])), one_epoch, cores_in_use(*SHAPE[ex]))
              for ex, m in med.items()}
    first = next(iter(med))
    print(f"\n| {title} | median s | vs {first} | epochs | cores | floor s | x floor |\n|---|---|---|---|---|---|---|")
    for ex, m in med.items():
        label = {"processes": "processes (2 workers)", "population": "population (2 threads)",
                 "population-2": "population (2 workers, one population each)"}
        f = floors[ex]
        print(f"| {label.get(ex, ex)} | {m:.1f} | {med[first] / m:.2f}x | {f['epochs']} | {f['cores']} "
              f"| {f['floor']:.1f} | {ratio(f['x_floor'])} |")
    print(f"\n{FLOOR_NOTE} One epoch: {one_epoch * 1000:.1f} ms.")
    return med, floors


def training(repeats: int) -> dict:
    import numpy as np
    import torch

    from tunelab.config import from_dict

    torch.set_num_threads(1)
    out = {}
    print("\n| bucket of K digits MLPs ([64, 32], adam, dropout, 20 epochs), 1 thread | population s | "
          "one by one s | speed-up |\n|---|---|---|---|")
    for k in (8, 21, 64):
        rng = np.random.default_rng(k)
        cfgs = [from_dict({"data": {"name": "digits"}, "model": {"hidden": [64, 32], "dropout": float(rng.uniform(0, .5))},
                           "optimizer": {"name": "adam", "lr": float(10 ** rng.uniform(-4, -1))},
                           "training": {"epochs": 20, "batch_size": 64, "threads": 1, "seed": i}}) for i in range(k)]
        p, o = _versus(cfgs, repeats)
        print(f"| K = {k} | {p:.2f} | {o:.2f} | {o / p:.2f}x |")
        out[f"K={k}"] = {"population": p, "one_by_one": o}
    print("\n| bucket of 16 digits CNNs (channels [8, 16], head [32], momentum, 10 epochs), 1 thread | "
          "population s | one by one s | speed-up |\n|---|---|---|---|")
    cnns = [from_dict({"data": {"name": "digits"}, "model": {"name": "cnn", "channels": [8, 16], "hidden": [32]},
                       "optimizer": {"name": "momentum", "lr": 0.01 * (1 + i % 4)},
                       "training": {"epochs": 10, "batch_size": 64, "threads": 1, "seed": i}}) for i in range(16)]
    p, o = _versus(cnns, repeats)
    print(f"| K = 16 | {p:.2f} | {o:.2f} | {o / p:.2f}x |")
    out["cnn K=16"] = {"population": p, "one_by_one": o}
    out["wide"] = _wide(repeats)
    return {"training": out}


def _wide(repeats: int) -> dict:
    """64 digits MLPs of the study's space (sgd / momentum / adam, dropout 0 or more): the buckets
    ``group`` makes now (sgd and momentum share a stack, dropout on and off too: 2 stacks) against one
    stack per optimizer name and dropout on/off (the split before: 6 stacks), training only, 1 thread."""
    import numpy as np

    from tunelab.config import from_dict
    from tunelab.population import group, train_population

    rng = np.random.default_rng(0)
    names = ["sgd", "momentum", "adam"]
    cfgs = [from_dict({"data": {"name": "digits"}, "model": {"hidden": [64, 32],
                                                             "dropout": float(rng.choice([0.0, rng.uniform(0, .5)]))},
                       "optimizer": {"name": names[i % 3], "lr": float(10 ** rng.uniform(-4, -1))},
                       "training": {"epochs": 20, "batch_size": 64, "threads": 1, "seed": i}}) for i in range(64)]
    wide = group(cfgs)
    narrow: dict[tuple, list[int]] = {}
    for i, c in enumerate(cfgs):
        narrow.setdefault((c.optimizer.name, c.model.dropout > 0), []).append(i)
    train_population(cfgs[:2], test=False)  # warm
    times: dict[str, list[float]] = {"wide": [], "narrow": []}
    for _ in range(repeats):
        for label, buckets in (("wide", wide), ("narrow", list(narrow.values()))):
            t0 = time.perf_counter()
            for b in buckets:
                train_population([cfgs[i] for i in b], test=False)
            times[label].append(time.perf_counter() - t0)
    w, n = statistics.median(times["wide"]), statistics.median(times["narrow"])
    print(f"\n| 64 digits MLPs, sgd / momentum / adam, dropout 0 or not, 1 thread | stacks | median s |\n|---|---|---|")
    print(f"| one stack per rule (sgd with momentum, dropout on and off together) | {len(wide)} | {w:.2f} |")
    print(f"| one stack per optimizer name and dropout on/off (before) | {len(narrow)} | {n:.2f} |")
    print(f"\nwider stacks: {n / w:.2f}x")
    return {"wide_s": w, "narrow_s": n, "wide_stacks": len(wide), "narrow_stacks": len(narrow)}


def _versus(cfgs: list, repeats: int) -> tuple[float, float]:
    """Median seconds of train_population(cfgs) and of fit() of each config one by one."""
    from tunelab.population import train_population
    from tunelab.trainer.fit import fit
    from tunelab.trainer.prepare import prepare

    train_population(cfgs[:2], test=False)  # warm: data cache, kernels
    pop, one = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_population(cfgs, test=False)
        pop.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for c in cfgs:
            run = prepare(c, cache=True)
            fit(c, run.data, run.model, test=False)
        one.append(time.perf_counter() - t0)
    return statistics.median(pop), statistics.median(one)


def mnist(repeats: int) -> dict:
    if not os.environ.get("TUNELAB_DATA"):
        print("\n(mnist skipped: set TUNELAB_DATA to the folder holding mnist/)")
        return {}
    # the runs start in temporary folders: a relative data folder must not move with them
    os.environ["TUNELAB_DATA"] = str(Path(os.environ["TUNELAB_DATA"]).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "mnist.yaml"
        space.write_text("base:\n  data: {name: mnist}\n  model: {hidden: [256, 128]}\n"
                         "  optimizer: {name: adam}\n  training: {epochs: 2, batch_size: 128}\n"
                         "space:\n  optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n"
                         "  model.dropout: {uniform: [0.0, 0.5]}\n")
        # one such MLP (lr at the geometric middle of the range, dropout 0.25), one thread
        one_epoch = epoch_seconds(_space_base(space), ["optimizer.lr=0.001", "model.dropout=0.25"])
        times, epochs = _executors(space, ("processes", "population", "population-2"), 16, repeats)
    med, floors = _table("16 MNIST MLPs (784-256-128-10, 2 epochs), end to end", times, epochs, one_epoch)
    return {"mnist": med, "mnist_all": times, "mnist_epochs_all": epochs, "mnist_epoch_s": one_epoch,
            "mnist_floor": floors}


def tiny(repeats: int) -> dict:
    import optuna
    import torch

    import tunelab

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = ROOT / "bench" / "spaces" / "population_tiny.yaml"
    # one such model (adam, lr at the geometric middle of the range, dropout 0.15), one thread
    one_epoch = epoch_seconds(_space_base(space), ["optimizer.name=adam", "optimizer.lr=0.01", "model.dropout=0.15"],
                              epochs=8)
    runs: dict[str, list] = {"inline": [], "population": []}
    for _ in range(repeats):
        for ex in runs:
            torch.set_num_threads(1 if ex == "inline" else 2)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = tunelab.tune(str(space), trials=256, storage=f"sqlite:///{tmp}/t.db", study="tiny", seed=0,
                                   executor=ex, population_size=256 if ex == "population" else None)
                wall = time.perf_counter() - t0
                runs[ex].append({"wall": wall, "epochs": epochs_trained(res.study.get_trials(deepcopy=False)),
                                 **res.progress.split()})
    print("\n| 256 tiny trials (digits, [16], 5 epochs), `tunelab.tune` in process, SQLite | trials/s | wall s | "
          "executor s | storage s | sampler s | rest of driver s | epochs | cores | floor s | x floor |"
          "\n|---|---|---|---|---|---|---|---|---|---|---|")
    out = {}
    for ex, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        f = floor(med["wall"], int(med["epochs"]), one_epoch, cores_in_use(*SHAPE[ex]))  # threads set above
        print(f"| {ex} | {256 / med['wall']:.1f} | {med['wall']:.1f} | {med['executor']:.1f} | {med['storage']:.1f} "
              f"| {med['ask']:.1f} | {med['driver']:.1f} | {f['epochs']} | {f['cores']} | {f['floor']:.1f} "
              f"| {ratio(f['x_floor'])} |")
        out[ex] = {**med, "floor": f}
    print(f"\n{FLOOR_NOTE} One epoch: {one_epoch * 1000:.1f} ms.")
    return {"tiny": out, "tiny_all": runs, "tiny_epoch_s": one_epoch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["study", "samplers", "training", "mnist", "tiny"])
    args = ap.parse_args()
    record = {"uptime_before": uptime()}
    print(record["uptime_before"])
    for name, fn in (("study", study), ("samplers", samplers), ("training", training), ("mnist", mnist),
                     ("tiny", tiny)):
        if args.only in (None, name):
            record.update(fn(args.repeats))
    record["uptime_after"] = uptime()
    print(record["uptime_after"])
    append_record("population", record)


if __name__ == "__main__":
    main()
