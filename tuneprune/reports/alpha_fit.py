"""``tuneprune fit-alpha``: the SPEC 2 tangent rule fitted to the best alpha per target of one or more alpha searches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuneprune.config import ConfigError
from tuneprune.reports.alpha import AlphaFit, AlphaPoint, alpha_figure, best_alpha_points, fit_tangent, residual_rows
from tuneprune.reports.document import Report
from tuneprune.reports.source import Source
from tuneprune.sparsity.theta import ALPHA_RULE_START, PUBLISHED_ALPHA_RULE

RULE_NAME = "alpha_rule.yaml"


def alpha_fit_report(report: Report, sources: Sequence[Source]) -> tuple[AlphaFit, Path]:
    """Fit, tabulate and plot; returns the fit and its rule file, usable as ``sparsity.theta.alpha: fitted:PATH``."""
    for source in sources:
        source.require_search()
    points: list[AlphaPoint] = [p for source in sources for p in best_alpha_points(source.summary)]
    fitted = [p for p in points if p.target >= ALPHA_RULE_START]
    if not fitted:
        names = ", ".join(repr(s.label) for s in sources)
        raise ConfigError(f"source = {names}: no best trial searched sparsity.theta.alpha at a target sparsity >= {ALPHA_RULE_START}")
    fit = fit_tangent([p.target for p in fitted], [p.alpha for p in fitted])
    report.heading("Fitted rule alpha(S) = c1 tan(c2 S + c3) + c4 (SPEC 2)")
    report.text(
        f"{len(fitted)} best alphas at target sparsity >= {ALPHA_RULE_START} (below it the rule is 0 and points are not fitted); "
        f"least squares from the published constants; root-mean-square residual {fit.rmse:.4g} "
        f"(published rule: {fit.rule()['published_rmse']:.4g})."
    )
    if len(fit.free) < len(PUBLISHED_ALPHA_RULE):
        fixed = [k for k in PUBLISHED_ALPHA_RULE if k not in fit.free]
        report.text(f"Fewer than 4 points: only {', '.join(fit.free)} fitted; {', '.join(fixed)} fixed to the published values.", note=True)
    report.table("constants", [
        {"constant": k, "fitted": v, "published": PUBLISHED_ALPHA_RULE[k], "free": k in fit.free} for k, v in fit.constants.items()
    ])  # fmt: skip
    report.figure("alpha_fit", alpha_figure(points, fit))
    report.heading("Residuals")
    report.table("residuals", residual_rows(points, fit))
    return fit, report.add_file(fit.write_rule(report.out / RULE_NAME))
