"""One MNIST epoch of the 784-256-128-10 MLP at batch 128: tunelab's trainer vs two baselines.

- bare:       a hand-written PyTorch loop over batches sliced before the clock starts
              (same model, torch.optim.Adam with its defaults, loss accounting and validation);
- bare-fused: the same loop with Adam(fused=True), the kernel tunelab's trainer asks for, so
              the ratio tunelab / bare-fused is the trainer's own overhead;
- dataloader: the common Dataset + DataLoader loop (per-sample __getitem__ converting uint8
              pixels to floats as torchvision's ToTensor does, shuffle=True, loss.item() per batch).

All run in this process on the same data, in interleaved rounds (one epoch of each loop per
round) after a warm-up round; each epoch is timed separately and the median with min/max is
reported, with achieved GFLOP/s at
1.007 MFLOP per training sample. Prints a table and appends a JSON line to
bench/results/bench_epoch.jsonl.

    python bench/bench_epoch.py --epochs 5          # needs TUNELAB_DATA with mnist/
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.nn import build_model
from tunelab.nn.stats import flops_per_sample
from tunelab.trainer.fit import evaluate, fit
from _results import append_record  # bench/_results.py (scripts run from bench/)

HIDDEN = [256, 128]


def _setup(batch_size: int):
    cfg = from_dict({"data": {"name": "mnist"}, "model": {"hidden": HIDDEN},
                     "optimizer": {"name": "adam", "lr": 1e-3},
                     "training": {"batch_size": batch_size, "device": "cpu"}})
    data = load_data(cfg.data, device="cpu")
    return cfg, data


def _model(cfg, data, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg.model, data.input_shape, data.num_classes)


def tunelab_loop(cfg, data):
    """One epoch of fit() per call; its own per-epoch clock (train + validation)."""
    from tunelab.config import replace

    model, run_cfg = _model(cfg, data), replace(cfg, ["training.epochs=1"])
    return lambda: fit(run_cfg, data, model).history[0]["seconds"]


def bare_loop(cfg, data, fused: bool = False, train_eval: bool = False):
    """Hand-written loop over pre-sliced batches, same accounting and validation pass (and, with
    ``train_eval``, the evaluation of the training subset that fit() measures each epoch)."""
    from tunelab.trainer.fit import train_eval_subset

    model = _model(cfg, data)
    x_fit, y_fit = train_eval_subset(data, cfg) if train_eval else (None, None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    bs = cfg.training.batch_size
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        perm = torch.randperm(len(data.y_train), generator=gen)
        x, y = data.x_train[perm], data.y_train[perm]
        batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)]  # sliced before timing
        t0 = time.perf_counter()
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for xb, yb in batches:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
        _ = loss_sum.item(), correct.item()
        if x_fit is not None:
            evaluate(model, x_fit, y_fit, cfg.training.eval_batch_size)
        evaluate(model, data.x_val, data.y_val, cfg.training.eval_batch_size)
        return time.perf_counter() - t0

    return epoch


class _PerSample(torch.utils.data.Dataset):
    """The common way (torchvision's MNIST + ToTensor): uint8 images stored, each sample
    converted to a float (1, 28, 28) tensor in [0, 1] in __getitem__, collated by the loader."""

    def __init__(self, x, y):
        self.x = (x * 255).round().to(torch.uint8).numpy()  # the raw pixels, as the files hold them
        self.y = y.numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]).float().div(255), int(self.y[i])


def dataloader_loop(cfg, data):
    model = _model(cfg, data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(_PerSample(data.x_train, data.y_train),
                                         batch_size=cfg.training.batch_size, shuffle=True)
    val = torch.utils.data.DataLoader(_PerSample(data.x_val, data.y_val), batch_size=1000)

    def epoch() -> float:
        t0 = time.perf_counter()
        model.train()
        total, correct = 0.0, 0
        for xb, yb in loader:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
        model.eval()
        with torch.no_grad():
            for xb, yb in val:
                F.cross_entropy(model(xb), yb).item()
        return time.perf_counter() - t0

    return epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per loop (after 1 warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_epoch.jsonl"))
    args = ap.parse_args()
    cfg, data = _setup(args.batch_size)
    flop_epoch = flops_per_sample(_model(cfg, data), data.input_shape) * len(data.y_train)
    loops = {"tunelab": tunelab_loop(cfg, data), "bare": bare_loop(cfg, data),
             "bare-fused": bare_loop(cfg, data, fused=True), "dataloader": dataloader_loop(cfg, data)}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(args.epochs + 1):  # interleaved rounds: machine noise hits every loop alike
        for name, epoch in loops.items():
            t = epoch()
            if round_ > 0:  # round 0 is the warm-up
                times[name].append(t)
    rows = {}
    for name, t in times.items():
        rows[name] = dict(median=statistics.median(t), min=min(t), max=max(t), n=len(t),
                          gflops=flop_epoch / statistics.median(t) / 1e9)
    print(f"MNIST epoch, MLP 784-{'-'.join(map(str, HIDDEN))}-10, batch {args.batch_size}, "
          f"{len(data.y_train)} train samples, torch threads {torch.get_num_threads()}")
    print(f"{'loop':<12}{'median s':>10}{'min':>8}{'max':>8}{'GFLOP/s':>9}{'vs bare':>9}{'tunelab speedup':>17}")
    for name, r in rows.items():
        print(f"{name:<12}{r['median']:>10.3f}{r['min']:>8.3f}{r['max']:>8.3f}{r['gflops']:>9.2f}"
              f"{r['median'] / rows['bare']['median']:>9.3f}{r['median'] / rows['tunelab']['median']:>17.2f}")
    append_record("epoch", dict(batch_size=args.batch_size, flop_per_epoch=flop_epoch, **rows), out=args.out)


if __name__ == "__main__":
    main()
