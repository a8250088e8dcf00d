"""Without Ray installed, --executor ray says in one line how to install it (no traceback)."""

import sys

import pytest

import tunelab
from tunelab.errors import ConfigError


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    space = {"base": {"training": {"epochs": 1}}, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    with pytest.raises(ConfigError) as e:
        tunelab.tune(space, trials=1, executor="ray")
    assert str(e.value) == ("--executor ray needs Ray, which is not installed; install it with: "
                            "pip install 'tunelab[ray]'")
