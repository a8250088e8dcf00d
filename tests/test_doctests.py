"""Every Example in the package's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import tunelab

MODULES = sorted(m.name for m in pkgutil.walk_packages(tunelab.__path__, "tunelab."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes must not touch the checkout
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
