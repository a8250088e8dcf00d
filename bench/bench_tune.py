"""A fixed study two ways: tunelab (worker processes + ASHA) vs the common Optuna loop.

The study: 24 trials of 8 epochs of an MNIST MLP, random sampler, same seed, searching the
Adam learning rate (log scale), the hidden layers and dropout. The baseline is written as in
Optuna's PyTorch example: an objective that builds a Dataset + DataLoader loop, trains all
epochs, reports nothing (no pruning) and returns the final validation accuracy. Both sides
use the same train/validation split and draw the same parameters (checked below).

    TUNELAB_DATA=../shared/data python bench/bench_tune.py            # about 15 minutes on 2 cores
    TUNELAB_DATA=../shared/data python bench/bench_tune.py --trials 6 --epochs 3   # a quick look

Prints both wall times and best validation accuracies and appends a JSON line to
bench/results/bench_tune.jsonl.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import optuna
import torch
import torch.nn.functional as F

import tunelab
from tunelab.config import from_dict
from tunelab.data import load_data
from _results import append_record  # bench/_results.py (scripts run from bench/)

HIDDEN = [[128], [256, 128], [512, 256]]


def space(epochs: int) -> dict:
    return {"base": {"data": {"name": "mnist"}, "optimizer": {"name": "adam"},
                     "training": {"epochs": epochs, "batch_size": 128}},
            "space": {"optimizer.lr": {"log_uniform": [1e-4, 1e-2]},
                      "model.hidden": {"choice": HIDDEN},
                      "model.dropout": {"uniform": [0.0, 0.5]}}}


class _PerSample(torch.utils.data.Dataset):
    """torchvision-style MNIST: uint8 pixels, converted per sample as ToTensor does."""

    def __init__(self, x, y):
        self.x = (x * 255).round().to(torch.uint8).numpy()
        self.y = y.numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]).float().div(255), int(self.y[i])


def _mlp(hidden, dropout):
    layers, width = [torch.nn.Flatten()], 784
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))


def common_objective(data, epochs: int):
    train_set, val_set = _PerSample(data.x_train, data.y_train), _PerSample(data.x_val, data.y_val)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
        hidden = json.loads(trial.suggest_categorical("model.hidden", [json.dumps(h) for h in HIDDEN]))
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        torch.manual_seed(0)
        model = _mlp(hidden, dropout)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=1000)
        for _ in range(epochs):
            model.train()
            for xb, yb in train_loader:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for xb, yb in val_loader:
                    correct += (model(xb).argmax(1) == yb).sum().item()
            accuracy = correct / len(val_set)
        return accuracy

    return objective


def run_common(trials: int, epochs: int, seed: int):
    data = load_data(from_dict({"data": {"name": "mnist"}}).data)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(common_objective(data, epochs), n_trials=trials)
    return time.perf_counter() - t0, study


def run_tunelab(trials: int, epochs: int, seed: int, workers: int, pruner: str):
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = tunelab.tune(space(epochs), sampler="random", trials=trials, pruner=pruner, workers=workers,
                           storage=f"sqlite:///{tmp}/bench.db", study="bench", seed=seed)
        seconds = time.perf_counter() - t0
        trials_ = res.study.get_trials()
        epochs_run = sum(len(t.intermediate_values) for t in trials_)
        states = [t.state.name.lower() for t in trials_]
        params = [t.user_attrs["params"] for t in trials_]
        return seconds, res.best_value, epochs_run, states, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pruner", default="asha")
    args = ap.parse_args()
    t_ours, best_ours, epochs_ours, states, params = run_tunelab(args.trials, args.epochs, args.seed,
                                                                 args.workers, args.pruner)
    t_common, study = run_common(args.trials, args.epochs, args.seed)
    same = sorted(round(p["optimizer.lr"], 12) for p in params) == sorted(
        round(t.params["optimizer.lr"], 12) for t in study.trials)
    print(f"{args.trials} trials x {args.epochs} epochs, MNIST MLP, random sampler seed {args.seed}")
    print(f"{'':<34}{'wall s':>9}{'best val acc':>14}{'epochs trained':>16}")
    print(f"{'tunelab (' + str(args.workers) + ' workers, ' + args.pruner + ')':<34}{t_ours:>9.1f}"
          f"{best_ours:>14.4f}{epochs_ours:>16}")
    print(f"{'optuna + DataLoader, no pruning':<34}{t_common:>9.1f}{study.best_value:>14.4f}"
          f"{args.trials * args.epochs:>16}")
    print(f"speed-up {t_common / t_ours:.2f}x; best val acc difference "
          f"{100 * (best_ours - study.best_value):+.2f} points; same proposals: {same}; "
          f"states: { {s: states.count(s) for s in set(states)} }")
    append_record("tune", dict(**vars(args), tunelab_s=t_ours, tunelab_best=best_ours, tunelab_epochs=epochs_ours,
                               common_s=t_common, common_best=study.best_value,
                               speedup=t_common / t_ours, same_proposals=same))


if __name__ == "__main__":
    main()
