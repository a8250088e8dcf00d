"""What babysitting costs: one MNIST epoch (784-256-128-10, Adam, batch 128) with and without
a live run folder.

- plain: fit() with no folder and no control channel (as search trials run);
- panda: fit() with a LiveFolder and a Control reading the folder's inbox between steps:
         status.json and history.csv each epoch, checkpoints/last.pt written (model, Adam state,
         RNG states; fsync, rename) and linked as epoch-N.pt and best.pt.

Both continue training the same kind of model one epoch per call (``training.epochs=1``, no
test pass), in interleaved rounds after a warm-up round; the time of the whole fit() call is
taken, so the checkpoint write, status and history files and the control polling are inside
the panda figure. Also timed alone: one checkpoint write (median of 20). Prints a table and
appends a JSON line to bench/results/bench_checkpoint.jsonl.

    TUNELAB_DATA=../shared/data python bench/bench_checkpoint.py --epochs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tunelab.config import from_dict, replace
from tunelab.nn.stats import flops_per_sample
from tunelab.trainer.control import Control
from tunelab.trainer.fit import _Live, fit
from tunelab.trainer.live import LiveFolder
from tunelab.trainer.prepare import prepare
from _results import append_record  # bench/_results.py (scripts run from bench/)


def _loop(cfg, data, folder_root: Path | None):
    run = prepare(cfg, data=data)
    model = run.model
    folder = LiveFolder(folder_root, cfg) if folder_root is not None else None
    control = Control(folder_root) if folder_root is not None else None

    def epoch() -> float:
        t0 = time.perf_counter()
        fit(cfg, data, model, test=False, folder=folder, control=control)
        return time.perf_counter() - t0

    return epoch, model, folder


def _checkpoint_write(cfg, data, model, folder, n: int = 20) -> list[float]:
    """One last.pt + epoch-N.pt + best.pt, as at an epoch end, timed alone."""
    from tunelab.optim import build_optimizer, LrSchedule

    opt = build_optimizer(model.parameters(), cfg.optimizer)
    for p in model.parameters():  # Adam's state exists after a step: give it one
        p.grad = torch.zeros_like(p)
    opt.step()
    sched = LrSchedule(cfg.schedule, cfg.optimizer.lr, 1, 1)
    live = _Live(cfg, data, model, opt, sched, torch.Generator(), torch.Generator(), None, folder, None)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        live.checkpoint(epoch_file=True, best=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=7, help="timed epochs per loop (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="training.threads (default: torch's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    threads = [f"training.threads={args.threads}"] if args.threads else []
    cfg = from_dict({"data": {"name": "mnist"}, "model": {"hidden": [256, 128]}, "optimizer": {"name": "adam"},
                     "training": {"batch_size": 128, "device": "cpu", "epochs": 1}}, threads)
    data = prepare(cfg).data
    tmp = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    loops = {"plain": _loop(cfg, data, None), "panda": _loop(cfg, data, tmp / "run")}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(args.epochs + 1):  # interleaved: machine noise hits both alike
        for name, (epoch, _, _) in loops.items():
            t = epoch()
            if round_ > 0:
                times[name].append(t)
    _, model, folder = loops["panda"]
    write = _checkpoint_write(replace(cfg, []), data, model, folder)
    flop = flops_per_sample(model, data.input_shape) * len(data.y_train)
    rows = {k: dict(median=statistics.median(v), min=min(v), max=max(v), n=len(v)) for k, v in times.items()}
    overhead = rows["panda"]["median"] / rows["plain"]["median"] - 1
    size = (folder.ckpt / "last.pt").stat().st_size
    print(f"threads={torch.get_num_threads()}  load: {os.getloadavg()[0]:.2f}  checkpoint {size / 1e6:.2f} MB")
    print(f"{'loop':<8} {'median s':>9} {'min':>7} {'max':>7}  GFLOP/s")
    for name, r in rows.items():
        print(f"{name:<8} {r['median']:>9.3f} {r['min']:>7.3f} {r['max']:>7.3f}  {flop / r['median'] / 1e9:7.1f}")
    w = statistics.median(write)
    print(f"panda / plain = {1 + overhead:.3f} ({overhead:+.1%}); one epoch-end checkpoint alone: "
          f"{w * 1e3:.1f} ms = {w / rows['plain']['median']:.1%} of a plain epoch")
    path = append_record("checkpoint", dict(rows=rows, overhead=overhead, checkpoint_write_s=w,
                                            checkpoint_bytes=size, loadavg=os.getloadavg()), args.out)
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
