"""The CLI end to end on digits: run folder, exit codes, one-line errors, help, datasets."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.config import load_config


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_the_run_folder(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = _run(capsys, "train", "--set", "training.epochs=3", "--set", "model.hidden=[32]",
                           "--out", str(out))
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"config.yaml", "history.csv", "result.json", "curves.png",
                                               "model.pt", "status.json", "checkpoints"}
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"last.pt", "best.pt", "epoch-0001.pt",
                                                                 "epoch-0002.pt", "epoch-0003.pt"}
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_run"] == 3
    assert 0.2 < result["test_accuracy"] <= 1 and result["best_epoch"] >= 1
    for key in ("test_loss", "val_accuracy", "seconds"):
        assert isinstance(result[key], float)
    assert len((out / "history.csv").read_text().strip().splitlines()) == 4
    cfg = load_config(out / "config.yaml")  # fully resolved and loadable again
    assert cfg.model.hidden == [32] and cfg.optimizer.lr == 1e-3
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "epoch" in stdout and "test_accuracy" in stdout


def test_train_from_a_config_file(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"hidden": [16]}, "training": {"epochs": 1}}))
    code, _, _ = _run(capsys, "train", str(path), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0 and load_config(tmp_path / "r" / "config.yaml").model.hidden == [16]


@pytest.mark.parametrize("argv,message", [
    (["--set", "optimizer.name=adamm"], "error: optimizer.name='adamm' is not known; choose one of ['adadelta'"),
    (["--set", "model.dropout=1.5"], "error: model.dropout=1.5 is out of range; allowed: [0.0, 1.0)"),
    (["--set", "training.epochs=ten"], "error: training.epochs='ten' has the wrong type; expected an integer"),
    (["--set", "nonsense"], "error: --set 'nonsense' must look like key.path=value"),
    (["missing.yaml"], "error: config file 'missing.yaml' does not exist"),
    (["--device", "tpu"], "error: training.device='tpu' is not allowed; choose one of ['auto', 'cpu', 'cuda']"),
    (["--set", "data.name=mnist", "--set", "data.dir=EMPTY"], "tunelab datasets download mnist"),
    (["--set", "augment.hflip=true", "--set", "training.epochs=1"], "augment.hflip=True is not allowed for data.name='digits'"),
])
def test_user_errors_are_one_line_with_exit_2(capsys, tmp_path, argv, message):
    argv = [a.replace("EMPTY", str(tmp_path)) for a in argv]
    code, _, err = _run(capsys, "train", *argv, "--out", str(tmp_path / "r"))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["tune", "space.yaml", "--trials", "abc"], "error: Invalid value for '--trials'"),
    (["train", "--foo"], "error: No such option: --foo"),
    (["train", "--set"], "error: Option '--set' requires an argument"),
    (["tune"], "error: Missing argument 'SPACE'"),
    (["studies", "show"], "error: Missing argument 'NAME'"),
    (["nosuchcmd"], "error: No such command 'nosuchcmd'"),
])
def test_command_line_usage_errors_are_one_line_with_exit_2(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_arguments_prints_the_help(capsys):
    code, out, err = _run(capsys)
    assert "train" in out + err and "tune" in out + err and "Traceback" not in out + err


def test_an_unusable_out_fails_before_training(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, out_text, err = _run(capsys, "train", "--out", str(out))
        assert code == 2 and "error: --out=" in err and len(err.strip().splitlines()) == 1
        assert "epoch" not in out_text  # no training happened


def test_training_into_an_earlier_run_folder_says_so(capsys, tmp_path):
    args = ("train", "--set", "training.epochs=1", "--out", str(tmp_path / "r"))
    assert _run(capsys, *args)[0] == 0
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "holds an earlier run; its files will be replaced" in out


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = _run(capsys, "--debug", "train", "--set", "optimizer.name=adamm")
    assert code == 2 and "Traceback" in err and "optimizer.name='adamm'" in err


def test_diverged_run_exits_1_and_records_status(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--set", "optimizer.name=sgd", "--set", "optimizer.lr=1e20",
                        "--set", "training.epochs=3", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 1 and "diverged" in err
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("argv,words", [
    ([], ["train", "datasets", "--debug"]),
    (["train"], ["config", "--set", "--out", "--device", "--quiet"]),
    (["datasets"], ["list", "info", "download"]),
    (["datasets", "download"], ["--dir", "--mirror", "sha256"]),
])
def test_help_is_complete(argv, words):
    res = subprocess.run([sys.executable, "-m", "tunelab.cli.main", *argv, "--help"],
                         capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert res.returncode == 0
    for w in words:
        assert w in res.stdout


def test_datasets_list_and_info(capsys, shared_data):
    code, out, _ = _run(capsys, "datasets", "list")
    assert code == 0 and all(n in out for n in ("digits", "mnist", "fashion-mnist", "mnist1d", "csv", "npz"))
    code, out, _ = _run(capsys, "datasets", "info", "mnist", "--dir", str(shared_data))
    assert code == 0 and out.count(": ok") == 4


def test_datasets_download_from_a_local_mirror(capsys, shared_data, http_root, tmp_path):
    url, served, _ = http_root
    shutil.copytree(shared_data / "mnist", served / "mnist")
    dest = tmp_path / "data"
    code, out, _ = _run(capsys, "datasets", "download", "mnist", "--dir", str(dest), "--mirror", url + "mnist/")
    assert code == 0 and out.count("sha256 verified") == 4
    code, out, _ = _run(capsys, "datasets", "info", "mnist", "--dir", str(dest))
    assert out.count(": ok") == 4


def test_console_script_trains_the_default_model(tmp_path):
    exe = shutil.which("tunelab")
    if exe is None:
        pytest.skip("tunelab console script is not installed")
    res = subprocess.run([exe, "train", "--set", "training.epochs=2", "--out", str(tmp_path / "r"), "-q"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "completed"
