"""The control channel: commands a running trainer reads between steps.

A command is a short text — ``lr=3e-4``, ``lr*=0.5``, ``pause``, ``resume``, ``stop``,
``checkpoint``, ``early-stopping=on|off``, ``fork`` — parsed once by ``parse_command``. A
``Control`` holds the commands sent in the same process (the dashboard's keys, a Python
caller) and, for a run with a folder, drains ``RUN_DIR/control/`` where ``tunelab control``
drops one small JSON file per command (no network port; the folder is scanned at most every
``poll_seconds``, so the check between steps costs a clock read). ``apply_command`` is the
pure part: the new RunState and the event to record. The lr the optimizer sees is
schedule x ``state.lr_mult``, so an intervention survives the schedule.

Example:
    >>> from tunelab.trainer.state import RunState
    >>> state, event = apply_command(RunState(), parse_command("lr*=0.5"), lr_now=0.1)
    >>> state.lr_mult, event["lr"]
    (0.5, 0.05)
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tunelab.errors import ConfigError

if TYPE_CHECKING:  # the state module imports torch; reading commands must not
    from tunelab.trainer.state import RunState

__all__ = ["Control", "parse_command", "apply_command", "send_to_folder", "COMMANDS", "INBOX"]

COMMANDS = ["lr=VALUE", "lr*=FACTOR", "pause", "resume", "stop", "checkpoint",
            "early-stopping=on|off", "fork"]
INBOX = "control"  # the run folder's inbox for commands from other processes
_PLAIN = {"pause", "resume", "stop", "checkpoint", "fork"}


def _number(text: str, raw: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"command {raw!r} needs a positive number; allowed: {COMMANDS}")
    return value


def parse_command(text: str) -> dict[str, Any]:
    """``'lr*=0.5'`` -> ``{'cmd': 'lr_scale', 'value': 0.5, 'text': 'lr*=0.5'}``; a bad
    command is one ConfigError listing the allowed forms.

    Example:
        >>> parse_command("early-stopping=off")["value"]
        False
    """
    raw = text
    text = text.strip().replace(" ", "").lower()
    if text in _PLAIN:
        return {"cmd": text, "text": text}
    if text.startswith("lr*="):
        return {"cmd": "lr_scale", "value": _number(text[4:], raw), "text": text}
    if text.startswith("lr="):
        return {"cmd": "lr", "value": _number(text[3:], raw), "text": text}
    for prefix in ("early-stopping=", "early_stopping=", "es="):
        if text.startswith(prefix) and text[len(prefix):] in ("on", "off", "true", "false"):
            on = text[len(prefix):] in ("on", "true")
            return {"cmd": "early_stopping", "value": on, "text": f"early-stopping={'on' if on else 'off'}"}
    raise ConfigError(f"command {raw!r} is not known; allowed: {COMMANDS}")


def apply_command(state: "RunState", command: dict[str, Any], lr_now: float) -> tuple["RunState", dict]:
    """The state after ``command`` and the event that records it (``lr_now``: the lr the
    optimizer uses now, schedule x multiplier). stop, checkpoint and fork change no state:
    the trainer acts on them."""
    cmd, value = command["cmd"], command.get("value")
    scheduled = lr_now / state.lr_mult  # the schedule's lr, without the user's multiplier (lr_mult > 0)
    if cmd == "lr" and scheduled > 0:  # a schedule at 0 (a user function) leaves nothing to scale
        state = dataclasses.replace(state, lr_mult=value / scheduled)
    elif cmd == "lr_scale":
        state = dataclasses.replace(state, lr_mult=state.lr_mult * value)
    elif cmd in ("pause", "resume"):
        state = dataclasses.replace(state, paused=cmd == "pause")
    elif cmd == "early_stopping":
        state = dataclasses.replace(state, early_stopping=bool(value))
    event = {"kind": "control", "command": command["text"], "epoch": state.epoch + 1, "step": state.step,
             "lr": scheduled * state.lr_mult, "source": command.get("source", "api"),
             "id": command.get("id"), "time": time.time()}
    return dataclasses.replace(state, events=(*state.events, event)), event


def send_to_folder(run_dir: str | Path, text: str, source: str = "control") -> str:
    """Drop ``text`` (validated first) into the run folder's inbox; returns the command id."""
    command = parse_command(text)
    inbox = Path(run_dir) / INBOX
    inbox.mkdir(exist_ok=True)
    ident = f"{time.time_ns()}-{os.getpid()}"
    tmp = inbox / f".{ident}.tmp"
    tmp.write_text(json.dumps({**command, "id": ident, "source": source}))
    os.replace(tmp, inbox / f"{ident}.json")  # the trainer never sees a half-written file
    return ident


class Control:
    """Commands for one running trainer: ``send`` (same process, thread-safe) and the run
    folder's inbox (other processes), read by ``poll`` between steps."""

    def __init__(self, run_dir: str | Path | None = None, poll_seconds: float = 0.2) -> None:
        self._queue: collections.deque = collections.deque()
        self.inbox = Path(run_dir) / INBOX if run_dir is not None else None
        self.poll_seconds, self._next_scan = poll_seconds, 0.0

    def send(self, text: str, source: str = "api") -> None:
        self._queue.append({**parse_command(text), "source": source})

    def poll(self, force: bool = False) -> list[dict[str, Any]]:
        """Commands waiting now (usually none: one deque check and one clock read)."""
        out = []
        while self._queue:
            out.append(self._queue.popleft())
        if self.inbox is not None and (force or time.monotonic() >= self._next_scan):
            self._next_scan = time.monotonic() + self.poll_seconds
            out.extend(self._drain_inbox())
        return out

    def _drain_inbox(self) -> list[dict[str, Any]]:
        try:
            names = sorted(p for p in os.listdir(self.inbox) if p.endswith(".json"))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            path = self.inbox / name
            try:
                raw = json.loads(path.read_text())
                command = {**parse_command(raw["text"]), "id": raw.get("id"), "source": raw.get("source", "control")}
            except (OSError, ValueError, KeyError, TypeError, ConfigError):
                command = None  # unreadable: dropped, never fatal to the run
            path.unlink(missing_ok=True)
            if command is not None:
                out.append(command)
        return out


def pending(run_dir: str | Path) -> Optional[int]:
    """How many commands wait in a run folder's inbox (None: no inbox)."""
    inbox = Path(run_dir) / INBOX
    return sum(1 for p in inbox.glob("*.json")) if inbox.is_dir() else None
