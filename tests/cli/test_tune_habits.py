"""tunelab tune / studies / compare habits: outputs in runs/<study>, study management, saying
what a run will do (grid size, nothing to run, timeout) and one line per trial in logs."""

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from tunelab.cli.main import main

SPACE = {"base": {"training": {"epochs": 2, "threads": 1}, "model": {"hidden": [16]}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1], "points": 3},
                   "model.hidden": {"choice": [[16], [24]]}}}
HANG_GUARD_S = 120  # only against a hung child; no assertion is about time


@pytest.fixture
def space_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CLI's default storage is ./tunelab.db
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))  # the file order is the log lines' order
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _trials(tmp_path, name="space"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'tunelab.db'}").get_trials()


def test_best_yaml_goes_to_the_study_folder_not_the_current_one(capsys, space_file, tmp_path):
    code, out, _ = _run(capsys, "tune", space_file, "--trials", 2, "--seed", 0)
    assert code == 0 and "config written to runs/space/best.yaml" in out
    assert (tmp_path / "runs" / "space" / "best.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "space.yaml", "tunelab.db"]
    code, out, _ = _run(capsys, "tune", space_file, "--trials", 2, "--study", "other", "--out", tmp_path / "x")
    assert code == 0 and (tmp_path / "x" / "best.yaml").is_file()  # --out still chooses


def test_one_line_per_trial_when_output_is_not_a_terminal(capsys, space_file):
    code, out, _ = _run(capsys, "tune", space_file, "--trials", 3, "--seed", 0)
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert code == 0 and len(lines) == 3, out
    pattern = r"trial \d+ complete value=0\.\d{4} lr=[\d.e-]+ hidden=\[(16|24)\] \d+\.\ds"
    assert all(re.fullmatch(pattern, line) for line in lines), lines
    assert "trials 3/3  done 3" in out  # the final counts, once


def test_per_trial_lines_reach_a_log_file_while_the_study_runs(space_file, tmp_path):
    """A real process with stdout in a file: the first trial's line is there before the study ends."""
    log = tmp_path / "tune.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "tune", str(space_file), "--trials", "1000"],
                                cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + HANG_GUARD_S
        while "trial 0 complete" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert "trial 0 complete" in log.read_text() and proc.poll() is None  # written while it runs
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(HANG_GUARD_S)
    text = log.read_text()
    assert "interrupted: " in text and "the same command again" in text and "Traceback" not in text, text[-3000:]


def test_grid_size_and_nothing_to_run_are_said(capsys, space_file, tmp_path):
    code, out, _ = _run(capsys, "tune", space_file, "--sampler", "grid", "--trials", 2)
    assert code == 0
    assert "grid: 6 combinations; running 2 (--trials 2); rerun with --trials 6 for all" in out
    code, out, _ = _run(capsys, "tune", space_file, "--sampler", "grid", "--trials", 2)
    assert code == 0 and len(_trials(tmp_path)) == 2
    assert ("study space already has 2 finished trials (>= --trials 2); nothing to run; "
            "raise --trials to continue") in out
    assert not re.search(r"^trial \d", out, re.M)
    code, out, _ = _run(capsys, "tune", space_file, "--sampler", "grid", "--trials", 10)
    assert "grid: 6 combinations; running all of them" in out and len(_trials(tmp_path)) == 6
    assert "study space (sqlite:///tunelab.db): 2 trials finished before; running 4 more to reach 6" in out


def test_fresh_and_studies_delete(capsys, space_file, tmp_path):
    assert _run(capsys, "tune", space_file, "--trials", 2)[0] == 0
    code, out, _ = _run(capsys, "tune", space_file, "--trials", 1, "--fresh")
    assert code == 0 and "study space: deleted its 2 earlier trials (--fresh)" in out
    assert len(_trials(tmp_path)) == 1
    code, _, err = _run(capsys, "studies", "delete", "spcae")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "error: study 'spcae' is not in sqlite:///tunelab.db; choose one of ['space'] (did you mean 'space'?)" in err
    code, out, _ = _run(capsys, "studies", "delete", "space")
    assert code == 0 and "deleted study space (1 trials) from sqlite:///tunelab.db" in out
    assert _run(capsys, "studies", "list")[1].strip() == "no studies in sqlite:///tunelab.db"


def test_studies_delete_takes_a_compare_by_its_study_name(capsys, space_file, tmp_path):
    args = ["compare", "--vary", "model.dropout=0,0.3", "--seeds", "2", "--set", "training.epochs=1",
            "--set", "model.hidden=[8]", "--set", "training.threads=1", "--name", "c", "--no-diagnostics"]
    code, out, _ = _run(capsys, *args)
    assert code == 0
    runs = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(runs) == 4 and all(re.fullmatch(r"run \d/4 arm '[^']+' seed [01] complete val_accuracy=0\.\d{4} "
                                               r"test_accuracy=0\.\d{4} \d+\.\ds", r) for r in runs), runs
    code, out, _ = _run(capsys, "studies", "delete", "compare:c")
    assert code == 0 and "deleted study compare:c (4 trials)" in out


def test_set_overrides_the_base_config_and_bad_ones_fail_at_once(capsys, space_file, tmp_path):
    code, _, _ = _run(capsys, "tune", space_file, "--trials", 1, "--set", "training.epochs=1",
                      "--set", "model.dropout=0.1")
    config = _trials(tmp_path)[0].user_attrs["config"]
    assert code == 0 and config["training"]["epochs"] == 1 and config["model"]["dropout"] == 0.1
    for bad, message in [("training.epochs=0", "error: --set training.epochs=0 is out of range"),
                         ("optimizer.lr=0.1", "error: --set optimizer.lr=0.1 sets a key the space searches"),
                         ("training.epochs", "error: --set 'training.epochs' must look like key.path=value")]:
        code, _, err = _run(capsys, "tune", space_file, "--trials", 2, "--study", "b", "--set", bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert len(_trials(tmp_path)) == 1  # nothing ran for the bad ones
    code, _, err = _run(capsys, "tune", space_file, "--trials", 2, "--set", "training.epochs=2",
                        "--set", "model.dropout=0.1")
    assert code == 2 and "error: study 'space' was run with base training.epochs=1, now 2; pass --fresh" in err


def test_timeout_says_it_stopped_asking(capsys, space_file, tmp_path):
    slow = {**SPACE, "base": {"training": {"epochs": 40, "threads": 1}, "model": {"hidden": [64]}}}
    space_file.write_text(yaml.safe_dump(slow))
    code, out, _ = _run(capsys, "tune", space_file, "--trials", 500, "--timeout", "2")
    finished = len(_trials(tmp_path))
    assert code == 0 and 0 < finished < 500
    assert (f"timeout: stopped asking for new trials after 2 s; {finished} of 500 trials finished "
            f"(running ones were completed); run the same command to continue") in out


def test_library_words_become_flags(capsys, space_file):
    code, _, err = _run(capsys, "tune", space_file, "--grace-epochs", "0")
    assert code == 2 and "error: --grace-epochs=0 is out of range" in err
    code, _, err = _run(capsys, "tune", space_file, "--timeout", "-1")
    assert code == 2 and "error: --timeout=-1.0 is out of range" in err
    code, _, err = _run(capsys, "tune", space_file, "--storage", "foo://bar")
    assert code == 2 and "error: --storage='foo://bar' cannot be opened" in err


def test_help_documents_the_grace_period(capsys):
    code, out, _ = _run(capsys, "tune", "--help")
    text = " ".join(out.replace("│", " ").split())  # rich draws the help in a box
    assert code == 0 and "--grace-epochs" in text and "never stop a trial before N epochs" in text


def _reported_an_epoch(tmp_path):
    if not (tmp_path / "tunelab.db").exists():  # opening it would create it under the compare's feet
        return False
    try:
        trials = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'tunelab.db'}")
        names = [s.study_name for s in trials]
        return any(t.intermediate_values for name in names for t in optuna.load_study(
            study_name=name, storage=f"sqlite:///{tmp_path / 'tunelab.db'}").get_trials())
    except Exception:  # the database is not there (or not complete) yet
        return False


def test_ctrl_c_in_compare_prints_the_command_that_continues_it(space_file, tmp_path):
    log = tmp_path / "compare.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "compare", "--vary", "model.dropout=0,0.3",
                                 "--seeds", "2", "--set", "training.epochs=100000", "--set", "model.hidden=[8]",
                                 "--set", "training.threads=1", "--no-diagnostics"],
                                cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        # wait for a trained epoch: a Ctrl-C that lands in an import is swallowed by Python's import
        # machinery ("Exception ignored in ... _get_module_lock"), and the first run imports torch
        deadline = time.time() + HANG_GUARD_S
        while not _reported_an_epoch(tmp_path) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(HANG_GUARD_S)
    text = log.read_text()
    assert code == 130, text
    match = re.search(r"Continue with:\n  (tunelab compare .*)$", text, re.M)
    assert match and "--name default-" in match.group(1), text
    assert os.path.exists(tmp_path / "tunelab.db")
