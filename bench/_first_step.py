"""The floor of a start-up: a bare PyTorch script's seconds from its process's start to its first
optimizer step, with nothing of tunelab (no data read: random inputs of the dataset's shape).

Prints one JSON object: the process's age after ``import torch`` and after the first
``torch.optim.Adam`` step (whose first use imports ``torch._dynamo``), from Linux's /proc like
``tunelab.timing.process_age``. Run by bench_startup.py as its floor row.

    python bench/_first_step.py 784
"""

from __future__ import annotations

import json
import os
import sys


def _age() -> float:
    with open("/proc/self/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - started


def main() -> None:
    inputs = int(sys.argv[1]) if len(sys.argv) > 1 else 784
    import torch  # noqa: E402 - the import is what is timed

    imported = _age()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(inputs, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, inputs), torch.randint(0, 10, (128,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    print(json.dumps({"import torch": imported, "first step": _age()}))


if __name__ == "__main__":
    main()
