"""``simfed validate`` and ``simfed schema``: check a scenario file, print its schema.

Registered through :func:`add_parser` (see ``simfed.cli.COMMAND_MODULES``).
A bad scenario prints one line per problem on stderr and exits 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .scenario import ScenarioError, json_schema, load_scenario

__all__ = ["add_parser"]

from simfed.exitcodes import EXIT_INVALID, EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``validate`` and ``schema`` to the ``simfed`` command line."""
    validate = subparsers.add_parser(
        "validate",
        help="check a scenario file without running it",
        description="Check a scenario file (and --set overrides) without running it. "
        "Exit status 0 if valid, 2 otherwise (one line per problem on stderr).",
    )
    validate.add_argument("file", metavar="FILE", help="scenario TOML file")
    validate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value, e.g. --set network.loss=0.1 --set simulation.duration=30s (repeatable)",
    )
    validate.set_defaults(func=run_validate)

    schema = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of scenario files",
        description="Print the JSON Schema of scenario files (for editors and other tools).",
    )
    schema.set_defaults(func=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.file, overrides=args.overrides)
    except ScenarioError as exc:
        for line in exc.lines(args.file):
            print(line, file=sys.stderr)
        return EXIT_INVALID
    if scenario.topology.graph is not None:
        from simfed.errors import ScenarioMismatch
        from simfed.sim.world import preflight

        try:
            preflight(scenario)
        except ScenarioMismatch as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return EXIT_INVALID
    print(f"{args.file}: ok ({scenario.describe()})")
    return EXIT_OK


def run_schema(args: argparse.Namespace) -> int:
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK
