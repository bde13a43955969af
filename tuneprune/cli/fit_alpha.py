"""``tuneprune fit-alpha SOURCE...``: fit alpha(S) = c1 tan(c2 S + c3) + c4 to the best alpha per target sparsity (SPEC 2).

SOURCEs are alpha searches (names, parent run ids or results directories). Writes
alpha_rule.yaml (use it as sparsity.theta.alpha: fitted:PATH), residuals.csv, the plot
and fit_alpha.html into --out (default runs/NAME/fit-alpha/ of the first SOURCE).
"""

from __future__ import annotations

import argparse

from tuneprune.cli.report import register_source_command, say_run_url


def register(sub: argparse._SubParsersAction) -> None:
    register_source_command(sub, "fit-alpha", "fit the tangent alpha(S) rule to alpha searches", __doc__, run, many=True)


def run(args: argparse.Namespace) -> int:
    from tuneprune.reports import Report, alpha_fit_report, resolve_source

    sources = [resolve_source(s, args.tracking_uri) for s in args.sources]
    report = Report("tuneprune fit-alpha " + " ".join(s.name for s in sources), args.out or sources[0].results_dir / "fit-alpha")
    fit, rule = alpha_fit_report(report, sources)
    html = report.write_html("fit_alpha.html")
    c = fit.constants
    print(f"alpha(S) = {c['c1']:.6g} tan({c['c2']:.6g} S + {c['c3']:.6g}) + {c['c4']:.6g}")
    fixed = "" if len(fit.free) == 4 else "; the others are the published constants (fewer than 4 points)"
    print(f"fitted {', '.join(fit.free)} to {len(fit.targets)} points (rmse {fit.rmse:.4g}){fixed}")
    print(f"rule:   {rule}   (sparsity.theta.alpha: fitted:{rule})")
    print(f"report: {html}")
    say_run_url(sources[0])
    return 0
