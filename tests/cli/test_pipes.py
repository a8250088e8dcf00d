"""Output that is not a terminal (a pipe, a log file): tables keep rows on one line and numbers
whole, and long work (ensemble members) prints one line per item as it finishes."""

import io
import json
import os
import re
import subprocess
import sys

import yaml
from rich.console import Console
from rich.table import Table

from tunelab.cli.common import PIPE_WIDTH, item_progress, make_console

NUMBER = "0.003141"


def _wide_table() -> Table:
    table = Table(title="numbers")
    for i in range(12):
        table.add_column(f"column_{i}", justify="right")
    table.add_row(*[NUMBER] * 12)
    return table


def _print(console, table) -> str:
    console.print(table)
    return console.file.getvalue()


def test_a_wide_table_keeps_its_numbers_whole_in_a_pipe(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = _print(make_console(file=io.StringIO()), _wide_table())
    assert [line.count(NUMBER) for line in piped.splitlines() if NUMBER in line] == [12]
    # rich's own console in a pipe is 80 columns wide and splits them: what the helper prevents
    plain = _print(Console(file=io.StringIO()), _wide_table())
    assert NUMBER not in plain


def test_make_console_takes_a_wider_columns_and_keeps_a_given_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(PIPE_WIDTH + 50))
    assert make_console(file=io.StringIO()).width == PIPE_WIDTH + 50
    assert make_console(file=io.StringIO(), width=60).width == 60
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal's setting does not narrow a log file
    assert make_console(file=io.StringIO()).width == PIPE_WIDTH


def test_item_progress_prints_a_line_per_item_and_a_bar_only_on_a_terminal():
    piped = make_console(file=io.StringIO())
    with item_progress(piped, 2, "arm") as done:
        done("adam: 0 warnings")
        done("sgd: 1 warning")
    lines = piped.file.getvalue().splitlines()
    assert [re.sub(r"\(\d+\.\d s\)$", "(T)", line) for line in lines] == [
        "arm 1/2 adam: 0 warnings (T)", "arm 2/2 sgd: 1 warning (T)"]
    terminal = make_console(file=io.StringIO(), force_terminal=True, width=80)
    with item_progress(terminal, 2, "arm") as done:
        done("adam: 0 warnings")
    shown = terminal.file.getvalue()
    assert "arm 1/2 adam: 0 warnings" in shown and "━" in shown  # the bar's glyph


_CLI = "import sys; from tunelab.cli.main import main; sys.exit(main(sys.argv[1:]))"
# Long enough that a row does not fit 80 columns: rich wrapped it there, in the middle of the label.
LABELS = ["an-experiment-folder-with-a-long-name/seed-0-of-the-small-mlp-on-digits",
          "an-experiment-folder-with-a-long-name/seed-1-of-the-small-mlp-on-digits"]


def test_ensemble_through_a_pipe_prints_progress_lines_and_unwrapped_rows(tmp_path):
    runs = tmp_path / "runs"
    for seed, (label, stored) in enumerate(zip(LABELS, (0.91, 0.9))):
        folder = runs / label
        folder.mkdir(parents=True)
        cfg = {"model": {"hidden": [8]}, "training": {"epochs": 1, "seed": seed, "threads": 1}}
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
        (folder / "result.json").write_text(json.dumps({"status": "completed", "val_accuracy": stored}))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    out = tmp_path / "ens"
    # stdin from /dev/null too: rich takes the width of any standard stream that is a terminal
    child = subprocess.run([sys.executable, "-c", _CLI, "ensemble", "--runs", str(runs), "--top", "2",
                            "--out", str(out)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    lines = child.stdout.splitlines()
    report = json.loads((out / "ensemble.json").read_text())
    progress = [line for line in lines if line.startswith("member ")]
    assert [p.split(" retrained: val ")[0] for p in progress] == [f"member {i}/2 {m['label']}"
                                                                  for i, m in enumerate(report["members"], 1)]
    for p, m in zip(progress, report["members"]):
        assert re.fullmatch(rf".* retrained: val {m['val_accuracy']:.4f} \(\d+\.\d s\)", p)
    for m in report["members"]:  # each member's row on one line: label and every number whole
        row = [line for line in lines if m["label"] in line and line.startswith("│")]
        assert len(row) == 1, child.stdout
        for value in (m["value"], m["val_accuracy"], m["test_accuracy"]):
            assert f"{value:.4f}" in row[0]
    assert lines.index(progress[-1]) < min(i for i, line in enumerate(lines) if "ensemble of 2" in line)


def test_studies_show_through_a_pipe_keeps_each_trial_on_one_line(tmp_path):
    import tunelab
    from tests.execute import objectives

    # eight parameters: the leaderboard is far wider than rich's 80 columns for a pipe
    space = {"base": {"epochs": 1, "sleep": 0},
             "space": {f"p{i}": {"log_uniform": [1e-6, 1e-2]} for i in range(8)} | {"x": {"uniform": [0.0, 4.0]}}}
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    res = tunelab.tune(space, trials=2, storage=storage, study="wide", objective=objectives.quadratic, seed=0)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    child = subprocess.run([sys.executable, "-c", _CLI, "studies", "show", "wide", "--storage", storage],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    for trial in res.study.trials:
        numbers = [f"{trial.value:.4f}", *(f"{v:.3g}" for v in trial.params.values())]
        rows = [line for line in child.stdout.splitlines() if line.startswith("│") and f" {trial.number} " in line[:6]]
        assert len(rows) == 1 and all(n in rows[0] for n in numbers), child.stdout
