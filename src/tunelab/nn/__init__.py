"""Neural network building blocks: activations, initializers, norms and the model families.

Example:
    >>> from tunelab.config import ModelConfig
    >>> from tunelab.nn import build_model, flops_per_sample
    >>> model = build_model(ModelConfig(hidden=[256, 128]), (784,), 10)
    >>> flops_per_sample(model, (784,))
    1007104
"""

from tunelab.nn.activations import ACTIVATIONS, make_activation
from tunelab.nn.init import INITS, init_model
from tunelab.nn.models import MODELS, build_model, hidden_block
from tunelab.nn.norms import NORMS, make_norm
from tunelab.nn.stats import count_params, flops_per_sample, forward_macs

__all__ = [
    "ACTIVATIONS", "INITS", "NORMS", "MODELS", "build_model", "init_model", "hidden_block",
    "make_activation", "make_norm", "count_params", "flops_per_sample", "forward_macs",
]
