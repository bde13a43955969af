"""Distributed search: Ray Tune trainables driven by Optuna studies, tracked in MLflow (formulas §8)."""

from tuneprune.search.runner import PreparedSearch, SearchSummary, prepare_search, run_search
from tuneprune.search.space import METRICS, SearchSpace, load_space

__all__ = ["METRICS", "PreparedSearch", "SearchSpace", "SearchSummary", "load_space", "prepare_search", "run_search"]
