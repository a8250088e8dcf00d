"""Attack run: re-measure how tunelab handles hostile input, and count the outcomes.

A fixed, seeded set of cases (``--cases-per-category`` per category, 160 by default: 800 in all),
each run IN-PROCESS through ``tunelab.cli.main.main(argv)`` in a fresh temporary working folder:
  config  fuzzed YAML config files for ``tunelab train CONFIG --set training.epochs=1 --set
          model.hidden=[4]``: random sections, keys and values (wrong types, integers beyond int64,
          negative, NaN strings, 10 kB strings), roots that are not mappings, alias bombs, deep
          nesting, non-UTF-8 bytes, empty files, YAML tags, merge keys, duplicate keys, >1 MiB.
  set     fuzzed ``--set KEY=VALUE`` on ``tunelab train`` (after the two tiny-run overrides):
          keys known, misspelt and malformed; values hostile (YAML tags, flow bombs, 3,000 brackets,
          100 kB, surrogate-escaped bytes as Python puts undecodable argv in a str, ...).
  space   fuzzed space files for ``tunelab tune SPACE --trials 1`` (a tiny base): bad
          distributions, reversed or NaN bounds, unknown kinds, cuda choices, 50,000-value choice
          lists, bad objectives and stages, bad bases (missing, itself, a list), bombs, bytes.
  data    hostile csv and npz files through ``--set data.name=csv|npz --set data.path=FILE``:
          non-UTF-8, one class, NaN/empty labels, empty, ragged, huge cells, a 130 kB cell repeated
          down a column, NUL bytes; object arrays, truncated, .npy renamed, complex, NaN/inf, empty,
          a header claiming 16 TB, flipped bytes in compressed members, shapes that do not match.
  cli     options of other commands that return quickly: ``tune --workers/--trial-timeout/--seed/
          --trials/--storage/--study/--out``, ``compare --vary/--seeds``, ``datasets download --dir``
          (a file; mirrors only on 127.0.0.1 or file://, nothing leaves the machine), ``lr-find``,
          ``inspect``, ``evaluate/predict/resume/report/runs/ensemble`` on forged run folders
          (garbage JSON, garbage or pickle-bomb ``model.pt``), ``train --out/--device``.
Every training is tiny (1 epoch, hidden [4], digits unless the case says otherwise).

Outcome classes: ok (exit 0), refused (exit 2 and stderr exactly one non-empty line, no
"Traceback"), traceback (a Traceback printed or an exception escaping main), multi-line error
(exit 2 with zero or several stderr lines), hang (past ``--limit`` seconds, a SIGALRM), other exit
(any other code: 1 = diverged, 130, ...), and half-written (an exit 0/2 case that left a run folder
with result.json but no loadable model.pt, or model.pt without result.json). Output is captured at
both levels: sys.stdout/sys.stderr are UTF-8 text wrappers with the real streams' error handlers
(so a lone surrogate fails as it would on a terminal), and fds 1/2 go to files (C-level writes,
worker processes). Logging handlers bound to a stream write to the current sys.stderr/stdout, as
they would in a fresh process. Each case also records its wall time and the growth of the
process's peak RSS (ru_maxrss; it only grows when a case sets a new peak). Between cases the
torch thread count, default dtype, environment, cwd and warning registries are restored.

    cd bench && TUNELAB_DATA=../../shared/data python attack.py            # 800 cases: ~2 min on 2 cores
    python bench/attack.py --cases-per-category 4                         # a smoke run (20 cases)
    python bench/attack.py --case data-0017 --case cli-0003 --show        # rerun cases alone, full output

Prints `uptime` before and after, a markdown table (categories x outcome classes), up to 10
examples per finding class, and appends a JSON line (counts + examples) to
bench/results/bench_attack.jsonl (not with --case or --no-record). One process, one case at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import pickle
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_record  # noqa: E402

CATEGORIES = ["config", "set", "space", "data", "cli"]
CLASSES = ["ok", "refused", "traceback", "multi-line error", "hang", "other exit", "half-written"]
FINDINGS = ["traceback", "multi-line error", "hang", "half-written"]
TINY = ["--set", "training.epochs=1", "--set", "model.hidden=[4]"]
PICKLE_MARK = "TUNELAB-ATTACK-PICKLE-EXECUTED"


@dataclass
class Case:
    id: str
    category: str
    kind: str  # what generator made it
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content, written first
    memory_cap_gb: Optional[float] = None  # RLIMIT_AS headroom for a case that may read forever


@dataclass
class Outcome:
    case: Case
    cls: str
    code: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    rss_growth_mb: float
    note: str = ""


# --------------------------------------------------------------------------- hostile values

BIG_INTS = [2**63 - 1, 2**63, -2**63 - 1, 2**64, 2**80, -2**80, 10**30]
SMALL_INTS = [-1, 0, 1, 2, 3, 7, 64, 1000]
FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, 5e-324, -0.0, 0.5, 1.5, -2.5, 1e-12]
STRINGS = ["nan", "NaN", ".nan", "inf", "-inf", "1e309", "cuda", "cpu", "adam", "", " ", "x" * 10_000,
           "ü日本\u202e", "null", "~", "yes", "0x10", "1_000", "[4]", "{a: 1}", "\t", "a\nb", "\x00", "'", '"']
KNOWN: dict[str, dict[str, list]] = {
    "data": {"name": ["digits", "mnist", "csv", "npz", "images", "mnist1d", "cifar"], "val_fraction": [0.1, 0.0, 0.99],
             "test_fraction": [0.2, 1.0], "split_seed": [0, 1], "scaling": ["unit", "standardize", "none"],
             "train_size": [10, 100], "dir": ["/nonexistent", "."], "path": ["d.csv", "/"], "target": ["label"],
             "image_size": [8]},
    "model": {"name": ["mlp", "cnn", "transformer"], "hidden": [[4], [8, 4], []], "channels": [[2], [2, 2]],
              "kernel_size": [3, [3, 3]], "stride": [1, 2], "padding": [None, 1], "pool": ["max", "avg", "none"],
              "activation": ["relu", "tanh", "gelu"], "init": ["he_normal", "normal", "zeros"], "init_std": [0.01],
              "norm": ["none", "batch", "layer", "group", "instance"], "norm_position": ["before", "after"],
              "groups": [1, 2], "dropout": [0.0, 0.5], "residual": [True, False]},
    "optimizer": {"name": ["adam", "sgd", "rmsprop", "adadelta", "nesterov"], "lr": [1e-3, 0.1, 10.0],
                  "momentum": [0.9], "betas": [[0.9, 0.999]], "eps": [1e-8], "rho": [0.9], "alpha": [0.99],
                  "weight_decay": [0.0, 1e-4, 100.0]},
    "schedule": {"name": ["constant", "step", "cosine", "onecycle", "plateau", "exponential"],
                 "warmup_epochs": [0, 1], "warmup_start": [0.1], "step_size": [1], "gamma": [0.5],
                 "min_lr": [0.0], "pct_start": [0.3], "div_factor": [25.0], "final_div_factor": [1e4],
                 "monitor": ["val_loss", "val_accuracy"], "mode": ["auto", "min"], "factor": [0.1],
                 "patience": [1], "cooldown": [0], "threshold": [1e-4]},
    "training": {"batch_size": [16, 128, 2**31], "eval_batch_size": [1, 8192], "seed": [0, 1],
                 "device": ["cpu", "auto", "cuda"], "threads": [1, None], "train_eval_size": [0, 10],
                 "steps": [5], "eval_every": [2],
                 "early_stopping": [{"enabled": True, "patience": 0}, {"monitor": "val_accuracy"}],
                 "checkpoint": [{"every": 0}, {"every_steps": 3, "keep": 0}], "log": [[], ["tensorboard"]]},
    "augment": {"translate": [0, 1], "rotate": [0.0, 15.0], "hflip": [False, True], "noise": [0.0, 0.1],
                "cutout": [0, 2]},
}
SECTIONS = list(KNOWN)


def hostile_scalar(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.2:
        return rng.choice(BIG_INTS)
    if pick < 0.35:
        return rng.choice(SMALL_INTS)
    if pick < 0.55:
        return rng.choice(FLOATS)
    if pick < 0.85:
        return rng.choice(STRINGS)
    return rng.choice([None, True, False])


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth < 3 and pick < 0.15:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3 and pick < 0.22:
        return {rng.choice(["a", "name", "", "1", "hidden"]): hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return hostile_scalar(rng)


def value_for(rng: random.Random, section: str, key: str) -> Any:
    """A known-good value half the time (so some configs pass), else a hostile one."""
    good = KNOWN.get(section, {}).get(key)
    if good and rng.random() < 0.5:
        return rng.choice(good)
    return hostile_value(rng)


def dump(obj: Any) -> bytes:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).encode("utf-8")


def bomb(levels: int = 9, width: int = 9, name: str = "a") -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"[:levels]
    lines = [f"{letters[0]}: &{letters[0]} [{', '.join(['lol'] * width)}]"]
    lines += [f"{c}: &{c} [{', '.join([f'*{p}'] * width)}]" for p, c in zip(letters, letters[1:])]
    return "\n".join(lines) + "\n"


def flow_bomb(levels: int = 9) -> str:
    return "{" + bomb(levels).strip().replace("\n", ", ") + "}"


def deep(n: int, mapping: bool = False) -> str:
    return ("{a: " * n + "1" + "}" * n) if mapping else ("[" * n + "]" * n)


# --------------------------------------------------------------------------- 1: config files

def gen_config(rng: random.Random, i: int) -> tuple[str, dict[str, bytes], list[str]]:
    kinds = ["dict", "dict", "dict", "dict", "dict", "valid", "root", "bomb", "deep", "bytes", "empty", "yaml"]
    kind = kinds[i % len(kinds)]
    if kind == "dict":
        raw: dict = {}
        for _ in range(rng.randint(1, 4)):
            section = rng.choice(SECTIONS) if rng.random() < 0.8 else \
                rng.choice(["x", "Model", "", "data.name", "training.epochs", "base", "space"])
            if section in KNOWN and rng.random() < 0.85:
                keys = list(KNOWN[section]) + ["nonsense", "lr", "Name", ""]
                raw[section] = {k: value_for(rng, section, k) for k in rng.sample(keys, rng.randint(1, 3))}
            else:
                raw[section] = hostile_value(rng)
        body = dump(raw)
    elif kind == "valid":
        section = rng.choice(SECTIONS)
        key = rng.choice(list(KNOWN[section]))
        body = dump({"data": {"name": "digits"}, section: {key: rng.choice(KNOWN[section][key])}})
    elif kind == "root":
        body = rng.choice(["[]", "0", "false", "''", "hello", "[1, 2]", "~", "null", "- a\n- b", "!!set {a, b}",
                           "3.14", "'a: 1'", "!!binary aGVsbG8=", "2001-12-14", "[{data: {name: digits}}]"]).encode()
    elif kind == "bomb":
        levels = rng.choice([7, 8, 9, 10])
        where = rng.choice(["root", "model.hidden", "data.name", "merge"])
        b = bomb(levels)
        if where == "root":
            body = b.encode()
        elif where == "merge":
            body = (b + f"model: {{<<: {{x: *{'abcdefghij'[levels - 1]}}}}}\n").encode()
        else:
            sec, key = where.split(".")
            body = f"{sec}:\n  {key}: {flow_bomb(levels)}\n".encode()
    elif kind == "deep":
        n = rng.choice([63, 65, 200, 3000, 5000])
        body = rng.choice([f"model:\n  hidden: {deep(n)}\n", f"x: {deep(n, True)}\n", deep(n) + "\n",
                           "a:\n" + "".join("  " * (j + 1) + f"k{j}:\n" for j in range(min(n, 400))) + "  " * 401 + "v\n"]
                          ).encode()
    elif kind == "bytes":
        body = rng.choice([
            "model:\n  name: caf\xe9\n".encode("latin-1"),
            "model: {name: mlp}\n".encode("utf-16"),
            b"\xef\xbb\xbfmodel: {name: mlp}\n",  # UTF-8 BOM
            bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400))),
            b"model:\n  name: mlp\x00\n",
            b"model: {name: \"\\ud800\"}\n",  # a lone surrogate as a YAML escape
            b"\xff\xfe\x00\x00",
            b"data:\n  name: digits\n" + b"\x80" * 10,
        ])
    elif kind == "empty":
        body = rng.choice([b"", b"\n", b"# only a comment\n", b"---\n", b"...\n", b"   \n", b"--- \n...\n"])
    else:  # yaml tricks
        body = rng.choice([
            "!!python/object/apply:os.system ['echo " + PICKLE_MARK + "']\n",
            "model: !!python/name:os.system\n",
            "model:\n  hidden: [4]\nmodel:\n  hidden: [8]\n",
            "model:\n  hidden: [4]\n  hidden: [8]\n",
            "a: &a [*a]\nmodel: {hidden: *a}\n",
            "data: {name: digits}\n---\nmodel: {hidden: [4]}\n",
            "model:\n\thidden: [4]\n",
            "model: {hidden: [4\n",
            "? [model]\n: {hidden: [4]}\n",
            "1: 2\n",
            "~: 1\n",
            "true: {}\n",
            "model: {hidden: !!str 4}\n",
            "model: {hidden: !!float '4'}\n",
            "training: {seed: !!timestamp 2001-12-14}\n",
            "model: {hidden: *undefined}\n",
            "base: &b {name: mlp}\nmodel: {<<: *b, hidden: [4]}\n",
            "model: {name: " + "x" * 100_000 + "}\n",
            "model: {hidden: [" + ", ".join(["4"] * 60_000) + "]}\n",
            "x: " + "1" * (1 << 21) + "\n",
            "optimizer: {lr: 0x10}\n",
            "optimizer: {lr: 1e-400}\n",
            "training: {epochs: 1.0}\n",
            "training: {batch_size: 64.5}\n",
            "model: {dropout: .NaN}\n",
        ]).encode()
    return kind, {"c.yaml": body}, ["train", "c.yaml", *TINY]


# --------------------------------------------------------------------------- 2: --set

SET_KEYS = ["model.hidden", "model.dropout", "model.name", "model.norm", "model.channels", "model.kernel_size",
            "model.init", "model.init_std", "model.groups", "model.activation", "model.residual",
            "optimizer.lr", "optimizer.name", "optimizer.betas", "optimizer.betas.0", "optimizer.betas.5",
            "optimizer.eps", "optimizer.weight_decay", "optimizer.momentum", "training.epochs", "training.steps",
            "training.batch_size", "training.eval_batch_size", "training.seed", "training.threads",
            "training.device", "training.log", "training.train_eval_size", "training.checkpoint.every",
            "training.early_stopping.enabled", "training.early_stopping.patience", "training.early_stopping",
            "data.name", "data.val_fraction", "data.test_fraction", "data.train_size", "data.scaling", "data.dir",
            "data.path", "data.target", "schedule.name", "schedule.gamma", "schedule.warmup_epochs",
            "schedule.step_size", "augment.translate", "augment.rotate", "augment.cutout", "augment.hflip",
            "augment.noise"]
BAD_KEYS = ["", ".", "..", "model.", ".model", "model..hidden", "model.hidden.0", "model.hidden.-1",
            "model.hidden.99", "MODEL.HIDDEN", "model.hidden[0]", "training", "model", "x" * 1000,
            "model.hidden.0.1", "data.name.x", "__class__", "model.__dict__", "optimizer.lr.x", "nonsense.key",
            "optimizer.learning_rate", " model.hidden", "model.hidden ", "model.hïdden", "data.name\n"]
SET_VALUES = ["~", "null", "", " ", ".nan", "NaN", "nan", ".inf", "-.inf", "1e309", "-1e309", "1e-400", "0x1F",
              "0o17", "0b101", "1_000", "1180591620717411303424", "-9223372036854775809", "9223372036854775808",
              "9223372036854775807", "yes", "off", "True", "!!python/object/apply:os.system ['true']",
              "!!binary aGVsbG8=", "!!timestamp 2001-12-14", "2001-12-14", "*a", "&a [1]", "[", "]", "{", "{a: 1}",
              "[1, [2, [3]]]", "[[4]]", "[4, -1]", "[0]", "[]", "{}", "[1e6, 1e6]", "[4.5]", "['4']", "'4'", '"4"',
              "4 # comment", "- 4", "? x", "|\n 4", "a: b: c", "=", "a=b", "x" * 100_000, "[" * 3000, deep(3000, True),
              "\x00", "\udcff\udcfe", "caf\udce9", "\u202e", "ü", "\n", "4\n5", "[4]\n---\n[5]", "cuda", "cpu",
              "-1", "0", "0.0", "-0.0", "1.0", "2", "1e6", "[4] [4]", "!!set {a}", "<<: {a: 1}", "[*a]"]


def gen_set(rng: random.Random, i: int) -> tuple[str, dict[str, bytes], list[str]]:
    kinds = ["value", "value", "value", "badkey", "valid", "bomb", "malformed", "many"]
    kind = kinds[i % len(kinds)]
    extra: list[str]
    if kind == "value":
        key = rng.choice(SET_KEYS)
        value = rng.choice(SET_VALUES) if rng.random() < 0.7 else json.dumps(hostile_value(rng), allow_nan=True)
        extra = ["--set", f"{key}={value}"]
    elif kind == "badkey":
        extra = ["--set", f"{rng.choice(BAD_KEYS)}={rng.choice(['4', '[4]', 'mlp', '0.1'])}"]
    elif kind == "valid":
        section = rng.choice(SECTIONS)
        key = rng.choice(list(KNOWN[section]))
        value = rng.choice(KNOWN[section][key])
        extra = ["--set", f"{section}.{key}={json.dumps(value)}"]
    elif kind == "bomb":
        extra = ["--set", f"{rng.choice(SET_KEYS)}={rng.choice([flow_bomb(rng.choice([8, 9, 10])), deep(rng.choice([65, 3000])), deep(5000, True)])}"]
    elif kind == "malformed":
        extra = rng.choice([["--set"], ["--set", "model.hidden"], ["--set", "=4"], ["--set", "model.hidden 4"],
                            ["--set", "model.hidden", "[4]"], ["-s", ""], ["--set=model.hidden=[4]"],
                            ["--set", "--set"], ["model.hidden=[4]"], ["--set", "model.hidden==[4]"],
                            ["--se", "model.hidden=[4]"], ["--set", "model.hidden=[4]", "extra"]])
    else:  # the same key many times, or many different keys
        extra = []
        for _ in range(rng.randint(2, 40)):
            extra += ["--set", f"{rng.choice(SET_KEYS)}={rng.choice(SET_VALUES[:40])}"]
    return kind, {}, ["train", *TINY, *extra]


# --------------------------------------------------------------------------- 3: space files

SPACE_KEYS = ["optimizer.lr", "model.dropout", "training.batch_size", "model.hidden", "optimizer.betas.0",
              "training.device", "model.norm", "optimizer.name", "schedule.name", "optimizer.weight_decay",
              "model.activation", "data.name"]
BAD_SPACE_KEYS = ["bad..key", "", "nonsense.key", "model", "training.epochs", "optimizer.betas.9", "Optimizer.lr",
                  "model.hidden.0", "training.early_stopping", "x" * 500]
DISTS = ["uniform", "log_uniform", "one_minus_log", "int", "log_int", "choice"]
TINY_BASE = {"data": {"name": "digits"}, "model": {"hidden": [4]}, "training": {"epochs": 1, "batch_size": 64}}


def dist_args(rng: random.Random) -> Any:
    return rng.choice([[0.1, 0.01], [0.01, 0.01], [0, 1], [-1, 1], [float("nan"), 1], [1e-3, float("inf")],
                       ["a", "b"], [1, 2, 3], [1], [], 5, None, [2**70, 2**71], [1.5, 3], [True, False],
                       [[1], [2]], {"a": 1}, [1e-300, 1e300], [-2**63 - 1, 0], [1e-4, 1e-1], [0.0, 0.5], [1, 4]])


def gen_dist(rng: random.Random, key: str) -> Any:
    pick = rng.random()
    if pick < 0.45:
        dist: Any = {rng.choice(DISTS): dist_args(rng)}
    elif pick < 0.55:
        dist = {rng.choice(["normal", "Uniform", "", "choices", "range", "loguniform", "grid"]): [0, 1]}
    elif pick < 0.65:
        dist = {"uniform": [0.0, 0.5], rng.choice(["log_uniform", "choice", "int"]): [1, 2]}  # two kinds
    elif pick < 0.72:
        dist = hostile_value(rng)
    elif pick < 0.80:
        dist = {"choice": rng.choice([["cpu", "cuda"], ["cuda:0"], ["tpu"], ["cuda"]])}
        key = "training.device"
    elif pick < 0.87:
        dist = {"choice": rng.choice([list(range(50_000)), [[4]] * 20_000, [1e-3] * 50_000,
                                      [str(j) for j in range(30_000)]])}
    elif pick < 0.93:
        dist = {"choice": rng.choice([[], [None], [[4], "4", 4, {"a": 1}], [float("nan")], [2**70], [[4], [[4]]]])}
    else:
        dist = {rng.choice(["uniform", "log_uniform", "int"]): [1e-4, 1e-1], "points": rng.choice(
            [-1, 0, 1, 2**70, 1.5, "x", None, 10**6])}
    return {key: dist}


def gen_space(rng: random.Random, i: int) -> tuple[str, dict[str, bytes], list[str]]:
    kinds = ["space", "space", "space", "space", "valid", "objective", "stages", "base", "file"]
    kind = kinds[i % len(kinds)]
    files: dict[str, bytes] = {}
    doc: dict[str, Any] = {"base": TINY_BASE, "space": {"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}}}
    if kind == "space":
        doc["space"] = {}
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(SPACE_KEYS) if rng.random() < 0.8 else rng.choice(BAD_SPACE_KEYS)
            doc["space"].update(gen_dist(rng, key))
    elif kind == "valid":
        key, dist = rng.choice([("optimizer.lr", {"log_uniform": [1e-4, 1e-1], "points": 3}),
                                ("model.dropout", {"uniform": [0.0, 0.5]}),
                                ("training.batch_size", {"choice": [32, 64]}),
                                ("model.hidden", {"choice": [[4], [8, 4]]}),
                                ("optimizer.betas.0", {"one_minus_log": [0.8, 0.99]}),
                                ("training.batch_size", {"log_int": [16, 128]})])
        doc["space"] = {key: dist}
    elif kind == "objective":
        doc["objective"] = rng.choice([{"metric": "test_accuracy"}, {"metric": "val_loss", "direction": "up"},
                                       {"metric": "bogus"}, {"metric": ""}, {"metric": 5}, "val_accuracy", [],
                                       {"metric": "val_accuracy", "direction": None}, {"direction": "minimize"},
                                       {"metric": "val_loss", "direction": "minimize", "x": 1}])
    elif kind == "stages":
        doc["stages"] = rng.choice([[["nonsense.key"]], "optimizer.lr", [[]], [["optimizer.lr"], ["optimizer.lr"]],
                                    [[5]], {"a": 1}, [None], [["optimizer.lr", "model.hidden"]]])
    elif kind == "base":
        files["c.yaml"] = dump({"data": {"name": "digits"}, "model": {"hidden": [4]}, "training": {"epochs": 1}})
        doc["base"] = rng.choice(["missing.yaml", "s.yaml", "c.yaml", ".", [1, 2], 5, None, "", "/dev/null",
                                  {"model": {"hidden": [2**70]}}, {"training": {"device": "cuda"}},
                                  {"data": {"name": "csv"}}, {"training": {"epochs": 0}}, "c.yaml\x00x"])
        doc.pop("base") if doc["base"] is None and rng.random() < 0.5 else None
    else:  # the file itself
        body = rng.choice([bomb(9).encode(), ("space:\n  optimizer.lr: " + deep(3000, True) + "\n").encode(),
                           "space: {optimizer.lr: {log_uniform: [1e-4, 0.1]}, base: caf\xe9}\n".encode("latin-1"),
                           b"", b"[]\n", b"space: []\n", b"space: {}\n", b"space:\n", b"base: {}\n",
                           b"space: {optimizer.lr: {log_uniform: [1e-4, 0.1]}}\nspace: {}\n",
                           ("base: " + flow_bomb(9) + "\nspace: {optimizer.lr: {log_uniform: [1e-4, 0.1]}}\n").encode()])
        files["s.yaml"] = body
        return kind, files, ["tune", "s.yaml", "--trials", "1"]
    files["s.yaml"] = dump(doc)
    sampler = rng.choice(["random"] * 6 + ["grid", "tpe", "coarse-to-fine"])
    return kind, files, ["tune", "s.yaml", "--trials", "1", "--sampler", sampler]


# --------------------------------------------------------------------------- 4: data files

def csv_text(rng: random.Random, rows: int = 60, cols: int = 4, classes: int = 3, label: str = "label") -> str:
    head = ",".join([f"f{j}" for j in range(cols)] + [label])
    lines = [",".join([f"{rng.uniform(-3, 3):.3f}" for _ in range(cols)] + [str(r % classes)]) for r in range(rows)]
    return head + "\n" + "\n".join(lines) + "\n"


def npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npz_compressed(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def npy_header_claiming(shape: tuple, dtype: str = "<f4", payload: bytes = b"\0" * 64) -> bytes:
    """An .npy whose header claims ``shape`` over a tiny payload."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def zip_of(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def flip(rng: random.Random, data: bytes, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        j = rng.randrange(len(b))
        b[j] ^= 1 << rng.randrange(8)
    return bytes(b)


def gen_data(rng: random.Random, i: int) -> tuple[str, dict[str, bytes], list[str]]:
    csv_kinds = ["csv-valid", "csv-latin1", "csv-one-class", "csv-nan-label", "csv-empty-label", "csv-empty",
                 "csv-header-only", "csv-ragged", "csv-huge-cell", "csv-cell-column", "csv-cell-column-huge",
                 "csv-nan-feature", "csv-inf-feature", "csv-no-target", "csv-only-target", "csv-string-labels",
                 "csv-every-row-a-class", "csv-two-rows", "csv-nul", "csv-binary", "csv-bom-crlf", "csv-dup-header",
                 "csv-wide", "csv-quoted-newlines", "csv-semicolon", "csv-big-labels", "csv-path-dir",
                 "csv-path-missing", "csv-dev-null", "csv-gzip", "csv-float-labels", "csv-huge-numbers",
                 "csv-dev-zero"]
    npz_kinds = ["npz-valid", "npz-object", "npz-truncated", "npz-npy-renamed", "npz-complex", "npz-nan", "npz-inf",
                 "npz-empty-archive", "npz-zero-rows", "npz-missing-y", "npz-x-1d", "npz-x-5d", "npz-y-2d",
                 "npz-y-strings", "npz-y-float-nan", "npz-one-class", "npz-length-mismatch", "npz-test-no-ytest",
                 "npz-test-shape", "npz-huge-header", "npz-huge-header-2", "npz-bitflip", "npz-bitflip-compressed",
                 "npz-bool-x", "npz-uint8-images", "npz-structured", "npz-garbage", "npz-datetime", "npz-f16-inf",
                 "npz-one-row", "npz-zip-bomb-ish"]
    kinds = [k for pair in zip(csv_kinds, npz_kinds) for k in pair] + csv_kinds[len(npz_kinds):]
    kind = kinds[i % len(kinds)]
    rows, cols = rng.randint(30, 120), rng.randint(2, 6)
    path, target, files, cap = "d.csv", None, {}, None
    if kind.startswith("csv"):
        text = csv_text(rng, rows, cols)
        body: Optional[bytes] = text.encode()
        if kind == "csv-latin1":
            body = text.replace("label", "labél").encode("latin-1")
            target = "labél"
        elif kind == "csv-one-class":
            body = csv_text(rng, rows, cols, classes=1).encode()
        elif kind == "csv-nan-label":
            lines = text.splitlines()
            lines[rng.randint(1, rows)] = ",".join(["0.1"] * cols + [rng.choice(["nan", "NaN", "NA", "null", "inf"])])
            body = ("\n".join(lines) + "\n").encode()
        elif kind == "csv-empty-label":
            lines = text.splitlines()
            lines[rng.randint(1, rows)] = ",".join(["0.1"] * cols + [rng.choice(["", " ", "  "])])
            body = ("\n".join(lines) + "\n").encode()
        elif kind == "csv-empty":
            body = rng.choice([b"", b"\n", b"\n\n\n", b" "])
        elif kind == "csv-header-only":
            body = text.splitlines()[0].encode() + b"\n"
        elif kind == "csv-ragged":
            lines = text.splitlines()
            j = rng.randint(1, rows)
            lines[j] = lines[j] + rng.choice([",1", ""]) if rng.random() < 0.5 else ",".join(lines[j].split(",")[:-2])
            body = ("\n".join(lines) + "\n").encode()
        elif kind == "csv-huge-cell":
            lines = text.splitlines()
            lines[rng.randint(1, rows)] = "1" * rng.choice([100_000, 200_000, 2_000_000]) + ",1" * cols
            body = ("\n".join(lines) + "\n").encode()
        elif kind in ("csv-cell-column", "csv-cell-column-huge"):
            # one 130 kB cell (under csv's field limit) makes numpy's string array 130,000 x 4 bytes per cell
            n = 100 if kind == "csv-cell-column" else 30_000
            head = ",".join([f"f{j}" for j in range(3)] + ["label"])
            lines = [head, ",".join(["1" * 130_000, "0", "0", "0"])]
            lines += [f"{r % 3},{r % 5},{r % 7},{r % 2}" for r in range(n)]
            body = ("\n".join(lines) + "\n").encode()
        elif kind == "csv-nan-feature":
            lines = text.splitlines()
            lines[rng.randint(1, rows)] = ",".join([rng.choice(["nan", "", "NaN"])] + ["0.1"] * (cols - 1) + ["1"])
            body = ("\n".join(lines) + "\n").encode()
        elif kind == "csv-inf-feature":
            lines = text.splitlines()
            lines[rng.randint(1, rows)] = ",".join([rng.choice(["inf", "-inf", "1e999", "-1e400"])] + ["0.1"] * (cols - 1) + ["1"])
            body = ("\n".join(lines) + "\n").encode()
        elif kind == "csv-no-target":
            target = rng.choice(["y", "", " label", "LABEL", "label\n", "x" * 1000])
        elif kind == "csv-only-target":
            body = ("label\n" + "\n".join(str(r % 2) for r in range(rows)) + "\n").encode()
        elif kind == "csv-string-labels":
            body = csv_text(rng, rows, cols).replace(",0\n", ",cat\n").replace(",1\n", ",dog\n").encode()
        elif kind == "csv-every-row-a-class":
            head = ",".join([f"f{j}" for j in range(cols)] + ["label"])
            body = (head + "\n" + "\n".join(",".join(["0.5"] * cols + [str(r)]) for r in range(rows)) + "\n").encode()
        elif kind == "csv-two-rows":
            body = ("a,label\n" + "\n".join(rng.choice([["1,0", "2,1"], ["1,0"], ["1,0", "2,1", "3,0"]])) + "\n").encode()
        elif kind == "csv-nul":
            body = text.replace("\n", "\x00\n", 3).encode()
        elif kind == "csv-binary":
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(10, 3000)))
        elif kind == "csv-bom-crlf":
            body = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
        elif kind == "csv-dup-header":
            body = text.replace("f1", "f0", 1).replace(f"f{cols - 1},label", "label,label").encode()
        elif kind == "csv-wide":
            c = rng.choice([2000, 20_000])
            head = ",".join([f"f{j}" for j in range(c)] + ["label"])
            body = (head + "\n" + "\n".join(",".join(["1"] * c + [str(r % 2)]) for r in range(20)) + "\n").encode()
        elif kind == "csv-quoted-newlines":
            body = ('"f\n0",f1,label\n' + "\n".join(f'"1\n2",{r},{r % 2}' for r in range(rows)) + "\n").encode()
        elif kind == "csv-semicolon":
            body = text.replace(",", ";").encode()
        elif kind == "csv-big-labels":
            body = text.replace(",0\n", f",{2**70}\n").replace(",1\n", ",-1e308\n").encode()
        elif kind == "csv-float-labels":
            body = text.replace(",0\n", ",0.5\n").replace(",1\n", ",1e-30\n").encode()
        elif kind == "csv-huge-numbers":
            body = text.replace("0.", "1" * 400 + ".", 5).encode()
        elif kind == "csv-gzip":
            import gzip
            body = gzip.compress(text.encode())
        elif kind == "csv-path-dir":
            body, path = None, rng.choice([".", "/", "sub"])
            files["sub/x"] = b""
        elif kind == "csv-path-missing":
            body, path = None, rng.choice(["missing.csv", "", "~/none.csv", "sub/../../x.csv", "\udcff.csv"])
        elif kind == "csv-dev-null":
            body, path = None, "/dev/null"
        elif kind == "csv-dev-zero":  # endless: capped in memory so the machine is safe
            body, path, cap = None, "/dev/zero", 3.0
        if body is not None:
            files[path] = body
        argv = ["train", *TINY, "--set", "data.name=csv", "--set", f"data.path={path}"]
        if target is not None:
            argv += ["--set", f"data.target={target}"]
        return kind, files, argv, cap  # type: ignore[return-value]
    path = "d.npz"
    x = np.random.default_rng(i).normal(size=(rows, cols)).astype(np.float32)
    y = np.arange(rows) % 3
    arrays: dict[str, Any] = {"x": x, "y": y}
    body = None
    if kind == "npz-object":
        arrays[rng.choice(["x", "y"])] = np.array([object()] * rows, dtype=object).reshape(rows, 1) \
            if rng.random() < 0.5 else np.array([[1, 2]] * rows + [[1]], dtype=object)[:rows]
    elif kind == "npz-truncated":
        full = npz_bytes(**arrays)
        body = full[:rng.randint(1, len(full) - 1)]
    elif kind == "npz-npy-renamed":
        body = npy_bytes(x)
    elif kind == "npz-complex":
        arrays["x"] = x.astype(rng.choice([np.complex64, np.complex128]))
    elif kind in ("npz-nan", "npz-inf"):
        x[rng.randrange(rows), rng.randrange(cols)] = np.nan if kind == "npz-nan" else rng.choice([np.inf, -np.inf])
    elif kind == "npz-empty-archive":
        body = rng.choice([npz_bytes(), zip_of({}), b"PK\x05\x06" + b"\0" * 18])
    elif kind == "npz-zero-rows":
        arrays = {"x": np.zeros((0, cols), np.float32), "y": np.zeros(0, np.int64)}
    elif kind == "npz-missing-y":
        arrays = rng.choice([{"x": x}, {"y": y}, {"X": x, "Y": y}, {"x": x, "y": y, "x_test": x}])
    elif kind == "npz-x-1d":
        arrays["x"] = x[:, 0]
    elif kind == "npz-x-5d":
        arrays["x"] = np.zeros((rows, 1, 2, 2, 2), np.float32)
    elif kind == "npz-y-2d":
        arrays["y"] = np.stack([y, y], 1)
    elif kind == "npz-y-strings":
        arrays["y"] = np.array(["cat", "dog", ""])[y] if rng.random() < 0.5 else np.array(["cat", "dog", "x"])[y]
    elif kind == "npz-y-float-nan":
        yf = y.astype(float)
        yf[0] = rng.choice([np.nan, np.inf])
        arrays["y"] = yf
    elif kind == "npz-one-class":
        arrays["y"] = np.zeros(rows, dtype=rng.choice([np.int64, np.float32, np.bool_]))
    elif kind == "npz-length-mismatch":
        arrays["y"] = y[:-1]
    elif kind == "npz-test-no-ytest":
        arrays["x_test"] = x
    elif kind == "npz-test-shape":
        arrays.update(x_test=np.zeros((10, cols + 3), np.float32), y_test=np.arange(10) % 3)
    elif kind == "npz-huge-header":  # 16 TB claimed by a 100-byte member
        body = zip_of({"x.npy": npy_header_claiming((10**12, 4)), "y.npy": npy_bytes(y)})
    elif kind == "npz-huge-header-2":
        body = zip_of({"x.npy": npy_header_claiming(rng.choice([(2**62,), (-1, 4), (10**6, 10**6), (3,)]),
                                                    rng.choice(["<f4", "|O", "<U1000000000", "<V0"])),
                       "y.npy": npy_bytes(y)})
    elif kind == "npz-bitflip":
        body = flip(rng, npz_bytes(**arrays), rng.randint(1, 20))
    elif kind == "npz-bitflip-compressed":
        full = npz_compressed(**arrays)
        b = bytearray(full)
        for _ in range(rng.randint(1, 8)):  # inside the deflate streams, not the directory
            j = rng.randrange(100, max(101, len(b) - 200))
            b[j] ^= 0xFF
        body = bytes(b)
    elif kind == "npz-bool-x":
        arrays["x"] = x > 0
    elif kind == "npz-uint8-images":
        arrays["x"] = np.random.default_rng(i).integers(0, 256, size=(rows, rng.choice([1, 3, 5]), 8, 8), dtype=np.uint8)
    elif kind == "npz-structured":
        arrays["x"] = np.zeros(rows, dtype=[("a", "<f4"), ("b", "<i4")])
    elif kind == "npz-garbage":
        body = rng.choice([b"PK\x03\x04" + bytes(rng.getrandbits(8) for _ in range(200)), b"", b"\x93NUMPY",
                           zip_of({"x.npy": b"not an array", "y.npy": b"\x93NUMPY\x01\x00\xff\xff{"})])
    elif kind == "npz-datetime":
        arrays["x"] = np.zeros((rows, cols), dtype="datetime64[s]")
    elif kind == "npz-f16-inf":
        with np.errstate(over="ignore"):
            arrays["x"] = (x * 1e5).astype(np.float16)  # overflows to inf in float16
    elif kind == "npz-one-row":
        arrays = {"x": x[:1], "y": y[:1]} if rng.random() < 0.5 else {"x": x[:2], "y": np.array([0, 1])}
    elif kind == "npz-zip-bomb-ish":  # 80 MB of zeros compressed to ~80 kB: one row, then refused
        arrays = {"x": np.zeros((2, 10_000_000), np.float32), "y": np.array([0, 0])}
        body = npz_compressed(**arrays)
    if body is None:
        body = npz_bytes(**arrays)
    files[path] = body
    return kind, files, ["train", *TINY, "--set", "data.name=npz", "--set", f"data.path={path}"], None  # type: ignore[return-value]


# --------------------------------------------------------------------------- 5: other commands

SPACE_OK = dump({"base": TINY_BASE, "space": {"optimizer.lr": {"log_uniform": [1e-4, 1e-1], "points": 3}}})
RUN_CONFIG = dump({"data": {"name": "digits"}, "model": {"hidden": [4]}, "training": {"epochs": 1}})


class _Pwn:
    def __reduce__(self):  # harmless, but visible when a loader unpickles it
        return (print, (PICKLE_MARK,))


def forged_run(rng: random.Random, root: str = "run") -> dict[str, bytes]:
    """A run folder whose files are garbage in one way or another."""
    files = {f"{root}/config.yaml": rng.choice([RUN_CONFIG, b"[]\n", b"model: {hidden: [2**70]}\n", bomb(9).encode(),
                                                 b"\xff\xfe", RUN_CONFIG])}
    result = rng.choice([b"{", b"[]", b"null", b"NaN", b'{"status": 5}', b'{"status": "completed", "val_accuracy": "x"}',
                         b'{"status": "completed", "val_accuracy": NaN, "threads": -1}', b"\xff",
                         json.dumps({"status": "completed", "val_accuracy": 0.5, "history": [1] * 10}).encode(), None])
    if result is not None:
        files[f"{root}/result.json"] = result
    model = rng.choice([b"", b"garbage", pickle.dumps(_Pwn()), pickle.dumps({"x": _Pwn()}), None])
    if model is not None:
        files[f"{root}/model.pt"] = model
    if rng.random() < 0.6:
        files[f"{root}/checkpoints/last.pt"] = rng.choice([b"", pickle.dumps(_Pwn()), b"PK\x03\x04junk"])
    if rng.random() < 0.5:
        files[f"{root}/history.csv"] = rng.choice([b"epoch,val_loss\n1,nan\n", b"\xff\xfe", b"", b"a\n" * 10])
    if rng.random() < 0.3:
        files[f"{root}/status.json"] = rng.choice([b'{"status": "running", "pid": 1}', b"[", b'{"pid": -1}'])
    return files


def gen_cli(rng: random.Random, i: int) -> tuple[str, dict[str, bytes], list[str]]:
    num = lambda: rng.choice(["0", "-1", "1", "abc", "1e3", "nan", "inf", "-inf", "1e309", str(2**70), "", " 2",  # noqa: E731
                              "0x10", "1.5", "1_0", "\udcff"])
    tune = ["tune", "s.yaml", "--trials", "1"]
    space = {"s.yaml": SPACE_OK}
    kinds = ["workers", "trial-timeout", "seed", "trials", "tune-misc", "storage", "study", "tune-out", "vary",
             "compare-misc", "datasets", "lr-find", "inspect", "forged-run", "train-out", "train-device",
             "resume-from", "predict-inputs", "runs", "studies", "special-file"]
    kind = kinds[i % len(kinds)]
    files: dict[str, bytes] = dict(space) if kind in ("workers", "trial-timeout", "seed", "trials", "tune-misc",
                                                       "storage", "study", "tune-out") else {}
    if kind == "workers":
        argv = [*tune, "--workers", rng.choice([num(), num(), "1000000", "2", str(2**31)])]
    elif kind == "trial-timeout":
        argv = [*tune, "--trial-timeout", rng.choice([num(), num(), "1e-9", "0.001", "86400"])]
        if rng.random() < 0.3:
            argv += ["--executor", rng.choice(["inline", "population", "processes"])]
    elif kind == "seed":
        argv = [*tune, "--seed", rng.choice([num(), "-1", str(2**32), str(2**63), str(2**64)]),
                "--sampler", rng.choice(["random", "tpe", "coarse-to-fine", "grid", "gp"])]
    elif kind == "trials":
        argv = ["tune", "s.yaml", "--trials", rng.choice([num(), "0", "-5", str(2**63)])]
    elif kind == "tune-misc":
        opt = rng.choice([("--sampler", ["bogus", "", "GRID", "pbt"]), ("--pruner", ["bogus", "", "asha", "hyperband"]),
                          ("--grace-epochs", ["-1", "0", str(2**70)]), ("--round-size", ["0", "-3", "1", str(2**70)]),
                          ("--interval", ["0", "-1"]), ("--timeout", ["-1", "0", "nan", "inf", "1e-9"]),
                          ("--executor", ["bogus", "", "ray", "population"]), ("--population-size", ["0", "-1", str(2**40)]),
                          ("--trial-cpus", ["-1", "0", "nan", "1e9"]), ("--trial-gpus", ["-1", "1", "nan", "0.5"]),
                          ("--max-retries", ["-1", str(2**70)]), ("--address", ["auto", "local", "bogus:1"]),
                          ("--set", ["model.hidden=[2**70]", "training.device=cuda", "=", "data.name=csv"]),
                          ("--trial-folders", ["s.yaml", "/proc/x", "tf"]), ("--stages", None), ("--fresh", None)])
        argv = [*tune, opt[0]] + ([rng.choice(opt[1])] if opt[1] else [])
        if opt[0] == "--sampler" and argv[-1] == "pbt":
            argv += ["--interval", "1"]
    elif kind == "storage":
        files["dir/x"] = b""
        files["garbage.db"] = rng.choice([b"not sqlite", b"SQLite format 3\x00" + b"\xff" * 200, b""])
        argv = [*tune, "--storage", rng.choice(["sqlite:////nonexistent/x.db", "foo://", "", "sqlite:///dir",
                                                "sqlite:///garbage.db", "sqlite://", "postgresql://u:p@127.0.0.1:9/db",
                                                "sqlite:///" + "x" * 5000, "memory", "sqlite:///:memory:",
                                                "sqlite:///s.yaml", "mysql://127.0.0.1:9/x", "sqlite:///dir/x"])]
    elif kind == "study":
        argv = [*tune, "--study", rng.choice(["", "../x", "a/b", ".", "..", "x" * 5000, "\n", "a b", "\udcff", "-",
                                              "/abs", "~", "con", "a\tb", "ü日本"])]
    elif kind == "tune-out":
        files["afile"] = b"x"
        argv = [*tune, "--out", rng.choice(["afile", "afile/sub", "/proc/x", "", "\udcff", "/"])]
    elif kind == "vary":
        vary = rng.choice(["model.dropout=0,0.1", "=", "x", "model.dropout=", "model.dropout=,", "nonsense=1,2",
                           "model.hidden=[4],[", "model.hidden=" + flow_bomb(9) + ",[4]", "model.hidden=" + deep(3000),
                           "training.device=cpu,cuda", "model.dropout=0,0", "model.dropout=nan,0.1",
                           "model.dropout=0.1", "optimizer.lr=" + ",".join(["0.01"] * 500), "training.seed=1,2",
                           "model.hidden=[4],[2**70]", "model.dropout=0;0.1", "data.name=digits,csv"])
        argv = ["compare", "--vary", vary, "--seeds", rng.choice(["1", "1", "0", "-1", str(2**70), "abc", "2"]),
                "--no-diagnostics", *TINY]
    elif kind == "compare-misc":
        opt = rng.choice([("--metric", ["bogus", "", "test_loss", "seconds"]), ("--target", ["nan", "2", "-1", "inf"]),
                          ("--test", ["bogus", "wilcoxon"]), ("--name", ["", "../x", "a/b", "x" * 3000]),
                          ("--out", ["afile", "/proc/x"]), ("--factorial", None), ("--workers", ["0", "-1", "1000000"])])
        files["afile"] = b"x"
        argv = ["compare", "--vary", "model.dropout=0,0.1", "--seeds", "1", "--no-diagnostics", *TINY, opt[0]] + \
            ([rng.choice(opt[1])] if opt[1] else [])
    elif kind == "datasets":
        files["afile"] = b"x"
        data = os.environ.get("TUNELAB_DATA", "")
        argv = rng.choice([
            ["datasets", "download", "mnist", "--dir", "afile"],
            ["datasets", "download", "mnist", "--dir", "afile/sub"],
            ["datasets", "download", "mnist", "--dir", "/proc/tunelab-attack"],
            ["datasets", "download", "mnist", "--dir", "new", "--mirror", "http://127.0.0.1:9/"],
            ["datasets", "download", "mnist", "--dir", "new", "--mirror", "file:///etc/"],
            ["datasets", "download", "mnist", "--dir", "new", "--mirror", ""],
            ["datasets", "download", "mnist", "--dir", "new", "--mirror", "ftp://127.0.0.1:9/"],
            ["datasets", "download", "fashion-mnist", "--dir", "new", "--mirror", f"file://{data}/mnist/"],
            ["datasets", "download", "bogus", "--dir", "new"],
            ["datasets", "download", "digits", "--dir", "new"],
            ["datasets", "info", "mnist", "--dir", "afile"],
            ["datasets", "info", rng.choice(["bogus", "", "../mnist", "mnist\n"])],
            ["datasets", "info", "mnist", "--dir", "\udcff"],
            ["datasets", "list"],
        ])
    elif kind == "lr-find":
        argv = ["lr-find", *TINY, rng.choice(["--steps", "--lr-min", "--lr-max"]), rng.choice([num(), "5", "1e-12"])]
        if rng.random() < 0.4:
            argv += ["--lr-min", "1", "--lr-max", "0.1", "--steps", "5"]
    elif kind == "inspect":
        argv = ["inspect", *TINY, rng.choice(["--epochs", "--batch"]), rng.choice([num(), "1", "0"])]
    elif kind == "forged-run":
        files = forged_run(rng)
        cmd = rng.choice([["evaluate", "run"], ["evaluate", "run", "--json"], ["evaluate", "run", "--split", "bogus"],
                          ["evaluate", "run", "--data", rng.choice(["name=csv", "=", "bogus", "name=" + flow_bomb(9)])],
                          ["resume", "run"], ["resume", "run", "--epochs", rng.choice(["2", "-1", str(2**70)])],
                          ["fork", "run", "--set", "optimizer.lr=0.1"], ["report", "--run", "run"], ["runs", "."],
                          ["runs", "compare", "run", "run"], ["ensemble", "--runs", ".", "--top", "2"],
                          ["control", "run", rng.choice(["lr*=0.5", "lr=nan", "lr*=1e400", "bogus", "fork"]),
                           "--wait", rng.choice(["0", "0.5", "-1", "nan"])],
                          ["predict", "run", "run/history.csv"], ["evaluate", "nonexistent"],
                          ["evaluate", "run/config.yaml"]])
        argv = cmd
    elif kind == "train-out":
        files["afile"] = b"x"
        argv = ["train", *TINY, "--out", rng.choice(["afile", "afile/sub", "/proc/x", "", "\udcff", "/", "a" * 300,
                                                     "caf\udce9", "-"])]
    elif kind == "train-device":
        argv = ["train", *TINY, "--device", rng.choice(["", "cuda", "tpu", "cpu ", "CPU", "cuda:0", "mps", "meta", "\udcff"])]
    elif kind == "resume-from":
        files = forged_run(rng)
        files["bad.pt"] = rng.choice([pickle.dumps(_Pwn()), b"", b"garbage"])
        argv = ["resume", "run", "--from", rng.choice(["bad.pt", "-1", "best", "999", "nonexistent.pt", "run", str(2**70)])]
    elif kind == "predict-inputs":
        files = forged_run(rng)
        files["in.csv"] = rng.choice([b"\xff\xfe", b"", b"a,b\n1,2\n", b"1" * 200_000])
        argv = ["predict", "run", rng.choice(["in.csv", "nonexistent.png", "run", "in.npz"])]
    elif kind == "runs":
        files = forged_run(rng, rng.choice(["r/a", "r/b"]))
        argv = rng.choice([["runs", "r"], ["runs", "nonexistent"], ["runs", "compare", "r/a", "r/b"],
                           ["runs", "compare", "r/a", "--out", "r/a"], ["report", "--run", "r/a"],
                           ["ensemble", "--runs", "r", "--top", rng.choice(["1", "0", "-1", str(2**70)])]])
    elif kind == "special-file":  # /dev/zero has size 0 and never ends: capped at 3 GB so the machine is safe
        files["d"] = b""
        argv = rng.choice([["train", "/dev/zero", *TINY], ["tune", "/dev/zero", "--trials", "1"],
                           ["train", "/dev/null", *TINY], ["train", "/proc/self/status", *TINY], ["train", "d/", *TINY],
                           ["train", ".", *TINY], ["tune", ".", "--trials", "1"], ["train", *TINY, "--set",
                           "data.name=npz", "--set", "data.path=/dev/zero"]])
        return kind, files, argv, (3.0 if "/dev/zero" in " ".join(argv) else None)  # type: ignore[return-value]
    else:  # studies
        files["garbage.db"] = rng.choice([b"not sqlite", b""])
        argv = rng.choice([["studies", "list", "--storage", "sqlite:///garbage.db"], ["studies", "show", "nonexistent"],
                           ["studies", "show", ""], ["studies", "export", "x", "--csv", "/proc/x.csv"],
                           ["studies", "delete", "\udcff"], ["studies", "list", "--storage", "bogus://"],
                           ["report", "--study", "nonexistent"]])
    return kind, files, argv


GENERATORS: dict[str, Callable] = {"config": gen_config, "set": gen_set, "space": gen_space, "data": gen_data,
                                   "cli": gen_cli}


def make_cases(per_category: int, seed: int, categories: list[str]) -> list[Case]:
    """The fixed case list: case i of a category depends only on (seed, category, i)."""
    cases = []
    for category in categories:
        for i in range(per_category):
            rng = random.Random(f"{seed}-{category}-{i}")
            made = GENERATORS[category](rng, i)
            kind, files, argv = made[:3]
            cap = made[3] if len(made) > 3 else None
            cases.append(Case(f"{category}-{i:04d}", category, kind, list(argv), dict(files), cap))
    return cases


# --------------------------------------------------------------------------- running one case

class Hang(BaseException):
    """Raised by SIGALRM: the case ran past its wall limit (never caught by `except Exception`)."""


class _Current:
    """A stream for logging handlers: writes to whatever sys.stdout/sys.stderr is now."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, s: str) -> int:
        return getattr(sys, self.name).write(s)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def _rebind_logging(case_stdout: Any) -> None:
    """Handlers bound to a stream when they were made (optuna's, during some case) write to the
    current sys.stdout/sys.stderr instead, as they would in a fresh process."""
    for logger in [logging.getLogger()] + [l for l in logging.Logger.manager.loggerDict.values()
                                            if isinstance(l, logging.Logger)]:
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and not isinstance(h.stream, _Current):
                h.stream = _Current("stdout" if h.stream is sys.__stdout__ or h.stream is case_stdout else "stderr")


def _reset_warnings() -> None:
    """Forget which warnings were shown (a fresh process shows them again); keep the filters."""
    if hasattr(warnings, "_filters_mutated"):
        warnings._filters_mutated()
    if hasattr(warnings, "onceregistry"):
        warnings.onceregistry.clear()


def _loadable(path: Path) -> bool:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:  # noqa: BLE001
        return False


def half_written(work: Path, inputs: set[str]) -> str:
    """'' or a description of a run folder with result.json xor a loadable model.pt."""
    folders = {p.parent for p in work.rglob("result.json")} | {p.parent for p in work.rglob("model.pt")}
    bad = []
    for folder in sorted(folders):
        rel = folder.relative_to(work).as_posix()
        prefix = "" if rel == "." else rel + "/"
        if {prefix + "result.json", prefix + "model.pt"} & inputs:
            continue  # a forged folder the case brought along
        result, model = folder / "result.json", folder / "model.pt"
        has_result = result.is_file()
        has_model = model.is_file() and _loadable(model)
        if has_result != has_model or (model.is_file() and not has_model):
            status = ""
            if has_result:
                try:
                    status = f" (result.json status {json.loads(result.read_text()).get('status')!r})"
                except Exception:  # noqa: BLE001
                    status = " (result.json unreadable)"
            if has_result:
                bad.append(f"{rel}: result.json without a loadable model.pt{status}")
            else:
                bad.append(f"{rel}: a{'' if has_model else 'n unloadable'} model.pt without result.json")
    return "; ".join(bad)


class Runner:
    """Runs cases one at a time in this process, each in a fresh folder, and restores the state."""

    def __init__(self, limit: float, memory_cap_gb: float) -> None:
        import torch

        from tunelab.cli.main import main

        self.main, self.torch, self.limit, self.memory_cap_gb = main, torch, limit, memory_cap_gb
        self.threads = torch.get_num_threads()
        self.dtype = torch.get_default_dtype()
        self.root = Path(tempfile.mkdtemp(prefix="tunelab-attack-"))

    def _write_files(self, work: Path, files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            if rel.startswith("/"):
                continue
            p = work / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

    def run(self, case: Case) -> Outcome:
        work = self.root / case.id
        work.mkdir(parents=True)
        self._write_files(work, case.files)
        env, cwd, argv0 = dict(os.environ), os.getcwd(), list(sys.argv)
        out_b, err_b = io.BytesIO(), io.BytesIO()
        out_t = io.TextIOWrapper(out_b, encoding="utf-8", errors=sys.__stdout__.errors or "strict", write_through=True)
        err_t = io.TextIOWrapper(err_b, encoding="utf-8", errors=sys.__stderr__.errors or "backslashreplace",
                                 write_through=True)
        fd_out, fd_err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        saved = os.dup(1), os.dup(2)
        code: Optional[int] = None
        escaped = ""
        hung = False
        old_alarm = signal.getsignal(signal.SIGALRM)
        old_as = resource.getrlimit(resource.RLIMIT_AS)

        def on_alarm(signum: int, frame: Any) -> None:
            signal.setitimer(signal.ITIMER_REAL, 5.0)  # again if the unwinding hangs too
            raise Hang()

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        try:
            os.chdir(work)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(fd_out.fileno(), 1), os.dup2(fd_err.fileno(), 2)
            cap = case.memory_cap_gb or self.memory_cap_gb
            if cap:  # address space above what the process has now: a safety net for the machine
                resource.setrlimit(resource.RLIMIT_AS, (int(_vm_size() + cap * 2**30), old_as[1]))
            signal.signal(signal.SIGALRM, on_alarm)
            sys.argv = ["tunelab", *case.argv]  # click names the program after argv[0]
            signal.setitimer(signal.ITIMER_REAL, self.limit)
            try:
                with contextlib.redirect_stdout(out_t), contextlib.redirect_stderr(err_t):
                    code = self.main(list(case.argv))
            except Hang:
                hung = True
            except SystemExit as e:
                escaped = f"SystemExit({e.code!r}) escaped main"
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:  # noqa: BLE001 - everything that escapes main is a finding
                escaped = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_alarm)
        except Hang:  # landed between the try blocks
            hung = True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - t0
            resource.setrlimit(resource.RLIMIT_AS, old_as)
            try:
                out_t.flush(), err_t.flush()
            except Exception:  # noqa: BLE001
                pass
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
            os.chdir(cwd)
            sys.argv = argv0
            os.environ.clear()
            os.environ.update(env)
            self._restore(out_t)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fd_out.seek(0), fd_err.seek(0)
        stdout = out_b.getvalue().decode("utf-8", "replace") + fd_out.read().decode("utf-8", "replace")
        stderr = err_b.getvalue().decode("utf-8", "replace") + fd_err.read().decode("utf-8", "replace")
        fd_out.close(), fd_err.close()
        if escaped:
            stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + "[escaped main] " + escaped
        cls, note = self.classify(case, code, stdout, stderr, hung, bool(escaped), work)
        if PICKLE_MARK in stdout + stderr:
            note = (note + "; " if note else "") + "a pickle in the input was executed"
        shutil.rmtree(work, ignore_errors=True)
        return Outcome(case, cls, code, stdout, stderr, seconds, (rss1 - rss0) / 1024, note)

    def _restore(self, case_stdout: Any) -> None:
        import multiprocessing

        for child in multiprocessing.active_children():  # workers a hung case left behind (ours)
            child.terminate()
            child.join(2)
        self.torch.set_num_threads(self.threads)
        self.torch.set_default_dtype(self.dtype)
        _rebind_logging(case_stdout)
        _reset_warnings()

    @staticmethod
    def classify(case: Case, code: Optional[int], stdout: str, stderr: str, hung: bool, escaped: bool,
                 work: Path) -> tuple[str, str]:
        if hung:
            last = tail_lines(stdout, 1, 120)
            return "hang", f"last stdout line: {last[0]}" if last else "no output"
        if escaped or "Traceback (most recent call last)" in stdout + stderr:
            return "traceback", ""
        if code in (0, 2):
            half = half_written(work, set(case.files))
            if half:
                return "half-written", half
        if code == 0:
            return "ok", ""
        if code == 2:
            lines = [line for line in stderr.splitlines() if line.strip()]
            return ("refused", "") if len(lines) == 1 else ("multi-line error", f"{len(lines)} stderr lines")
        return "other exit", f"exit {code}"


def _vm_size() -> int:
    """This process's virtual size in bytes (the base of an RLIMIT_AS cap)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- report

def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def shown_argv(argv: list[str], limit: int = 240) -> str:
    text = "tunelab " + " ".join(shlex.quote(a.encode("utf-8", "backslashreplace").decode()) for a in argv)
    return text if len(text) <= limit else text[:limit] + f" ...[{len(text)} chars]"


def shown_files(files: dict[str, bytes], limit: int = 160) -> str:
    parts = []
    for name, data in files.items():
        head = repr(data[:limit])
        parts.append(f"{name} ({len(data)} B): {head}{'...' if len(data) > limit else ''}")
    return "; ".join(parts)


def first_lines(text: str, n: int = 3, width: int = 300) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [line[:width] for line in lines[:n]]


def tail_lines(text: str, n: int = 3, width: int = 300) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [line[:width] for line in lines[-n:]]


def example(o: Outcome) -> dict[str, Any]:
    return {"id": o.case.id, "kind": o.case.kind, "argv": shown_argv(o.case.argv), "files": shown_files(o.case.files),
            "code": o.code, "seconds": round(o.seconds, 2), "note": o.note,
            "stderr_first": first_lines(o.stderr), "stderr_last": tail_lines(o.stderr, 2),
            "stdout_last": [] if o.stderr.strip() else tail_lines(o.stdout, 2)}


def signature(o: Outcome) -> str:
    """What ended a finding: the exception line of a traceback (addresses dropped), else the note."""
    if o.cls == "traceback":
        lines = [line for line in o.stderr.splitlines() if line.strip()]
        exc = next((line for line in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b", line)),
                   lines[-1] if lines else "")
        frame = next((line.strip() for line in reversed(lines) if "/src/tunelab/" in line and line.strip().startswith("File")), "")
        where = re.sub(r'^File ".*/src/(tunelab/[^"]+)", line (\d+), in (\S+)', r"\1:\2 \3", frame)
        return re.sub(r"0x[0-9a-f]+", "0x..", f"{exc[:160]} [{where}]" if where else exc[:160])
    if o.cls == "multi-line error":
        return f"{o.note}: {(first_lines(o.stderr, 1) or [''])[0][:120]}"
    return o.note


def distinct_findings(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.cls in FINDINGS:
            sig = signature(o)
            groups[(o.cls, o.case.category, o.case.kind, re.sub(r"\d+(\.\d+)?", "N", sig) if o.cls == "hang" else sig)].append(o)
    return [{"class": cls, "category": cat, "kind": kind, "count": len(os_), "ids": [o.case.id for o in os_],
             "signature": signature(os_[0])} for (cls, cat, kind, _), os_ in sorted(groups.items())]


def print_table(outcomes: list[Outcome], categories: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {c: {k: 0 for k in CLASSES} for c in categories}
    for o in outcomes:
        counts[o.case.category][o.cls] += 1
    print("\n| category | " + " | ".join(CLASSES) + " | total |")
    print("|---|" + "---:|" * (len(CLASSES) + 1))
    for c in categories:
        print(f"| {c} | " + " | ".join(str(counts[c][k]) for k in CLASSES) + f" | {sum(counts[c].values())} |")
    totals = {k: sum(counts[c][k] for c in categories) for k in CLASSES}
    print("| **total** | " + " | ".join(f"**{totals[k]}**" for k in CLASSES) + f" | **{sum(totals.values())}** |")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases-per-category", type=int, default=160)
    parser.add_argument("--categories", default=",".join(CATEGORIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=20.0, help="wall seconds per case before it counts as hang")
    parser.add_argument("--memory-cap-gb", type=float, default=6.0,
                        help="RLIMIT_AS headroom per case above the process's size (0: none)")
    parser.add_argument("--case", action="append", default=[], help="run only this case id (repeatable)")
    parser.add_argument("--show", action="store_true", help="print each case's full stdout and stderr")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/results/bench_attack.jsonl")
    parser.add_argument("--out", default=None, help="results file (default bench/results/bench_attack.jsonl)")
    args = parser.parse_args()
    categories = [c for c in args.categories.split(",") if c]
    data_given = os.environ.get("TUNELAB_DATA")  # recorded as given (no machine paths in results)
    if data_given:  # relative to where we started, not to each case's folder
        os.environ["TUNELAB_DATA"] = str(Path(data_given).resolve())
    for var in ("TUNELAB_SKIP_MEMORY_CHECK", "TUNELAB_SKIP_CHECKSUM"):
        os.environ.pop(var, None)
    os.environ.setdefault("MPLBACKEND", "Agg")
    per = args.cases_per_category
    if args.case:
        per = max(int(c.rsplit("-", 1)[1]) for c in args.case) + 1
        categories = sorted({c.rsplit("-", 1)[0] for c in args.case}, key=CATEGORIES.index)
    cases = make_cases(per, args.seed, categories)
    if args.case:
        cases = [c for c in cases if c.id in set(args.case)]

    record: dict[str, Any] = {"args": vars(args), "cases": len(cases), "uptime_before": uptime(),
                              "tunelab_data": data_given}
    print(record["uptime_before"], flush=True)
    runner = Runner(args.limit, args.memory_cap_gb)
    outcomes: list[Outcome] = []
    t_start = time.perf_counter()
    for n, case in enumerate(cases, 1):
        o = runner.run(case)
        outcomes.append(o)
        if args.show or args.case:
            print(f"\n=== {case.id} [{case.kind}] {o.cls} exit={o.code} {o.seconds:.2f}s rss+{o.rss_growth_mb:.0f}MB {o.note}")
            print(shown_argv(case.argv, 2000))
            if case.files:
                print("files:", shown_files(case.files, 400))
            print("--- stdout\n" + o.stdout[-3000:] + "\n--- stderr\n" + o.stderr[-6000:], flush=True)
        elif o.cls not in ("ok", "refused") or n % 50 == 0:
            print(f"[{n}/{len(cases)} {time.perf_counter() - t_start:.0f}s] {case.id} {case.kind}: {o.cls}"
                  f"{' ' + o.note if o.note else ''} | {(first_lines(o.stderr, 1) or [''])[0][:160]}", flush=True)
    wall = time.perf_counter() - t_start
    record["uptime_after"] = uptime()
    shutil.rmtree(runner.root, ignore_errors=True)

    counts = print_table(outcomes, categories)
    by_class: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_class[o.cls].append(o)
    examples = {}
    for cls in [c for c in CLASSES if c not in ("ok", "refused")]:
        if not by_class[cls]:
            continue
        examples[cls] = [example(o) for o in by_class[cls][:10]]
        print(f"\n### {cls}: {len(by_class[cls])} case(s)" + (
            " (exit codes: " + ", ".join(f"{k}: {v}" for k, v in Counter(o.code for o in by_class[cls]).items()) + ")"
            if cls == "other exit" else ""))
        for o in by_class[cls][:10]:
            e = example(o)
            print(f"- {e['id']} [{e['kind']}] exit={e['code']} {e['seconds']}s {e['note']}\n  argv: {e['argv']}")
            if o.case.files:
                print(f"  files: {shown_files(o.case.files, 120)}")
            for line in e["stderr_first"] + (["..."] + e["stderr_last"] if cls == "traceback" else []) + \
                    [f"(stdout) {line}" for line in e["stdout_last"]]:
                print(f"    {line}")
    distinct = distinct_findings(outcomes)
    if distinct:
        print("\n### distinct findings (class, category/kind, what ended it)\n")
        print("| class | case kind | count | case ids | signature |\n|---|---|---:|---|---|")
        for d in distinct:
            print(f"| {d['class']} | {d['category']}/{d['kind']} | {d['count']} | {' '.join(d['ids'][:6])}"
                  f"{' ...' if d['count'] > 6 else ''} | {d['signature'].replace('|', '/')} |")
    pickled = [o.case.id for o in outcomes if "pickle" in o.note]
    slow = sorted(outcomes, key=lambda o: -o.seconds)[:5]
    grew = sorted(outcomes, key=lambda o: -o.rss_growth_mb)[:5]
    print(f"\n{len(outcomes)} cases in {wall:.0f} s ({wall / max(1, len(outcomes)):.2f} s/case); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("slowest: " + ", ".join(f"{o.case.id} [{o.case.kind}] {o.seconds:.1f}s" for o in slow))
    print("largest peak-RSS growth: " + ", ".join(f"{o.case.id} [{o.case.kind}] +{o.rss_growth_mb:.0f} MB" for o in grew))
    if pickled:
        print("pickles executed: " + ", ".join(pickled))
    print(record["uptime_before"] + "\n" + record["uptime_after"])
    record.update(distinct_findings=distinct,
                  finding_ids={c: [o.case.id for o in by_class[c]] for c in CLASSES if c not in ("ok", "refused")},
                  counts=counts, totals={k: sum(counts[c][k] for c in counts) for k in CLASSES}, examples=examples,
                  wall_s=round(wall, 1), pickles_executed=pickled,
                  slowest=[[o.case.id, o.case.kind, round(o.seconds, 2)] for o in slow],
                  rss_growth_mb=[[o.case.id, o.case.kind, round(o.rss_growth_mb)] for o in grew],
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    if not args.case and not args.no_record:
        print(f"appended to {append_record('attack', record, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
