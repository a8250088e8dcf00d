"""tunelab tune / studies end to end on digits: best.yaml, leaderboard, export, errors."""

import csv

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.config import load_config

SPACE = {"base": {"training": {"epochs": 2}, "model": {"hidden": [16]}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]},
                   "optimizer.betas.0": {"one_minus_log": [0.8, 0.99]}}}


@pytest.fixture
def space_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default storage is ./tunelab.db
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_tune_then_studies(capsys, space_file, tmp_path):
    code, out, _ = _run(capsys, "tune", space_file, "--trials", 4, "--seed", 0, "--out", tmp_path / "o")
    assert code == 0 and "best" in out
    best = load_config(tmp_path / "o" / "best.yaml")  # a full train config
    assert 1e-3 <= best.optimizer.lr <= 1e-1 and 0.8 <= best.optimizer.betas[0] <= 0.99
    assert (tmp_path / "tunelab.db").exists()
    code, out, _ = _run(capsys, "studies", "list")
    assert code == 0 and "space" in out
    code, out, _ = _run(capsys, "studies", "show", "space")
    assert code == 0 and "complete 4" in out
    code, out, _ = _run(capsys, "studies", "export", "space", "--csv", tmp_path / "t.csv")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert code == 0 and len(rows) == 4 and {r["state"] for r in rows} == {"complete"}
    assert "param:optimizer.betas.0" in rows[0]
    # a rerun with a larger total continues the same study
    code, _, _ = _run(capsys, "tune", space_file, "--trials", 5, "--seed", 0, "--out", tmp_path / "o")
    rows_csv = tmp_path / "t2.csv"
    _run(capsys, "studies", "export", "space", "--csv", rows_csv)
    assert code == 0 and len(list(csv.DictReader(open(rows_csv)))) == 5
    code, _, _ = _run(capsys, "train", tmp_path / "o" / "best.yaml", "--out", tmp_path / "r", "-q")
    assert code == 0


@pytest.mark.parametrize("argv,message", [
    (["--sampler", "bayes"], "--sampler='bayes' is not known; choose one of"),
    (["--pruner", "early"], "--pruner='early' is not known; choose one of"),
    (["--trials", "0"], "--trials=0 is out of range"),
    (["--workers", "0"], "--workers=0"),
])
def test_bad_options_are_one_line(capsys, space_file, argv, message):
    code, _, err = _run(capsys, "tune", space_file, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_space_file_is_one_line(capsys, space_file):
    space_file.write_text(yaml.safe_dump({"space": {"optimizer.lr": {"log_uniform": [0, 0.1]}}}))
    code, _, err = _run(capsys, "tune", space_file)
    assert code == 2 and "optimizer.lr" in err and len(err.strip().splitlines()) == 1


def test_unknown_study(capsys, space_file):
    code, _, err = _run(capsys, "studies", "show", "nope")
    assert code == 2 and "study 'nope' is not in" in err


@pytest.mark.parametrize("argv", [("studies", "show", "nope"), ("studies", "export", "nope", "--csv", "x.csv"),
                                  ("ensemble", "--study", "nope", "--top", "2"), ("report", "--study", "nope")])
def test_reading_a_missing_database_says_so_and_creates_nothing(capsys, space_file, tmp_path, argv):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "study 'nope' is not in sqlite:///tunelab.db; the file tunelab.db does not exist" in err
    assert not (tmp_path / "tunelab.db").exists()
    assert _run(capsys, "studies", "list")[1].strip() == "no studies in sqlite:///tunelab.db"
    assert not (tmp_path / "tunelab.db").exists()


def test_report_of_a_study_embeds_its_figures(capsys, space_file, tmp_path):
    assert main(["tune", str(space_file), "--trials", "4", "--seed", "0", "--out", str(tmp_path)]) == 0
    assert main(["report", "--study", "space", "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64") >= 4 and "Best config" in html
    capsys.readouterr()
    assert main(["report"]) == 2 and "exactly one of --compare" in capsys.readouterr().err


def test_coarse_to_fine_rounds_are_shown_as_ranges(capsys, space_file):
    assert main(["tune", str(space_file), "--trials", "9", "--sampler", "coarse-to-fine", "--seed", "0"]) == 0
    capsys.readouterr()
    code, out, _ = _run(capsys, "studies", "show", "space")
    assert code == 0 and "coarse-to-fine ranges per round" in out
    assert "0.001..0.1 log" in out and "0.8..0.99 1-b" in out  # round 0: the space as written
    assert '{"' not in out  # no raw JSON in the table


def test_the_status_line_ends_before_the_tables_when_output_is_not_a_terminal(capsys, space_file):
    code, out, _ = _run(capsys, "tune", space_file, "--trials", "2", "--seed", "0")
    assert code == 0
    assert "trials 2/2" in out
    titles = [line.strip() for line in out.splitlines() if "best trials" in line]
    assert titles and all(t.startswith("space: best trials") for t in titles)  # on a line of its own


@pytest.mark.parametrize("argv,message", [
    (["--round-size", "8"], "error: --round-size=8 only applies to --sampler='coarse-to-fine'; got --sampler='random'"),
    (["--sampler", "coarse-to-fine", "--round-size", "0"], "error: --round-size=0 is out of range; allowed: 4 or more"),
    (["--out", "space.yaml"], "error: --out='space.yaml' is a file; give a folder"),
])
def test_bad_tune_options_fail_before_any_trial(capsys, space_file, tmp_path, argv, message):
    code, _, err = _run(capsys, "tune", space_file, "--trials", "2", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "tunelab.db").exists()  # failed before the study was opened


def test_a_coarse_to_fine_study_keeps_its_round_size(capsys, space_file):
    args = ["tune", space_file, "--sampler", "coarse-to-fine", "--seed", "0"]
    assert _run(capsys, *args, "--trials", "4", "--round-size", "4")[0] == 0
    code, _, err = _run(capsys, *args, "--trials", "6", "--round-size", "8")
    assert code == 2 and "--round-size=8 differs from the 4 that study 'space' was run with" in err
    assert _run(capsys, *args, "--trials", "6")[0] == 0  # left out: the stored size continues it


def test_export_to_standard_output_and_bad_paths(capsys, space_file, tmp_path):
    assert main(["tune", str(space_file), "--trials", "2", "--seed", "0"]) == 0
    capsys.readouterr()
    code, out, _ = _run(capsys, "studies", "export", "space", "--csv", "-")
    rows = list(csv.DictReader(out.splitlines()))
    assert code == 0 and len(rows) == 2 and not (tmp_path / "-").exists()
    code, _, err = _run(capsys, "studies", "export", "space", "--csv", tmp_path)
    assert code == 2 and "is a folder; give a file name" in err
