"""tuneprune: distributed hyperparameter search over neural-network pruning."""

__version__ = "0.1.0"
