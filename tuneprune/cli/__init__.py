"""The ``tuneprune`` command line: one module per subcommand, each with ``register(subparsers)``.

Every bad input surfaces as :class:`~tuneprune.shared.config.ConfigError` and leaves with one
line on stderr and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import sys

from tuneprune import __version__
from tuneprune.cli import evolve, fit_alpha, fit_scheduler, prune_stochastic, relevance, report, search, study, train
from tuneprune.cluster.join import interrupt_on_sigterm
from tuneprune.cluster.quiet import configure_quiet
from tuneprune.shared.config import ConfigError

# Subcommand modules in the order ``--help`` lists them.
COMMANDS = (train, search, study, prune_stochastic, evolve, relevance, report, fit_alpha, fit_scheduler)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    configure_quiet()
    parser = _Parser(prog="tuneprune", description="Distributed hyperparameter search over neural-network pruning.")
    parser.add_argument("--version", action="version", version=f"tuneprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    args = parser.parse_args(argv)
    interrupt_on_sigterm()
    try:
        return int(args.run(args) or 0)
    except ConfigError as err:
        sys.stderr.write(f"tuneprune {args.command}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
