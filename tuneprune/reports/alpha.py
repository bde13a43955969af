"""alpha per target sparsity from alpha searches (formulas §2): the usable trials (:mod:`tuneprune.reports.usable`),
the best alpha per grid point and the figure; ``tuneprune fit-alpha`` fits the rule to them
(:mod:`tuneprune.reports.tangent`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tuneprune.output.plotting import new_figure
from tuneprune.reports.document import Report
from tuneprune.reports.source import Source
from tuneprune.reports.tangent import DEFAULT_POLE_MARGIN, AlphaFit, fit_tangent, tangent
from tuneprune.reports.trials import logged_space
from tuneprune.reports.usable import DEFAULT_RULES, UsabilityRules, accuracy_metric, chance_accuracy
from tuneprune.runs.paths import TARGET_SPARSITY, THETA_ALPHA
from tuneprune.search.space import METHOD, SearchSpace
from tuneprune.search.study_config import SEED
from tuneprune.shared.config import ConfigError
from tuneprune.shared.pareto import best_of
from tuneprune.sparsity.theta import ALPHA_RULE_START, PUBLISHED_ALPHA_RULE, derived_alpha
from tuneprune.tracking.runs import flatten

NOT_GROUPS = (TARGET_SPARSITY, METHOD, SEED)  # grid keys that do not part the points of the alpha(S) fit


@dataclass(frozen=True)
class AlphaPoint:
    """One trial of an alpha search: its target, alpha, score, achieved sparsity, and why it is left out (if it is)."""

    search: str
    trial: str
    group: str  # the other grid values, e.g. "model=resnet20x2"
    target: float
    alpha: float
    score: float  # the first objective of the trial
    sparsity: float | None  # achieved at the last epoch
    excluded: str | None = None


def trial_alpha(entry: dict[str, Any], space: SearchSpace | None = None) -> float | None:
    """The alpha of ``log_density`` theta a trial ran with: searched (its params), or set to a number by the study
    ``space`` it ran in (its method or base; formulas §11); None when it ran with no alpha of its own: another theta
    policy (formulas §2: only ``log_density`` uses alpha, a searched one included), or a rule that derived it from the
    target (``'auto'``, ``'fitted:PATH'``: its config holds the rule's value, not a found one)."""
    theta = (entry["config"].get("sparsity") or {}).get("theta") or {}
    if theta.get("policy") != "log_density":
        return None
    if THETA_ALPHA in entry["params"]:
        return float(entry["params"][THETA_ALPHA])
    alpha = theta.get("alpha")
    if space is None or METHOD not in entry["grid"]:
        return None
    given = flatten(space.trial_document(entry["grid"], entry["params"])).get(THETA_ALPHA)
    return None if derived_alpha(given) or not isinstance(alpha, int | float) else float(alpha)


def alpha_candidates(source: Source, rules: UsabilityRules) -> list[AlphaPoint]:
    """Every complete trial of ``source`` that ran with an alpha of its own (searched, or a study method's), with its
    exclusion reason under ``rules``. Its group is its other grid values, a study's method and seed left out. A study's
    space (its methods) is read from the tracking store."""
    summary = source.summary
    first, accuracy = next(iter(summary["objectives"])), accuracy_metric(summary["objectives"])
    # the complete trials with their configs (older summaries: only the best entries carry one)
    completed = [t for t in summary.get("trials", []) if t.get("state") == "COMPLETE" and "config" in t]
    completed = completed or summary["best"]
    space = logged_space(source) if any(METHOD in entry["grid"] for entry in completed) else None
    points = []
    for entry in completed:
        alpha = trial_alpha(entry, space)
        if alpha is None:
            continue
        metrics = source.trial_metrics(entry)
        target = entry["config"]["sparsity"]["target"]
        achieved = metrics.get("sparsity")
        acc = entry["values"].get(accuracy, metrics.get(accuracy))
        group = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in entry["grid"].items() if k not in NOT_GROUPS)
        reason = rules.reason(target, achieved, acc, chance_accuracy(entry["config"]), accuracy)
        score = entry["values"][first]
        points.append(AlphaPoint(summary["name"], entry["key"], group, target, alpha, score, achieved, reason))
    return points


def best_alpha_points(summary: dict[str, Any], candidates: Sequence[AlphaPoint]) -> list[AlphaPoint]:
    """Per grid point (group and target), the usable alpha best in the first objective, a tie to the lowest trial key
    (:func:`~tuneprune.shared.pareto.best_of`). The trials of one alpha at one grid point (a study's seeds) count as
    one point: their mean score and mean achieved sparsity, their keys joined."""
    (_, direction), *_ = summary["objectives"].items()
    seeds: dict[tuple[str, float, float], list[AlphaPoint]] = {}
    for point in candidates:
        if point.excluded is None:
            seeds.setdefault((point.group, point.target, point.alpha), []).append(point)
    grid_points: dict[tuple[str, float], list[AlphaPoint]] = {}
    for same in seeds.values():
        reached = [p.sparsity for p in same if p.sparsity is not None]
        point = replace(
            same[0],
            trial=",".join(p.trial for p in same),
            score=sum(p.score for p in same) / len(same),
            sparsity=sum(reached) / len(reached) if reached else None,
        )
        grid_points.setdefault((point.group, point.target), []).append(point)
    chosen = [ps[best_of([p.score for p in ps], [p.trial for p in ps], direction)] for ps in grid_points.values()]
    return sorted(chosen, key=lambda p: (p.group, p.target))


def residual_rows(points: Sequence[AlphaPoint], fit: AlphaFit) -> list[dict[str, Any]]:
    """Per best point: alpha, the fitted and the published rule's value and the residuals (observed - rule)."""
    rows = []
    for p in points:
        published = float(tangent(p.target, **PUBLISHED_ALPHA_RULE))
        fitted = float(fit(p.target)) if p.target >= ALPHA_RULE_START else None
        rows.append({
            "search": p.search, "trial": p.trial, "group": p.group, "target": p.target, "sparsity": p.sparsity,
            "alpha": p.alpha, "fitted": fitted, "residual": None if fitted is None else p.alpha - fitted,
            "published": published, "published_residual": p.alpha - published,
        })  # fmt: skip
    return rows


def alpha_figure(points: Sequence[AlphaPoint], fit: AlphaFit | None = None, excluded: Sequence[AlphaPoint] = ()) -> Any:
    """The best usable alpha per target (one colour per group; hollow below 0.90), the excluded trials (grey x),
    the published rule and, if given, the fitted one with the range it was fitted on."""
    fig, (ax,) = new_figure()
    for group in sorted({p.group for p in points}):
        mine = [p for p in points if p.group == group and p.target >= ALPHA_RULE_START]
        plot_alphas(ax, mine, "o", label=f"best usable alpha {group}".strip())
    below = [p for p in points if p.target < ALPHA_RULE_START]
    if below:
        plot_alphas(ax, below, "o", mfc="none", color="black", label="below 0.90 (rule is 0)")
    if excluded:
        plot_alphas(ax, excluded, "x", color="grey", label=f"excluded ({len(excluded)})")
    high = max([0.998, *(p.target for p in [*points, *excluded])])
    s = np.linspace(ALPHA_RULE_START, high, 400)
    published = "published: " + _formula(PUBLISHED_ALPHA_RULE)
    ax.plot(s, tangent(s, **PUBLISHED_ALPHA_RULE), "--", color="grey", label=published)
    if fit is not None:
        low, top = fit.fitted_range
        fitted = np.linspace(low, top, 400)  # not extrapolated: past the range the next pole may be near
        ax.plot(fitted, fit(fitted), "-", color="tab:red", label="fitted: " + _formula(fit.constants))
        poles = f"fitted range; poles at {fit.poles[0]:.4f}, {fit.poles[1]:.4f}"
        ax.axvspan(low, top, color="tab:red", alpha=0.06, label=poles)
    ax.set_xlabel("target sparsity S_f")
    ax.set_ylabel("alpha")
    ax.legend(fontsize=8)
    return fig


def plot_alphas(ax: Any, points: Sequence[AlphaPoint], style: str, **kwargs: Any) -> None:
    """Each point's alpha against its target sparsity."""
    ax.plot([p.target for p in points], [p.alpha for p in points], style, **kwargs)


def _formula(c: dict[str, float]) -> str:
    return f"{c['c1']:.4g} tan({c['c2']:.4g} S + {c['c3']:.4g}) + {c['c4']:.4g}"


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
    first_of: dict[tuple[str, Path], Source] = {}
    for source in sources:
        source.require_search()
        same = first_of.setdefault((source.parent_run_id, source.results_dir), source)
        if same is not source:  # its points would count twice
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
    report.remove_stale(r"excluded\.csv")
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
        report.text(
            f"{fixed_reason(free).capitalize()}: only {', '.join(fit.free)} fitted; {', '.join(fixed)} fixed to the published values.",
            note=True,
        )
    report.table("constants", [
        {"constant": k, "fitted": v, "published": PUBLISHED_ALPHA_RULE[k], "free": k in fit.free} for k, v in fit.constants.items()
    ])  # fmt: skip
    report.figure("alpha_fit", alpha_figure(points, fit, excluded))
    report.heading("Residuals")
    report.table("residuals", residual_rows(points, fit))
    return fit, report.write_yaml("alpha_rule.yaml", rule), excluded
