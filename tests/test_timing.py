"""Stopwatch: parts add up, a block that raises still counts; merged sums maps."""

import time

import pytest

from tunelab.timing import Stopwatch, merged


def test_parts_add_up_and_a_raising_block_still_counts():
    watch = Stopwatch()
    with watch.part("a"):
        time.sleep(0.02)
    with pytest.raises(ValueError):
        with watch.part("a"):
            time.sleep(0.02)
            raise ValueError
    assert 0.04 <= watch.seconds["a"] < 1.0
    shared = {"b": 1.0}
    Stopwatch(shared).add("b", 0.5)  # a Stopwatch over an existing map adds to it
    assert shared == {"b": 1.5}


def test_merged_sums_keys():
    assert merged({"a": 1, "b": 2}, {}, {"b": 3.5}) == {"a": 1.0, "b": 5.5}
