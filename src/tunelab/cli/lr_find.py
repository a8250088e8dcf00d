"""``tunelab lr-find [CONFIG]``: the learning-rate range test, its figure and a train command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Optional

import typer

from tunelab.cli.common import jsonable, make_console
from tunelab.trainer.runfolder import check_writable, fresh_dir
from tunelab.config import to_dict
from tunelab.fileio import save_figure, write_json


def train_command_line(config: Optional[Path], sets: list[str], lr: float) -> str:
    """The shell command that trains ``config`` with ``sets`` and the suggested lr.

    Example:
        >>> train_command_line(Path("a b.yaml"), ["model.hidden=[32]"], 0.0031622)
        "tunelab train 'a b.yaml' --set 'model.hidden=[32]' --set optimizer.lr=0.00316"
    """
    kept = [s for s in sets if s.split("=", 1)[0].strip() != "optimizer.lr"]
    parts = ["tunelab", "train", *([str(config)] if config is not None else [])]
    for s in [*kept, f"optimizer.lr={lr:.3g}"]:
        parts += ["--set", s]
    return " ".join(shlex.quote(p) for p in parts)



def _write(folder: Path, result: dict, payload: dict) -> None:
    from matplotlib import pyplot as plt

    from tunelab.report.lr_find_figs import plot_lr_find

    folder.mkdir(parents=True, exist_ok=True)
    fig = plot_lr_find(result, title=payload["title"])
    save_figure(fig, folder / "lr_find.png", dpi=100)
    plt.close(fig)
    write_json(folder / "lr_find.json", jsonable(payload))


def _print_suggestion(console, result: dict, command: Optional[str]) -> None:
    if result["suggestion"] is None:
        console.print("no suggestion: too few points before the loss diverged; lower --lr-min or raise --steps")
    else:
        console.print(f"suggested lr (steepest descent): [bold]{result['suggestion']:.3g}[/]", highlight=False)
    if result["min_loss_lr"] is not None:
        console.print(f"min-loss lr / 10: {result['min_loss_lr'] / 10:.3g}", highlight=False)
    if command is not None:
        console.print(f"train with it:\n  {command}", highlight=False, soft_wrap=True)


def lr_find_command(
    config: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="YAML config (sections data, model, optimizer, "
                                            "schedule, training, augment); omitted: all defaults."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a key: --set optimizer.name=sgd "
                                   "(repeatable; values are YAML)."),
    steps: int = typer.Option(200, "--steps", metavar="N", help="Batches in the sweep, one optimizer step each."),
    lr_min: float = typer.Option(1e-7, "--lr-min", metavar="LR", help="First learning rate of the sweep."),
    lr_max: float = typer.Option(10.0, "--lr-max", metavar="LR", help="Last learning rate of the sweep."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Output folder (default: runs/lr-find-<time>)."),
) -> None:
    """Learning-rate range test: raise the lr exponentially, one step per batch, watch the loss.

    Starts from the config's initial weights (its seed) and optimizer; stops early when the
    smoothed loss exceeds 4x its minimum. Suggests the lr where the smoothed loss falls
    fastest, and also prints min-loss lr / 10. Writes lr_find.png and lr_find.json, and
    prints the command that trains with the suggestion.
    """
    from tunelab.analysis.lr_find import lr_find
    from tunelab.api import as_config

    cfg = as_config(config, list(set_))  # config errors are raised here, before any work
    if out is not None:
        check_writable(out, "--out")  # before the work, not after it
    console = make_console()
    result = lr_find(cfg, steps=steps, lr_min=lr_min, lr_max=lr_max)  # bad options raise first
    console.print(f"[bold]{cfg.data.name}[/] · {cfg.model.name} · {cfg.optimizer.name} · batch "
                  f"{cfg.training.batch_size} · lr {lr_min:g} to {lr_max:g} in {steps} steps", highlight=False)
    console.print(f"sweep: {result['steps_run']} steps; stopped: {result['stopped']}", highlight=False)
    command = train_command_line(config, list(set_), result["suggestion"]) if result["suggestion"] else None
    _print_suggestion(console, result, command)
    folder = out if out is not None else fresh_dir("runs", "lr-find-{stamp}")
    title = f"{cfg.data.name} / {cfg.model.name} / {cfg.optimizer.name}: learning-rate range test"
    _write(folder, result, dict(result, title=title, config_file=str(config) if config else None,
                                overrides=list(set_), train_command=command, config=to_dict(cfg)))
    console.print(f"wrote {folder / 'lr_find.png'} and {folder / 'lr_find.json'}", highlight=False, soft_wrap=True)
