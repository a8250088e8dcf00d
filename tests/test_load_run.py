"""load_run: a run folder's model ready to use, its inputs scaled as training scaled them, and the
errors of folders that cannot give one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.data.sources import DATASETS
from tunelab.data.splits import split_indices
from tunelab.errors import ConfigError
from tunelab.trainer.fit import evaluate
from tunelab.trainer.load import LoadedRun, load_run

SMALL = {"model": {"hidden": [32]}, "optimizer": {"lr": 0.01},
         "training": {"epochs": 2, "threads": 1, "device": "cpu"}}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, tunelab.RunResult]:
    out = tmp_path_factory.mktemp("load") / "digits-run"
    cfg = {**SMALL, "data": {"name": "digits", "scaling": "standardize"}}
    return out, tunelab.train(cfg, out=out)


def test_the_loaded_model_is_the_trained_one(digits_run) -> None:
    out, result = digits_run
    run = load_run(out)
    assert isinstance(run, LoadedRun) and not run.model.training
    assert run.input_shape == (1, 8, 8) and run.num_classes == 10 and run.class_names == [str(i) for i in range(10)]
    assert run.result["test_accuracy"] == result.test_accuracy and run.cfg == result.config
    for (name, a), (_, b) in zip(result.model.state_dict().items(), run.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_preprocess_is_the_training_scaling_bit_for_bit(digits_run) -> None:
    out, result = digits_run
    run = load_run(out)
    bundle = load_data(result.config.data)  # the reference: what fit() trained and tested on
    raw = DATASETS.get("digits")(result.config.data)
    _, val, test = split_indices(len(raw.y_train), False, result.config.data)
    assert torch.equal(run.preprocess(raw.x_train[test]), bundle.x_test)
    assert torch.equal(run.preprocess(raw.x_train[val][:, 0]), bundle.x_val)  # (N, H, W) gets its channel
    assert torch.equal(run.preprocess(raw.x_train[test].reshape(len(test), 64)), bundle.x_test)  # flat rows
    assert torch.equal(run.preprocess(raw.x_train[test][0]), bundle.x_test[:1])  # one example
    with pytest.raises(ConfigError, match=r"x has examples of shape \(7,\); the model takes \(1, 8, 8\)"):
        run.preprocess(np.zeros((2, 7)))


def test_predict_matches_the_model_and_the_recorded_test_accuracy(digits_run) -> None:
    out, result = digits_run
    run = load_run(out)
    bundle = load_data(result.config.data)
    raw = DATASETS.get("digits")(result.config.data)
    _, _, test = split_indices(len(raw.y_train), False, result.config.data)
    with torch.inference_mode():
        logits = result.model.eval()(bundle.x_test)
    proba = run.predict_proba(raw.x_train[test], batch_size=50)  # several batches
    torch.testing.assert_close(proba, torch.softmax(logits, 1))
    assert torch.equal(run.predict(raw.x_train[test]), logits.argmax(1))
    accuracy = (run.predict(raw.x_train[test]) == bundle.y_test).double().mean().item()
    assert accuracy == pytest.approx(result.test_accuracy, abs=1e-12)
    assert evaluate(run.model, bundle.x_test, bundle.y_test, 64)[1] == result.test_accuracy


def test_load_leaves_the_callers_random_stream_alone(digits_run) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_run(digits_run[0])
    assert torch.equal(torch.rand(3), expected)


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def test_folders_that_give_no_model_are_one_config_error_naming_the_file(digits_run, tmp_path) -> None:
    src = digits_run[0]
    with pytest.raises(ConfigError, match=r"has no config.yaml; is it a tunelab run folder"):
        load_run(tmp_path)
    with pytest.raises(ConfigError, match=r"run folder '.*nowhere' does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"is a file; give a run folder"):
        load_run(tmp_path / "file.txt")

    missing = _copy_run(src, tmp_path / "missing")
    (missing / "model.pt").unlink()
    with pytest.raises(ConfigError, match=r"has no model.pt \(status 'completed'\); train the run again"):
        load_run(missing)
    (missing / "result.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(ConfigError, match=r"has no model.pt; the run is still going \(status 'running'\)"):
        load_run(missing)

    corrupt = _copy_run(src, tmp_path / "corrupt")
    (corrupt / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"model.pt' cannot be read as model weights") as e:
        load_run(corrupt)
    assert "\n" not in str(e.value)

    other = _copy_run(src, tmp_path / "other-arch")
    text = (other / "config.yaml").read_text().replace("- 32", "- 16")
    (other / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"model.pt' does not fit the model config.yaml builds"):
        load_run(other)


def test_a_custom_model_run_says_how_to_load_it(tmp_path) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    out = tmp_path / "custom"
    tunelab.train({**SMALL, "training": {**SMALL["training"], "epochs": 1}}, out=out, model=net)
    assert json.loads((out / "result.json").read_text())["custom_model"] is True
    with pytest.raises(ConfigError, match=r"trained a model of your own .*load_state_dict\(torch.load\(path, "
                                          r"weights_only=True\)\)"):
        load_run(out)


def _write_csv(path: Path, rows: list[list], header: list[str]) -> Path:
    path.write_text("\n".join(",".join(str(v) for v in r) for r in [header, *rows]) + "\n")
    return path


def test_a_csv_run_knows_its_label_values_and_feature_columns(tmp_path) -> None:
    rng = np.random.default_rng(0)
    names = ["fox", "cat", "dog"]  # codes follow the sorted values: cat 0, dog 1, fox 2
    rows = [[*(round(rng.normal() + 3 * (names.index(n) == j), 4) for j in range(3)), n]
            for n in names * 30]
    data = _write_csv(tmp_path / "animals.csv", rows, ["w", "h", "species_weight", "species"])
    cfg = {**SMALL, "data": {"name": "csv", "path": str(data), "target": "species"}}
    out = tmp_path / "csv-run"
    tunelab.train(cfg, out=out)
    run = load_run(out)
    assert run.class_names == ["cat", "dog", "fox"] and run.feature_names == ["w", "h", "species_weight"]
    assert run.input_shape == (3,) and run.pixel_max is None
    bundle = load_data(from_dict(cfg).data)
    raw = DATASETS.get("csv")(from_dict(cfg).data)
    _, _, test = split_indices(len(raw.y_train), False, from_dict(cfg).data)
    assert torch.equal(run.preprocess(raw.x_train[test]), bundle.x_test)
