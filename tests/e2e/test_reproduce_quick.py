"""bench/reproduce.py --quick: every reproduction row still runs (a few steps each), so no example
that names a published result can rot unnoticed. Its numbers mean nothing; the full run writes
docs/reproductions.md."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_reproduction_row_runs_in_quick_mode(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("TUNELAB_DATA", str(shared_data))
    reproduce = _reproduce()
    out = tmp_path / "reproductions.md"
    assert reproduce.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Quick mode" in text
    rows = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "reproductions-rows").glob("*.json")}
    assert sorted(rows) == sorted(r.key for r in reproduce.REFERENCES)
    for key, row in rows.items():
        assert row["quick"] and row["seeds"] == 2, key
        assert row["verdict"] in ("within noise", "NOT within noise", "holds", "does not hold") or \
            row["verdict"].startswith(("within noise", "NOT within noise")), key
        assert f"| {key} |" in text and (ROOT / row["example"]).is_file(), key


def test_every_example_naming_a_source_is_a_row():
    """An example whose header cites a published number is in the reproduction table."""
    reproduce = _reproduce()
    rows = {r.example for r in reproduce.REFERENCES}
    citing = {str(p.relative_to(ROOT)) for p in (ROOT / "examples").rglob("*.yaml")
              if re.search(r"^# Published", p.read_text(), re.M)}
    assert citing and citing <= rows, sorted(citing - rows)


def test_quick_mode_never_replaces_the_committed_table():
    reproduce = _reproduce()
    with pytest.raises(SystemExit):
        reproduce.main(["--quick"])
