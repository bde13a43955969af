"""``tuneprune fit-alpha SOURCE...``: fit alpha(S) = c1 tan(c2 S + c3) + c4 to the best alpha per target sparsity (formulas §2).

SOURCEs are alpha searches (names, parent run ids or results directories). Trials that
never reached their target or stayed near chance are left out, each with its reason; the
best usable alpha per grid point is fitted by bounded least squares that keeps the poles
of tan outside the fitted range. Writes alpha_rule.yaml (use it as sparsity.theta.alpha:
fitted:PATH), residuals.csv, excluded.csv, the plot and fit_alpha.html into --out
(default runs/NAME/fit-alpha/ of the first SOURCE). Too few usable points: exit 2.
"""

from __future__ import annotations

import argparse

from tuneprune.cli.report import add_usability_arguments, register_source_command, say_run_url, usability_rules


def register(sub: argparse._SubParsersAction) -> None:
    p = register_source_command(
        sub, "fit-alpha", "fit the tangent alpha(S) rule to alpha searches", __doc__, run, many=True
    )
    add_usability_arguments(p)
    p.add_argument(
        "--constants", default="auto",
        help="constants to fit, e.g. c1,c2,c3,c4 (default auto: all four from 4 distinct targets, c1,c4 from 2-3, c4 from 1)",
    )  # fmt: skip
    p.add_argument(
        "--pole-margin", type=float, help="keep the poles of tan this far outside the fitted range (default 0.005)"
    )


def run(args: argparse.Namespace) -> int:
    from tuneprune.reports import Report, alpha_fit_report, resolve_source
    from tuneprune.reports.alpha import fixed_reason
    from tuneprune.reports.tangent import DEFAULT_POLE_MARGIN, fit_options

    rules = usability_rules(args)
    names = None if args.constants == "auto" else [name.strip() for name in args.constants.split(",")]
    margin = DEFAULT_POLE_MARGIN if args.pole_margin is None else args.pole_margin
    free = fit_options(names, margin)  # before any source is read
    sources = [resolve_source(s, args.tracking_uri) for s in args.sources]
    report = Report(
        "tuneprune fit-alpha " + " ".join(s.name for s in sources), args.out or sources[0].results_dir / "fit-alpha"
    )
    fit, rule, excluded = alpha_fit_report(report, sources, rules, free, margin)
    html = report.write_html("fit_alpha.html")
    print(f"used: {rules.describe()}")
    for point in excluded:
        print(
            f"  excluded {point.search} {point.trial} (target {point.target:g}, alpha {point.alpha:.4g}): {point.excluded}"
        )
    c = fit.constants
    print(f"alpha(S) = {c['c1']:.6g} tan({c['c2']:.6g} S + {c['c3']:.6g}) + {c['c4']:.6g}")
    fixed = "" if len(fit.free) == 4 else f"; the others are the published constants ({fixed_reason(free)})"
    r2 = "undefined" if fit.r2 is None else f"{fit.r2:.4f}"
    print(f"fitted {', '.join(fit.free)} to {len(fit.targets)} points (rmse {fit.rmse:.4g}, R^2 {r2}){fixed}")
    low, high = fit.fitted_range
    print(
        f"poles at S = {fit.poles[0]:.4f} and {fit.poles[1]:.4f}, outside {low:g}..{high:g} by at least {fit.pole_margin:g}"
    )
    for pole in fit.poles_on_bounds:
        print(
            f"  the {pole} pole sits on its bound (the bound is active: unconstrained, the points pull it closer or into the range)"
        )
    for target, alpha, residual in zip(fit.targets, fit.alphas, fit.residuals, strict=True):
        print(f"  S = {target:<6g} alpha {alpha:.4f}  fitted {alpha - residual:.4f}  residual {residual:+.4f}")
    print(f"rule:   {rule}   (sparsity.theta.alpha: fitted:{rule})")
    print(f"report: {html}")
    say_run_url(sources[0])
    return 0
