"""The findings of the re-run attack (bench/attack.py): each is now one line and exit 2, or handled.

Every case is the attack's own argv and file, run through the CLI in this process.
"""

import json
import zipfile

import numpy as np
import pytest
import yaml

from tunelab.cli.main import main

TINY = ["--set", "training.epochs=1", "--set", "model.hidden=[4]", "--set", "training.threads=1"]
SPACE = {"base": {"training": {"epochs": 1, "threads": 1}, "model": {"hidden": [4]}},
         "space": {"optimizer.lr": {"log_uniform": [1e-4, 0.1], "points": 3}}}


def _refused(capsys, argv, *needles):
    """The command exits 2 with one line on stderr naming each of ``needles``."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SPACE))
    return tmp_path


def test_an_empty_npz_is_refused(here, capsys):
    np.savez(here / "d.npz", x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64))
    _refused(capsys, ["train", *TINY, "--set", "data.name=npz", "--set", "data.path=d.npz"],
             "'x'", "no examples")


def test_an_npz_whose_header_claims_terabytes_is_refused(here, capsys):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 4), }"
    header += " " * (63 - len(header) % 64 + 0) + "\n"
    x = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)
    with zipfile.ZipFile(here / "d.npz", "w") as z:
        z.writestr("x.npy", x)
        with z.open("y.npy", "w") as f:
            np.save(f, np.arange(4) % 2)
    _refused(capsys, ["train", *TINY, "--set", "data.name=npz", "--set", "data.path=d.npz"],
             "'x'", "does not fit in memory")


def test_a_small_csv_whose_one_huge_cell_would_need_gigabytes_is_refused(here, capsys, monkeypatch):
    rows = ["f0,f1,f2,label", "1" * 130_000 + ",0,0,0"] + ["0,0,0,0"] * 30_000
    (here / "d.csv").write_text("\n".join(rows) + "\n")
    _refused(capsys, ["train", *TINY, "--set", "data.name=csv", "--set", "data.path=d.csv"],
             "does not fit in memory", "130,000 characters")


@pytest.mark.parametrize("seed,sampler", [("9223372036854775808", "grid"), ("4294967296", "gp"),
                                          ("18446744073709551616", "coarse-to-fine"), ("-1", "random")])
def test_a_tune_seed_outside_what_the_samplers_take_is_refused(here, capsys, seed, sampler):
    _refused(capsys, ["tune", "s.yaml", "--trials", 1, "--seed", seed, "--sampler", sampler],
             f"--seed={seed} is out of range", "0 to 4294967295")


def test_an_absurd_trial_count_is_refused_not_run(here, capsys):
    _refused(capsys, ["tune", "s.yaml", "--trials", "9223372036854775808"], "--trials=", "1 to 1000000")


def test_an_infinite_trial_timeout_is_refused(here, capsys):
    _refused(capsys, ["tune", "s.yaml", "--trials", 1, "--trial-timeout", "inf"],
             "--trial-timeout=inf is out of range", "finite")


def test_a_study_name_that_is_not_utf8_is_refused(here, capsys):
    _refused(capsys, ["tune", "s.yaml", "--trials", 1, "--study", "\udcff"], "--study=", "not valid UTF-8")


def test_an_output_folder_that_is_not_utf8_is_refused_before_training(here, capsys):
    _refused(capsys, ["train", *TINY, "--out", "caf\udce9"], "--out=", "not valid UTF-8")
    assert list(here.glob("caf*")) == []


def _run_folder(root, **files):
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"hidden": [4]}}))
    for name, text in files.items():
        (root / name.replace("_", ".")).write_text(text)


def test_resume_of_a_run_whose_result_is_not_an_object_is_one_line(here, capsys):
    _run_folder(here / "run", result_json="[]")
    _refused(capsys, ["resume", "run", "--from", "nonexistent.pt"], "nonexistent.pt")


def test_runs_shows_a_status_that_is_not_text(here, capsys):
    _run_folder(here / "r" / "a", result_json=json.dumps({"status": 5}))
    assert main(["runs", "r"]) == 0
    assert "5" in capsys.readouterr().out


def test_report_of_a_damaged_history_is_one_line(here, capsys):
    _run_folder(here / "r" / "a", history_csv="a\n" * 10, result_json=json.dumps({"status": "completed"}))
    _refused(capsys, ["report", "--run", "r/a"], "history.csv", "is not a run's history")


def test_ensemble_skips_a_run_whose_result_was_cut_short(here, capsys):
    _run_folder(here / "r" / "b", result_json="{")
    err = _refused(capsys, ["ensemble", "--runs", "r", "--top", 2], "r")
    assert "Traceback" not in err
