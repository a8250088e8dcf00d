"""The README's commands, run top to bottom as a new user would, each exit 0, and `git status`
clean afterwards.

Every line of README.md's ```sh blocks is either run or named in ``SKIP`` with the reason, so a
new README line is never left out silently. The commands run in a fresh git repository made of
the project's files, with small budgets added by ``budget`` (fewer epochs, trials, seeds and
examples: minutes instead of hours); what a user sees is the same command line. At the end the
repository must have no changes and no untracked files: every command writes under an ignored
path (runs/, *.db, data/), never into tracked files or unignored places.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("TUNELAB_DATA") or ROOT.parent / "shared" / "data").resolve()

# README lines that are not run here, each with the reason
SKIP = {
    "pip install torch==2.13.0 -e . && tunelab train":
        "installs into the environment that runs this test (CI installs the same way in .ci/run); "
        "`tunelab train` itself runs below",
    "pip install torch==2.13.0 -e '.[test]' && TUNELAB_DATA=../shared/data python -m pytest":
        "the test suite this test belongs to",
    # the Ray cluster lines need several machines, a cluster and a PostgreSQL server; the same
    # commands run in tests/execute/test_ray.py on a multi-node cluster started on 127.0.0.1 (-m ray)
    "ray start --head --port 6379": "starts a Ray head for other machines to join (test_ray.py starts its own)",
    "ray start --address HEAD_IP:6379": "joins a head on another machine (HEAD_IP is a placeholder)",
    "tunelab tune space.yaml --study on-ray --executor ray --address auto --storage postgresql://user:pw@host/db "
    "--trial-cpus 1 --trial-gpus 0.25 --max-retries 1":
        "needs the cluster above and a PostgreSQL server (test_ray.py runs tune on a local multi-node cluster, "
        "and with two drivers on PostgreSQL)",
    "tunelab compare --vary model.norm=none,batch --executor ray --address auto":
        "needs the cluster above (test_ray.py runs a compare on a local multi-node cluster)",
    "optuna-dashboard postgresql://user:pw@host/db": "a web server that runs until stopped, on a placeholder URL",
}
NEEDS_GPU = {"tunelab train --device cuda"}  # run where torch sees a GPU, skipped elsewhere

# the README's example mirror; the test serves the Fashion-MNIST files from a local server in its
# place (no network here), so the download line runs for real
MIRROR = "http://my.mirror/fashion/"

ONE_EPOCH, ONE_THREAD, SMALL_MNIST = "training.epochs=1", "training.threads=1", "data.train_size=2000"
# subcommand -> (--set values added, options whose README value is replaced or which are added)
BUDGETS: dict[str, tuple[list[str], dict[str, str]]] = {
    "train": ([ONE_EPOCH, ONE_THREAD], {}),
    "tune": ([ONE_EPOCH, ONE_THREAD], {"--trials": "2"}),
    "compare": ([ONE_EPOCH, ONE_THREAD], {"--seeds": "2"}),
    "inspect": ([ONE_THREAD], {"--epochs": "1"}),
    "lr-find": ([ONE_THREAD], {"--steps": "20"}),
    "ensemble": ([], {"--top": "2"}),  # the studies above hold 2 trials each
}
# `train --watch` is the dashboard the README then steers "from another shell": it runs in the
# background with its README epochs (the control and resume lines need a run that lasts), on
# fewer examples
WATCHED = [ONE_THREAD, "data.train_size=10000"]
COMMAND_SECONDS = 600


def _scan(line: str):
    """(index, char, inside quotes) for each character of a shell line."""
    quote = None
    for i, ch in enumerate(line):
        if quote is None and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = None
            yield i, ch, True
            continue
        yield i, ch, quote is not None


def _strip_comment(line: str) -> str:
    """``cmd  # why`` -> ``cmd`` (a ``#`` in quotes or inside a word is kept)."""
    for i, ch, quoted in _scan(line):
        if ch == "#" and not quoted and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _split_commands(line: str) -> list[str]:
    """``a ; b`` -> ``["a", "b"]`` (a ``;`` in quotes is kept)."""
    cuts = [i for i, ch, quoted in _scan(line) if ch == ";" and not quoted]
    parts = [line[a + 1:b] for a, b in zip([-1, *cuts], [*cuts, len(line)])]
    return [p.strip() for p in parts if p.strip()]


def readme_commands(text: str) -> list[str]:
    """Every command line of the ```sh blocks, in order: continuation lines joined, comments
    stripped, ``;`` chains split.

    Example:
        >>> readme_commands("x\\n```sh\\ntunelab a \\\\\\n  --b 1   # why\\n# note\\ntunelab c ; tunelab 'd;e'\\n```\\n")
        ['tunelab a --b 1', 'tunelab c', "tunelab 'd;e'"]
    """
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            out += _split_commands(_strip_comment(line))
    return out


def subcommand(cmd: str) -> str | None:
    """The tunelab subcommand of a line (``python -m tunelab train`` -> ``train``), else None."""
    m = re.match(r"(?:tunelab|python -m tunelab)(?:\s+--?\w[\w-]*)*\s+([a-z][\w-]*)", cmd)
    return m.group(1) if m else None


def _with_option(cmd: str, option: str, value: str) -> str:
    pattern = rf"{re.escape(option)}[ =]\S+"
    return re.sub(pattern, f"{option} {value}", cmd) if re.search(pattern, cmd) else f"{cmd} {option} {value}"


def budget(cmd: str) -> str:
    """The README command with the test's small budget.

    Example:
        >>> budget("tunelab tune s.yaml --trials 30 --workers 2")
        'tunelab tune s.yaml --trials 2 --workers 2 --set training.epochs=1 --set training.threads=1'
        >>> budget("tunelab train examples/mnist/mlp_adam.yaml")
        'tunelab train examples/mnist/mlp_adam.yaml --set training.epochs=1 --set training.threads=1 --set data.train_size=2000'
    """
    sub = subcommand(cmd)
    if sub == "train" and "--watch" in cmd:
        return cmd + "".join(f" --set {s}" for s in WATCHED)
    if sub not in BUDGETS:
        return cmd
    sets, options = BUDGETS[sub]
    for option, value in options.items():
        if option == "--trials" and "--stages" in cmd:
            value = "3"  # one trial for each of the space's 3 stages
        cmd = _with_option(cmd, option, value)
    if sets and "examples/mnist/" in cmd:
        sets = [*sets, SMALL_MNIST]
    return cmd + "".join(f" --set {s}" for s in sets)


def _option(cmd: str, option: str) -> str:
    m = re.search(rf"{re.escape(option)}[ =](\S+)", cmd)
    assert m, f"{cmd!r} has no {option}"
    return m.group(1)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=readme-test", "-c", "user.email=readme-test@localhost", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def _copy_project(repo: Path) -> None:
    """The project's files (tracked, and new ones not yet committed but not ignored) in a new
    git repository with one commit, so `git status` shows what the commands change."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # a file deleted in the working tree is still listed by --cached
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "project files")
    assert _git(repo, "status", "--porcelain") == ""


@pytest.fixture
def mirror():
    """A local HTTP server holding the Fashion-MNIST files: the README's mirror, offline."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(DATA / "fashion-mnist")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def _hold(proc: subprocess.Popen, run_dir: Path, log: Path) -> None:
    """Pause a run started in the background as soon as it trains: with the test's budget it
    would otherwise end before the README's control lines reach it."""
    from tunelab.trainer.control import send_to_folder

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the background run ended before training:\n{log.read_text()[-3000:]}"
        try:
            if json.loads((run_dir / "status.json").read_text()).get("status") == "running":
                send_to_folder(run_dir, "pause", source="readme-test")
                return
        except (OSError, ValueError):
            pass  # not written yet, or being replaced
        time.sleep(0.01)
    pytest.fail(f"{run_dir} did not start training within 120 s:\n{log.read_text()[-3000:]}")


def test_helpers_examples():
    """The examples in this file's docstrings (the README parser and the budgets) hold."""
    import doctest

    result = doctest.testmod(sys.modules[__name__])
    assert result.attempted >= 3 and result.failed == 0


def test_every_readme_line_is_run_or_skipped_with_a_reason():
    """Fast, without data: a README line the slow test would neither run nor skip fails here."""
    commands = readme_commands((ROOT / "README.md").read_text())
    unknown = [c for c in commands if c not in SKIP and c not in NEEDS_GPU
               and not re.match(r"(tunelab|python -m tunelab|python -c) ", c)]
    assert not unknown, f"README lines neither run nor in SKIP (with a reason): {unknown}"
    assert set(SKIP) | NEEDS_GPU <= set(commands), "SKIP names lines the README no longer has"
    assert len([c for c in commands if c not in SKIP]) >= 30, "far fewer README commands than expected"
    tunes = [c for c in commands if subcommand(c) == "tune"]
    assert len({_option(c, "--study") for c in tunes}) == len(tunes), "tune examples must not share a study"


@pytest.mark.slow
def test_readme_commands_run_in_order_and_leave_git_clean(tmp_path, mirror):
    if not (DATA / "mnist").is_dir() or not (DATA / "fashion-mnist").is_dir():
        pytest.skip(f"MNIST / Fashion-MNIST files not found under {DATA} (set TUNELAB_DATA)")
    import torch

    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_project(repo)
    commands = readme_commands((ROOT / "README.md").read_text())

    env = {**os.environ, "TUNELAB_DATA": str(DATA), "MPLBACKEND": "Agg", "COLUMNS": "120",
           # `tunelab` and `python` of the environment that runs this test, whatever PATH says
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    background: dict[str, tuple[subprocess.Popen, Path]] = {}
    ran, skipped, failures = [], [], []
    try:
        for i, line in enumerate(commands):
            if line in SKIP or (line in NEEDS_GPU and not torch.cuda.is_available()):
                skipped.append(line)
                continue
            cmd = budget(line).replace(MIRROR, mirror)
            log = tmp_path / f"cmd-{i:02d}.log"
            if subcommand(line) == "train" and "--watch" in line:
                run_dir = _option(line, "--out")
                proc = subprocess.Popen(cmd, shell=True, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                        stdout=log.open("w"), stderr=subprocess.STDOUT)
                background[run_dir] = (proc, log)
                _hold(proc, repo / run_dir, log)
                ran.append(f"{cmd}  (background)")
                continue
            started = time.monotonic()
            done = subprocess.run(cmd, shell=True, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=COMMAND_SECONDS)
            log.write_text(done.stdout + done.stderr)
            ran.append(f"{cmd}  ({time.monotonic() - started:.0f} s)")
            if done.returncode != 0:
                failures.append(f"{cmd}\n  exit {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
                break  # later lines build on this one
            m = re.match(r"tunelab control (\S+) .*\bstop\b", cmd)
            if m and m.group(1) in background:  # the README stopped its background run
                proc, bg_log = background.pop(m.group(1))
                code = proc.wait(timeout=COMMAND_SECONDS)
                if code != 0:
                    failures.append(f"background run {m.group(1)} exit {code}:\n{bg_log.read_text()[-3000:]}")
                    break
    finally:
        for proc, _ in background.values():
            proc.kill()
            proc.wait()
    print("ran:\n  " + "\n  ".join(ran) + "\nskipped:\n  " + "\n  ".join(skipped))
    assert not failures, failures[0]
    assert not background, f"runs started in the background that no README command stopped: {list(background)}"
    changed = _git(repo, "status", "--porcelain", "--untracked-files=all")
    assert changed == "", f"README commands wrote into tracked or unignored places:\n{changed}"
