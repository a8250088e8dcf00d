"""``tunelab datasets list|info|download``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from tunelab.cli.common import make_console

app = typer.Typer(help="List, describe and download datasets.", no_args_is_help=True)
console = make_console()


@app.command("list")
def list_command() -> None:
    """The dataset names that data.name accepts, and where each comes from."""
    from tunelab.data import dataset_names, describe

    table = Table("name", "classes", "input shape", "train/test", "source")
    for name in dataset_names():
        info = describe(name)
        sizes = info.get("sizes") or {}
        split = "/".join("carved" if v is None else str(v) for v in sizes.values()) or "yours"
        table.add_row(name, str(info.get("num_classes") or "yours"),
                      str(info.get("input_shape") or "yours"), split, str(info.get("source", "")))
    console.print(table)


@app.command("info")
def info_command(name: str = typer.Argument(..., metavar="NAME", help="Dataset name (see `tunelab datasets list`)."),
                 dir: Optional[str] = typer.Option(None, "--dir", metavar="DIR", help="Data directory (default: $TUNELAB_DATA or ~/.cache/tunelab).")) -> None:
    """Sizes, shape, classes, licence and whether the files are present and intact."""
    from tunelab.data import describe

    for key, value in describe(name, dir).items():
        if isinstance(value, dict) and key == "files":
            for fname, status in value.items():
                console.print(f"  {fname}: {status}", highlight=False)
        else:
            console.print(f"[bold]{key}[/]: {value}", highlight=False)


@app.command("download")
def download_command(name: str = typer.Argument(..., metavar="NAME", help="mnist or fashion-mnist."),
                     dir: Optional[str] = typer.Option(None, "--dir", metavar="DIR", help="Data directory (default: $TUNELAB_DATA or ~/.cache/tunelab)."),
                     mirror: list[str] = typer.Option([], "--mirror", metavar="URL", help="Base URL to fetch from instead of the built-in mirrors (repeatable).")) -> None:
    """Fetch the four IDX files from the canonical mirrors and verify their sha256."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from tunelab.data import data_dir, download

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(fname: str, done: int, total: int | None) -> None:
            if fname not in tasks:
                tasks[fname] = bar.add_task(fname, total=total)
            bar.update(tasks[fname], completed=done, total=total)

        paths = download(name, data_dir(dir), mirrors=list(mirror) or None, progress=progress)
    for p in paths:
        console.print(f"ok (sha256 verified) {p}", highlight=False)
