"""The ``simfed`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simfed",
        description="simfed: a discrete-event simulator of Matrix federation.",
    )
    parser.add_argument("--version", action="version", version=f"simfed {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(f"simfed {__version__}")
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
