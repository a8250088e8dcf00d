"""`tunelab evaluate`, `tunelab predict` and `tunelab runs compare` on real small runs, checked
against fit's evaluate, result.json and the model applied by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tunelab
from tunelab.cli import runs
from tunelab.cli.evaluate import evaluate_command
from tunelab.cli.predict import predict_command
from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.data.sources import DATASETS
from tunelab.data.splits import split_indices
from tunelab.trainer.fit import evaluate
from tunelab.trainer.load import load_run

SMALL = {"model": {"hidden": [32]}, "optimizer": {"lr": 0.01},
         "training": {"epochs": 2, "threads": 1, "device": "cpu"}}


@pytest.fixture
def cli(monkeypatch, capsys):
    """main() with evaluate, predict and the runs group; registered here only where main.py's
    COMMANDS does not list them yet. Returns run(*argv) -> (exit code, stdout, stderr)."""
    from tunelab.cli import main as m

    monkeypatch.setattr(m.app, "registered_commands", list(m.app.registered_commands))
    monkeypatch.setattr(m.app, "registered_groups", list(m.app.registered_groups))
    listed = getattr(m, "COMMANDS", {})
    for name, command in (("evaluate", evaluate_command), ("predict", predict_command)):
        if name not in listed:
            m.app.command(name)(command)
    if listed.get("runs", ("", ""))[1] != "app":
        m.app.add_typer(runs.app, name="runs")

    def run(*argv):
        code = m.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "digits"
    return out, tunelab.train({**SMALL, "data": {"name": "digits", "scaling": "standardize"}}, out=out)


def _digits_split(cfg_data, split):
    raw = DATASETS.get("digits")(cfg_data)
    train, val, test = split_indices(len(raw.y_train), False, cfg_data)
    idx = {"train": train, "val": val, "test": test}[split]
    return raw.x_train[idx], raw.y_train[idx]


# --------------------------------------------------------------------------- evaluate

def test_evaluate_equals_the_result_and_fits_evaluate(cli, digits_run) -> None:
    out, result = digits_run
    code, stdout, _ = cli("evaluate", out, "--json")
    assert code == 0
    ev = json.loads(stdout)
    recorded = json.loads((out / "result.json").read_text())
    assert ev["split"] == "test" and ev["examples"] == 359
    assert ev["accuracy"] == recorded["test_accuracy"] and ev["loss"] == pytest.approx(recorded["test_loss"], rel=1e-12)
    bundle = load_data(result.config.data)
    pred = result.model.eval()(bundle.x_test).argmax(1)
    for c in ev["per_class"]:  # per class, by hand from the trained model
        mask = bundle.y_test == c["index"]
        assert c["examples"] == int(mask.sum()) and c["correct"] == int((pred[mask] == c["index"]).sum())
    for split in ("val", "train"):
        code, stdout, _ = cli("evaluate", out, "--split", split, "--json")
        ev = json.loads(stdout)
        x, y = getattr(bundle, f"x_{split}"), getattr(bundle, f"y_{split}")
        loss, acc = evaluate(result.model, x, y, result.config.training.eval_batch_size)
        assert code == 0 and ev["examples"] == len(y)
        assert ev["accuracy"] == acc and ev["loss"] == loss


def test_evaluate_prints_a_per_class_table(cli, digits_run) -> None:
    code, stdout, _ = cli("evaluate", digits_run[0])
    lines = stdout.splitlines()
    assert code == 0 and lines[0].startswith("run digits · digits · test split · 359 examples")
    acc = json.loads((digits_run[0] / "result.json").read_text())["test_accuracy"]
    assert f"accuracy {acc:.4f}" in lines[1]
    table = lines[lines.index(next(l for l in lines if l.strip().startswith("class"))) + 1:]
    assert [int(row.split()[0]) for row in table] == list(range(10))


def test_other_data_keeps_the_scaling_of_the_original_training_set(cli, digits_run) -> None:
    out, result = digits_run
    code, stdout, _ = cli("evaluate", out, "--data", "split_seed=1", "--json")
    assert code == 0
    ev = json.loads(stdout)
    assert ev["data"] == ["data.split_seed=1"] and "original training set" in ev["scaling"]
    # by hand: the statistics of split_seed 0's training part, applied to split_seed 1's test part
    x_fit, _ = _digits_split(result.config.data, "train")
    mean, std = x_fit.mean(0, dtype=np.float64), x_fit.std(0, dtype=np.float64)
    std[std == 0] = 1
    x, y = _digits_split(from_dict({"data": {"split_seed": 1}}).data, "test")
    xs = torch.from_numpy(((x - mean) / std).astype(np.float32))
    with torch.inference_mode():
        logits = result.model.eval()(xs)
    assert ev["loss"] == pytest.approx(F.cross_entropy(logits, torch.from_numpy(y)).item(), rel=1e-5)
    assert ev["accuracy"] == (logits.argmax(1).numpy() == y).mean()
    refit = load_data(from_dict({"data": {"split_seed": 1, "scaling": "standardize"}}).data)
    assert ev["loss"] != pytest.approx(evaluate(result.model, refit.x_test, refit.y_test, 512)[0], rel=1e-5)


@pytest.mark.parametrize("argv,message", [
    (["--split", "holdout"], "error: split='holdout' is not known; choose one of ['all', 'test', 'train', 'val']"),
    (["--data", "nonsense"], "error: data='nonsense' must look like key=value"),
    (["--data", "scaling=unit"], "error: data.scaling='unit' cannot change: the model was trained on inputs "
                                 "scaled with 'standardize'"),
    (["--data", "name=mnist1d"], "error: data.name='mnist1d' has examples of shape (40,); the model takes (1, 8, 8)"),
    (["--data", "name=digitz"], "error: data.name='digitz' is not known"),
])
def test_evaluate_user_errors_are_one_line(cli, digits_run, argv, message) -> None:
    code, _, err = cli("evaluate", digits_run[0], *argv)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err


def test_evaluate_a_folder_that_is_no_run(cli, tmp_path) -> None:
    code, _, err = cli("evaluate", tmp_path)
    assert code == 2 and "has no config.yaml" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- predict

def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))


def test_predict_npz_and_csv_rows_are_the_models_predictions(cli, digits_run, tmp_path) -> None:
    out, result = digits_run
    run = load_run(out)
    x, y = _digits_split(result.config.data, "test")
    x, y = x[:12], y[:12]
    proba = run.predict_proba(x)
    np.savez(tmp_path / "in.npz", x=x[:, 0], y=y)  # (N, 8, 8): the channel axis is added
    code, stdout, err = cli("predict", out, tmp_path / "in.npz")
    rows = _rows(stdout)
    assert code == 0 and [r["input"] for r in rows] == [str(i) for i in range(12)]
    assert [int(r["class"]) for r in rows] == proba.argmax(1).tolist()
    assert [float(r["probability"]) for r in rows] == pytest.approx(proba.max(1).values.tolist(), abs=5e-5)
    assert [int(r["true_class"]) for r in rows] == y.tolist()
    assert f"accuracy {(proba.argmax(1).numpy() == y).mean():.4f} on 12 labelled inputs" in err

    header = [f"pixel{i}" for i in range(64)]
    with open(tmp_path / "in.csv", "w", newline="") as f:  # the csv source's format, no label column
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(x.reshape(12, 64).tolist())
    code, _, _ = cli("predict", out, tmp_path / "in.csv", "--out", tmp_path / "p" / "pred.csv")
    rows = _rows((tmp_path / "p" / "pred.csv").read_text())
    assert code == 0 and [int(r["class"]) for r in rows] == proba.argmax(1).tolist() and "true_class" not in rows[0]


def test_predict_images_are_resized_like_the_model_input(cli, digits_run, tmp_path) -> None:
    out, result = digits_run
    run = load_run(out)
    x, _ = _digits_split(result.config.data, "test")
    files = []
    for i in range(6):
        files.append(tmp_path / f"digit{i}.png")
        mpimg.imsave(files[-1], np.kron(x[i, 0], np.ones((4, 4))), cmap="gray", vmin=0, vmax=16)  # 32 x 32
    code, stdout, _ = cli("predict", out, *files)
    rows = _rows(stdout)
    assert code == 0 and [r["input"] for r in rows] == [str(f) for f in files]
    # by hand: the PNG's gray levels, 4 x 4 blocks averaged back to 8 x 8, in digits' 0..16 units
    back = np.stack([mpimg.imread(f)[..., 0].reshape(8, 4, 8, 4).mean((1, 3)) for f in files]) * 16
    assert np.abs(back - x[:6, 0]).max() <= 16 / 255  # the image holds the sample (8-bit rounding)
    proba = run.predict_proba(back)
    assert [int(r["class"]) for r in rows] == proba.argmax(1).tolist()
    assert [float(r["probability"]) for r in rows] == pytest.approx(proba.max(1).values.tolist(), abs=2e-4)
    code, stdout, _ = cli("predict", out, tmp_path)  # a folder: its images, sorted
    assert code == 0 and [r["input"] for r in _rows(stdout)] == [str(f) for f in files]


def test_predict_errors_say_expected_and_got(cli, digits_run, tmp_path) -> None:
    (tmp_path / "few.csv").write_text("a,b,label\n1,2,3\n")
    code, _, err = cli("predict", digits_run[0], tmp_path / "few.csv")
    assert code == 2 and err.count("\n") == 1
    assert "has 2 feature columns (besides 'label'); the model takes 64 values per example" in err
    np.savez(tmp_path / "wide.npz", x=np.zeros((3, 10, 10)))
    code, _, err = cli("predict", digits_run[0], tmp_path / "wide.npz")
    assert code == 2 and "has examples of shape (10, 10); the model takes (1, 8, 8)" in err
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = cli("predict", digits_run[0], tmp_path / "notes.txt")
    assert code == 2 and "is not an image" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- a csv run

@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """Three separable classes named by strings (codes by sorted value: cat 0, dog 1, fox 2)."""
    folder = tmp_path_factory.mktemp("csvrun")
    rng = np.random.default_rng(0)
    names = ["fox", "cat", "dog"]
    rows = [[round(float(rng.normal()) + 3 * (names.index(n) == j), 4) for j in range(3)] + [n]
            for n in names * 40]
    path = folder / "animals.csv"
    path.write_text("w,h,l,species\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    cfg = {**SMALL, "training": {**SMALL["training"], "epochs": 15, "batch_size": 16},  # 90 steps, 0.1 s
           "data": {"name": "csv", "path": str(path), "target": "species", "scaling": "standardize"}}
    return folder / "run", tunelab.train(cfg, out=folder / "run"), rows


def test_evaluate_on_another_csv_matches_labels_by_value(cli, csv_run, tmp_path) -> None:
    out, result, rows = csv_run
    other = [r for r in rows if r[3] != "cat"][:30]  # no cat: dog and fox must stay classes 1 and 2
    path = tmp_path / "other.csv"
    path.write_text("species,l,w,h\n" + "".join(f"{r[3]},{r[2]},{r[0]},{r[1]}\n" for r in other))  # reordered
    code, stdout, err = cli("evaluate", out, "--data", f"path={path}", "--split", "all", "--json")
    assert code == 0, err
    ev = json.loads(stdout)
    assert [(c["name"], c["examples"]) for c in ev["per_class"]] == [
        ("cat", 0), ("dog", sum(r[3] == "dog" for r in other)), ("fox", sum(r[3] == "fox" for r in other))]
    # by hand: training's standardization (its own training split), the model, labels by name
    cfg = result.config.data
    train, _, _ = split_indices(len(rows), False, cfg)
    fit = np.array([r[:3] for r in rows], dtype=np.float32)[train]
    mean, std = fit.mean(0, dtype=np.float64), fit.std(0, dtype=np.float64)
    x = torch.from_numpy(((np.array([r[:3] for r in other], dtype=np.float32) - mean) / std).astype(np.float32))
    y = torch.tensor([{"cat": 0, "dog": 1, "fox": 2}[r[3]] for r in other])
    with torch.inference_mode():
        logits = result.model.eval()(x)
    assert ev["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert ev["accuracy"] == (logits.argmax(1) == y).double().mean().item()


def test_csv_inputs_need_the_training_columns(cli, csv_run, tmp_path) -> None:
    out, result, rows = csv_run
    (tmp_path / "x.csv").write_text("w,h,height\n1,2,3\n")
    code, _, err = cli("predict", out, tmp_path / "x.csv")
    assert code == 2 and err.count("\n") == 1
    assert "has 3 feature columns ['w', 'h', 'height']; the run was trained on 3 columns ['w', 'h', 'l']" in err
    (tmp_path / "ok.csv").write_text("l,w,h,species\n0,0,5,fox\n")  # columns in another order: h=5
    code, stdout, _ = cli("predict", out, tmp_path / "ok.csv")
    row = _rows(stdout)[0]
    assert code == 0 and row["class_name"] == "cat" and row["true_class"] == "2"  # h is cat's column
    assert load_run(out).predict(np.array([[0, 5, 0]])).tolist() == [0]  # cat, by the model itself
    (tmp_path / "bird.csv").write_text("w,h,l,species\n0,0,5,bird\n")
    code, _, err = cli("predict", out, tmp_path / "bird.csv")
    assert code == 2 and "label 'bird' of" in err and "its classes are ['cat', 'dog', 'fox']" in err
    png = tmp_path / "a.png"
    mpimg.imsave(png, np.zeros((8, 8)))
    code, _, err = cli("predict", out, png)
    assert code == 2 and "image files need a model of images; the model takes vectors of shape (3,)" in err


# --------------------------------------------------------------------------- runs compare

def test_runs_compare_and_the_listing_beside_it(cli, digits_run, csv_run, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    a, b = digits_run[0], csv_run[0]
    code, stdout, err = cli("runs", "compare", a, b, "--out", tmp_path / "cmp.png")
    assert code == 0, err
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    lines = stdout.splitlines()
    for path, line in zip((a, b), lines[1:3]):
        res = json.loads((path / "result.json").read_text())
        assert line.split()[:3] == [path.name, "completed", str(res["epochs_run"])]
        assert f"{res['best_val_accuracy']:.4f}" in line and line.split()[-1] == f"{res['test_accuracy']:.4f}"
    code, stdout, _ = cli("runs", "compare", a, "--metric", "val_loss")  # default figure under runs/
    made = list((tmp_path / "runs").glob("compare-runs-*.png"))
    assert code == 0 and len(made) == 1 and "best val_loss" in stdout
    code, _, err = cli("runs", "compare", a, tmp_path / "cmp.png")
    assert code == 2 and "cmp.png' is not a run folder (no config.yaml)" in err
    code, stdout, _ = cli("runs", a.parent)  # the listing still takes a folder
    assert code == 0 and "runs in" in stdout and a.name in stdout
    code, stdout, _ = cli("runs")  # and defaults to runs/ (which holds no run folder here)
    assert code == 0 and "no run folders in runs" in stdout
