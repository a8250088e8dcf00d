"""`tunelab train --watch` in a real terminal (tmux): the dashboard draws, and its keys steer
the run — lr x2, pause and resume, stop — and the run folder ends complete."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not on PATH")

REPO = Path(__file__).resolve().parents[2]


class Tmux:
    """One detached tmux session on a private server socket."""

    def __init__(self, command: str) -> None:
        self.socket, self.session = f"tunelab-test-{os.getpid()}-{uuid.uuid4().hex[:8]}", "dash"
        self.tmux("new-session", "-d", "-x", "160", "-y", "50", "-s", self.session, "-c", str(REPO), command)

    def tmux(self, *args: str) -> str:
        # An explicit environment: readline (loaded by pytest) exports COLUMNS=80 LINES=24 at the C
        # level, unseen in os.environ; the tmux server would hand them on and rich would obey them.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=30, env=env).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def press(self, key: str) -> None:
        self.tmux("send-keys", "-t", self.session, "-l", key)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def _wait(what: str, check, tmux: Tmux, timeout: float = 60.0):
    """Poll ``check`` until it returns something true; on a time-out show the screen."""
    return wait_until(check, what, timeout, 0.1, context=lambda: f"the screen:\n{tmux.screen()}")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or replaced right now
        return {}


def _commands(run: Path) -> list[str]:
    try:
        lines = (run / "events.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line)["command"] for line in lines if line.strip() and '"control"' in line]


def _epochs_done(run: Path) -> int:
    return _json(run / "status.json").get("epoch", -1)


def test_dashboard_keys_steer_a_run_in_a_real_terminal(tmp_path):
    run = tmp_path / "RUN"
    # many epochs of small batches: the run cannot end by itself while the test steers it (q ends it)
    argv = [sys.executable, "-m", "tunelab.cli.main", "train", "--watch", "--out", str(run),
            "--set", "training.epochs=100000", "--set", "training.batch_size=16", "--set", "training.threads=1",
            "--set", "model.hidden=[64]"]
    # the shell stays after the run so its exit code and last lines can be read from the pane
    tmux = Tmux(f"{shlex.join(argv)}; echo tunelab-exit=$?; sleep 300")
    try:
        _wait("the dashboard", lambda: "loss: train / validation" in tmux.screen() and _epochs_done(run) >= 1, tmux)
        assert "+/- lr x2 / x0.5" in tmux.screen()

        tmux.press("+")
        _wait("lr*=2 in events.jsonl", lambda: "lr*=2" in _commands(run), tmux)
        _wait("the doubled lr on the screen", lambda: "lr 0.002" in tmux.screen(), tmux)

        tmux.press("p")
        _wait("PAUSED on the screen", lambda: "PAUSED" in tmux.screen(), tmux)
        _wait("status.json paused", lambda: _json(run / "status.json").get("status") == "paused", tmux)
        paused_at = _epochs_done(run)
        rows = (run / "history.csv").read_text().count("\n")
        for _ in range(10):  # while paused, no epoch ends
            time.sleep(0.1)
            assert _epochs_done(run) == paused_at
        assert (run / "history.csv").read_text().count("\n") == rows and "PAUSED" in tmux.screen()

        tmux.press("p")
        _wait("status.json running", lambda: _json(run / "status.json").get("status") == "running", tmux)
        _wait("the epochs advancing again", lambda: _epochs_done(run) > paused_at, tmux)
        _wait("PAUSED gone from the screen", lambda: "PAUSED" not in tmux.screen(), tmux)

        tmux.press("q")
        _wait("the end of the run", lambda: "tunelab-exit=" in tmux.screen(), tmux)
        screen = tmux.screen()
        assert "tunelab-exit=0" in screen and "stopped after" in screen
    finally:
        tmux.kill()
    result = _json(run / "result.json")
    assert result["status"] == "stopped" and result["epochs_run"] > paused_at
    assert _commands(run) == ["lr*=2", "pause", "resume", "stop"]
    assert _json(run / "status.json")["status"] == "stopped"
    for name in ("history.csv", "curves.png", "model.pt", "config.yaml", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert (run / "history.csv").read_text().count("\n") == result["epochs_run"] + 1
