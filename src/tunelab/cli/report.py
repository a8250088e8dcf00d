"""``tunelab report``: one self-contained HTML file for a compare, a tune study or a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunelab.cli.common import make_console
from tunelab.errors import ConfigError
from tunelab.trainer.runfolder import check_writable


def report_command(
    compare: Optional[str] = typer.Option(None, "--compare", metavar="NAME", help="Name of a compare run (see `tunelab studies list`: compare:NAME)."),
    study: Optional[str] = typer.Option(None, "--study", metavar="NAME", help="Name of a tune study."),
    run: Optional[Path] = typer.Option(None, "--run", metavar="RUN_DIR", help="A run folder (tunelab train --out RUN_DIR): its curves, "
                                       "interventions, lineage, result, config and diagnostics."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help="SQLAlchemy URL (default sqlite:///tunelab.db)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE|DIR", help="HTML file (compare: a folder) to write; "
                                       "default: --study runs/<study>/report.html, --compare "
                                       "runs/compare-<name>/, --run RUN_DIR/report.html."),
    no_diagnostics: bool = typer.Option(False, "--no-diagnostics", help="--run: skip the layer statistics of "
                                        "the saved weights (they load the run's data)."),
) -> None:
    """Build the HTML report (figures embedded, works offline) from storage or a run folder."""
    from tunelab.report.assemble import staged_sections, study_sections
    from tunelab.report.html import build_report, write_report
    from tunelab.search.results import load_stages, load_study
    from tunelab.search.tune import DEFAULT_STORAGE, study_dir

    if sum(x is not None for x in (compare, study, run)) != 1:
        raise ConfigError("give exactly one of --compare NAME, --study NAME or --run RUN_DIR")
    storage = storage or DEFAULT_STORAGE
    if out is not None:
        check_writable(out, "--out", kind="folder" if compare is not None else "file")
    console = make_console()
    if run is not None:
        from tunelab.report.run_sections import write_run_report

        path = write_run_report(run, out, diagnostics=not no_diagnostics)
        console.print(f"report: {path}", highlight=False, soft_wrap=True)
        return
    if compare is not None:
        from tunelab.cli.compare import finish_compare
        from tunelab.search.compare import compare_study_name, load_design

        st = load_study(compare_study_name(compare), storage)
        design = load_design(st)
        finish_compare(st, design, metric=design.get("metric", "test_accuracy"), target=design.get("target"),
                       test=design.get("test", "t"), out=out or Path("runs") / f"compare-{compare}",
                       command=design.get("command", ""), console=console)
        return
    stages = load_stages(study, storage)  # a --stages tune: NAME.stage1, NAME.stage2, ...
    if stages:
        html = build_report(f"tune study {study} ({len(stages)} stages)", staged_sections(study, stages))
    else:
        html = build_report(f"tune study {study}", study_sections(load_study(study, storage)))
    # beside the study's best.yaml (runs/<study>/); study_dir makes the name safe for a path
    path = write_report(out or study_dir(study) / "report.html", html)
    console.print(f"report: {path}", highlight=False, soft_wrap=True)
