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


# ---------------------------------------------------------------------------- the start-up
STARTUP_PARTS = ["interpreter", "imports and config", "threads", "data", "model", "run folder and loop set-up",
                 "optimizer", "first step"]


def test_a_new_process_records_where_its_start_up_went(tmp_path):
    """`tunelab train` in a fresh process: result.json says where the seconds before the first step
    went, the parts add up to the total, and the total is no more than the process's own life."""
    import json
    import subprocess
    import sys

    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tunelab", "train", "--set", "training.epochs=1", "--set",
                    "model.hidden=[8]", "--out", str(tmp_path / "run"), "-q"], check=True, capture_output=True)
    wall = time.monotonic() - t0
    startup = json.loads((tmp_path / "run" / "result.json").read_text())["startup"]
    assert list(startup) == STARTUP_PARTS + ["total"]
    assert all(v >= 0 for v in startup.values())
    assert startup["total"] == pytest.approx(sum(startup[k] for k in STARTUP_PARTS), abs=1e-3)
    assert 0 < startup["total"] < wall
    assert startup["interpreter"] < startup["total"]


def test_only_a_process_s_first_run_carries_the_start_up():
    import tunelab

    run = {"model": {"hidden": [8]}, "training": {"epochs": 1}}
    tunelab.train(run, save=False)  # whichever run of this test process was first closed the start-up
    assert tunelab.train(run, save=False).startup is None


def test_laps_after_the_first_step_are_not_counted(monkeypatch):
    from tunelab import timing

    monkeypatch.setattr(timing, "_STARTUP", {"interpreter": 0.5})
    monkeypatch.setattr(timing, "_LAP", [time.perf_counter(), 0.0])
    assert timing.startup() is None  # no first step yet
    assert timing.startup_lap("data") and timing.startup_lap("first step", last=True)
    assert not timing.startup_lap("data")  # closed
    s = timing.startup()
    assert list(s) == ["interpreter", "data", "first step", "total"] and s["interpreter"] == 0.5
    monkeypatch.setattr(timing, "_STARTUP", {"interpreter": 0.5, "imports and config": 45.0})
    assert timing.startup() is None  # a notebook's first run minutes after the import: not a start-up


def test_process_age_counts_from_the_process_s_start():
    import subprocess
    import sys

    code = "import time; time.sleep(0.5); from tunelab.timing import process_age; print(process_age())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    if not sys.platform.startswith("linux"):
        assert out == "None"
        return
    assert 0.45 <= float(out) < 30.0  # the half second slept before the import counts (tick-accurate)
