"""Start-up: seconds from the command to the first training step, for digits and MNIST, with the
decoded-dataset cache cold (empty: the first run after a download) and warm, and where they went.

Each cell runs ``python -m tunelab train --set data.name=NAME --set training.epochs=1 -q`` in a new
process and reads the run's ``result.json`` ``startup`` (``tunelab.timing``: the interpreter, imports
and config, threads, data, model, run folder and loop set-up, optimizer, first step), plus the
command's whole wall time measured from outside. Cold: ``TUNELAB_CACHE`` is a new empty folder for
that run; warm: a folder the cold run filled. The OS page cache is warm in both (the files were read
before). Rounds are interleaved (one run of every cell per round, after a warm-up round) and the
median over rounds is reported.

The floor row is a bare PyTorch script (bench/_first_step.py): python, ``import torch``, an MLP,
``torch.optim.Adam`` and its first step, no data: what any PyTorch program pays before its first step
on this machine.

    TUNELAB_DATA=../shared/data python bench/bench_startup.py --rounds 5      # about 2 minutes
"""

from __future__ import annotations

import argparse
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
PARTS = ["interpreter", "imports and config", "threads", "data", "model", "run folder and loop set-up",
         "optimizer", "first step"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def tunelab_run(name: str, cache: Path, out: Path) -> dict:
    env = {**os.environ, "TUNELAB_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "tunelab", "train", "--set", f"data.name={name}", "--set", "training.epochs=1",
           "--out", str(out), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    result = json.loads((out / "result.json").read_text())
    return {**result["startup"], "command wall": wall, "threads taken": result["threads"]}


def floor_run(inputs: int) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(HERE / "_first_step.py"), str(inputs)], check=True,
                         capture_output=True, text=True).stdout
    return {**json.loads(out), "command wall": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None, help="results file (default bench/results/bench_startup.jsonl)")
    args = ap.parse_args()
    before = uptime()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    cells = [(name, temp) for name in ("digits", "mnist") for temp in ("cold", "warm")]
    seen: dict[str, list[dict]] = {f"{n} {t}": [] for n, t in cells}
    seen.update({"floor: bare torch (784 inputs)": []})
    for r in range(args.rounds + 1):  # round 0 warms the OS page cache and is not counted
        for name, temp in cells:
            cache = work / f"cache-{name}-{r}"  # cold: empty here; warm: filled by the cold run
            row = tunelab_run(name, cache, work / f"run-{name}-{temp}-{r}")
            if r:
                seen[f"{name} {temp}"].append(row)
        floor = floor_run(784)
        if r:
            seen["floor: bare torch (784 inputs)"].append(floor)
    after = uptime()
    med = {cell: {k: statistics.median(row[k] for row in rows) for k in rows[0]} for cell, rows in seen.items()}
    spread = {cell: {"first step": [min(r.get("total", r.get("first step")) for r in rows),
                                    max(r.get("total", r.get("first step")) for r in rows)]}
              for cell, rows in seen.items()}
    print(f"before: {before}\nafter:  {after}")
    print(f"start-up to the first step, median of {args.rounds} rounds (s); min-max of the total in brackets")
    head = ["cell", "total", "[min-max]"] + PARTS + ["command wall", "threads taken"]
    print(" | ".join(head))
    for cell, m in med.items():
        lo, hi = spread[cell]["first step"]
        if "total" in m:
            cols = [f"{m['total']:.2f}", f"[{lo:.2f}-{hi:.2f}]"] + [f"{m[p]:.3f}" for p in PARTS]
            cols += [f"{m['command wall']:.2f}", f"{m['threads taken']:.0f}"]
        else:  # the floor: import torch, then the first step
            cols = [f"{m['first step']:.2f}", f"[{lo:.2f}-{hi:.2f}]", f"import torch {m['import torch']:.3f}"]
            cols += [""] * (len(PARTS) - 1) + [f"{m['command wall']:.2f}", ""]
        print(" | ".join([cell] + cols))
    append_record("startup", dict(rounds=args.rounds, uptime_before=before, uptime_after=after, median=med,
                                  spread=spread), out=args.out)


if __name__ == "__main__":
    main()
