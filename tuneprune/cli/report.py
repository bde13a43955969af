"""``tuneprune report SOURCE``: one self-contained HTML report of a search or an evolution (SPEC 8).

Writes report.html (plots embedded), the PNG plots, CSV tables and the best configuration
as YAML into --out (default runs/NAME/report/), logs them to the parent MLflow run under
report/, and prints the path of the HTML file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

SOURCE_HELP = "a search or evolution name, its MLflow parent run id, or its results directory (runs/NAME)"


def register_source_command(
    sub: argparse._SubParsersAction, name: str, summary: str, doc: str, run: Callable[[argparse.Namespace], int], many: bool = False
) -> None:
    """A subcommand reading one (or, with ``many``, several) SOURCEs and writing into --out (default runs/NAME/<command>)."""
    p = sub.add_parser(name, help=summary, description=doc)
    if many:
        p.add_argument("sources", nargs="+", metavar="SOURCE", help=SOURCE_HELP)
    else:
        p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--out", type=Path, help=f"output directory (default: runs/NAME/{name}, beside the results)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the results directory's, else sqlite:///$PWD/mlruns.db)")
    p.set_defaults(run=run)


def register(sub: argparse._SubParsersAction) -> None:
    register_source_command(sub, "report", "write the HTML report of a search or an evolution", __doc__, run)


def run(args: argparse.Namespace) -> int:
    from tuneprune.reports import build_report, resolve_source

    source = resolve_source(args.source, args.tracking_uri)
    print(build_report(source, args.out))
    say_run_url(source)
    return 0


def say_run_url(source) -> None:  # noqa: ANN001 - a tuneprune.reports.Source
    """The parent run's MLflow page, on stderr (stdout is the path a script reads)."""
    from tuneprune.progress import say

    say(f"runs: {source.run_url()}")
