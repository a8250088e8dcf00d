"""``tunelab inspect`` on digits through a local typer app (the lead registers it in main)."""

import json

import pytest
import typer
from typer.testing import CliRunner

from tunelab.cli.inspect import inspect_command
from tunelab.errors import ConfigError

app = typer.Typer(add_completion=False)


@app.callback()
def _root() -> None:
    """A root like tunelab's, so 'inspect' is a subcommand as in the real CLI."""


app.command("inspect")(inspect_command)

SIGMOID = ["--set", "model.activation=sigmoid", "--set", "model.init=normal", "--set", "model.init_std=1.0",
           "--set", "model.hidden=[256, 256]"]


def _invoke(*argv):
    return CliRunner().invoke(app, ["inspect", *argv], env={"COLUMNS": "200"})


def test_inspect_writes_the_figure_and_the_json_and_prints_warnings(tmp_path):
    out = tmp_path / "inspect"
    result = _invoke(*SIGMOID, "--batch", "256", "--epochs", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"activations.png", "diagnostics.json"}
    assert (out / "activations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "diagnostics.json").read_text())
    assert {"init", "trained", "warnings", "context", "config"} <= report.keys()
    assert [s["name"] for s in report["init"]] == ["fc0", "fc1", "out"]
    assert report["context"]["epochs"] == 2 and report["context"]["batch"] == 256
    assert report["warnings"] and any("saturated" in w for w in report["warnings"])
    for line in report["warnings"]:
        assert line in result.output
    for text in ("at initialization", "after training (2 epochs)", "saturated %", "grad norm", "fc1"):
        assert text in result.output


def test_inspect_without_problems_says_so_and_defaults_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("--set", "model.hidden=[32]", "--batch", "128")
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("inspect-") and (folder / "diagnostics.json").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--set", "model.activation=sigmoidd"], "model.activation='sigmoidd' is not known"),
    (["--set", "nonsense"], "--set 'nonsense' must look like key.path=value"),
    (["missing.yaml"], "config file 'missing.yaml' does not exist"),
])
def test_user_errors_are_config_errors(tmp_path, argv, message):
    result = _invoke(*argv, "--out", str(tmp_path / "r"))
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,message", [
    (["--batch", "0"], "error: Invalid value for '--batch'"),
    (["--epochs", "0"], "error: Invalid value for '--epochs'"),
])
def test_bad_option_values_name_the_option(capsys, tmp_path, argv, message):
    from tunelab.cli.main import main

    code = main(["inspect", *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_help_describes_every_option():
    result = _invoke("--help")
    assert result.exit_code == 0
    for text in ("--set", "--epochs", "--batch", "--out", "saturated", "dead", "diagnostics.json"):
        assert text in result.output
