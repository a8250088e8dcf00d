"""One place for the benchmark scripts' records: a JSON line appended to bench/results/."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Optional

import torch

RESULTS = Path(__file__).parent / "results"


def append_record(bench: str, record: dict[str, Any], out: Optional[str | Path] = None) -> Path:
    """Append ``record`` with the bench name, the time and the machine to ``out``
    (default ``bench/results/bench_<bench>.jsonl``); return the file."""
    path = Path(out) if out is not None else RESULTS / f"bench_{bench}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = dict(bench=bench, when=time.strftime("%Y-%m-%dT%H:%M:%S"), torch=torch.__version__,
                threads=torch.get_num_threads(), machine=platform.machine(), **record)
    with open(path, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")
    return path
