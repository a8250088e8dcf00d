"""`tunelab report --study NAME` on a `--stages` tune: one report over all its stages."""

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.report.html import format_value
from tunelab.search.results import load_stages, stage_summaries

SPACE = {"base": {"data": {"name": "digits"}, "training": {"epochs": 1, "threads": 1}, "model": {"hidden": [16]}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "training.batch_size": {"choice": [32, 64]}},
         "stages": [["optimizer.lr"], ["training.batch_size"]]}


@pytest.fixture
def staged(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default storage is ./tunelab.db, outputs go to runs/
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    assert main(["tune", "space.yaml", "--stages", "--trials", "4", "--seed", "0", "--study", "dg"]) == 0
    capsys.readouterr()
    return tmp_path


def test_report_of_a_staged_study_covers_every_stage(capsys, staged):
    assert main(["report", "--study", "dg"]) == 0
    out = capsys.readouterr().out
    path = staged / "runs" / "dg" / "report.html"
    assert "report:" in out and path.is_file()
    html = path.read_text()
    summary = html[html.index("<h2>Stage summary</h2>"):html.index("<h2>Stage 1: ")]  # its table alone
    rows = stage_summaries(load_stages("dg", "sqlite:///tunelab.db"))
    assert [r["index"] for r in rows] == [1, 2] and [r["complete"] for r in rows] == [2, 2]
    for r in rows:
        assert r["study"] in summary and f">{format_value(r['best'])}<" in summary
        assert f"Stage {r['index']}: Best trials" in html
    lr = rows[1]["fixed"]["optimizer.lr"]  # stage 1's best lr, carried forward into stage 2
    assert lr == pytest.approx(rows[0]["best_params"]["optimizer.lr"]) and f"optimizer.lr={lr}" in summary

def test_a_stage_study_alone_still_gets_its_own_report(capsys, staged):
    assert main(["report", "--study", "dg.stage2", "--out", "s2.html"]) == 0
    html = (staged / "s2.html").read_text()
    assert "Stage summary" not in html and "dg.stage2" in html


def test_a_name_with_no_study_and_no_stages_is_still_an_error(capsys, staged):
    assert main(["report", "--study", "nope"]) == 2
    assert "study 'nope' is not in" in capsys.readouterr().err
