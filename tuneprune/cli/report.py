"""``tuneprune report SOURCE``: one self-contained HTML report of a search or an evolution (formulas §8).

Writes report.html (plots embedded), the PNG plots, CSV tables and the best configuration
as YAML into --out (default runs/NAME/report/), logs them to the parent MLflow run under
report/, and prints the path of the HTML file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tuneprune.cli.common import output_directory

SOURCE_HELP = "a search or evolution name, its MLflow parent run id, or its results directory (runs/NAME)"


def register_source_command(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    doc: str,
    run: Callable[[argparse.Namespace], int],
    many: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand reading one (or, with ``many``, several) SOURCEs and writing into --out (default runs/NAME/<command>)."""
    p = sub.add_parser(name, help=summary, description=doc)
    if many:
        p.add_argument("sources", nargs="+", metavar="SOURCE", help=SOURCE_HELP)
    else:
        p.add_argument("source", help=SOURCE_HELP)
    p.add_argument(
        "--out", type=output_directory, help=f"output directory (default: runs/NAME/{name}, beside the results)"
    )
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: the results directory's, else sqlite:///$PWD/mlruns.db)"
    )
    p.set_defaults(run=run)
    return p


def add_usability_arguments(p: argparse.ArgumentParser) -> None:
    """--sparsity-tolerance and --chance-margin: which trials a fit may use (tuneprune.reports.usable)."""
    p.add_argument(
        "--sparsity-tolerance", type=float,
        help="a trial reached its target when its achieved sparsity >= target - this (default 0.001)",
    )  # fmt: skip
    p.add_argument(
        "--chance-margin", type=float, help="leave out trials whose accuracy is below 1/classes + this (default 0.1)"
    )


def usability_rules(args: argparse.Namespace):  # -> UsabilityRules, imported lazily
    """The rules the arguments ask for (defaults: UsabilityRules'); a threshold outside [0, 1) exits 2 naming the option."""
    from tuneprune.reports.usable import UsabilityRules
    from tuneprune.shared.config import ConfigError

    given = {k: getattr(args, k) for k in ("sparsity_tolerance", "chance_margin") if getattr(args, k) is not None}
    for option, value in given.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"--{option.replace('_', '-')} = {value}: must lie in [0, 1)")
    return UsabilityRules(**given)


def register(sub: argparse._SubParsersAction) -> None:
    register_source_command(sub, "report", "write the HTML report of a search or an evolution", __doc__, run)


def run(args: argparse.Namespace) -> int:
    from tuneprune.reports import build_report, resolve_source

    source = resolve_source(args.source, args.tracking_uri)
    print(build_report(source, args.out))
    say_run_url(source)
    return 0


def say_run_url(source) -> None:  # source: a tuneprune.reports.source.Source
    """The parent run's MLflow page, on stderr (stdout is the path a script reads)."""
    from tuneprune.output.progress import say

    url = source.run_url()
    if url is not None:
        say(f"runs: {url}")
