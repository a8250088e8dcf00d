"""``tunelab control RUN_DIR COMMAND``: steer a run started elsewhere, through its folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from tunelab.errors import ConfigError
from tunelab.trainer.control import COMMANDS, parse_command, send_to_folder
from tunelab.trainer.live import read_status


def _applied(run_dir: Path, ident: str) -> dict | None:
    try:
        lines = (run_dir / "events.jsonl").read_text().splitlines()
    except OSError:
        return None
    return next((e for e in map(json.loads, lines) if e.get("id") == ident), None)


def control_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="The folder of a running (or paused) run."),
    commands: list[str] = typer.Argument(..., metavar="COMMAND", help=f"One or more of: {', '.join(COMMANDS)}."),
    wait: float = typer.Option(10.0, "--wait", metavar="SECONDS", help="Seconds to wait for the run to apply each command (0: don't wait)."),
) -> None:
    """Send commands to a running run: lr=3e-4, lr*=0.5, pause, resume, stop, checkpoint,
    early-stopping=on|off, fork. Each is applied between two steps and recorded in events.jsonl."""
    for text in commands:
        parse_command(text)  # every command checked before any is sent
    status = read_status(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"run folder {str(run_dir)!r} has no config.yaml; is it a tunelab run folder?")
    if status.get("status") not in ("running", "paused"):
        raise ConfigError(f"run {str(run_dir)!r} is not running (status: {status.get('status', 'unknown')}); "
                          f"continue it with tunelab resume {run_dir}")
    for text in commands:
        ident = send_to_folder(run_dir, text)
        deadline = time.monotonic() + wait
        event = None
        while wait > 0 and event is None and time.monotonic() < deadline:
            time.sleep(0.05)
            event = _applied(run_dir, ident)
        if event is None:
            typer.echo(f"{text}: sent; the run has not applied it yet" if wait > 0 else f"{text}: sent")
        else:
            typer.echo(f"{text}: applied at epoch {event['epoch']} step {event['step']} (lr {event['lr']:.4g})"
                       + (f"; {event['checkpoint']}" if event.get("checkpoint") else "")
                       + (f"; fork {event['fork']}" if event.get("fork") else ""))
