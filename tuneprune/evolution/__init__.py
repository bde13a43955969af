"""Evolution of Stochastic Pruning's (sigma, rate) on the accuracy-sparsity plane with pymoo, on Ray (formulas §5, formulas §8)."""

from tuneprune.evolution.runner import EvolutionSummary, PreparedEvolution, prepare_evolution, run_evolution
from tuneprune.evolution.space import EvolutionSpace

__all__ = ["EvolutionSpace", "EvolutionSummary", "PreparedEvolution", "prepare_evolution", "run_evolution"]
