"""The pure parts of the live dashboard: what it shows (``View``), how a key becomes a control
command, and how a View becomes one screen (``render``); ``tunelab.cli.dashboard`` owns the
terminal, the threads and the trainer's hooks.

Example:
    >>> view = View(title="digits · mlp", epochs=10, lr=1e-3)
    >>> key_command("+", view), key_command("p", view), key_command("x", view)
    ('lr*=2', 'pause', None)
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from rich.console import RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.text import Text

from tunelab.analysis.curves import warnings_for

__all__ = ["View", "Throughput", "key_command", "keys_in", "layer_norms", "event_line", "render", "summary_line",
           "KEYS"]

KEYS = "+/- lr x2 / x0.5   p pause/resume   s checkpoint   e early stopping on/off   f fork   q stop"
_PLAIN_KEYS = {"+": "lr*=2", "=": "lr*=2", "-": "lr*=0.5", "s": "checkpoint", "f": "fork", "q": "stop"}
_PLOT_LOCK = threading.Lock()  # plotext draws on one global figure; the refresh thread and tests share it


@dataclass
class View:
    """Everything one screen shows; the trainer's hooks and the key thread update it."""

    title: str = ""
    run_dir: str = ""
    epochs: int = 0
    lr: float = math.nan
    epoch: int = 0  # the epoch in progress, 1-based (0: not started)
    step: int = 0
    steps: int = 0
    samples_per_s: Optional[float] = None
    paused: bool = False
    early_stopping: bool = False
    patience: int = 5
    monitor: str = "val_loss"
    mode: str = "auto"
    min_delta: float = 0.0
    note: str = ""  # the last key's effect, until the trainer answers
    history: list = field(default_factory=list)
    grad_norms: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> "View":
        """A copy to render while the hooks go on changing this one."""
        with self.lock:
            return dataclasses.replace(self, history=list(self.history), grad_norms=dict(self.grad_norms),
                                       events=list(self.events), lock=threading.Lock())


class Throughput:
    """Samples per second over the last ``window`` seconds of steps (times come in, so the
    clock stays outside).

    Example:
        >>> t = Throughput()
        >>> for i in range(5):
        ...     t.add(i * 0.5, 64)
        >>> t.rate()
        128.0
    """

    def __init__(self, window: float = 3.0) -> None:
        self.window, self.marks = window, collections.deque()  # (time, samples so far)
        self.total = 0

    def add(self, now: float, samples: int) -> None:
        self.total += samples
        self.marks.append((now, self.total))
        while len(self.marks) > 2 and now - self.marks[1][0] >= self.window:
            self.marks.popleft()

    def reset(self) -> None:
        """Forget the window (after a pause, whose wait is no training speed)."""
        self.marks.clear()

    def rate(self) -> Optional[float]:
        if len(self.marks) < 2 or self.marks[-1][0] <= self.marks[0][0]:
            return None
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def key_command(key: str, view: View) -> Optional[str]:
    """The control command of a key press (None: not a key of the dashboard). Toggles read
    the state the trainer last reported.

    Example:
        >>> key_command("e", View(early_stopping=True)), key_command("p", View(paused=True))
        ('early-stopping=off', 'resume')
    """
    if key == "p":
        return "resume" if view.paused else "pause"
    if key == "e":
        return f"early-stopping={'off' if view.early_stopping else 'on'}"
    return _PLAIN_KEYS.get(key)


def keys_in(data: str) -> list[str]:
    """The single keys in a chunk read from the terminal, without escape sequences (arrows,
    function keys, Alt+key), whose letters are no commands.

    Example:
        >>> keys_in("+\x1b[A\x1bOPp\x1b[15~q")
        ['+', 'p', 'q']
    """
    keys, i = [], 0
    while i < len(data):
        if data[i] != "\x1b":
            keys.append(data[i])
            i += 1
        elif data[i + 1:i + 2] == "[":  # CSI: parameters and intermediates, then one final byte
            i += 2
            while i < len(data) and not "\x40" <= data[i] <= "\x7e":
                i += 1
            i += 1
        else:  # SS3 (ESC O x) or Alt+key (ESC x): two more characters or one
            i += 3 if data[i + 1:i + 2] == "O" else 2
    return keys


def layer_norms(grad_norms: dict[str, float]) -> list[tuple[str, float]]:
    """Per-parameter gradient norms joined per layer (weight and bias: the root of the sum of
    squares), in model order.

    Example:
        >>> layer_norms({"net.0.weight": 3.0, "net.0.bias": 4.0, "net.2.weight": 1.0})
        [('net.0', 5.0), ('net.2', 1.0)]
    """
    squares: dict[str, float] = {}
    for name, norm in grad_norms.items():
        layer = name.rsplit(".", 1)[0] if "." in name else name
        squares[layer] = squares.get(layer, 0.0) + norm * norm
    return [(layer, math.sqrt(s)) for layer, s in squares.items()]


def event_line(event: dict) -> str:
    """One intervention as a line of the screen.

    Example:
        >>> event_line({"kind": "control", "command": "lr*=2", "epoch": 3, "step": 5, "lr": 0.002,
        ...             "source": "dashboard"})
        'epoch 3 step 5: lr*=2 (lr 0.002, from dashboard)'
    """
    if event.get("kind") != "control":
        return f"epoch {event.get('epoch')}: {event.get('kind')}"
    where = event.get("fork") or event.get("checkpoint")
    return (f"epoch {event['epoch']} step {event['step']}: {event['command']} (lr {event['lr']:.3g}, "
            f"from {event.get('source')})" + (f" -> {where}" if where else ""))


def _plot(history: Sequence[dict], keys: Sequence[tuple[str, str]], width: int, height: int) -> Text:
    """One plotext curve per (metric, color) of ``keys`` over the epochs, as rich Text."""
    import plotext as plt

    every = max(1, len(history) // (2 * max(width, 1)))  # a long run: about two points a column is all a plot shows
    rows = [r for i, r in enumerate(history) if i % every == 0 or i == len(history) - 1]
    points = [[(r["epoch"], r[key]) for r in rows if math.isfinite(r.get(key, math.nan))] for key, _ in keys]
    if not any(points):
        return Text("waiting for the first epoch", style="dim")
    if width < 20 or height < 5:
        return Text("too small for plots", style="dim")
    with _PLOT_LOCK:
        plt.terminal.limit(False, False)  # the size is the panel's, not plotext's guess of the terminal
        fig = plt.figure
        fig.clear()
        fig.plot_size(width, height)
        fig.theme("dark")
        fig.canvas("default")  # the terminal's own background, as the rest of the screen
        for (_, color), pts in zip(keys, points):
            if pts:
                marker = plt.marker("hd", plt.pixel(color))
                signal = fig.signal([p[0] for p in pts], [p[1] for p in pts], marker=marker)
                signal.lines()
                fig.draw(signal)
        first, last = min(p[0] for pts in points for p in pts), max(p[0] for pts in points for p in pts)
        ticks = sorted({round(first + i * (last - first) / 4) for i in range(5)})  # whole epochs, not 1.33
        fig.ruler("x").ticks(ticks, [str(t) for t in ticks])
        return Text.from_ansi(fig.build().string(), no_wrap=True, overflow="crop")


def _header(v: View) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")  # two lines, whatever the width: PAUSED must stay in sight
    text.append_text(Text.from_markup(v.title))
    text.append(f"  run folder {v.run_dir}\n" if v.run_dir else "\n", style="dim")
    text.append(" PAUSED " if v.paused else "running", style="bold black on yellow" if v.paused else "green")
    text.append(f"  epoch {v.epoch}/{v.epochs}  step {v.step}/{v.steps}  lr {v.lr:.3g}  ")
    text.append(f"{v.samples_per_s:,.0f} samples/s  " if v.samples_per_s else "- samples/s  ")
    text.append(f"early stopping {'on' if v.early_stopping else 'off'}")
    if v.note:
        text.append(f"  {v.note}", style="cyan")
    return text


def _norms(v: View, lines: int, width: int) -> Text:
    norms = layer_norms(v.grad_norms)
    if not norms:
        return Text("after the first epoch", style="dim")
    top = max((n for _, n in norms if math.isfinite(n)), default=0.0) or 1.0
    cells = max(4, width - 34)  # what is left of the panel after the name and the number
    text = Text(no_wrap=True, overflow="crop")
    for layer, norm in norms[:lines]:
        bar = "█" * max(1, round(cells * norm / top)) if math.isfinite(norm) else "?"
        text.append(f"{layer[:18]:<18} {norm:>9.3g} ", style="default")
        text.append(bar + "\n", style="magenta")
    if len(norms) > lines:
        text.append(f"... {len(norms) - lines} more layers", style="dim")
    return text


def _notes(v: View, lines: int) -> Text:
    warnings = warnings_for(v.history, v.patience, v.monitor, v.mode, v.min_delta)
    text = Text()
    for w in warnings:
        text.append("! " + w + "\n", style="bold yellow")
    for event in v.events[-max(1, lines - len(warnings)):]:
        text.append(event_line(event) + "\n", style="cyan")
    return text if warnings or v.events else Text("no warnings, no interventions yet", style="dim")


def render(view: View, width: int, height: int) -> RenderableType:
    """One full screen of ``view`` for a terminal of ``width`` x ``height`` cells."""
    bottom = 9
    plot_h = height - 2 - bottom - 1 - 2  # what the plot panels hold inside their borders
    half = width // 2 - 4  # borders and padding; the left half, as rich may give the right one the odd cell
    measured = any(isinstance(h.get("train_eval_loss"), float) and not math.isnan(h["train_eval_loss"])
                   for h in view.history)
    train = "train_eval" if measured else "train"  # the training set in evaluation mode where measured
    loss = _plot(view.history, [(f"{train}_loss", "red"), ("val_loss", "green")], half, plot_h)
    acc = _plot(view.history, [(f"{train}_accuracy", "red"), ("val_accuracy", "green")], half, plot_h)
    layout = Layout()
    layout.split_column(Layout(name="head", size=2), Layout(name="plots"), Layout(name="low", size=bottom),
                        Layout(name="keys", size=1))
    layout["head"].update(_header(view))
    legend = "[red]train[/] / [green]validation[/]"
    layout["plots"].split_row(Layout(Panel(loss, title=f"loss: {legend}")),
                              Layout(Panel(acc, title=f"accuracy: {legend}")))
    layout["low"].split_row(Layout(Panel(_norms(view, bottom - 3, half), title="gradient norm per layer (last step)")),
                            Layout(Panel(_notes(view, bottom - 2), title="warnings and interventions")))
    layout["keys"].update(Text(KEYS, style="dim", no_wrap=True, overflow="crop"))
    return layout


def summary_line(result) -> str:
    """The line printed once the screen closes.

    Example:
        >>> from types import SimpleNamespace as R
        >>> summary_line(R(status="stopped", epochs_run=7, best_val_accuracy=0.9512, run_dir="runs/x"))
        'stopped after 7 epochs; best validation accuracy 0.9512; run folder runs/x'
    """
    best = result.best_val_accuracy
    best_text = f"{best:.4f}" if isinstance(best, float) and math.isfinite(best) else "-"
    return (f"{result.status} after {result.epochs_run} epochs; best validation accuracy {best_text}; "
            f"run folder {result.run_dir}")
