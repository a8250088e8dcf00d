"""The default thread policy as users meet it: back-to-back ``tunelab train`` commands on MNIST, each
in its own process deciding its threads, against a bare PyTorch loop and against ``threads=1``.

Rows, each a new process per round (rounds interleaved, after a warm-up ``tunelab train`` so that
every measured command runs right after another one, as in a shell session):

- tunelab default:  ``tunelab train --set data.name=mnist --set training.epochs=E`` (``training.threads:
                    null``: the policy decides);
- tunelab threads=1: the same with ``--set training.threads=1``;
- bare:             bench/_bare_epochs.py, the hand-written loop of bench_epoch.py with fit()'s per-epoch
                    evaluation, torch's default threads (every core), Adam as torch defaults it;
- bare-fused:       the same loop with ``Adam(fused=True)``, the kernel tunelab's trainer uses.

An epoch's time is train + evaluation (tunelab: history.csv's ``seconds``); each process's first
epoch is left out (allocation, first-use imports) and the median of its other epochs is that round's
number; the table gives the median over rounds with min-max, and the thread count each command took.

Loads: ``--spinners 0,2``: 0 is the machine as it is (``uptime`` printed); 2 adds two processes
spinning in a Python loop (both cores busy) for the whole block, started before its warm-up command.
Under load the bare loops run fewer epochs (``--busy-epochs``): on every core beside two spinners they
are the slow row.

    TUNELAB_DATA=../shared/data python bench/bench_default_threads.py          # about 6 minutes
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import append_record  # bench/_results.py (scripts run from bench/)

HERE = Path(__file__).parent


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def loadavg() -> float:
    return os.getloadavg()[0]


def tunelab_row(epochs: int, out: Path, threads: str | None) -> dict:
    cmd = [sys.executable, "-m", "tunelab", "train", "--set", "data.name=mnist", "--set", f"training.epochs={epochs}",
           "--out", str(out), "-q"] + (["--set", f"training.threads={threads}"] if threads else [])
    load = loadavg()
    subprocess.run(cmd, check=True, capture_output=True)
    with open(out / "history.csv") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f) if row.get("seconds")]
    threads_taken = json.loads((out / "result.json").read_text())["threads"]
    return {"seconds": seconds, "threads": threads_taken, "loadavg_before": load}


def bare_row(epochs: int, fused: bool) -> dict:
    load = loadavg()
    out = subprocess.run([sys.executable, str(HERE / "_bare_epochs.py"), str(epochs)] + (["--fused"] if fused else []),
                         check=True, capture_output=True, text=True, cwd=HERE).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "loadavg_before": load}


def block(spinners: int, rounds: int, epochs: int, busy_epochs: int, work: Path) -> dict:
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(spinners)]
    try:
        time.sleep(1.0 if spinners else 0.0)
        tunelab_row(2, work / f"warm-up-{spinners}", None)  # "right after another tunelab command"
        bare_epochs = busy_epochs if spinners else epochs
        rows = {"tunelab default": lambda r: tunelab_row(epochs, work / f"default-{spinners}-{r}", None),
                "tunelab threads=1": lambda r: tunelab_row(epochs, work / f"one-{spinners}-{r}", "1"),
                "bare": lambda r: bare_row(bare_epochs, fused=False),
                "bare-fused": lambda r: bare_row(bare_epochs, fused=True)}
        seen: dict[str, list[dict]] = {name: [] for name in rows}
        for r in range(rounds):
            order = list(rows)[r % len(rows):] + list(rows)[:r % len(rows)]  # rotated: drift hits all alike
            for name in order:
                seen[name].append(rows[name](r))
    finally:
        for p in spin:
            p.kill()
            p.wait()
    out = {}
    for name, runs in seen.items():
        per_round = [statistics.median(run["seconds"][1:]) for run in runs]
        out[name] = dict(median=statistics.median(per_round), min=min(per_round), max=max(per_round),
                         threads=sorted({run["threads"] for run in runs}),
                         loadavg_before=[round(run["loadavg_before"], 2) for run in runs], per_round=per_round)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spinners", default="0,2", help="competing busy processes per block")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per command (the first is left out)")
    ap.add_argument("--busy-epochs", type=int, default=2, help="the bare loops' epochs beside spinners")
    ap.add_argument("--out", default=None, help="results file (default bench/results/bench_default_threads.jsonl)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    record: dict = {"uptime_before": uptime(), "blocks": {}}
    for spinners in (int(s) for s in args.spinners.split(",")):
        record["blocks"][spinners] = block(spinners, args.rounds, args.epochs, args.busy_epochs, work)
    record["uptime_after"] = uptime()
    print(f"before: {record['uptime_before']}\nafter:  {record['uptime_after']}")
    print(f"MNIST epoch (784-256-128-10, batch 128, Adam), a new process per row and round, median of {args.rounds}")
    for spinners, rows in record["blocks"].items():
        print(f"\n{spinners} busy processes beside it")
        print(f"{'row':<19}{'median s':>9}{'min':>8}{'max':>8}{'threads':>9}{'vs bare':>9}{'vs fused':>9}{'vs 1 thread':>12}")
        for name, r in rows.items():
            ratios = [r["median"] / rows[k]["median"] for k in ("bare", "bare-fused", "tunelab threads=1")]
            print(f"{name:<19}{r['median']:>9.3f}{r['min']:>8.3f}{r['max']:>8.3f}{str(r['threads']):>9}"
                  + "".join(f"{x:>9.3f}" for x in ratios[:2]) + f"{ratios[2]:>12.3f}")
    append_record("default_threads", dict(rounds=args.rounds, epochs=args.epochs, **record), out=args.out)


if __name__ == "__main__":
    main()
