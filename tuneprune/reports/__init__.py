"""Reports of searches and evolutions: Pareto fronts, hypervolumes, importances, learning curves, and the fitted
alpha rule and scheduler presets (formulas §2, §3, §5, §8). Self-contained HTML pages with PNG plots and CSV tables."""

from tuneprune.reports.alpha import alpha_fit_report
from tuneprune.reports.build import build_report
from tuneprune.reports.document import Report
from tuneprune.reports.scheduler import scheduler_report
from tuneprune.reports.source import resolve_source
from tuneprune.reports.tangent import fit_tangent, tangent
from tuneprune.reports.trials import load_search

__all__ = [
    "Report",
    "alpha_fit_report",
    "build_report",
    "fit_tangent",
    "load_search",
    "resolve_source",
    "scheduler_report",
    "tangent",
]
