"""Distributed search: Ray Tune trainables driven by Optuna studies, tracked in MLflow (formulas §8)."""

from tuneprune.search.runner import prepare_search, run_search

__all__ = ["prepare_search", "run_search"]
