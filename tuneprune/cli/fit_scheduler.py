"""``tuneprune fit-scheduler SOURCE``: presets of the adaptive-scheduler constants a search found (SPEC 3).

Writes one preset-KEY.yaml of A, B, C, D per best trial (the accuracy / stability
Pareto set of a two-objective search; use it as sparsity.scheduler.preset: PATH), the
constants table, the lambda(S) curves and the sparsity per epoch of those trials, and
fit_scheduler.html into --out (default runs/NAME/fit-scheduler/).
"""

from __future__ import annotations

import argparse

from tuneprune.cli.report import register_source_command, say_run_url


def register(sub: argparse._SubParsersAction) -> None:
    register_source_command(sub, "fit-scheduler", "turn an adaptive-scheduler constants search into presets", __doc__, run)


def run(args: argparse.Namespace) -> int:
    from tuneprune.reports import Report, load_search, resolve_source, scheduler_report

    source = resolve_source(args.source, args.tracking_uri)
    report = Report(f"tuneprune fit-scheduler {source.name}", args.out or source.results_dir / "fit-scheduler")
    presets = scheduler_report(report, load_search(source))
    html = report.write_html("fit_scheduler.html")
    for path in presets:
        print(f"preset: {path}")
    print(f"report: {html}")
    say_run_url(source)
    return 0
