"""Stochastic Pruning (formulas §5): noisy samples of a dense model pruned one-shot, the best kept.

Imports neither Ray nor MLflow: the evolution (``tuneprune.evolution``) and the
``prune-stochastic`` command build on these pieces.
"""

from tuneprune.stochastic.config import FinetuneConfig, StochasticConfig, TargetConfig
from tuneprune.stochastic.dense import dense_model_and_data
from tuneprune.stochastic.pipeline import feature_variance, finetune, prune_stochastic, run_stochastic
from tuneprune.stochastic.pruning import Pruner, derive_seed, score_samples, sparsities, target_layers

__all__ = [
    "FinetuneConfig",
    "Pruner",
    "StochasticConfig",
    "TargetConfig",
    "dense_model_and_data",
    "derive_seed",
    "feature_variance",
    "finetune",
    "prune_stochastic",
    "run_stochastic",
    "score_samples",
    "sparsities",
    "target_layers",
]
