"""The population: many runs of one structure (mlp or cnn) trained as one stacked computation (caviar mode).

``train_population(cfgs)`` trains configs that share data, model structure, optimizer kind and batch
size together (stacked weights, batched matmuls, vectorized optimizer updates), each member exactly
the run ``tunelab.train`` would give it alone, within float rounding; ``group(cfgs)`` sorts configs
into such buckets. The population executor (``tunelab.execute.population``) runs a study's trials
this way.
"""

from tunelab.population.train import bucket_key, group, stackable, train_population

__all__ = ["train_population", "group", "bucket_key", "stackable"]
