"""Optuna's own sampler contract tests, run against tunelab's coarse-to-fine and grid samplers.

Optuna's test suite is not in its wheel: ``bash .ci/optuna-tests.sh`` extracts the sdist of the
installed Optuna and prints its ``tests`` folder; point ``TUNELAB_OPTUNA_TESTS`` at it. This
module loads ``samplers_tests/test_samplers.py`` (whose test classes come from
``optuna.testing.pytest_samplers``) and ``samplers_tests/test_grid.py`` from there, and swaps
their sampler factories for tunelab's, built by ``make_sampler`` as tunelab's driver builds them:

- ``coarse-to-fine``: a space that knows every parameter name the contract tests suggest (so
  tunelab's own code samples them; the ranges of a suggest call and the space often differ);
- ``coarse-to-fine-fallback``: a space that knows none of them (all go to its RandomSampler);
- ``grid``: tunelab's grid sampler over a small grid of those names (test_samplers.py), and
  over the grids test_grid.py gives Optuna's GridSampler (each value list as a ``choice``).

``EXCLUDED`` lists the tests that do not apply (one reason each); ``XFAIL`` the known failures
of tunelab (strict: a fix turns them into XPASS failures, to be moved out of ``XFAIL``).

Run: TUNELAB_OPTUNA_TESTS="$(bash .ci/optuna-tests.sh | tail -1)" \
     python -m pytest -q tests/search/test_optuna_contract.py -m optuna_contract
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import importlib.metadata
import importlib.util
import multiprocessing
import os
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytestmark = pytest.mark.optuna_contract

_ENV = "TUNELAB_OPTUNA_TESTS"
_HOW = "run `bash .ci/optuna-tests.sh` and set TUNELAB_OPTUNA_TESTS to the path it prints last"
_TESTS = Path(os.environ.get(_ENV) or "/nonexistent")
if not os.environ.get(_ENV):
    pytest.skip(f"{_ENV} is unset: {_HOW}", allow_module_level=True)
if not (_TESTS / "samplers_tests" / "test_samplers.py").is_file():
    pytest.skip(f"{_ENV}={str(_TESTS)!r} has no samplers_tests/test_samplers.py: {_HOW}",
                allow_module_level=True)
_VERSION = importlib.metadata.version("optuna")
_PKG_INFO = _TESTS.parent / "PKG-INFO"
if _PKG_INFO.is_file() and f"\nVersion: {_VERSION}\n" not in _PKG_INFO.read_text():
    pytest.skip(f"{_ENV}={str(_TESTS)!r} is not the sdist of the installed optuna {_VERSION}: "
                f"{_HOW}", allow_module_level=True)

# Optuna's conftest.py does this, so that the contract's asserts report their values.
if "optuna.testing.pytest_samplers" not in sys.modules:
    pytest.register_assert_rewrite("optuna.testing.pytest_samplers")

import optuna  # noqa: E402

from tunelab.search.samplers import make_sampler  # noqa: E402
from tunelab.search.space import SearchSpace  # noqa: E402

UNBOUNDED_MAX_TRIALS = 1000  # study.optimize(n_trials=None, timeout=None) that has not stopped
UNBOUNDED_MAX_SECONDS = 30.0  # ... after this many trials or seconds never ends: it raises
TEST_TIMEOUT_S = 180  # backstop per test (SIGALRM), in case anything else hangs


# ---------------------------------------------------------------------------- loading the tests

def _load(path: Path, name: str) -> types.ModuleType:
    """Import ``path`` as module ``name``, its asserts rewritten as pytest does."""
    source = path.read_bytes()
    tree = ast.parse(source, str(path))
    try:
        from _pytest.assertion.rewrite import rewrite_asserts

        rewrite_asserts(tree, source, str(path))
    except Exception:  # a private pytest API: without it only the messages are poorer
        tree = ast.parse(source, str(path))
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(tree, str(path), "exec"), module.__dict__)
    return module


@contextlib.contextmanager
def _testing_storages() -> Iterator[None]:
    """optuna.testing.storages imports fakeredis (Optuna's test extra, only for its Redis
    storage); while test_grid.py imports it, give it a private copy with a stub when absent."""
    if importlib.util.find_spec("fakeredis") is not None:
        yield
        return
    saved = {k: sys.modules.get(k) for k in ("fakeredis", "optuna.testing.storages")}
    sys.modules["fakeredis"] = types.ModuleType("fakeredis")
    try:
        spec = importlib.util.find_spec("optuna.testing.storages")
        assert spec is not None and spec.origin is not None
        sys.modules["optuna.testing.storages"] = _load(Path(spec.origin),
                                                       "_optuna_contract_storages")
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Proxy(types.ModuleType):
    """A module whose attributes are ``real``'s except the ones given."""

    def __init__(self, real: types.ModuleType, **overrides: Any) -> None:
        super().__init__(real.__name__)
        self.__dict__.update(overrides)
        self.__dict__["_real"] = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_real"], name)


contract = _load(_TESTS / "samplers_tests" / "test_samplers.py", "_optuna_contract_test_samplers")
with _testing_storages():
    grid_contract = _load(_TESTS / "samplers_tests" / "test_grid.py", "_optuna_contract_test_grid")


# ---------------------------------------------------------------------------- tunelab's samplers

def _space(spec: dict[str, Any]) -> SearchSpace:
    return SearchSpace.from_dict({"space": spec}, validate_config=False)


# Every name test_samplers.py suggests (x, y, z, a..g, category), in its most common range.
C2F_SPACE = _space({
    "x": {"uniform": [0, 10]}, "y": {"int": [0, 10]}, "z": {"uniform": [-1, 1]},
    "a": {"uniform": [1, 9]}, "b": {"log_uniform": [1, 9]}, "c": {"uniform": [1, 9]},
    "d": {"int": [1, 9]}, "e": {"log_int": [1, 9]}, "f": {"int": [1, 9]},
    "g": {"choice": list(range(1, 10))}, "category": {"choice": ["x", "y"]},
})
# A space that knows none of those names: every parameter goes to the RandomSampler fallback.
FALLBACK_SPACE = _space({"unused.key": {"uniform": [0, 1]}})
# A small grid over the same names, each value valid in (nearly) every suggest call of the name.
GRID_SPACE = _space({
    "x": {"choice": [1]}, "y": {"int": [1, 2]}, "z": {"uniform": [0, 1], "points": 2},
    "a": {"uniform": [1, 9], "points": 2}, "b": {"log_uniform": [1, 9], "points": 2},
    "c": {"uniform": [1, 9], "points": 3}, "d": {"int": [1, 9], "points": 2},
    "e": {"log_int": [1, 9], "points": 2}, "f": {"int": [1, 9], "points": 3},
    "g": {"choice": [1, 9]}, "category": {"choice": ["x", "y"]},
})
C2F_OPTIONS = {"round_size": 4, "keep": 0.5}  # short rounds that do narrow (2 kept trials)


# seed 0 when the contract gives none: each run draws the same values, so XFAIL stays exact


def _c2f(seed: int | None = 0) -> optuna.samplers.BaseSampler:
    return make_sampler("coarse-to-fine", C2F_SPACE, seed=seed, **C2F_OPTIONS)


def _c2f_fallback(seed: int | None = 0) -> optuna.samplers.BaseSampler:
    return make_sampler("coarse-to-fine", FALLBACK_SPACE, seed=seed, **C2F_OPTIONS)


def _grid(seed: int | None = 0) -> optuna.samplers.BaseSampler:
    return make_sampler("grid", GRID_SPACE, seed=seed)


FACTORIES: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "coarse-to-fine": _c2f, "coarse-to-fine-fallback": _c2f_fallback, "grid": _grid,
}


def _plain(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


class _TunelabGridSampler:
    """Stands for ``optuna.samplers.GridSampler`` in test_grid.py: tunelab's grid sampler over
    a space with each grid list as a choice (grid_space() gives the lists back unchanged)."""

    _check_value = staticmethod(optuna.samplers.GridSampler._check_value)

    def __new__(cls, search_space: dict[str, Any], seed: int | None = None
                ) -> optuna.samplers.BaseSampler:
        space = _space({name: {"choice": _plain(v)} for name, v in search_space.items()})
        return make_sampler("grid", space, seed=seed)


# test_samplers.py: its sampler-by-name table (run_optimize, in spawned processes, reads it).
contract.sampler_class_with_seed = dict(FACTORIES)


def _run_optimize(*args: Any) -> None:
    """contract.run_optimize, picklable for a spawned process (which imports this module)."""
    _contract_run_optimize(*args)


_contract_run_optimize = contract.run_optimize
contract.run_optimize = _run_optimize

# test_grid.py: both `samplers.GridSampler` and `optuna.samplers.GridSampler` build tunelab's.
_samplers_proxy = _Proxy(optuna.samplers, GridSampler=_TunelabGridSampler)
grid_contract.samplers = _samplers_proxy
grid_contract.optuna = _Proxy(optuna, samplers=_samplers_proxy)


# ---------------------------------------------------------------------------- what is run

class OptimizeNeverEnds(Exception):
    """study.optimize(n_trials=None, timeout=None) ran on without stopping by itself."""


class ContractTimeout(Exception):
    pass


_NOT_OURS = "no tunelab code runs"
_RELATIVE = ("calls sample_relative directly: the grid sampler samples one param at a time "
             "(sample_relative returns {}, as Optuna's GridSampler, which Optuna keeps out of it)")
_GRID_NO_BEFORE_TRIAL = ("calls sample_independent on a trial that skipped before_trial (no grid_id)"
                         ": every GridSampler raises ValueError; Optuna does not run it on its own")

# Tests that do not apply: fnmatch pattern of "<sampler id>::<test>" -> reason. The sampler id
# is "*" for tests that take no sampler, "grid" for test_grid.py's tests.
EXCLUDED: dict[str, str] = {
    "grid::TestRelativeSampler::test_sample_relative_numerical": _RELATIVE,
    "grid::TestRelativeSampler::test_sample_relative_categorical": _RELATIVE,
    "grid::TestRelativeSampler::test_sample_relative_mixed": _RELATIVE,
    "coarse-to-fine*::TestMultiObjectiveSampler::*": "coarse-to-fine is single-objective (it ranks "
        "trials by study.direction): TestSingleOnlySampler is its contract, as for CmaEsSampler",
    "grid::TestSingleOnlySampler::*": "GridSampler supports multi-objective studies; only "
        "single-objective samplers must refuse them",
    "grid::TestMultiObjectiveSampler::*": _GRID_NO_BEFORE_TRIAL,
    "grid::TestBasicSampler::test_float": _GRID_NO_BEFORE_TRIAL,
    "grid::TestBasicSampler::test_int": _GRID_NO_BEFORE_TRIAL,
    "grid::TestBasicSampler::test_categorical": _GRID_NO_BEFORE_TRIAL,
    "grid::TestBasicSampler::test_conditional_sample_independent": _GRID_NO_BEFORE_TRIAL,
    "grid::TestBasicSampler::test_nan_objective_value": "expects x in [0.1, 0.2] to be sampled; a "
        "grid's values are used as they are (documented), Optuna's GridSampler fails it too",
    "grid::test_reseed_rng_change_sampling": "a GridSampler shuffles its grid once, at construction;"
        " reseed_rng cannot change the first trials (Optuna's fails it too, and leaves it out)",
    "*::test_pickle_random_sampler": f"pickles Optuna's RandomSampler: {_NOT_OURS}",
    "*::test_sample_relative": f"Trial's relative-param plumbing with Optuna's FixedSampler: {_NOT_OURS}",
    "grid::test_grid_cast_value": f"Optuna's static GridSampler._check_value only: {_NOT_OURS}",
}

# Known failures of tunelab: fnmatch pattern of "<sampler id>::<test>" -> (reason, the exception
# it fails with, which parametrizations). Strict: once fixed it XPASSes and fails; drop it here.
# none left: the four fixed in tunelab (a value off a ``step`` grid; RuntimeError instead of
# ValueError on a multi-objective study, for known and for unknown params; the grid sampler never
# stopping an endless ``study.optimize``) were listed here, strict, until they passed
XFAIL: dict[str, tuple[str, type[BaseException], Callable[[dict[str, Any]], bool]]] = {}


_SAMPLER_ID_OF = {id(f): sid for sid, f in FACTORIES.items()}


def _sampler_id(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    for value in (callspec.params.values() if callspec else ()):
        if isinstance(value, str) and value in FACTORIES:
            return value
        if id(value) in _SAMPLER_ID_OF:
            return _SAMPLER_ID_OF[id(value)]
    return "grid" if item.name.startswith("test_grid_") else "*"  # test_grid.py: the grid


def _test_name(item: pytest.Item) -> str:
    cls = getattr(item, "cls", None)
    name = getattr(item, "originalname", item.name)
    return f"{cls.__name__}::{name}" if cls is not None else name


@pytest.fixture(autouse=True)
def _contract_rules(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                    ) -> Iterator[None]:
    item = request.node
    sid, name = _sampler_id(item), _test_name(item)
    key = f"{sid}::{name}"
    for pattern, reason in EXCLUDED.items():
        if fnmatch.fnmatchcase(key, pattern):
            pytest.skip(f"excluded: {reason}")
    params = item.callspec.params if hasattr(item, "callspec") else {}
    for pattern, (reason, raises, applies) in XFAIL.items():
        if fnmatch.fnmatchcase(key, pattern) and applies(params):
            item.add_marker(pytest.mark.xfail(reason=reason, raises=raises, strict=True))

    real_optimize = optuna.study.Study.optimize

    def optimize(self: optuna.Study, func: Any, n_trials: int | None = None,
                 timeout: float | None = None, n_jobs: int = 1, catch: Any = (),
                 callbacks: Any = None, *args: Any, **kwargs: Any) -> None:
        if n_trials is None and timeout is None:  # runs until the sampler stops the study
            start, count = time.monotonic(), [0]

            def guard(study: optuna.Study, trial: Any) -> None:
                count[0] += 1
                if count[0] >= UNBOUNDED_MAX_TRIALS or \
                        time.monotonic() - start > UNBOUNDED_MAX_SECONDS:
                    raise OptimizeNeverEnds(
                        f"study.optimize(n_trials=None) did not end: {count[0]} trials in "
                        f"{time.monotonic() - start:.1f}s ({type(self.sampler).__name__} never "
                        "stopped the study)")

            callbacks = [*(callbacks or ()), guard]
        return real_optimize(self, func, n_trials, timeout, n_jobs, catch, callbacks, *args,
                             **kwargs)

    monkeypatch.setattr(optuna.study.Study, "optimize", optimize)
    start_method = multiprocessing.get_start_method(allow_none=True)

    def timed_out(signum: int, frame: Any) -> None:
        raise ContractTimeout(f"test ran past {TEST_TIMEOUT_S}s")

    alarm = hasattr(signal, "SIGALRM")
    if alarm:
        previous = signal.signal(signal.SIGALRM, timed_out)
        signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        if alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        # test_reproducible_in_other_process forces "spawn" for the whole process
        multiprocessing.set_start_method(start_method, force=True)


def _sampler_fixture(ids: tuple[str, ...]) -> Any:
    @pytest.fixture(params=list(ids))
    def sampler(self: Any, request: pytest.FixtureRequest) -> Callable[[], Any]:
        return FACTORIES[request.param]

    return sampler


# test_samplers.py's classes, each re-parametrized with all of tunelab's samplers.
class TestBasicSampler(contract.TestBasicSampler):
    sampler = _sampler_fixture(tuple(FACTORIES))


class TestRelativeSampler(contract.TestRelativeSampler):
    sampler = _sampler_fixture(tuple(FACTORIES))


class TestMultiObjectiveSampler(contract.TestMultiObjectiveSampler):
    sampler = _sampler_fixture(tuple(FACTORIES))


class TestSingleOnlySampler(contract.TestSingleOnlySampler):
    sampler = _sampler_fixture(tuple(FACTORIES))


def _names(argnames: Any) -> list[str]:
    return [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else list(argnames)


def _reparametrized(func: Callable, argname: str, values: list[Any]) -> Callable:
    """``func`` (a module-level test of test_samplers.py) with its sampler parametrization
    replaced by ``values`` (ids: tunelab's sampler ids); its other marks kept."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__,
                              func.__defaults__, func.__closure__)
    copy.__kwdefaults__, copy.__annotations__ = func.__kwdefaults__, func.__annotations__
    copy.__qualname__, copy.__module__ = func.__qualname__, __name__
    marks = [m for m in getattr(func, "pytestmark", [])
             if not (m.name == "parametrize" and _names(m.args[0]) == _names(argname))]
    copy.pytestmark = marks
    return pytest.mark.parametrize(argname, values)(copy)


_with_seed = [pytest.param(f, id=sid) for sid, f in FACTORIES.items()]
_by_name = [pytest.param(sid, id=sid) for sid in FACTORIES]

test_reseed_rng_change_sampling = _reparametrized(
    contract.test_reseed_rng_change_sampling, "sampler_class_with_seed", _with_seed)
test_reproducible = _reparametrized(contract.test_reproducible, "sampler_class_with_seed",
                                    _with_seed)
test_reproducible_in_other_process = _reparametrized(
    contract.test_reproducible_in_other_process, "sampler_name", _by_name)
unset_seed_in_test = contract.unset_seed_in_test

# test_sampler_reseed_rng: (factory, has a LazyRandomState, holds another sampler), as Optuna
# lists its own: coarse-to-fine keeps a numpy Generator and a RandomSampler fallback; the grid
# sampler is Optuna's GridSampler (a LazyRandomState, no inner sampler).
test_sampler_reseed_rng = _reparametrized(
    contract.test_sampler_reseed_rng,
    "sampler_class_reseed_rng,expected_has_rng,expected_has_another_sampler",
    [pytest.param(_c2f, False, True, id="coarse-to-fine"),
     pytest.param(_c2f_fallback, False, True, id="coarse-to-fine-fallback"),
     pytest.param(_grid, True, False, id="grid")])
test_pickle_random_sampler = contract.test_pickle_random_sampler
test_sample_relative = contract.test_sample_relative

# test_grid.py's tests, with tunelab's grid sampler standing for Optuna's GridSampler.
for _name, _func in vars(grid_contract).items():
    if _name.startswith("test_") and callable(_func):
        globals()[f"test_grid_{_name[5:]}"] = _func
