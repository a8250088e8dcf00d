"""tunelab compare / report end to end on digits: paired seeds, resume, verdicts, HTML."""

import csv
import io
import json

import optuna
import pytest
import torch

import tunelab
from tunelab.analysis.designs import arm_config, one_at_a_time, parse_vary
from tunelab.cli.main import main
from tunelab.config import from_dict, to_dict
from tunelab.nn import build_model

ARGS = ["--vary", "model.dropout=0,0.3", "--vary", "model.activation=relu,tanh", "--seeds", "3",
        "--set", "training.epochs=3", "--set", "model.hidden=[32]", "--name", "t", "--no-diagnostics"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _trials(path):
    return optuna.load_study(study_name="compare:t", storage=f"sqlite:///{path / 'tunelab.db'}").get_trials()


def test_compare_runs_every_arm_on_the_same_seeds_and_resumes(capsys, workdir):
    assert main(["compare", *ARGS, "--out", str(workdir / "c")]) == 0
    out = capsys.readouterr().out
    trials = _trials(workdir)
    assert len(trials) == 3 * 3
    seeds = {}
    for t in trials:
        seeds.setdefault(t.user_attrs["arm_name"], []).append(t.user_attrs["seed"])
        assert t.user_attrs["config"]["training"]["seed"] == t.user_attrs["seed"]
        assert t.user_attrs["result"]["test_accuracy"] is not None  # compare reports on test
    assert {k: sorted(v) for k, v in seeds.items()} == {a: [0, 1, 2] for a in
                                                        ["baseline", "model.dropout=0.3", "model.activation=tanh"]}
    report = (workdir / "c" / "report.html").read_text()
    assert "Verdicts on test accuracy" in report and report.count("data:image/png;base64") >= 4
    assert "no detectable difference" in out or "better" in out or "worse" in out
    rows = list(csv.DictReader(io.StringIO((workdir / "c" / "runs.csv").read_text())))
    assert len(rows) == 9
    # what a seeded number is bit-identical under, for every run
    assert all(int(r["threads"]) >= 1 for r in rows)
    assert {(r["device"], r["tunelab"], r["torch"]) for r in rows} == {("cpu", tunelab.__version__, torch.__version__)}
    analysis = json.loads((workdir / "c" / "compare.json").read_text())
    assert len(analysis["metrics"]["test_accuracy"]["comparisons"]) == 2
    # the same command again: nothing reruns, the report is rebuilt from storage
    assert main(["compare", *ARGS, "--out", str(workdir / "c")]) == 0
    assert len(_trials(workdir)) == 9
    assert main(["report", "--compare", "t", "--out", str(workdir / "r")]) == 0
    assert (workdir / "r" / "report.html").exists()


def test_arms_share_initial_weights_where_shapes_allow():
    base = to_dict(from_dict({"model": {"hidden": [32]}}))
    arms = one_at_a_time(base, [parse_vary("model.dropout=0,0.5"), parse_vary("model.hidden=[32],[64]")])
    nets = {}
    for arm in arms:
        cfg = from_dict(arm_config(base, arm, seed=4))
        torch.manual_seed(cfg.training.seed)
        nets[arm.name] = build_model(cfg.model, (1, 8, 8), 10).state_dict()
    same, other = nets["model.dropout=0.5"], nets["baseline"]
    assert all(torch.equal(same[k], other[k]) for k in same)  # dropout adds no parameters
    assert nets["model.hidden=[64]"]["fc0.0.weight"].shape != other["fc0.0.weight"].shape


@pytest.mark.parametrize("argv,message", [
    (["--vary", "model.dropout"], "--vary 'model.dropout' must look like key.path=value1,value2"),
    (["--vary", "model.dropout="], "needs a key and at least one value"),
    (["--vary", "model.dropout=0"], "every value is the base config's own, so there is nothing to compare"),
    (["--vary", "optimizer={name: adam, lr: 0.001}"], "every value is the base config's own"),
    (["--vary", "model.dropout=0,2"], "model.dropout=2 is out of range"),
    (["--vary", "model.actv=relu,tanh"], "model.actv is not a config key"),
    (["--vary", "model.dropout=0,0.5", "--seeds", "1"], "--seeds=1 is out of range"),
    (["--vary", "model.dropout=0,0.5", "--metric", "f1"], "--metric='f1' is not known"),
    (["--vary", "model.dropout=0,0.5", "--target", "5"], "error: --target=5.0 is out of range; allowed: (0, 1]"),
    (["--vary", "model.dropout=0,0.5", "--target", "0"], "error: --target=0.0 is out of range; allowed: (0, 1]"),
    (["--vary", "model.dropout=0,0.5", "--target", "-0.5"], "--target=-0.5 is out of range"),
    # digits has 10 classes: reaching 0.1 is chance, not learning
    (["--vary", "model.dropout=0,0.5", "--target", "0.1"],
     "error: --target=0.1 is at or below chance (0.1 with 10 classes); allowed: (0.1, 1]"),
    (["WORKDIR", "--vary", "model.dropout=0,0.5"], "is a directory; give a YAML file"),
    (["--vary", "model.dropout=0,0.5", "--set", "data.path=t.csv"],
     "error: data.path='t.csv' is only used with data.name csv, npz or images; got data.name='digits'"),
    (["--vary", "schedule.min_lr=0,0.5"], "error: schedule.min_lr=0.5 is above optimizer.lr=0.001; allowed: schedule.min_lr <= optimizer.lr"),
])
def test_bad_compare_input_is_one_line(capsys, workdir, argv, message):
    argv = [str(workdir) if a == "WORKDIR" else a for a in argv]
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_one_value_is_one_arm_against_the_baseline_and_a_baseline_equal_section_is_merged(capsys, workdir):
    """`--vary optimizer.lr=0.003` is the commonest ablation; an arm whose whole section spells out the
    base's values is the baseline: said once, not run twice, not counted in the correction."""
    args = ["compare", "--vary", "optimizer.lr=0.003", "--vary", "model={hidden: [8]}", "--seeds", "2",
            "--set", "training.epochs=1", "--set", "model.hidden=[8]", "--name", "t", "--no-diagnostics",
            "--out", str(workdir / "c")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("resolves to the base config") == 1 and 'model={"hidden": [8]}' in out
    assert "2 arms x 2 seeds = 4 runs" in out
    arms = sorted({t.user_attrs["arm_name"] for t in _trials(workdir)})
    assert arms == ["baseline", "optimizer.lr=0.003"] and len(_trials(workdir)) == 4
    analysis = json.loads((workdir / "c" / "compare.json").read_text())
    assert len(analysis["metrics"]["test_accuracy"]["comparisons"]) == 1  # one arm: nothing to correct for


def test_changing_the_seeds_of_a_named_compare_is_refused(capsys, workdir):
    args = ["compare", "--vary", "model.dropout=0,0.3", "--set", "training.epochs=1", "--set", "model.hidden=[8]",
            "--name", "s", "--no-diagnostics", "--out", str(workdir / "c")]
    assert main([*args, "--seeds", "2"]) == 0
    capsys.readouterr()
    assert main([*args, "--seeds", "3"]) == 2
    assert "already holds a compare with another design" in capsys.readouterr().err
