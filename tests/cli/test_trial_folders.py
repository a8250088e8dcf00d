"""Tune trials with live run folders: tunelab runs lists them and tunelab control reaches them."""

import json
import subprocess
import sys

import yaml

from tests.waiting import wait_until
from tunelab.cli.main import main
from tunelab.search.results import load_study
from tunelab.trainer.live import read_status

SPACE = {"base": {"training": {"epochs": 2, "threads": 1}, "model": {"hidden": [16]}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-2]}}}


def test_every_trial_gets_a_complete_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    code = main(["tune", "space.yaml", "--trials", "2", "--seed", "0", "--trial-folders", "trials"])
    assert code == 0
    folders = sorted((tmp_path / "trials" / "space").iterdir())
    assert [f.name for f in folders] == ["trial-0000", "trial-0001"]
    study = load_study("space", "sqlite:///tunelab.db")
    for folder, trial in zip(folders, study.trials):
        assert read_status(folder)["status"] == "completed"
        assert trial.user_attrs["run_dir"] == str(folder.resolve())
        rows = (folder / "history.csv").read_text().splitlines()
        assert len(rows) == 3 and (folder / "checkpoints" / "last.pt").is_file()
        assert json.loads((folder / "result.json").read_text())["trial"] == trial.number
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "trials" / "space")]) == 0
    assert capsys.readouterr().out.count("completed") == 2


def test_control_reaches_a_running_trial_and_stop_prunes_it(tmp_path, capsys):
    space = {**SPACE, "base": {"training": {"epochs": 100000, "batch_size": 16, "threads": 1},
                               "model": {"hidden": [16]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "tune", "space.yaml", "--trials", "1",
                             "--trial-folders", "trials"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    trial = tmp_path / "trials" / "space" / "trial-0000"
    try:
        wait_until(lambda: read_status(trial).get("status") == "running" and read_status(trial).get("epoch", 0) >= 1,
              "the trial to finish an epoch")
        assert main(["control", str(trial), "lr*=0.5", "stop"]) == 0
        out = capsys.readouterr().out
        assert out.count("applied at epoch") == 2
        stdout, err = proc.communicate(timeout=60)
        # the only trial was stopped (pruned), so the study has no best: tune says so, exit 1
        assert proc.returncode == 1 and "no trial completed" in stdout, err
    finally:
        proc.kill()
    commands = [json.loads(line)["command"] for line in (trial / "events.jsonl").read_text().splitlines()]
    assert commands == ["lr*=0.5", "stop"]
    assert json.loads((trial / "result.json").read_text())["status"] == "stopped"
    (t,) = load_study("space", f"sqlite:///{tmp_path / 'tunelab.db'}").trials
    assert t.state.name == "PRUNED"
