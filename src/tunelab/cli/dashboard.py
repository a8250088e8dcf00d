"""``--watch`` on a terminal: a full-screen live view of one training run, steered with keys.

The screen (``dashboard_view.render``) is redrawn by rich's Live refresh thread, not by the
trainer, so it keeps moving while the run is paused (the trainer then waits inside its
loop). The trainer's hooks and a key thread only change the ``View``. Keys become control
commands sent through a ``Control`` on the run folder, so ``tunelab control`` from another
terminal reaches the same run and shows up on this screen too.
"""

from __future__ import annotations

import json
import math
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from rich.console import Console
from rich.live import Live

from tunelab.cli.dashboard_view import Throughput, View, key_command, keys_in, render, summary_line
from tunelab.trainer.control import Control

__all__ = ["run_dashboard", "KeyReader"]

MAX_EVENTS = 50  # the screen shows the last few; the run folder keeps them all


class KeyReader:
    """Single key presses from a terminal ``stream`` (cbreak mode: no Enter, no echo; Ctrl-C
    still interrupts), handed to ``on_key`` from a daemon thread. The terminal settings come
    back on exit, also after an exception. Not a terminal: no keys, nothing changed."""

    def __init__(self, stream: Any, on_key: Callable[[str], None], poll_seconds: float = 0.1) -> None:
        self.stream, self.on_key, self.poll_seconds = stream, on_key, poll_seconds
        self.fd: Optional[int] = None
        self.saved: Any = None
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def __enter__(self) -> "KeyReader":
        try:
            import termios
            import tty

            fd = self.stream.fileno()
            if not os.isatty(fd):
                return self
            self.saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (ImportError, AttributeError, OSError, ValueError):  # no termios (Windows), no real stdin
            return self
        self.fd = fd
        self.thread = threading.Thread(target=self._loop, name="tunelab-keys", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2 * self.poll_seconds + 1)
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.saved = None

    def _loop(self) -> None:
        # select() with a timeout, so the thread sees ``stop`` instead of blocking in read()
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], self.poll_seconds)
            if not ready:
                continue
            data = os.read(self.fd, 64)
            if not data:  # end of input
                return
            for key in keys_in(data.decode(errors="ignore")):
                self.on_key(key)


class _Hooks:
    """The trainer's callbacks and the key handler, all writing into one View."""

    def __init__(self, view: View, control: Control, out: Path, batch_size: int) -> None:
        self.view, self.control, self.out, self.batch_size = view, control, Path(out), batch_size
        self.speed = Throughput()
        self.started = False

    def catch_up(self, epoch0: int) -> None:
        """A resumed run or a fork: the epochs, interventions and early-stopping switch of its
        folder so far (read at the first step, when a fresh run's folder has been emptied)."""
        from tunelab.report.figures import read_history

        before = [h for h in read_history(self.out) if h.get("epoch", math.inf) <= epoch0] if epoch0 else []
        earlier = []
        try:
            lines = (self.out / "events.jsonl").read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                earlier.append(json.loads(line))
            except ValueError:  # a line cut by a crash: skip it, as the trainer would
                continue
        v = self.view
        with v.lock:
            v.history[:0] = before
            earlier = [e for e in earlier if e not in v.events]  # commands of the first step came already
            v.events[:0] = earlier[-MAX_EVENTS:]
            switches = [e["command"] for e in earlier if str(e.get("command")).startswith("early-stopping=")]
            if switches:
                v.early_stopping = switches[-1].endswith("on")

    def on_batch(self, epoch0: int, step: int, steps: int) -> None:
        v = self.view
        if not self.started:
            self.started = True
            self.catch_up(epoch0)
        # every step counts a full batch: the last of an epoch may be smaller (at most one batch off)
        self.speed.add(time.monotonic(), self.batch_size)
        with v.lock:
            v.epoch, v.step, v.steps, v.samples_per_s = epoch0 + 1, step, steps, self.speed.rate()

    def on_epoch(self, event: Any) -> None:
        v = self.view
        with v.lock:
            v.history.append(dict(event.metrics))
            v.grad_norms = dict(event.grad_norms)
            if math.isfinite(event.next_lr):
                v.lr = event.next_lr

    def on_event(self, event: dict) -> None:
        v = self.view
        with v.lock:
            v.events.append(event)
            del v.events[:-MAX_EVENTS]
            if event.get("kind") != "control":
                return
            command, v.lr = event["command"], event.get("lr", v.lr)
            # a pause between epochs comes before the next epoch's first batch: show where it waits
            v.epoch, v.step, v.steps = event["epoch"], event["step"], event.get("steps", v.steps)
            v.note = "stopping: writing the run folder" if command == "stop" else ""
            if command in ("pause", "resume"):
                v.paused = command == "pause"
                self.speed.reset()  # the wait is no training speed
                v.samples_per_s = None
            elif command.startswith("early-stopping="):
                v.early_stopping = command.endswith("on")

    def on_key(self, key: str) -> None:
        command = key_command(key, self.view)
        if command is None:
            return
        self.control.send(command, source="dashboard")
        with self.view.lock:
            self.view.note = f"sent {command}" if command != "stop" else "stopping after this step"


def run_dashboard(cfg: Any, out: Path, runner: Callable[..., Any], console: Console) -> Any:
    """Run ``runner(on_epoch=, on_batch=, on_event=, control=)`` under the full-screen
    dashboard; print one summary line when the screen closes and return the RunResult."""
    from tunelab.cli.train import describe

    es = cfg.training.early_stopping
    view = View(title=describe(cfg), run_dir=str(out), epochs=cfg.training.epochs, lr=cfg.optimizer.lr,
                early_stopping=es.enabled, patience=es.patience,
                monitor=es.monitor, mode=es.mode, min_delta=es.min_delta)
    control = Control(out)  # the folder's inbox as well: `tunelab control` keeps working
    hooks = _Hooks(view, control, out, cfg.training.batch_size)

    def screen():
        width, height = console.size
        return render(view.snapshot(), width, height)

    with KeyReader(sys.stdin, hooks.on_key), \
            Live(console=console, screen=True, refresh_per_second=4, get_renderable=screen):
        result = runner(on_epoch=hooks.on_epoch, on_batch=hooks.on_batch, on_event=hooks.on_event,
                        control=control)
    console.print(summary_line(result), highlight=False, soft_wrap=True)
    return result
