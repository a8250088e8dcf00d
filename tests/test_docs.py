"""The docs stay true: every config key is in docs/config.md, every example config loads."""

import dataclasses
import importlib
import re
import typing
from pathlib import Path

import pytest

from tunelab.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def _fields(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _fields(hints[f.name], key)
        else:
            yield key, f


def _keys(cls):
    return [key for key, _ in _fields(cls)]


def _documented_allowed():
    """key -> the 'allowed' cell of its row in docs/config.md."""
    text = (ROOT / "docs" / "config.md").read_text()
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\| `([^`]+)` \|[^|]*\|[^|]*\|([^|]*)\|", text, re.M)}


def _code_choices(meta):
    """The names a field accepts: its registry's or its fixed choices (None: a range field)."""
    if meta.get("registry"):
        module, attr = meta["registry"].split(":")
        return getattr(importlib.import_module(module), attr).names()
    return None if meta.get("choices") is None else list(meta["choices"])


def _code_range(meta):
    """The range as config.py's error messages print it, e.g. '(0.0, inf]'; '' for none."""
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    return (f"{'(' if meta['lo_open'] else '['}{lo if lo is not None else '-inf'}, "
            f"{hi if hi is not None else 'inf'}{')' if meta['hi_open'] else ']'}")


def test_every_config_key_is_documented():
    text = (ROOT / "docs" / "config.md").read_text()
    missing = [k for k in _keys(RunConfig) if f"`{k}`" not in text]
    assert not missing


@pytest.mark.parametrize("key", ["schedule.name", "optimizer.name", "model.activation", "model.init",
                                 "model.norm"])
def test_documented_registry_choices_equal_the_code(key):
    meta = dict(_fields(RunConfig))[key].metadata
    assert meta.get("registry"), key
    documented = [c.strip() for c in _documented_allowed()[key].split(",")]
    assert sorted(documented) == _code_choices(meta)


def test_documented_allowed_values_match_config_py():
    """Every row's 'allowed' cell: the same choices (any order) or exactly the range."""
    documented = _documented_allowed()
    wrong = {}
    for key, f in _fields(RunConfig):
        choices = _code_choices(f.metadata)
        cell = documented.get(key)
        if choices is not None:
            listed = [c.strip() for c in (cell or "").split(",")]
            if sorted(listed) != sorted(choices):
                wrong[key] = (cell, choices)
        elif cell != _code_range(f.metadata):
            wrong[key] = (cell, _code_range(f.metadata))
    assert not wrong


def _is_space(path):
    import yaml

    return path.parent.name == "spaces" or "space" in (yaml.safe_load(path.read_text()) or {})


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "examples").rglob("*.yaml") if not _is_space(p)),
                         ids=lambda p: p.name)
def test_examples_are_valid_configs(path):
    cfg = load_config(path)
    expected = {"mnist1d": ("mnist1d",), "images": ("images",)}.get(path.parent.name, ("digits", "mnist", "fashion-mnist"))
    assert cfg.data.name in expected


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


def test_the_book_search_is_a_valid_space():
    from tunelab.search.space import SearchSpace

    space = SearchSpace.load(ROOT / "examples" / "book" / "ch6_search.yaml")
    assert sorted(space.params) == ["optimizer.lr", "optimizer.weight_decay"]
