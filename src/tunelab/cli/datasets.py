"""``tunelab datasets list|info|download``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List, describe and download datasets.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_command() -> None:
    """The dataset names that data.name accepts, and where each comes from."""
    from tunelab.data import dataset_names, describe

    table = Table("name", "source", "classes", "shape")
    for name in dataset_names():
        info = describe(name)
        table.add_row(name, str(info.get("source", "")), str(info.get("classes", "")),
                      str(info.get("shape", "")))
    console.print(table)


@app.command("info")
def info_command(name: str = typer.Argument(..., help="Dataset name (see `tunelab datasets list`)."),
                 dir: Optional[str] = typer.Option(None, "--dir", help="Data directory (default: $TUNELAB_DATA or ~/.cache/tunelab).")) -> None:
    """Sizes, shape, classes, licence and whether the files are present and intact."""
    from tunelab.data import data_dir, describe, verify
    from tunelab.data.download import FILES

    for key, value in describe(name).items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)
    if name in FILES:
        where = data_dir(dir) / name
        for fname, status in verify(name, data_dir(dir)).items():
            console.print(f"  {where / fname}: {status}", highlight=False)


@app.command("download")
def download_command(name: str = typer.Argument(..., help="mnist or fashion-mnist."),
                     dir: Optional[str] = typer.Option(None, "--dir", help="Data directory (default: $TUNELAB_DATA or ~/.cache/tunelab)."),
                     mirror: list[str] = typer.Option([], "--mirror", help="Base URL to try first (repeatable).")) -> None:
    """Fetch the four IDX files from the canonical mirrors and verify their sha256."""
    from tunelab.data import data_dir, download

    paths = download(name, data_dir(dir), mirrors=list(mirror) or None,
                     progress=lambda msg: console.print(msg, highlight=False))
    for p in paths:
        console.print(f"ok {p}", highlight=False)
