"""training.log: [tensorboard]: event files that TensorBoard's own reader reads back as the
run's history, hyperparameters and interventions; one folder per tune / compare trial; a
missing tensorboard package is one line."""

import csv
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2  # noqa: E402

import tunelab  # noqa: E402
from tunelab.cli.main import main  # noqa: E402
from tunelab.errors import ConfigError  # noqa: E402
from tunelab.trainer.control import Control  # noqa: E402

BASE = {"training": {"epochs": 3, "threads": 1, "log": ["tensorboard"]}, "model": {"hidden": [16]},
        "optimizer": {"lr": 0.003}}
TAGS = {"train_eval_loss": "loss/train", "val_loss": "loss/val", "train_eval_accuracy": "accuracy/train",
        "train_loss": "loss/train_running", "train_accuracy": "accuracy/train_running",
        "val_accuracy": "accuracy/val", "lr": "lr"}
MISSING = "training.log=['tensorboard'] needs the tensorboard package; pip install tensorboard"


def _read(logdir: Path) -> EventAccumulator:
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})  # 0: keep every event
    ea.Reload()
    return ea


def _history(run_dir: Path) -> list[dict]:
    return list(csv.DictReader(open(run_dir / "history.csv")))


def _check_scalars(ea: EventAccumulator, history: list[dict]) -> None:
    """Every history column is a scalar at step = epoch, equal to the stored value."""
    for key, tag in TAGS.items():
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [int(float(h["epoch"])) for h in history], tag
        for e, h in zip(events, history):
            assert e.value == pytest.approx(float(h[key]), rel=1e-6), (tag, e.step)


def _hparams(ea: EventAccumulator) -> plugin_data_pb2.HParamsPluginData:
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content)


def test_a_run_logs_its_history_grad_norms_and_hparams(tmp_path):
    result = tunelab.train(BASE, out=tmp_path / "run")
    ea = _read(tmp_path / "run" / "tensorboard")
    history = _history(tmp_path / "run")
    assert len(history) == 3
    _check_scalars(ea, history)
    # one gradient-norm curve per parameter, every epoch
    names = [n for n, _ in result.model.named_parameters()]
    grads = [t for t in ea.Tags()["scalars"] if t.startswith("grad_norm/")]
    assert sorted(grads) == sorted(f"grad_norm/{n}" for n in names)
    for tag in grads:
        values = ea.Scalars(tag)
        assert [e.step for e in values] == [1, 2, 3] and all(math.isfinite(e.value) and e.value > 0 for e in values)
    # the hyperparameters: the flattened resolved config, with the final metrics
    hp = _hparams(ea).session_start_info.hparams
    assert hp["optimizer.lr"].number_value == pytest.approx(0.003)
    assert hp["training.epochs"].number_value == 3 and hp["model.hidden"].string_value == "[16]"
    assert hp["data.name"].string_value == "digits"
    assert ea.Scalars("hparam/test_accuracy")[-1].value == pytest.approx(result.test_accuracy, rel=1e-6)
    assert ea.Scalars("hparam/best_val_accuracy")[-1].value == pytest.approx(result.best_val_accuracy, rel=1e-6)
    end = plugin_data_pb2.HParamsPluginData.FromString(ea.PluginTagToContent("hparams")["_hparams_/session_end_info"])
    assert end.session_end_info.status == api_pb2.Status.Value("STATUS_SUCCESS")


def test_an_intervention_is_visible(tmp_path):
    control = Control()
    control.send("lr=0.01")  # read before the first step
    tunelab.train({**BASE, "training": {**BASE["training"], "epochs": 1}}, out=tmp_path / "run", control=control)
    texts = _read(tmp_path / "run" / "tensorboard").Tensors("interventions/text_summary")
    shown = [t.tensor_proto.string_val[0].decode() for t in texts]
    assert [t.step for t in texts] == [1] and "lr=0.01" in shown[0] and "epoch 1 step 0" in shown[0]


def test_a_resume_from_an_earlier_checkpoint_replaces_the_later_epochs(tmp_path):
    run_dir = tmp_path / "run"
    tunelab.train(BASE, out=run_dir)
    tunelab.resume(run_dir, checkpoint="1")  # epochs 2 and 3 again: one curve, not two
    ea = _read(run_dir / "tensorboard")
    history = _history(run_dir)
    assert [h["epoch"] for h in history] == ["1", "2", "3"]
    _check_scalars(ea, history)


def test_a_run_without_a_folder_writes_no_events(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tunelab.train({**BASE, "training": {**BASE["training"], "epochs": 1}}, save=False)
    assert result.status == "completed" and not any(tmp_path.rglob("events.out.tfevents.*"))


def test_tune_trials_write_one_folder_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # trials log under ./runs/tensorboard/<study>/
    base = {**BASE, "training": {**BASE["training"], "epochs": 2}}
    res = tunelab.tune({"base": base, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}},
                       trials=2, storage="sqlite:///:memory:", study="tb", seed=0)
    root = tmp_path / "runs" / "tensorboard" / "tb"
    assert sorted(p.name for p in root.iterdir()) == ["trial-0000", "trial-0001"]
    for trial in res.study.trials:
        folder = root / f"trial-{trial.number:04d}"
        assert Path(trial.user_attrs["tensorboard"]) == folder.resolve()
        ea = _read(folder)
        stored = trial.user_attrs["history"]  # what the driver kept in storage
        _check_scalars(ea, [{k: str(v) for k, v in h.items()} for h in stored])
        assert _hparams(ea).session_start_info.hparams["optimizer.lr"].number_value == \
            pytest.approx(trial.user_attrs["config"]["optimizer"]["lr"])
        assert "hparam/test_accuracy" not in ea.Tags()["scalars"]  # search trials never read the test set


def test_compare_runs_write_one_folder_each(tmp_path, monkeypatch):
    from tunelab.analysis.designs import one_at_a_time
    from tunelab.search.compare import run_compare

    monkeypatch.chdir(tmp_path)
    base = {**BASE, "training": {**BASE["training"], "epochs": 1}}
    arms = one_at_a_time(base, [("optimizer.lr", [0.01])])
    study = run_compare(base, arms, [0, 1], name="tb", storage="sqlite:///:memory:")
    root = tmp_path / "runs" / "tensorboard" / "compare-tb"
    assert sorted(p.name for p in root.iterdir()) == [f"trial-{i:04d}" for i in range(4)]
    for trial in study.trials:
        ea = _read(root / f"trial-{trial.number:04d}")
        assert [e.step for e in ea.Scalars("loss/val")] == [1]
        assert ea.Scalars("hparam/test_accuracy")[-1].value == \
            pytest.approx(trial.user_attrs["result"]["test_accuracy"], rel=1e-6)


@pytest.fixture
def no_tensorboard(monkeypatch):
    """Make ``import torch.utils.tensorboard`` fail as it does without the package."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


def test_a_missing_package_fails_before_training(tmp_path, no_tensorboard):
    with pytest.raises(ConfigError) as err:
        tunelab.train(BASE, out=tmp_path / "run")
    assert str(err.value) == MISSING and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        tunelab.tune({"base": BASE, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}},
                     trials=1, storage="sqlite:///:memory:")
    # a config without the logger does not need the package
    plain = {**BASE, "training": {**BASE["training"], "epochs": 1, "log": []}}
    assert tunelab.train(plain, out=tmp_path / "plain").status == "completed"


def test_a_missing_package_is_one_line_in_the_cli(tmp_path, capsys, no_tensorboard):
    code = main(["train", "--set", "training.log=[tensorboard]", "--set", "training.threads=1",
                 "--out", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {MISSING}\n" and not (tmp_path / "run").exists()
