"""``tuneprune fit-scheduler SOURCE``: presets of the adaptive-scheduler constants a search found (formulas §3).

Judges only trials that reached their target sparsity (within --sparsity-tolerance) and
whose accuracy is above chance (by --chance-margin), and prints every trial's achieved
sparsity and the epoch it reached its target. Writes one preset-KEY.yaml of A, B, C, D
per chosen trial (the accuracy / stability Pareto set of a two-objective search, per grid
point; use it as sparsity.scheduler.preset: PATH), the trials and constants tables, the
lambda(S) curves and the sparsity per epoch of those trials, and fit_scheduler.html into
--out (default runs/NAME/fit-scheduler/).
"""

from __future__ import annotations

import argparse

from tuneprune.cli.report import add_usability_arguments, register_source_command, say_run_url, usability_rules


def register(sub: argparse._SubParsersAction) -> None:
    p = register_source_command(
        sub, "fit-scheduler", "turn an adaptive-scheduler constants search into presets", __doc__, run
    )
    add_usability_arguments(p)


def run(args: argparse.Namespace) -> int:
    from tuneprune.reports import Report, load_search, resolve_source, scheduler_report

    rules = usability_rules(args)
    source = resolve_source(args.source, args.tracking_uri)
    report = Report(f"tuneprune fit-scheduler {source.name}", args.out or source.results_dir / "fit-scheduler")
    presets, rows = scheduler_report(report, load_search(source), rules)
    html = report.write_html("fit_scheduler.html")
    print(f"judged: {rules.describe()}")
    for row in rows:
        reached = "never" if row["reached_epoch"] is None else f"epoch {row['reached_epoch']}"
        sparsity = "-" if row["sparsity"] is None else f"{row['sparsity']:.4f}"
        verdict = "Pareto" if row["pareto"] else (row["excluded"] or "dominated")
        print(f"  {row['trial']}  target {row['target']:g}  sparsity {sparsity}  reached {reached}  {verdict}")
    for path in presets:
        print(f"preset: {path}")
    print(f"report: {html}")
    say_run_url(source)
    return 0
