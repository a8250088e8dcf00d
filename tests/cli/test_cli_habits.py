"""The habits users bring to a CLI: --version, python -m, a --help that does not wait for torch,
plain metavars, a quiet mode that still names the run folder, errors that say what was meant,
and SIGTERM (what batch schedulers send) handled like Ctrl-C."""

import csv
import inspect
import json
import signal
import subprocess
import sys
import time
from importlib import metadata

import pytest
import yaml

import tunelab
from tunelab.cli.main import COMMANDS, load_command, main
from tunelab.trainer.live import read_status

HANG_GUARD_S = 120  # only against a hung child; no assertion is about time
SMALL = ["--set", "model.hidden=[8]", "--set", "training.threads=1"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _cli(*argv, cwd=None):
    """``python -m tunelab ARGV`` in a child with a wide terminal (help tables do not wrap)."""
    return subprocess.run([sys.executable, "-m", "tunelab", *argv], capture_output=True, text=True,
                          cwd=cwd, env={"COLUMNS": "200", "PATH": ""}, timeout=HANG_GUARD_S)


# ---------------------------------------------------------------- start-up without torch

PROBE = """
import contextlib, io, sys
{setup}
with contextlib.redirect_stdout(io.StringIO()):
    code = {call}
print(code, "torch" in sys.modules)
"""


def _probe(setup: str, call: str) -> tuple[int, bool]:
    """Run ``call`` in a fresh interpreter: (its exit code, whether torch got imported)."""
    res = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup, call=call)], capture_output=True,
                         text=True, timeout=HANG_GUARD_S)
    assert res.returncode == 0, res.stderr
    code, torch_loaded = res.stdout.split()
    return int(code), torch_loaded == "True"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["--version"]])
def test_help_and_version_do_not_import_torch(argv):
    assert _probe("import tunelab.cli.main as m", f"m.main({argv!r})") == (0, False)


def test_the_probe_sees_torch_when_the_api_is_used():
    """The check above can fail: touching tunelab.train imports torch, and the probe sees it."""
    assert _probe("import tunelab", "tunelab.train and 0") == (0, True)


def test_the_package_loads_its_public_names_on_first_use():
    from tunelab import RunConfig, train  # noqa: F401  (the usual import still works)

    assert set(tunelab.__all__) <= set(dir(tunelab))
    for name in tunelab.__all__:
        assert getattr(tunelab, name) is not None, name
    assert tunelab.train is train and "run folder" in inspect.getdoc(tunelab.train)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        tunelab.nonsense  # noqa: B018


def test_the_command_list_matches_each_command_help():
    """`tunelab --help` lists COMMANDS without importing them; their lines must not drift."""
    for name, (_, _, line) in COMMANDS.items():
        command = load_command(name)
        first = command.help.split("\n\n")[0]
        assert " ".join(first.split()) == line, f"update COMMANDS[{name!r}] in tunelab/cli/main.py"


# ---------------------------------------------------------------- --version and python -m

def test_version_names_tunelab_and_torch(capsys):
    code, out, _ = _run(capsys, "--version")
    assert code == 0
    assert out.startswith(f"tunelab {tunelab.__version__} (torch {metadata.version('torch')}")


def test_python_dash_m_is_the_same_entry():
    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.startswith(f"tunelab {tunelab.__version__} ")
    res = _cli("nosuchcmd")  # exit codes pass through
    assert res.returncode == 2 and "No such command 'nosuchcmd'" in res.stderr


# ---------------------------------------------------------------- plain metavars

def test_help_shows_plain_metavars():
    top, train = _cli("--help"), _cli("train", "--help")
    assert top.returncode == 0 and train.returncode == 0
    for text in (top.stdout, train.stdout):
        assert "<bool>" not in text  # flags take no value
    assert "--version" in top.stdout
    assert "[CONFIG]" in train.stdout
    for option, metavar in (("--set", "KEY=VALUE"), ("--out", "DIR"), ("--device", "cpu|cuda|auto")):
        line = next(line for line in train.stdout.splitlines() if option in line)
        assert metavar in line, line


def test_a_sub_app_shows_no_bool_metavar_either():
    res = _cli("datasets", "list", "--help")
    assert res.returncode == 0 and "--help" in res.stdout and "<bool>" not in res.stdout


# ---------------------------------------------------------------- quiet train

def test_quiet_train_prints_only_the_run_folder(capsys, tmp_path):
    # a config file whose name holds '=' is still a config file, not a misplaced override
    config = tmp_path / "lr=0.01.yaml"
    config.write_text(yaml.safe_dump({"training": {"epochs": 1}, "optimizer": {"lr": 0.01}}))
    run = tmp_path / "run"
    code, out, _ = _run(capsys, "train", config, "-q", "--out", run, *SMALL)
    assert code == 0
    assert out == f"run folder: {run}\n"
    assert json.loads((run / "result.json").read_text())["status"] == "completed"


# ---------------------------------------------------------------- errors that say what was meant

@pytest.mark.parametrize("argv,message", [
    (["train", "--set", "optimizer.lr", "0.01"],
     "error: --set 'optimizer.lr' must look like key.path=value; did you mean --set optimizer.lr=0.01?"),
    (["train", "optimizer.lr=0.01"],
     "error: config file 'optimizer.lr=0.01' does not exist; to override a key use --set optimizer.lr=0.01"),
    (["train", "optimizer.lr=0.01", "training.epochs=3"],
     "to override keys use --set optimizer.lr=0.01 --set training.epochs=3"),
    (["train", "--set", "optimizer.learning_rate=0.1"],
     "error: optimizer.learning_rate is not a config key; allowed keys: ['alpha', 'betas', 'eps', 'lr', "
     "'momentum', 'name', 'rho', 'weight_decay'] (did you mean 'optimizer.lr'?)"),
    (["train", "--set", "optimiser.lr=0.1"], "optimiser is not a config key; allowed keys: "
     "['augment', 'data', 'model', 'optimizer', 'schedule', 'training'] (did you mean 'optimizer'?)"),
    (["train", "--set", "model.hiden=[8]"], "(did you mean 'model.hidden'?)"),
    (["train", "--set", "epochs=3"], "(did you mean 'training.epochs'?)"),
    (["trian"], "error: No such command 'trian'. Did you mean 'train'?"),
])
def test_misplaced_and_misspelled_keys_get_a_one_line_hint(capsys, tmp_path, argv, message):
    code, out, err = _run(capsys, *argv, *(["--out", tmp_path / "r"] if argv[0] == "train" else []))
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_key_nothing_resembles_gets_no_guess(capsys):
    code, _, err = _run(capsys, "train", "--set", "zzz=1")
    assert code == 2 and "zzz is not a config key" in err and "did you mean" not in err


# ---------------------------------------------------------------- SIGTERM like Ctrl-C

def test_main_restores_the_sigterm_handler_it_found(capsys):
    def mine(signum, frame):  # an embedding program's own handler
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["--version"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_for(predicate, what: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before {what}: {log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: still no {what}")
        time.sleep(0.05)


def _terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("hang guard: no exit after SIGTERM")


def _running_epoch(run):
    status = read_status(run)
    return status.get("status") == "running" and status.get("epoch", 0) >= 1


def _long_training(tmp_path):
    """(process, run folder, log) of a `tunelab train` that has finished an epoch and its checkpoint."""
    run, log = tmp_path / "run", tmp_path / "train.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "train", "--out", str(run),
                                 "--set", "training.epochs=100000", "--set", "training.batch_size=16", *SMALL],
                                cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    # last.pt too: status.json names an epoch just before that epoch's checkpoint is written,
    # and a signal in between leaves nothing to resume from (Ctrl-C alike; reported upstream)
    try:
        _wait_for(lambda: _running_epoch(run) and (run / "checkpoints" / "last.pt").is_file(),
                  "a finished epoch and its checkpoint", proc, log)
    except BaseException:
        proc.kill()
        raise
    return proc, run, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_ends_a_training_run_like_ctrl_c(tmp_path, capsys, sig):
    proc, run, log = _long_training(tmp_path)
    try:
        code = _terminate(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + sig, log.read_text()  # 143 for SIGTERM, 129 for SIGHUP; Ctrl-C gives 130
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "interrupted" and result["epochs_run"] >= 1
    with open(run / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == result["epochs_run"]
    assert all((run / name).is_file() for name in ("result.json", "history.csv", "curves.png", "model.pt"))
    assert read_status(run)["status"] == "interrupted"

    total = result["epochs_run"] + 1
    code, out, err = _run(capsys, "resume", run, "--epochs", total, "-q")
    assert code == 0, err
    resumed = json.loads((run / "result.json").read_text())
    assert resumed["status"] == "completed" and resumed["epochs_run"] == total
    with open(run / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, total + 1))


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3])
def test_a_double_ctrl_c_still_leaves_a_complete_run_folder(tmp_path, delay):
    proc, run, log = _long_training(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(delay)  # the second lands in the first one's clean-up (the figure takes a while)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 130; or killed by the second SIGINT when it came after everything was written and tunelab
    # had handed SIGINT back
    assert code in (130, -signal.SIGINT), log.read_text()
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "interrupted" and (run / "model.pt").is_file() and (run / "history.csv").is_file()
    assert "Traceback" not in log.read_text()


def test_sigterm_ends_a_tune_like_ctrl_c(tmp_path):
    from tunelab.search.results import load_study

    space = {"base": {"training": {"epochs": 100000, "batch_size": 16, "threads": 1}, "model": {"hidden": [8]}},
             "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-2]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    trial, log = tmp_path / "trials" / "space" / "trial-0000", tmp_path / "tune.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "tune", "space.yaml", "--trials", "1",
                                 "--trial-folders", "trials"], cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _running_epoch(trial), "a trial's finished epoch", proc, log)
        code = _terminate(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 143, text
    assert "interrupted" in text and "Traceback" not in text
    study = load_study("space", f"sqlite:///{tmp_path / 'tunelab.db'}")
    states = [t.state.name for t in study.trials]
    assert states[0] == "FAIL" and "RUNNING" not in states  # cut short and marked, not left running


def test_every_command_help_shows_plain_metavars_only(capsys, monkeypatch):
    """No typer type labels (`<list[str]>`, `TEXT`, `INTEGER`, `<path>`...) beside any option or
    argument of any command or sub-command: each names its value (N, DIR, KEY=VALUE, RUN_DIR...)."""
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: one row per option, nothing folded
    commands = []
    for name in COMMANDS:
        subcommands = getattr(load_command(name), "commands", {})
        commands += [[name, sub] for sub in subcommands] or [[name]]
    for argv in commands:
        code, out, _ = _run(capsys, *argv, "--help")
        assert code == 0 and "--help" in out, argv
        rows = [line for line in out.splitlines() if line.lstrip().startswith("│")]
        assert rows, argv
        for row in rows:
            for label in ("<list[", "TEXT", "INTEGER", "FLOAT", "PATH", "<path>", "<str>", "<int>",
                          "<float>", "<bool>"):
                assert label not in row, f"tunelab {' '.join(argv)} --help: {row.strip()}"


def test_ctrl_c_while_the_data_loads_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import tunelab.api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tunelab.api, "prepare", interrupted)  # the Ctrl-C lands while the data loads
    code, out, err = _run(capsys, "train", "--out", tmp_path / "run", *SMALL)
    assert code == 130
    assert err.strip() == ("interrupted while loading the data and building the model; nothing was trained "
                           "or written")
    assert not (tmp_path / "run").exists()
