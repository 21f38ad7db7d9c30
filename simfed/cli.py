"""The ``simfed`` command line.

Each command lives in its own module that defines ``add_parser(subparsers)``;
the parser it adds sets ``func`` (taking the parsed args, returning an exit
code). Modules are listed in ``COMMAND_MODULES`` and imported lazily, so
``simfed --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__

#: Modules that contribute subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "simfed.experiment.cli_run",
    "simfed.experiment.cli_sweep",
    "simfed.experiment.cli_dag",
    "simfed.commands.resolve",
    "simfed.experiment.cli_scenario",
)

from .exitcodes import EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simfed",
        description="simfed: a discrete-event simulator of Matrix federation.",
    )
    parser.add_argument("--version", action="version", version=f"simfed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(f"simfed {__version__}")
        parser.print_help()
        return EXIT_OK
    return int(args.func(args) or EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
