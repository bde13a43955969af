"""``tuneprune fit-alpha``: the formulas §2 tangent rule fitted to the best usable alpha per target of alpha searches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tuneprune.reports.alpha import AlphaPoint, alpha_candidates, alpha_figure, best_alpha_points, residual_rows
from tuneprune.reports.document import Report
from tuneprune.reports.source import Source
from tuneprune.reports.tangent import DEFAULT_POLE_MARGIN, AlphaFit, fit_tangent
from tuneprune.reports.usable import DEFAULT_RULES, UsabilityRules
from tuneprune.runs.paths import THETA_ALPHA
from tuneprune.shared.config import ConfigError
from tuneprune.sparsity.theta import ALPHA_RULE_START, PUBLISHED_ALPHA_RULE


def fixed_reason(free: Sequence[str] | None) -> str:
    """Why constants keep their published values: too few distinct targets (``free`` None: chosen by their number), or
    ``--constants`` left them out."""
    return "fewer than 4 distinct targets" if free is None else f"--constants {','.join(free)}"


def alpha_fit_report(
    report: Report,
    sources: Sequence[Source],
    rules: UsabilityRules = DEFAULT_RULES,
    free: Sequence[str] | None = None,
    pole_margin: float = DEFAULT_POLE_MARGIN,
) -> tuple[AlphaFit, Path, list[AlphaPoint]]:
    """Select, fit, tabulate and plot; returns the fit, its rule file (``sparsity.theta.alpha: fitted:PATH``)
    and the excluded trials. Too few usable points for the constants: :class:`ConfigError`, before writing."""
    for i, source in enumerate(sources):
        source.require_search()
        same = next(
            (s for s in sources[:i] if (s.parent_run_id, s.results_dir) == (source.parent_run_id, source.results_dir)),
            None,
        )
        if same is not None:  # its points would count twice
            raise ConfigError(
                f"source = {source.label!r}: the search {same.label!r} names already; give each search once"
            )
    # each source's own trials (not those of every source of its name: searches in two stores may share one)
    per_source = [(source, alpha_candidates(source, rules)) for source in sources]
    points = [p for source, mine in per_source for p in best_alpha_points(source.summary, mine)]
    candidates = [p for _, mine in per_source for p in mine]
    excluded = [c for c in candidates if c.excluded is not None]
    fitted = [p for p in points if p.target >= ALPHA_RULE_START]
    names = ", ".join(repr(s.label) for s in sources)
    if not fitted:
        raise ConfigError(
            f"source = {names}: no usable trial that searched {THETA_ALPHA} at a target sparsity >= {ALPHA_RULE_START} "
            f"({len(candidates)} candidates, {len(excluded)} excluded: {rules.describe()})"
        )
    try:
        fit = fit_tangent([p.target for p in fitted], [p.alpha for p in fitted], free, pole_margin)
    except ConfigError as err:
        raise ConfigError(f"source = {names}: {err} ({len(excluded)} trials excluded: {rules.describe()})") from None
    report.heading("Which trials are used")
    report.text(f"{len(candidates)} complete alpha trials, {len(excluded)} excluded; {rules.describe()}.")
    if excluded:
        report.table("excluded", [asdict(p) for p in excluded], "trials left out and why")
    report.heading("Fitted rule alpha(S) = c1 tan(c2 S + c3) + c4 (formulas §2)")
    r2 = "undefined (all alphas equal)" if fit.r2 is None else f"{fit.r2:.4f}"
    rule = fit.rule()
    report.text(
        f"{len(fitted)} best usable alphas at target sparsity >= {ALPHA_RULE_START} (below it the rule is 0 and points are not "
        f"fitted); bounded least squares from the published constants, poles kept {pole_margin} outside {fit.fitted_range[0]}.."
        f"{fit.fitted_range[1]} (poles at {fit.poles[0]:.4f} and {fit.poles[1]:.4f}); root-mean-square residual {fit.rmse:.4g}, "
        f"R^2 {r2} (published rule: rmse {rule['published_rmse']:.4g})."
    )
    if len(fit.free) < len(PUBLISHED_ALPHA_RULE):
        fixed = [k for k in PUBLISHED_ALPHA_RULE if k not in fit.free]
        reason = fixed_reason(free)
        report.text(
            f"{reason[0].upper()}{reason[1:]}: only {', '.join(fit.free)} fitted; {', '.join(fixed)} fixed to the published values.",
            note=True,
        )
    report.table("constants", [
        {"constant": k, "fitted": v, "published": PUBLISHED_ALPHA_RULE[k], "free": k in fit.free} for k, v in fit.constants.items()
    ])  # fmt: skip
    report.figure("alpha_fit", alpha_figure(points, fit, excluded))
    report.heading("Residuals")
    report.table("residuals", residual_rows(points, fit))
    return fit, report.write_yaml("alpha_rule.yaml", rule), excluded
