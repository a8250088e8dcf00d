"""``tunelab inspect CONFIG``: activations and gradients per hidden layer, at init and trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from tunelab.cli.common import jsonable, make_console
from tunelab.trainer.runfolder import check_writable, fresh_dir
from tunelab.fileio import save_figure, write_json

PHASES = {"init": "at initialization", "trained": "after training"}


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3g}"


def _model_words(m) -> str:
    """'mlp [100, 100] residual' or 'cnn [25, 25] k5 s2 head [64]': the shape of the network."""
    if m.name != "cnn":
        return f"{m.name} {list(m.hidden)}" + (" residual" if m.residual else "")
    words = f"cnn {list(m.channels)} k{m.kernel_size}"
    words += f" s{m.stride}" if m.stride != 1 else ""
    words += f" p{m.padding}" if m.padding is not None else ""
    return words + f" head {list(m.hidden)}"


def _table(phase: str, stats: list[dict], epochs: int) -> Table:
    title = PHASES[phase] + (f" ({epochs} epoch{'s' if epochs != 1 else ''})" if phase == "trained" else "")
    table = Table(title=title)
    for column in ("layer", "activation", "mean", "std", "saturated %", "dead %", "grad norm"):
        numeric = column not in ("layer", "activation")  # numbers never wrap: a split "-3.2e-05" misleads
        table.add_column(column, justify="right" if numeric else "left", no_wrap=numeric)
    for s in stats:
        table.add_row(f"{s['layer']} {s['name']}", s["activation"], _num(s["mean"]), _num(s["std"]),
                      _pct(s["saturated_fraction"]), _pct(s["dead_fraction"]), _num(s["grad_norm"]))
    return table


def _write(out: Path, report: dict) -> None:
    from matplotlib import pyplot as plt

    from tunelab.report.diagnostics_figs import plot_activation_histograms

    out.mkdir(parents=True, exist_ok=True)
    fig = plot_activation_histograms(report["init"], report["trained"])
    save_figure(fig, out / "activations.png", dpi=100)
    plt.close(fig)
    write_json(out / "diagnostics.json", jsonable(report))


def inspect_command(
    config: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="YAML config (sections data, model, optimizer, "
                                            "schedule, training, augment); omitted: all defaults."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a key: --set model.activation=sigmoid "
                                   "(repeatable; values are YAML)."),
    epochs: int = typer.Option(1, "--epochs", min=1, metavar="N", help="Epochs of training before the second measurement "
                               "(replaces training.epochs)."),
    batch: int = typer.Option(512, "--batch", min=1, metavar="N", help="Training examples in the measured batch (drawn with "
                              "training.seed)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Output folder (default: runs/inspect-<time>)."),
) -> None:
    """Look inside the network: activations and gradients per hidden layer, at init and trained.

    Per hidden layer it measures, on one batch in train mode, the activation mean, std and
    histogram; the share of saturated units (sigmoid output outside [0.02, 0.98], tanh
    |output| > 0.98); the share of dead units (rectifiers whose output is <= 0 on every
    example); and the gradient norm of the layer's weight. It warns about saturation,
    dead units, vanishing or exploding gradients and unbroken symmetry, with a suggestion.
    Writes activations.png and diagnostics.json to the output folder.
    """
    from tunelab.analysis.diagnostics import diagnose  # torch: only when the command runs
    from tunelab.api import as_config

    cfg = as_config(config, list(set_))  # config errors are raised here, before any work
    if out is not None:
        check_writable(out, "--out")  # before the work, not after it
    console = make_console()
    m = cfg.model
    console.print(f"[bold]{cfg.data.name}[/] · {_model_words(m)} · {m.activation} · init {m.init}"
                  + (f" (std {m.init_std:g})" if m.init == "normal" else "") + f" · norm {m.norm} · "
                  f"{cfg.optimizer.name} lr={cfg.optimizer.lr:g} · seed {cfg.training.seed}")
    report = diagnose(cfg, epochs=epochs, batch=batch)
    for phase in PHASES:
        console.print(_table(phase, report[phase], epochs))
    if report["warnings"]:
        console.print("[bold yellow]warnings[/]")
        for line in report["warnings"]:
            console.print(f"  - {line}", highlight=False, soft_wrap=True)
    else:
        console.print("no problems found: no saturation, dead units, vanishing or exploding gradients")
    folder = out if out is not None else fresh_dir("runs", "inspect-{stamp}")
    _write(folder, report)
    console.print(f"wrote {folder / 'activations.png'} and {folder / 'diagnostics.json'}", highlight=False,
                  soft_wrap=True)
