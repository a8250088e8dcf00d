"""Hostile input: YAML bombs, deep nesting, roots that are not mappings, huge values, non-UTF-8
files, and a fuzz of ``--set`` values, config dicts and space files. Every outcome is a config or
one ConfigError line (bounded length), never another exception, never a hang."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.config import YAML_MAX_DEPTH, YAML_MAX_NODES, from_dict, load_config, parse_override
from tunelab.errors import MAX_MESSAGE, ConfigError

BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"


def _one_line(e: ConfigError) -> str:
    text = str(e)
    assert "\n" not in text and len(text) <= MAX_MESSAGE, text[:200]
    return text


def test_an_alias_bomb_is_refused_at_once_in_a_file_a_set_and_a_vary(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(ConfigError, match=f"expands to .* values .*at most {YAML_MAX_NODES}") as e:
        load_config(path)
    assert "bomb.yaml" in _one_line(e.value)
    flow = "{" + BOMB.strip().replace("\n", ", ") + "}"
    with pytest.raises(ConfigError, match="--set model.hidden=.* is refused: it expands"):
        parse_override("model.hidden=" + flow)
    from tunelab.analysis.designs import parse_vary

    with pytest.raises(ConfigError, match="--vary model.hidden: the values are refused"):
        parse_vary(f"model.hidden={flow},[1]")


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(ConfigError, match=f"deeper than {YAML_MAX_DEPTH} levels"):
        parse_override("model.hidden=" + deep)
    path = tmp_path / "deep.yaml"
    path.write_text("model:\n  hidden: " + deep + "\n")
    with pytest.raises(ConfigError, match="deep.yaml' is refused: it nests deeper"):
        load_config(path)
    nested = "x: " + "{a: " * 3000 + "1" + "}" * 3000
    path.write_text(nested)
    with pytest.raises(ConfigError, match="nests deeper"):
        load_config(path)


@pytest.mark.parametrize("root", ["[]", "0", "false", "''", "[1, 2]", "hello"])
def test_a_config_root_that_is_not_a_mapping_is_refused(tmp_path, root):
    path = tmp_path / "c.yaml"
    path.write_text(root + "\n")
    with pytest.raises(ConfigError, match="config must be a mapping of sections"):
        load_config(path)
    path.write_text("")  # an empty file is all defaults
    assert load_config(path).training.epochs >= 1


def test_a_file_that_is_not_utf8_or_too_big_is_one_line(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin.yaml' is not UTF-8 text"):
        load_config(path)
    big = tmp_path / "big.yaml"
    big.write_text("x: " + "1" * (1 << 21))
    with pytest.raises(ConfigError, match="big.yaml' is refused: it is over 1024 KiB"):
        load_config(big)


def test_a_huge_value_gives_a_short_error_line():
    with pytest.raises(ConfigError) as e:
        from_dict({"optimizer": {"name": "x" * 100_000}})
    text = _one_line(e.value)
    assert text.startswith("optimizer.name=") and "allowed" in text or "choose" in text


def test_the_cli_prints_one_line_and_exits_2_for_a_bomb_and_a_bad_root(tmp_path):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "list.yaml").write_text("[]\n")
    for args in (["train", "bomb.yaml"], ["train", "list.yaml"], ["train", "--set", "model.hidden=" + "[" * 3000]):
        out = subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, (args, lines[:5])


# ------------------------------------------------------------------ fuzz

KEYS = ["model.hidden", "model.dropout", "model.name", "model.norm", "optimizer.lr", "optimizer.name",
        "training.epochs", "training.batch_size", "training.seed", "training.threads", "data.name",
        "schedule.name", "augment.translate", "nonsense.key", "model", ""]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=20)
FUZZ = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


def _config_or_one_line(call) -> None:
    try:
        call()
    except ConfigError as e:
        _one_line(e)


@FUZZ
@given(key=st.sampled_from(KEYS), value=st.text(max_size=60))
def test_fuzzed_set_values_give_a_config_or_one_line(key, value):
    _config_or_one_line(lambda: from_dict({}, [f"{key}={value}"]))


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(["model", "optimizer", "training", "data", "schedule", "augment", "x"]),
                           JSONISH, max_size=4))
def test_fuzzed_config_dicts_give_a_config_or_one_line(raw):
    _config_or_one_line(lambda: from_dict(raw))


@FUZZ
@given(space=st.dictionaries(st.sampled_from(["optimizer.lr", "model.hidden", "training.epochs", "bad..key"]),
                             JSONISH, max_size=3))
def test_fuzzed_space_files_give_a_space_or_one_line(space, tmp_path_factory):
    import yaml

    from tunelab.search.space import SearchSpace

    path = Path(tmp_path_factory.mktemp("space")) / "s.yaml"
    path.write_text(yaml.safe_dump({"space": space}))
    _config_or_one_line(lambda: SearchSpace.load(path))


@pytest.mark.parametrize("raw, key", [({"training": {"seed": 2**80}}, "training.seed"),
                                      ({"model": {"hidden": [2**70]}}, r"model.hidden\[0\]"),
                                      ({"training": {"threads": -2**64}}, "training.threads")])
def test_integers_beyond_64_bits_are_refused(raw, key):
    with pytest.raises(ConfigError, match=rf"^{key}=-?\d+ is out of range; allowed: a whole number in \[-2\*\*63"):
        from_dict(raw)


def test_a_dollar_in_a_users_string_is_drawn_as_text_not_mathtext(tmp_path):
    from tunelab.report import plot_curves

    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_accuracy": 0.5, "val_accuracy": 0.5}
               for e in (1, 2, 3)]
    fig = plot_curves(history, title=r"arm value=$\foo$ and $x^$")  # mathtext would raise ValueError
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_a_space_that_trains_on_cuda_is_refused_at_load_without_a_gpu():
    from tunelab.search.space import SearchSpace

    with pytest.raises(ConfigError, match=r"^space.training.device: choice value 'cuda' trains on cuda, and no CUDA"):
        SearchSpace.from_dict({"space": {"training.device": {"choice": ["cpu", "cuda"]}}})
    with pytest.raises(ConfigError, match=r"^base: training.device='cuda' trains on cuda"):
        SearchSpace.from_dict({"base": {"training": {"device": "cuda"}},
                               "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}})
    assert SearchSpace.from_dict({"space": {"training.device": {"choice": ["cpu", "auto"]}}})


def test_workers_have_an_upper_bound():
    import tunelab
    from tunelab.execute import max_local_workers

    space = {"base": {"data": {"name": "digits"}}, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}
    with pytest.raises(ConfigError, match=rf"^--workers=1000000 is out of range; allowed: 1 to {max_local_workers()} "):
        tunelab.tune(space, trials=2, workers=1_000_000)


def test_a_model_too_big_for_the_free_memory_is_refused_before_anything_is_allocated(monkeypatch):
    import tunelab
    from tunelab.trainer import prepare

    monkeypatch.setattr(prepare, "available_memory", lambda device: 2**30)  # 1 GiB free
    big = {"data": {"name": "digits"}, "model": {"name": "cnn", "channels": [20000]}, "training": {"epochs": 1}}
    with pytest.raises(ConfigError, match=r"^model.cnn with training.batch_size=\d+ needs about [\d.]+ GiB to train "
                                          r"\([\d,]+ parameters .* and cpu has 1.0 GiB free"):
        tunelab.train(big)
    params, need = prepare.memory_estimate(from_dict(big), (1, 8, 8), 10)
    real = prepare.new_model(from_dict({**big, "model": {"name": "cnn", "channels": [8]}}), (1, 8, 8), 10)
    assert prepare.memory_estimate(from_dict({**big, "model": {"name": "cnn", "channels": [8]}}), (1, 8, 8), 10)[0] \
        == sum(p.numel() for p in real.parameters())  # the parameter count is the real one
    assert need > 4 * 4 * params
    monkeypatch.setenv("TUNELAB_SKIP_MEMORY_CHECK", "1")
    prepare.check_memory(from_dict(big), (1, 8, 8), 10, __import__("torch").device("cpu"))  # told to try: no error


@pytest.mark.parametrize("model", [{"hidden": [4]}, {"hidden": [300, 7, 50], "norm": "batch", "dropout": 0.5},
                                   {"hidden": [16, 16], "residual": True, "norm": "layer"}, {"hidden": []}])
def test_the_quick_mlp_bound_is_never_below_the_measured_estimate(model):
    from tunelab.trainer import prepare

    cfg = from_dict({"model": model, "training": {"batch_size": 32}})
    assert prepare._mlp_bound(cfg, (1, 8, 8), 10) >= prepare.memory_estimate(cfg, (1, 8, 8), 10)[1]


def test_an_mlp_that_surely_fits_skips_the_meta_forward_and_a_huge_one_is_still_refused(monkeypatch):
    import torch

    from tunelab.trainer import prepare

    cpu = torch.device("cpu")
    calls = []
    real = prepare.memory_estimate
    monkeypatch.setattr(prepare, "memory_estimate", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(prepare, "available_memory", lambda device: 2**30)  # 1 GiB free
    prepare.check_memory(from_dict({"model": {"hidden": [64]}}), (1, 8, 8), 10, cpu)
    assert calls == []  # the bound said it fits: no forward on the meta device
    huge = from_dict({"model": {"hidden": [40000, 40000]}})  # 1.6e9 parameters
    with pytest.raises(ConfigError, match=r"^model.mlp with training.batch_size=\d+ needs about [\d.]+ GiB"):
        prepare.check_memory(huge, (1, 8, 8), 10, cpu)
    assert len(calls) == 1  # over the bound: measured, then refused
