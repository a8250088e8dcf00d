"""``tunelab report``: one self-contained HTML file for a compare or a tune study."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tunelab.errors import ConfigError
from tunelab.trainer.runfolder import check_writable


def report_command(
    compare: Optional[str] = typer.Option(None, "--compare", help="Name of a compare run (see `tunelab studies list`: compare:NAME)."),
    study: Optional[str] = typer.Option(None, "--study", help="Name of a tune study."),
    storage: Optional[str] = typer.Option(None, "--storage", help="SQLAlchemy URL (default sqlite:///tunelab.db)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (compare: a folder) to write."),
) -> None:
    """Build the HTML report (figures embedded, works offline) from storage alone."""
    from tunelab.report.assemble import study_sections
    from tunelab.report.html import build_report, write_report
    from tunelab.search.results import load_study
    from tunelab.search.tune import DEFAULT_STORAGE

    if (compare is None) == (study is None):
        raise ConfigError("give exactly one of --compare NAME or --study NAME")
    storage = storage or DEFAULT_STORAGE
    if out is not None:
        check_writable(out, "--out", kind="folder" if compare is not None else "file")
    console = Console()
    if compare is not None:
        from tunelab.cli.compare import finish_compare
        from tunelab.search.compare import compare_study_name, load_design

        st = load_study(compare_study_name(compare), storage)
        design = load_design(st)
        finish_compare(st, design, metric=design.get("metric", "test_accuracy"), target=design.get("target"),
                       test=design.get("test", "t"), out=out or Path("runs") / f"compare-{compare}",
                       command=design.get("command", ""), console=console)
        return
    st = load_study(study, storage)
    html = build_report(f"tune study {study}", study_sections(st))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study)  # compare:NAME has a colon
    path = write_report(out or Path("runs") / f"report-{safe}.html", html)
    console.print(f"report: {path}", highlight=False)
