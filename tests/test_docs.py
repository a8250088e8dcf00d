"""The docs stay true: every config key is in docs/config.md, every example config loads."""

import dataclasses
import typing
from pathlib import Path

import pytest

from tunelab.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def _keys(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _keys(hints[f.name], key)
        else:
            yield key


def test_every_config_key_is_documented():
    text = (ROOT / "docs" / "config.md").read_text()
    missing = [k for k in _keys(RunConfig) if f"`{k}`" not in text]
    assert not missing


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "examples").rglob("*.yaml") if p.parent.name != "spaces"),
                         ids=lambda p: p.name)
def test_examples_are_valid_configs(path):
    cfg = load_config(path)
    assert cfg.data.name in ("digits", "mnist", "fashion-mnist")


def test_examples_cover_every_topic():
    topics = {"optimizers", "init", "batchnorm", "dropout_weight_decay", "early_stopping",
              "lr_decay", "augmentation", "width_depth"}
    for folder in ("digits", "mnist"):
        names = {p.stem for p in (ROOT / "examples" / folder).glob("*.yaml")}
        assert topics <= names, folder


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_example_spaces_load(path):
    from tunelab.search.space import SearchSpace

    space = SearchSpace.load(path)
    assert "optimizer.lr" in space.params and len(space.stages) == 3
