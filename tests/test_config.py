"""Config parsing: defaults, overrides, round trips, and every kind of bad config."""

import pytest
import yaml

from tunelab.config import RunConfig, UniqueKeyLoader, dump_config, from_dict, load_config, to_dict
from tunelab.errors import ConfigError


def test_defaults_are_complete_and_valid():
    cfg = from_dict({})
    assert isinstance(cfg, RunConfig)
    assert cfg.data.name == "digits" and cfg.model.name == "mlp"
    assert cfg.optimizer.lr == 1e-3 and cfg.optimizer.eps == 1e-8


def test_overrides_are_yaml_values():
    cfg = from_dict({}, ["model.hidden=[64, 32, 16]", "optimizer.lr=3e-4", "training.early_stopping.enabled=true"])
    assert cfg.model.hidden == [64, 32, 16]
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.training.early_stopping.enabled is True


def test_round_trip_through_yaml(tmp_path):
    cfg = from_dict({"model": {"name": "cnn", "norm": "group", "groups": 4}, "schedule": {"name": "cosine"}})
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert to_dict(load_config(tmp_path / "c.yaml")) == to_dict(cfg)


def test_pyyaml_exponent_without_dot_is_a_float(tmp_path):
    (tmp_path / "c.yaml").write_text("optimizer:\n  lr: 1e-3\n")
    assert load_config(tmp_path / "c.yaml").optimizer.lr == 1e-3


BAD = [
    ({"optimiser": {}}, [], r"optimiser is not a config key; allowed keys: \['augment', 'data'"),
    ({"model": {"widths": [3]}}, [], r"model.widths is not a config key; allowed keys: .*'hidden'"),
    ({"training": {"epochs": "ten"}}, [], r"training.epochs='ten' has the wrong type; expected an integer"),
    ({"training": {"epochs": 2.5}}, [], r"training.epochs=2.5 has the wrong type; expected an integer"),
    ({"training": {"epochs": True}}, [], r"training.epochs=True has the wrong type"),
    ({"model": {"hidden": 128}}, [], r"model.hidden=128 has the wrong type; expected a list of an integer"),
    ({"model": {"hidden": [128, "x"]}}, [], r"model.hidden\[1\]='x' has the wrong type"),
    ({"optimizer": {"lr": -0.1}}, [], r"optimizer.lr=-0.1 is out of range; allowed: \(0.0, inf\]"),
    ({"optimizer": {"lr": 0}}, [], r"optimizer.lr=0 is out of range"),
    ({"model": {"dropout": 1.0}}, [], r"model.dropout=1.0 is out of range; allowed: \[0.0, 1.0\)"),
    ({"data": {"val_fraction": 1}}, [], r"data.val_fraction=1 is out of range; allowed: \[0.0, 1.0\)"),
    ({"data": {"val_fraction": 0}, "training": {"early_stopping": {"enabled": True}}}, [],
     r"^training.early_stopping.monitor='val_loss' needs a validation set, and data.val_fraction=0 holds none"),
    ({"data": {"val_fraction": 0}, "schedule": {"name": "plateau"}}, [],
     r"^schedule.monitor='val_loss' needs a validation set, and data.val_fraction=0 holds none"),
    ({"training": {"steps": 100, "epochs": 3}}, [], r"^training.epochs=3 and training.steps=100 are alternatives; give one"),
    ({"training": {"eval_every": 10}}, [], r"^training.eval_every=10 is used only with training.steps"),
    ({"training": {"steps": 10, "eval_every": 20}}, [], r"^training.eval_every=20 is more than training.steps=10; allowed: 1 to 10$"),
    ({"model": {"name": "cnn", "kernel_size": [3, 3, 3]}}, [], r"^model.kernel_size=\[3, 3, 3\] gives 3 values for 2 conv blocks"),
    ({"model": {"stride": [1, 0]}}, [], r"^model.stride\[1\]=0 is out of range|^model.stride=\[1, 0\] is out of range"),
    ({"model": {"padding": "same"}}, [], r"^model.padding='same' has the wrong type; expected an integer or a list of an integer or null$"),
    ({"model": {"residual": True, "name": "cnn"}}, [], r"^model.residual=true applies to model.name='mlp'"),
    ({"data": {"name": "images"}}, [], r"^data.path is required for data.name='images'; give the folder to read$"),
    ({"training": {"batch_size": 0}}, [], r"training.batch_size=0 is out of range; allowed: \[1, inf\]"),
    ({"model": {"activation": "relux"}}, [], r"model.activation='relux' is not known; choose one of \[.*'relu'.*\(did you mean 'relu'\?\)"),
    ({"model": {"init": "kaiming"}}, [], r"model.init='kaiming' is not known; choose one of \[.*'he_normal'"),
    ({"model": {"norm": "batchnorm"}}, [], r"model.norm='batchnorm' is not known"),
    ({"schedule": {"name": "linear"}}, [], r"schedule.name='linear' is not known; choose one of \[.*'cosine'"),
    ({"data": {"name": "cifar"}}, [], r"data.name='cifar' is not known; choose one of \[.*'mnist'"),
    ({"model": {"norm_position": "middle"}}, [], r"model.norm_position='middle' is not allowed; choose one of \['after', 'before'\]"),
    ({"training": {"device": "tpu"}}, [], r"training.device='tpu' is not allowed"),
    ({"optimizer": {"betas": [0.9]}}, [], r"optimizer.betas=\[0.9\] must be two numbers in \[0, 1\)"),
    ({"optimizer": {"betas": [0.9, 1.5]}}, [], r"optimizer.betas=\[0.9, 1.5\] must be two numbers"),
    ({"model": {"norm": "instance"}}, [], r"model.norm='instance' needs spatial maps"),
    ({"data": {"name": "csv"}}, [], r"data.path is required for data.name='csv'"),
    ({"schedule": {"warmup_epochs": 5}, "training": {"epochs": 5}}, [], r"schedule.warmup_epochs=5 must be less than training.epochs=5"),
    ({"data": {"path": "t.csv"}}, [],
     r"^data.path='t.csv' is only used with data.name csv, npz or images; got data.name='digits'$"),
    ({"data": {"name": "mnist", "path": "t.npz"}}, [], r"^data.path='t.npz' is only used with .*got data.name='mnist'$"),
    ({"optimizer": {"lr": 0.01}, "schedule": {"min_lr": 0.1}}, [],
     r"^schedule.min_lr=0.1 is above optimizer.lr=0.01; allowed: schedule.min_lr <= optimizer.lr$"),
    ({"schedule": {"min_lr": 0.01}}, [],
     r"^schedule.min_lr=0.01 is above optimizer.lr=0.001 \(adam's default\); allowed: schedule.min_lr <= optimizer.lr$"),
    ({}, ["model={name: mlp, name: cnn}"], r"^--set model='\{name: mlp, name: cnn\}' has the key 'name' twice"),
    ({"model": []}, [], r"model=\[\] must be a mapping"),
    ({"optimizer": {"lr": float("nan")}}, [], r"optimizer.lr=nan is not a finite number"),
    ({}, ["optimizer.lr"], r"--set 'optimizer.lr' must look like key.path=value"),
    ({}, ["=3"], r"--set '=3' has an empty key"),
    ({}, ["optimizer.lr=[1, 2"], r"--set optimizer.lr='\[1, 2' is not a valid YAML value"),
    ({}, ["optimizer.lr.x=1"], r"optimizer.lr.x is not a config key; optimizer.lr is a value, not a section"),
    ({}, ["training.epochs=0"], r"training.epochs=0 is out of range"),
    ({}, ["model.activaton=relu"], r"model.activaton is not a config key"),
]


@pytest.mark.parametrize("raw,overrides,message", BAD)
def test_bad_configs_give_one_line_naming_key_value_and_choices(raw, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        from_dict(raw, overrides)
    assert "\n" not in str(info.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*nope.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model:\n  hidden: [1, 2\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_data_path_is_accepted_where_it_is_read(tmp_path):
    assert from_dict({"data": {"name": "csv", "path": "t.csv"}}).data.path == "t.csv"
    assert from_dict({"data": {"name": "npz", "path": "t.npz"}}).data.path == "t.npz"
    # data.target has a non-empty default, so it is not tied to csv
    assert from_dict({"data": {"target": "y"}}).data.target == "y"


def test_data_path_with_a_user_registered_source_is_left_to_it():
    from tunelab.data.sources import DATASETS

    DATASETS.register("_test_own_file", lambda cfg: None)
    try:
        assert from_dict({"data": {"name": "_test_own_file", "path": "x.bin"}}).data.path == "x.bin"
    finally:
        DATASETS._items.pop("_test_own_file")


def test_min_lr_up_to_lr_is_accepted():
    cfg = from_dict({"optimizer": {"lr": 0.01}, "schedule": {"name": "cosine", "min_lr": 0.01}})
    assert cfg.schedule.min_lr == cfg.optimizer.lr == 0.01


@pytest.mark.parametrize("text,key,lines", [
    ("model:\n  hidden: [8]\noptimizer:\n  lr: 0.1\nmodel:\n  dropout: 0.5\n", "model", "1 and 5"),
    ("optimizer:\n  lr: 0.1\n  name: sgd\n  lr: 0.2\n", "optimizer.lr", "2 and 4"),
    ("training:\n  early_stopping: {patience: 2, patience: 3}\n", "training.early_stopping.patience", "2 and 2"),
    ("optimizer: {lr: 0.1, 'lr': 0.2}\n", "optimizer.lr", "1 and 1"),
])
def test_duplicate_keys_in_a_file_are_rejected(tmp_path, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"config file {str(path)!r} has the key {key!r} twice (lines {lines}); "
                               f"allowed: each key once per section")


def test_yaml_merge_keys_and_anchors_still_load():
    merged = yaml.load("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n", Loader=UniqueKeyLoader)
    assert merged["b"] == {"x": 1, "y": 3}  # an explicit key may override a merged one
    assert yaml.load("a: &a {x: 1}\nb: *a\nc: *a\n", Loader=UniqueKeyLoader)["c"] == {"x": 1}
    assert yaml.load("[{x: 1}, {x: 2}]", Loader=UniqueKeyLoader) == [{"x": 1}, {"x": 2}]


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"config file {str(tmp_path)!r} is a directory; give a YAML file"
