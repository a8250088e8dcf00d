"""``tunelab ensemble`` and ``tunelab lr-find`` through a local typer app (the lead registers
them in cli/main.py); user errors become one line and exit 2, as in cli/main.py."""

import json
import shlex
import sys

import optuna
import pytest
import typer
from typer.testing import CliRunner

import tunelab
from tunelab.api import as_config
from tunelab.cli.ensemble import ensemble_command
from tunelab.cli.lr_find import lr_find_command
from tunelab.errors import ConfigError, TunelabError

app = typer.Typer(add_completion=False)


@app.callback()
def _root() -> None:
    """A root like tunelab's, so the commands are subcommands as in the real CLI."""


app.command("ensemble")(ensemble_command)
app.command("lr-find")(lr_find_command)

SMALL = {"model": {"hidden": [32]}, "optimizer": {"lr": 3e-3}, "training": {"epochs": 3}}


def _invoke(*argv):
    return CliRunner().invoke(app, list(argv), env={"COLUMNS": "200"})


def _main(argv) -> int:
    """cli/main.py's contract: a TunelabError prints 'error: ...' on one line, exit 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except TunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    return code if isinstance(code, int) else 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of three `tunelab.train` run folders (seeds 0, 1, 2), one of them nested."""
    root = tmp_path_factory.mktemp("runs")
    for seed, sub in [(0, "a"), (1, "b"), (2, "compare/arm0-seed2")]:
        tunelab.train(SMALL, [f"training.seed={seed}"], out=root / sub)
    return root


def test_ensemble_from_run_folders_prints_the_table_and_writes_the_json(runs, tmp_path):
    out = tmp_path / "ens"
    result = _invoke("ensemble", "--runs", str(runs), "--top", "3", "--method", "hard", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ensemble.json").read_text())
    assert report["k"] == 3 and report["method"] == "hard" and report["runs"] == str(runs)
    stored = {m["label"]: json.loads((runs / m["label"] / "result.json").read_text()) for m in report["members"]}
    assert set(stored) == {"a", "b", "compare/arm0-seed2"}
    values = [m["value"] for m in report["members"]]
    assert values == sorted(values, reverse=True)  # best stored val_accuracy first
    for m in report["members"]:  # retrained from config.yaml: the same model as the run's
        assert m["test_accuracy"] == pytest.approx(stored[m["label"]]["test_accuracy"])
        assert m["val_accuracy"] == pytest.approx(stored[m["label"]]["val_accuracy"])
    for text in ("ensemble", "best single (chosen on val)", "mean single", "(best on val)", "compare/arm0-seed2",
                 f"{report['ensemble_accuracy']:.4f}", f"{report['mean_single']:.4f}"):
        assert text in result.output


def test_ensemble_from_a_study_takes_the_top_trials_by_value(tmp_path):
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = optuna.create_study(study_name="s1", storage=storage, direction="minimize")
    for seed, value in [(0, 0.30), (1, 0.10), (2, 0.20)]:  # a val_loss objective: lower is better
        config = dict(SMALL, training={"epochs": 2, "seed": seed})
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": config, "seed": seed}))
    out = tmp_path / "ens"
    result = _invoke("ensemble", "--study", "s1", "--storage", storage, "--top", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ensemble.json").read_text())
    assert [m["label"] for m in report["members"]] == ["#1", "#2"] and report["study"] == "s1"
    assert report["method"] == "soft" and "#1" in result.output and "#0" not in result.output


def test_ensemble_default_folder_is_named_after_the_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = "sqlite:///db.sqlite"
    study = optuna.create_study(study_name="mine", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"config": dict(SMALL, training={"epochs": 1})}))
    assert _invoke("ensemble", "--study", "mine", "--storage", storage, "--top", "1").exit_code == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("ensemble-mine-") and (folder / "ensemble.json").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--top", "4"], "error: --top=4 is out of range; --runs="),
    (["--top", "0"], "error: --top=0 is out of range"),
    (["--top", "2", "--method", "vote"], "error: --method='vote' is not allowed; choose one of ['hard', 'soft']"),
    (["--study", "x"], "error: give exactly one of --study NAME or --runs DIR"),
])
def test_ensemble_user_errors_are_one_line_and_exit_2(runs, tmp_path, capsys, argv, message):
    code = _main(["ensemble", "--runs", str(runs), *argv, "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    if "--top=4" in message:
        assert "has 3 usable members; choose 1 to 3" in err
    assert not (tmp_path / "e").exists()


def test_ensemble_without_a_source_is_a_config_error():
    result = _invoke("ensemble", "--top", "2")
    assert isinstance(result.exception, ConfigError) and "exactly one of --study" in str(result.exception)


def test_lr_find_writes_the_figure_and_the_json_and_prints_a_train_command(tmp_path):
    config = tmp_path / "my config.yaml"
    config.write_text("optimizer:\n  name: momentum\n")
    out = tmp_path / "lr"
    result = _invoke("lr-find", str(config), "--set", "model.hidden=[32]", "--steps", "100",
                     "--lr-min", "1e-5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "lr_find.json").read_text())
    assert 1e-5 <= saved["suggestion"] <= 10 and len(saved["lrs"]) == len(saved["losses"]) == saved["steps_run"]
    assert saved["config"]["optimizer"]["name"] == "momentum" and saved["config"]["model"]["hidden"] == [32]
    command = saved["train_command"]
    assert command in result.output and f"{saved['suggestion']:.3g}" in result.output
    assert f"{saved['min_loss_lr'] / 10:.3g}" in result.output
    words = shlex.split(command)  # the printed command runs: it parses to the config with the lr
    assert words[:3] == ["tunelab", "train", str(config)]
    cfg = as_config(words[2], [w for w in words[3:] if w != "--set"])
    assert cfg.model.hidden == [32] and cfg.optimizer.name == "momentum"
    assert cfg.optimizer.lr == pytest.approx(saved["suggestion"], rel=5e-3)


def test_lr_find_without_a_suggestion_says_so(tmp_path):
    out = tmp_path / "lr"
    result = _invoke("lr-find", "--set", "model.hidden=[32]", "--steps", "10", "--lr-min", "1e4", "--lr-max", "1e6",
                     "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "no suggestion" in result.output and "tunelab train" not in result.output
    saved = json.loads((out / "lr_find.json").read_text())
    assert saved["suggestion"] is None and saved["train_command"] is None and saved["steps_run"] < 10
    assert (out / "lr_find.png").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--steps", "3"], "error: --steps=3 is out of range; allowed: 10 or more"),
    (["--lr-min", "1", "--lr-max", "0.5"], "error: --lr-min=1 and --lr-max=0.5 are not allowed"),
    (["--set", "optimizer.name=adamm"], "error: optimizer.name='adamm' is not known"),
])
def test_lr_find_user_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = _main(["lr-find", *argv, "--out", str(tmp_path / "lr")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "lr").exists()


def test_help_texts_name_the_options():
    ens = _invoke("ensemble", "--help").output
    for text in ("--study", "--storage", "--runs", "--top", "--method", "--out", "ensemble.json"):
        assert text in ens
    lr = _invoke("lr-find", "--help").output
    for text in ("--set", "--steps", "--lr-min", "--lr-max", "--out", "lr_find.png"):
        assert text in lr
