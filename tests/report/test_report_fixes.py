"""Report fixes: p-values that are never shown as 0.0000, tables whose text wraps (the verdict
column stays in view at 1200 px) while numbers do not, the study report's coarse-to-fine rounds,
its reproduce commands and its few-trials note, and activation histograms that show a vanishing
signal at its own scale."""

import re
import shlex

import matplotlib.pyplot as plt
import optuna
import pytest
from optuna.distributions import FloatDistribution

import tunelab
from tunelab.analysis.compare import analyze
from tunelab.analysis.designs import one_at_a_time
from tunelab.analysis.diagnostics import diagnose
from tunelab.config import from_dict, parse_override, to_dict
from tunelab.report import html
from tunelab.report.assemble import FEW_TRIALS, _verdict_rows, study_sections, train_command
from tunelab.report.diagnostics_figs import plot_activation_histograms
from tunelab.report.html import format_p

from ..execute import objectives


# ---------------------------------------------------------------------------- p-values

@pytest.mark.parametrize("p,shown", [(0.0, "< 0.0001"), (3.2e-9, "< 0.0001"), (9.9e-5, "< 0.0001"),
                                     (1e-4, "0.0001"), (0.000123456, "0.000123"), (0.01234, "0.0123"),
                                     (0.05, "0.05"), (1.0, "1"), (None, "-"), (float("nan"), "-")])
def test_format_p(p, shown):
    assert format_p(p) == shown


def _run(arm, seed, acc):
    hist = [dict(epoch=1, train_loss=1.0, val_loss=1.0, train_accuracy=acc, val_accuracy=acc, lr=0.1, seconds=1.0)]
    return dict(arm=arm, arm_name=str(arm), seed=seed, status="completed", history=hist,
                result=dict(status="completed", test_accuracy=acc, best_val_accuracy=acc), reason="")


def test_a_tiny_p_in_the_verdict_table_is_not_zero():
    from dataclasses import asdict

    arms = one_at_a_time({"model": {"norm": "none"}}, [("model.norm", ["none", "batch"])])
    noise = [0.0, 0.05, -0.04, 0.02, -0.03, 0.01, -0.02, 0.03]
    # a steady 5-point gain over 8 paired seeds: p far below 1e-4
    runs = [_run(0, s, 0.90 + n) for s, n in enumerate(noise)] + \
           [_run(1, s, 0.95 + n + 0.0001 * (s % 3)) for s, n in enumerate(noise)]
    design = dict(arms=[asdict(a) for a in arms], seeds=list(range(8)), base={}, factorial=False)
    out = analyze(design, runs, target=0.85)
    assert out["metrics"]["test_accuracy"]["comparisons"][0]["p_adjusted"] < 1e-4
    rows = _verdict_rows(out, "test_accuracy")
    assert rows[1]["p (Holm)"] == "< 0.0001" and rows[1]["verdict"] == "better"


# ---------------------------------------------------------------------------- table CSS

def _rules(css: str) -> dict[str, str]:
    return {sel.strip(): body for sels, body in re.findall(r"([^{}]+)\{([^}]*)\}", css) for sel in sels.split(",")}


def test_text_cells_wrap_and_numbers_do_not():
    rules = _rules(html._CSS)
    # every cell once had white-space:nowrap: the compare verdict table then ran past 1200 px
    # and its verdict column hid behind the table's scrollbar
    for selector in ("th", "td"):
        assert "nowrap" not in rules[selector]
    assert "white-space:nowrap" in rules["td.num"]
    # the body breaks long words anywhere; inside tables that let the layout squeeze a cell
    # until it broke "0.9712" in two, so tables break only between words
    assert "overflow-wrap:anywhere" in rules["body"] and "overflow-wrap:normal" in rules["table"]
    page = html.build_report("t", [html.Section("v", "table", [{"arm": "adam", "p": 0.5}])])
    assert '<td class="num">0.5</td>' in page and "<td>adam</td>" in page


# ---------------------------------------------------------------------------- study report

def _sections(study, **kw):
    sections = {s.title: s for s in study_sections(study, **kw)}
    plt.close("all")
    return sections


def _storage(tmp_path):
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_a_coarse_to_fine_study_report_shows_its_rounds(tmp_path):
    space = {"base": {"epochs": 2, "sleep": 0}, "space": {"x": {"uniform": [0.0, 4.0]}}}
    res = tunelab.tune(space, sampler="coarse-to-fine", trials=16, round_size=8, storage=_storage(tmp_path),
                       study="c2f", objective=objectives.quadratic, seed=0)
    sections = _sections(res.study)
    rows = sections["Coarse-to-fine rounds"].content
    assert [r["round"] for r in rows] == [0, 1] and [r["trials"] for r in rows] == ["#0 to #7", "#8 to #15"]
    low, high = (float(v) for v in rows[1]["x"].split(" .. "))
    assert rows[0]["x"] == "0 .. 4" and 0.0 <= low < high <= 4.0 and high - low < 4.0  # the second round narrowed
    # a custom objective's config is no train config: no `tunelab train` line is made up for it
    assert "tunelab train" not in sections["Reproduce"].content


def _study(n_complete: int, command: str | None = None) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="hand-made")
    if command:
        study.set_user_attr("command", command)
    dist = FloatDistribution(1e-8, 1e-1, log=True)
    for i in range(n_complete):
        lr = 10 ** -(1 + i)
        cfg = to_dict(from_dict({"model": {"hidden": [64]}, "optimizer": {"lr": lr}, "training": {"epochs": 7}}))
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": lr}, distributions={"optimizer.lr": dist},
                                                  value=0.9 - 0.01 * i, user_attrs={"config": cfg}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"optimizer.lr": 0.05},
                                              distributions={"optimizer.lr": dist}))
    return study


def test_reproduce_gives_the_stored_tune_command_and_the_best_trials_train_command():
    tune = "tunelab tune examples/spaces/digits.yaml --study s --trials 30"
    text = _sections(_study(3, command=tune))["Reproduce"].content
    assert tune in text and "SPACE" not in text
    train = next(line for line in text.splitlines() if line.startswith("tunelab train"))
    argv = shlex.split(train)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    # the command trains exactly the best trial's config
    rebuilt = from_dict({}, sets)
    assert to_dict(rebuilt) == _study(1).trials[0].user_attrs["config"]
    assert [parse_override(s)[0][0] for s in sets] and "optimizer.lr=0.1" in sets


def test_reproduce_without_a_stored_command_says_so_instead_of_a_placeholder():
    text = _sections(_study(2))["Reproduce"].content
    assert "SPACE" not in text and "tunelab tune" not in text
    assert text.splitlines()[-1] == train_command(_study(1).trials[0].user_attrs["config"])
    assert "not recorded" in _sections(_study(0))["Reproduce"].content


@pytest.mark.parametrize("n", [FEW_TRIALS - 2, FEW_TRIALS])
def test_figures_on_few_completed_trials_carry_a_note(n):
    sections = _sections(_study(n))
    note = f"Only {n} completed trials"
    few = n < FEW_TRIALS
    assert (note in sections["Study"].content) == few
    for name in ("importance", "parallel", "slices"):
        assert (note in sections[name].caption) == few
    assert note not in sections["history"].caption


# ---------------------------------------------------------------------------- histograms

def test_a_vanishing_signal_shows_at_its_own_scale():
    # the init example: a deep tanh net with normal(std=0.01) weights
    cfg = from_dict({"model": {"hidden": [128] * 6, "activation": "tanh", "init": "normal", "init_std": 0.01},
                     "training": {"threads": 1}})
    report = diagnose(cfg, epochs=1, batch=256)
    last = [s for s in report["init"] if s["kind"] == "hidden"][-1]
    edges, counts = last["histogram"]["edges"], last["histogram"]["counts"]
    assert edges[-1] - edges[0] < 0.01  # the layer's own range, not tanh's [-1, 1]
    assert sum(c > 0 for c in counts) >= 10  # its shape, not one bar at 0
    fig = plot_activation_histograms(report["init"], report["trained"])
    hidden = [s for s in report["init"] if s["kind"] == "hidden"]
    ax = fig.axes[2 * (len(hidden) - 1)]  # the last hidden layer at init
    assert ax.get_xlim() == pytest.approx((edges[0], edges[-1]))
    assert f"std {last['std']:.2g}" in ax.get_title()
    plt.close(fig)


def test_the_study_report_goes_to_the_study_folder(tmp_path, monkeypatch, capsys):
    from tunelab.cli.main import main

    space = {"base": {"epochs": 1, "sleep": 0}, "space": {"x": {"uniform": [0.0, 4.0]}}}
    tunelab.tune(space, trials=2, storage=_storage(tmp_path), study="my/study", objective=objectives.quadratic)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--study", "my/study", "--storage", _storage(tmp_path)]) == 0
    # beside the study's best.yaml, never in the current folder
    assert (tmp_path / "runs" / "my_study" / "report.html").is_file()
    assert capsys.readouterr().out.strip() == "report: runs/my_study/report.html"
