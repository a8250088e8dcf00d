"""`tunelab report --run`: one offline page per run folder, built from a real run with an
intervention and a fork of it."""

from __future__ import annotations

import base64
import html.parser
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

import tunelab
from tunelab.analysis.run_report import read_events, read_run
from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.report.figures import Line, plot_curves
from tunelab.report.html import format_value
from tunelab.report.run_sections import run_sections
from tunelab.trainer.control import Control
from tunelab.trainer.lineage import make_fork

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONFIG = {"model": {"hidden": [16]}, "training": {"epochs": 3, "threads": 1}}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 3-epoch parent whose lr is halved at epoch 2, step 3, and a fork of it after epoch 2
    with another lr, run to the end."""
    root = tmp_path_factory.mktemp("runs")
    control = Control()

    def on_batch(epoch: int, step: int, steps: int) -> None:
        if epoch == 1 and step == 3:  # epoch is 0-based here; read before the step at index 3
            control.send("lr*=0.5")

    tunelab.train(CONFIG, out=root / "parent", control=control, on_batch=on_batch)
    child = make_fork(root / "parent", "2", ["optimizer.lr=0.01"], root / "child")
    tunelab.resume(child)
    return {"parent": root / "parent", "child": child}


# ---------------------------------------------------------------- reading the page back

class _Page(html.parser.HTMLParser):
    """Tags with their attributes, and each section's tables as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.texts: dict[str, str] = {}
        self._section, self._in_h2, self._cell = "", False, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "h2":
            self._in_h2, self._section = True, ""
        elif tag == "tr":
            self.tables.setdefault(self._section, []).append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th"):
            self.tables[self._section][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._in_h2:
            self._section += data
        elif self._cell is not None:
            self._cell += data
        elif self._section:
            self.texts[self._section] = self.texts.get(self._section, "") + data


def _read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _report(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def _control_events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "control"]


def _assert_self_contained(path: Path) -> _Page:
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    page = _read_page(path)
    links = [(tag, attrs.get("src") or attrs.get("href")) for tag, attrs in page.tags
             if attrs.get("src") or attrs.get("href")]
    assert links and all(v.startswith(("data:", "#")) for _, v in links), links
    images = [v for tag, v in links if tag == "img"]
    assert len(images) >= 2  # the curves and the activation histograms
    for uri in images:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    return page


# ---------------------------------------------------------------- the command

def test_parent_report_shows_intervention_fork_result_config_and_diagnostics(capsys, runs):
    parent, child = runs["parent"], runs["child"]
    code, out, err = _report(capsys, "--run", str(parent))
    assert code == 0 and err == ""
    assert out.strip() == f"report: {parent / 'report.html'}"
    page = _assert_self_contained(parent / "report.html")

    (event,) = _control_events(parent)
    assert (event["epoch"], event["step"], event["command"]) == (2, 3, "lr*=0.5")
    assert page.tables["Interventions"] == [
        ["epoch", "step", "command", "lr", "source", "details"],
        ["2", "3", "lr*=0.5", format_value(event["lr"]), "api", ""]]

    head, this, fork = page.tables["Lineage"]
    assert head == ["relation", "run", "status", "best val accuracy", "branched after epoch", "step", "changes"]
    assert this == ["this run", "parent", "completed", format_value(_result(parent)["best_val_accuracy"]), "", "", ""]
    assert fork == ["fork", "child", "completed", format_value(_result(child)["best_val_accuracy"]),
                    "2", "0", "optimizer.lr=0.01"]
    assert _result(child)["best_val_accuracy"] != _result(parent)["best_val_accuracy"]  # each its own

    result = dict(row for row in page.tables["Result"][1:])
    for key in ("status", "test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run"):
        assert result[key] == format_value(_result(parent)[key])
    assert result["versions.torch"] == torch.__version__

    changed = page.tables["Config: changed from the defaults"]
    assert ["model.hidden", "[16]", "[256, 128]"] in changed and ["training.epochs", "3", "20"] in changed
    assert "  batch_size: 128\n" in page.texts["Config"] and "optimizer:\n" in page.texts["Config"]

    layers = page.tables["Layer statistics"]
    assert [row[1] for row in layers[1:]] == ["fc0", "out"]
    assert "model.pt" in page.texts["Diagnostics"] and "512 training examples" in page.texts["Diagnostics"]


def test_child_report_shows_its_parent_and_the_inherited_intervention(capsys, runs, tmp_path):
    parent, child = runs["parent"], runs["child"]
    out_file = tmp_path / "reports" / "child.html"
    code, out, _ = _report(capsys, "--run", str(child), "--out", str(out_file), "--no-diagnostics")
    assert code == 0 and out.strip() == f"report: {out_file}"
    assert not (child / "report.html").exists()
    page = _read_page(out_file)

    (event,) = _control_events(parent)
    assert page.tables["Interventions"][1:] == [
        ["2", "3", "lr*=0.5", format_value(event["lr"]), "api", "inherited from parent"],
        ["3", "0", "fork", "", "", "checkpoint epoch-0002.pt"],
        ["3", "0", "resume", "", "", "from checkpoint last"]]
    head, parent_row, this = page.tables["Lineage"]
    assert parent_row[:4] == ["parent", "parent", "completed", format_value(_result(parent)["best_val_accuracy"])]
    assert this == ["this run", "child", "completed", format_value(_result(child)["best_val_accuracy"]),
                    "2", "0", "optimizer.lr=0.01"]
    assert "A fork of parent after epoch 2, with optimizer.lr=0.01." in page.texts["Summary"]
    assert ["optimizer.lr", "0.01", "0.001"] in page.tables["Config: changed from the defaults"]
    assert "Not measured" in page.texts["Diagnostics"] and "Layer statistics" not in page.tables


@pytest.mark.parametrize("which,other,label", [("child", "parent", "parent parent (val)"),
                                               ("parent", "child", "fork child (val)")])
def test_curves_draw_the_relative_the_branch_and_the_intervention(runs, which, other, label):
    run = read_run(runs[which], diagnostics=False)
    (curves,) = [s for s in run_sections(run) if s.title == "Curves"]
    other_val = [h["val_accuracy"] for h in read_run(runs[other], diagnostics=False).history]
    steps = _control_events(runs["parent"])[0]["steps"]
    for ax in curves.content.axes:
        labels = [line.get_label() for line in ax.lines]
        assert labels.count(label) == 1
        if ax.get_title() == "accuracy":  # the relative's whole curve, not only up to the branch
            assert list(ax.lines[labels.index(label)].get_ydata()) == other_val and len(other_val) == 3
        verticals = sorted(round(float(line.get_xdata()[0]), 6) for line in ax.lines
                           if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2)
        assert verticals == [round(1 + 3 / steps, 6), 2.0]  # the intervention (epoch 2, step 3), the branch


def test_plot_curves_draws_intervention_markers_and_other_lines():
    history = [dict(epoch=e, train_loss=1 / e, val_loss=1.1 / e, train_accuracy=0.5 + e / 10,
                    val_accuracy=0.4 + e / 10) for e in (1, 2, 3, 4)]
    events = [dict(kind="control", command="lr*=0.5", epoch=2, step=5, steps=10),
              dict(kind="control", command="lr=0.1", epoch=4, step=0, steps=10),
              dict(kind="resume", epoch=3, step=0, checkpoint="last", changes=[])]  # no marker
    others = [Line("parent p", history[:2], 2.0), Line("fork f", history[1:], None)]
    fig = plot_curves(history, "t", events, others)
    for ax in fig.axes:
        vertical = [line for line in ax.lines if len(line.get_xdata()) == 2 and len(set(line.get_xdata())) == 1]
        red = sorted(float(line.get_xdata()[0]) for line in vertical if line.get_color() == "tab:red")
        grey = [float(line.get_xdata()[0]) for line in vertical if line.get_color() == "grey"]
        assert red == [1.5, 3.0] and grey == [2.0]
        curves = [line for line in ax.lines if line not in vertical]
        assert [line.get_label() for line in curves] == ["train", "validation", "parent p (val)", "fork f (val)"]
        assert list(curves[2].get_xdata()) == [1, 2] and list(curves[3].get_xdata()) == [2, 3, 4]
        assert sorted(t.get_text() for t in ax.texts) == ["lr*=0.5", "lr=0.1"]


# ---------------------------------------------------------------- other folders

def _copy(run_dir: Path, to: Path, *leave_out: str) -> Path:
    return Path(shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("report.html", *leave_out)))


def test_a_run_without_events_or_lineage_still_gets_a_report(capsys, runs, tmp_path):
    plain = _copy(runs["parent"], tmp_path / "plain", "events.jsonl", "forks.jsonl")
    code, _, err = _report(capsys, "--run", str(plain))
    assert code == 0 and err == ""
    page = _assert_self_contained(plain / "report.html")
    assert "Interventions" not in page.tables and "No interventions were recorded." in page.texts["Interventions"]
    assert "Lineage" not in page.tables and "not a fork and has no forks" in page.texts["Lineage"]
    assert dict(page.tables["Result"][1:])["test_accuracy"] == format_value(_result(plain)["test_accuracy"])


def test_a_folder_with_only_its_config_gets_a_report(capsys, runs, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(runs["parent"] / "config.yaml", fresh)
    code, _, err = _report(capsys, "--run", str(fresh))
    assert code == 0 and err == ""
    page = _read_page(fresh / "report.html")
    assert "No epoch has finished yet." in page.texts["Curves"]
    assert "no result.json" in page.texts["Result"].lower() and "no model.pt" in page.texts["Diagnostics"]


def test_diagnostics_measure_the_saved_weights(capsys, runs, tmp_path):
    zeroed = _copy(runs["parent"], tmp_path / "zeroed")
    weights = torch.load(zeroed / "model.pt", weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in weights.items()}, zeroed / "model.pt")
    assert _report(capsys, "--run", str(zeroed))[0] == 0
    warning = "layer 1: all units compute the same function (symmetry not broken); use a random init"
    assert warning in _read_page(zeroed / "report.html").texts["Diagnostics"]
    same = _copy(runs["parent"], tmp_path / "same")  # the trained weights: no such warning
    assert _report(capsys, "--run", str(same))[0] == 0
    assert warning not in _read_page(same / "report.html").texts["Diagnostics"]


def test_weights_that_do_not_fit_the_config_are_one_line(capsys, runs, tmp_path):
    changed = _copy(runs["parent"], tmp_path / "changed")
    cfg = changed / "config.yaml"
    cfg.write_text(cfg.read_text().replace("hidden:\n  - 16", "hidden:\n  - 8"))
    code, _, err = _report(capsys, "--run", str(changed))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: the weights do not fit the model") and "fc0" in err
    assert not (changed / "report.html").exists()


def _a_file(folder: Path) -> Path:
    (folder / "file.txt").write_text("x")
    return folder / "file.txt"


@pytest.mark.parametrize("make,message", [
    (lambda p: p, "has no config.yaml; is it a tunelab run folder?"),
    (lambda p: p / "missing", "does not exist"),
    (_a_file, "is a file; give a run folder"),
])
def test_a_folder_that_is_not_a_run_folder_is_one_line_and_exit_2(capsys, tmp_path, make, message):
    target = make(tmp_path)
    code, out, err = _report(capsys, "--run", str(target))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not list(tmp_path.rglob("report.html"))


def test_exactly_one_source(capsys, runs):
    for argv in ([], ["--run", str(runs["parent"]), "--study", "s"], ["--compare", "c", "--run", "r"]):
        code, _, err = _report(capsys, *argv)
        assert code == 2
        assert err == "error: give exactly one of --compare NAME, --study NAME or --run RUN_DIR\n"


# ---------------------------------------------------------------- reading events

def test_events_tolerate_a_line_being_written_but_not_a_broken_one(tmp_path):
    good = json.dumps({"kind": "control", "command": "stop", "epoch": 1, "step": 2})
    (tmp_path / "events.jsonl").write_text(good + "\n" + '{"kind": "cont')
    assert read_events(tmp_path) == [json.loads(good)]
    (tmp_path / "events.jsonl").write_text('{"kind": \n' + good + "\n")
    with pytest.raises(ConfigError, match="line 1, is not valid JSON"):
        read_events(tmp_path)
    assert read_events(tmp_path / "nowhere") == []


def test_a_fork_inherits_the_events_before_its_branch_point(tmp_path, runs):
    """Commands are read before a step, so one at the branch step came after the checkpoint."""
    parent = tmp_path / "p"
    parent.mkdir()
    shutil.copy(runs["parent"] / "config.yaml", parent)
    stamps = [(1, 5), (2, 0), (2, 3), (3, 1)]
    (parent / "events.jsonl").write_text("".join(
        json.dumps({"kind": "control", "command": f"lr={e}.{s}", "epoch": e, "step": s}) + "\n" for e, s in stamps))
    for name, epoch, step, inherited in (("a", 1, 0, [(1, 5)]), ("b", 1, 3, [(1, 5), (2, 0)]),
                                         ("c", 2, 0, [(1, 5), (2, 0), (2, 3)])):
        child = tmp_path / name
        child.mkdir()
        shutil.copy(parent / "config.yaml", child)
        (child / "lineage.json").write_text(json.dumps(
            {"parent": "../p", "checkpoint": "x.pt", "epoch": epoch, "step": step, "overrides": []}))
        (child / "events.jsonl").write_text(json.dumps({"kind": "control", "command": "stop", "epoch": 9,
                                                        "step": 1, "source": "api"}) + "\n")
        events = read_run(child, diagnostics=False).events
        assert [(e["epoch"], e["step"]) for e in events] == inherited + [(9, 1)]
        assert [e.get("inherited") for e in events] == ["p"] * len(inherited) + [None]
