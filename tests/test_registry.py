import pytest

from tunelab.errors import ConfigError
from tunelab.registry import Registry


def test_register_lookup_and_duplicates():
    reg = Registry("thing.name")
    reg.register("a", 1)

    @reg.register("b")
    def _b():
        return 2

    assert reg.get("a") == 1 and reg.get("b")() == 2 and reg.names() == ["a", "b"]
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a", 3)
    with pytest.raises(ConfigError, match=r"thing.name='c' is not known; choose one of \['a', 'b'\]"):
        reg.get("c")
