"""Staged tunes: a budget too small for the stages is refused up front; stages read back as a whole."""

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.search.results import load_stages, stage_summaries

from . import objectives

SPACE = {"base": {"epochs": 1, "y": 0.5, "z": 0.5},
         "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]}, "z": {"uniform": [0.0, 1.0]}},
         "stages": [["x"], ["y"], ["z"]]}
MESSAGE = "trials=2 is out of range for 3 stages; allowed: at least one trial per stage (3 or more)"


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative storage URLs and the CLI's default ./tunelab.db land here
    return tmp_path


def test_fewer_trials_than_stages_is_refused_before_any_write(here):
    with pytest.raises(ConfigError) as e:
        tunelab.tune(SPACE, trials=2, stages=True, storage="sqlite:///s.db", study="st",
                     objective=objectives.two_dims)
    assert str(e.value) == MESSAGE
    assert not (here / "s.db").exists()  # refused before the storage was opened


def test_one_trial_per_stage_is_enough_and_stages_read_back_in_order(here):
    res = tunelab.tune(SPACE, trials=3, stages=True, storage="sqlite:///s.db", study="st",
                       objective=objectives.two_dims, seed=0)
    assert [len(st.trials) for st in res.studies] == [1, 1, 1]
    stages = load_stages("st", "sqlite:///s.db")
    assert [st.study_name for st in stages] == ["st.stage1", "st.stage2", "st.stage3"]
    rows = stage_summaries(stages)
    assert [r["keys"] for r in rows] == [["x"], ["y"], ["z"]]
    assert [r["complete"] for r in rows] == [1, 1, 1]
    assert rows[0]["fixed"] == {} and set(rows[2]["fixed"]) == {"x", "y"}
    assert rows[2]["best"] == pytest.approx(res.best_value)
    assert load_stages("st.stage1", "sqlite:///s.db") == []  # a study of its own is not staged
    assert load_stages("other", "sqlite:///s.db") == []


def test_unstaged_tunes_still_take_a_single_trial(here):
    res = tunelab.tune(SPACE, trials=1, objective=objectives.two_dims)
    assert len(res.study.trials) == 1


def test_the_cli_names_the_flag(capsys, here):
    (here / "space.yaml").write_text(
        "base: {data: {name: digits}, training: {epochs: 1}}\n"
        "space:\n  optimizer.lr: {log_uniform: [1e-3, 1e-1]}\n  training.batch_size: {choice: [32, 64]}\n"
        "  model.dropout: {uniform: [0.0, 0.5]}\n"
        "stages: [[optimizer.lr], [training.batch_size], [model.dropout]]\n")
    code = main(["tune", "space.yaml", "--stages", "--trials", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--trials=2 is out of range for 3 stages; allowed: at least one trial per stage (3 or more)" in err
    assert not (here / "tunelab.db").exists()
