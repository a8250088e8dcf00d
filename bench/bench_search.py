"""Random vs coarse-to-fine vs TPE at the same budget, on real data.

For each sampler: a fresh study of the example space, the same trial budget, seed and
pruner; then the best configuration (chosen on validation) is trained once more with
`tunelab.train`, which reads the test set once. Prints best validation accuracy, that test
accuracy and the wall time, and appends a JSON line to bench/results/bench_search.jsonl.
Beside the wall time of each study: the epochs its trials trained and its compute floor. The
searched spaces change the model's width and depth from trial to trial, so the floor here is the
one `tunelab tune --profile` measures (the study's training and evaluation time over the workers)
rather than epochs x one model's epoch time (bench/_floor.py) as in the other study benchmarks.

    python bench/bench_search.py --data digits --trials 30
    TUNELAB_DATA=../shared/data python bench/bench_search.py --data mnist --trials 16 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import tunelab
from tunelab.search.space import SearchSpace
from _floor import epochs_trained, ratio  # bench/_floor.py
from _results import append_record  # bench/_results.py (scripts run from bench/)

ROOT = Path(__file__).resolve().parents[1]


def run(space: SearchSpace, sampler: str, args, storage: str) -> dict:
    t0 = time.perf_counter()
    res = tunelab.tune(space, sampler=sampler, trials=args.trials, pruner=args.pruner,
                       workers=args.workers, storage=storage, study=sampler, seed=args.seed)  # c2f: auto rounds
    seconds = time.perf_counter() - t0
    floor = res.profile["floor_s"]  # training and evaluation over the workers, measured
    epochs = epochs_trained(res.study.get_trials(deepcopy=False))
    final = tunelab.train(res.best_config, save=False)  # the test set, read once
    states = [t.state.name.lower() for t in res.study.get_trials()]
    return dict(sampler=sampler, best_val=res.best_value, test_accuracy=final.test_accuracy,
                seconds=seconds, epochs=epochs, floor=floor, x_floor=seconds / floor if floor > 0 else None,
                best_params=res.best_params,
                states={s: states.count(s) for s in sorted(set(states))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits", choices=["digits", "mnist"])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--pruner", default="asha")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samplers", default="random,coarse-to-fine,tpe")
    args = ap.parse_args()
    space = SearchSpace.load(ROOT / "examples" / "spaces" / f"{args.data}.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers.split(","):
            rows.append(run(space, sampler, args, f"sqlite:///{tmp}/search.db"))
    print(f"{args.data}: {args.trials} trials per sampler, pruner {args.pruner}, "
          f"{args.workers} worker(s), seed {args.seed}")
    print(f"{'sampler':<16}{'best val acc':>14}{'test acc':>10}{'wall s':>9}{'epochs':>8}{'floor s':>9}"
          f"{'x floor':>9}  states")
    for r in rows:
        print(f"{r['sampler']:<16}{r['best_val']:>14.4f}{r['test_accuracy']:>10.4f}{r['seconds']:>9.1f}"
              f"{r['epochs']:>8}{r['floor']:>9.1f}{ratio(r['x_floor']):>9}  {r['states']}")
    append_record("search", dict(**vars(args), rows=rows))


if __name__ == "__main__":
    main()
