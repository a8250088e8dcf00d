"""``tunelab train CONFIG``: one model, live progress, an epoch table and a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tunelab.cli.common import make_console, say_interrupted
from tunelab.config import load_config
from tunelab.errors import ConfigError

# torch-heavy modules (tunelab.api, tunelab.trainer) are imported inside the command, so that
# `tunelab train --help` and the modules that borrow run_live/finish load in a blink

EXIT = {"completed": 0, "early_stopped": 0, "stopped": 0, "diverged": 1, "interrupted": 130}


HEADER = "epoch  loss train/val   acc train/val         lr  seconds"


def _row(m: dict) -> str:
    """One epoch; "train" is measured in evaluation mode where it was (else the running average)."""
    loss = m.get("train_eval_loss", m["train_loss"])
    acc = m.get("train_eval_accuracy", m["train_accuracy"])
    if acc != acc:  # not measured (training.train_eval_size: 0)
        loss, acc = m["train_loss"], m["train_accuracy"]
    return (f"{m['epoch']:>5}  {loss:.4f}/{m['val_loss']:.4f}  "
            f"{acc:.4f}/{m['val_accuracy']:.4f}  {m['lr']:>9.3g}  {m['seconds']:>7.2f}")


def _summary(result) -> Table:
    table = Table(title="result", show_header=False)
    for key, value in result.summary().items():
        if isinstance(value, dict):  # versions
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        if value is not None and value != "":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("run folder", str(result.run_dir))
    return table


def train_command(
    config: Optional[Path] = typer.Argument(None, metavar="CONFIG", show_default=False,
                                            help="YAML config (sections data, model, optimizer, "
                                            "schedule, training, augment); omitted: all defaults."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", show_default=False,
                                   help="Override a key: --set optimizer.lr=3e-4 (repeatable; values are YAML)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                       help="Run folder (default: runs/<time>-<data>-<model>)."),
    device: Optional[str] = typer.Option(None, "--device", metavar="cpu|cuda|auto",
                                         help="Where to train (overrides training.device)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the run folder (errors still go to stderr)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Full-screen live dashboard with keys to steer "
                               "the run (+/- lr, p pause, s checkpoint, e early stopping, f fork, q stop); "
                               "plain progress lines when output is not a terminal."),
) -> None:
    """Train one model and write config.yaml, history.csv, result.json, curves.png, model.pt."""
    from tunelab.api import train
    from tunelab.trainer.runfolder import check_writable, default_run_dir

    check_misplaced_overrides(config, set_)
    overrides = list(set_) + ([f"training.device={device}"] if device is not None else [])
    cfg = load_config(config, overrides)  # every config error is raised here, before any work
    if out is not None:
        check_writable(out, "--out")
    console = make_console(stderr=False, quiet=quiet)
    if out is not None and (out / "result.json").exists():
        console.print(f"note: {out} holds an earlier run; its files will be replaced", style="yellow",
                      highlight=False, soft_wrap=True)
    out = out if out is not None else default_run_dir("runs", cfg.data.name, cfg.model.name)
    try:
        result = run_live(cfg, out, lambda **hooks: train(cfg, out=out, **hooks), console, watch=watch)
    except KeyboardInterrupt as e:  # before training began (the trainer turns a later one into a status)
        say_interrupted(e)
        raise typer.Exit(130)
    finish(result, console, folder_line=True)


def check_misplaced_overrides(config: Optional[Path], set_: list[str]) -> None:
    """Name the two habits that land an override in the CONFIG argument: ``--set key value``
    (the value becomes CONFIG) and Hydra's ``key=value`` without ``--set``.

    Only a CONFIG that is not an existing file is suspect, so a config file whose name holds
    ``=`` still works.

    Example:
        >>> check_misplaced_overrides(Path("optimizer.lr=0.01"), [])
        Traceback (most recent call last):
        ...
        tunelab.errors.ConfigError: config file 'optimizer.lr=0.01' does not exist; to override a key use --set optimizer.lr=0.01
    """
    if config is None or config.exists():
        return
    text = str(config)
    bare = next((s for s in set_ if "=" not in s), None)
    if bare is not None and "=" not in text:
        raise ConfigError(f"--set {bare!r} must look like key.path=value; did you mean --set {bare}={text}?")
    if "=" in text:
        raise ConfigError(f"config file {text!r} does not exist; to override a key use --set {text}")


def describe(cfg) -> str:
    o = cfg.optimizer
    return (f"[bold]{cfg.data.name}[/] · {cfg.model.name} {cfg.model.hidden if cfg.model.name == 'mlp' else cfg.model.channels} "
            f"· {o.name} lr={o.lr:g} · schedule {cfg.schedule.name} · {cfg.training.epochs} epochs")


def run_live(cfg, out: Path, runner: Callable[..., Any], console: Console, watch: bool = False,
             first_epoch: int = 0):
    """Run ``runner(on_epoch=..., on_batch=..., on_event=..., control=...)`` with the live
    dashboard (``watch`` on a terminal) or the progress bar and epoch table."""
    if watch and console.is_terminal and not console.quiet:
        from tunelab.cli.dashboard import run_dashboard

        return run_dashboard(cfg, out, runner, console)
    console.print(describe(cfg), highlight=False)
    console.print(f"run folder: {out}  (steer it: tunelab control {out} lr*=0.5 | pause | stop)",
                  style="dim", highlight=False, soft_wrap=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, disable=console.quiet) as progress:
        epochs = progress.add_task("epochs", total=cfg.training.epochs, completed=first_epoch)
        batches = progress.add_task("batches", total=None)
        header = [HEADER]  # printed once training starts, so a data error is not preceded by it

        def on_batch(epoch: int, step: int, steps: int) -> None:
            if header:
                progress.console.print(header.pop(), style="dim", highlight=False)
            progress.update(batches, completed=step, total=steps)

        def on_epoch(event) -> None:
            progress.console.print(_row(event.metrics), highlight=False)
            progress.advance(epochs)

        def on_event(event: dict) -> None:
            if event.get("kind") == "control":
                progress.console.print(f"  {event['command']} at epoch {event['epoch']} step {event['step']}"
                                       f" (lr now {event['lr']:.3g}, from {event.get('source')})",
                                       style="yellow", highlight=False)

        return runner(on_epoch=on_epoch, on_batch=on_batch, on_event=on_event)


def finish(result, console: Console, folder_line: bool = False) -> None:
    """The summary table, the diverged line, and the exit code of a run's status. A quiet
    console prints only ``run folder: PATH``, and only with ``folder_line`` (train: the folder
    may be a generated name that a script needs; resume was given its folder)."""
    if not console.quiet:
        console.print(_summary(result))
    elif folder_line:
        typer.echo(f"run folder: {result.run_dir}")
    if result.status == "diverged":
        typer.echo(f"error: run diverged: {result.message}", err=True)
    raise typer.Exit(EXIT[result.status])
