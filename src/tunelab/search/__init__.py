"""Hyperparameter search: space files, samplers, pruners, the study driver, tune()."""

from tunelab.search.pruners import PRUNERS, make_pruner
from tunelab.search.samplers import SAMPLERS, grid_size, make_sampler
from tunelab.search.space import SearchSpace
from tunelab.search.tune import DEFAULT_STORAGE, TuneResult, tune

__all__ = ["SearchSpace", "SAMPLERS", "make_sampler", "grid_size", "PRUNERS", "make_pruner",
           "tune", "TuneResult", "DEFAULT_STORAGE"]
