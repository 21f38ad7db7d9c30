"""``simfed dag RESULTS_DIR``: draw one server's room DAG, export its PDUs.

Registered through :func:`add_parser` (see ``simfed.cli.COMMAND_MODULES``);
the work is :mod:`simfed.experiment.dag`. Exit 0 on success, 2 for a
missing results directory, a run saved without its DAG, an unknown server
or room, or a bad ``--last``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simfed.exitcodes import EXIT_INVALID, EXIT_OK

__all__ = ["add_parser", "dag_command"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``dag`` to the ``simfed`` command line."""
    from simfed.experiment.dag import DEFAULT_LAST

    p = subparsers.add_parser(
        "dag",
        help="draw the room DAG one server holds (PNG) and export its PDUs for simfed resolve",
        description="Draw the event DAG of one server of a finished run (RESULTS_DIR, written by simfed run): "
        "one row per depth, forks side by side, colour = origin server, squares = state events, "
        "red cross = rejected, orange dashes = soft-failed, black ring = forward extremity, hollow = outlier. "
        "--export writes that server's PDUs as a JSON array that simfed resolve reads.",
    )
    p.add_argument("results", metavar="RESULTS_DIR", type=Path, help="a results directory of simfed run")
    p.add_argument("--server", metavar="NAME", default=None, help="whose DAG (default: the first server)")
    p.add_argument("--room", metavar="ROOM_ID", default=None, help="which room (default: the server's first)")
    p.add_argument("--out", metavar="FILE", type=Path, default=None,
                   help="the PNG to write (default: RESULTS_DIR/dag-<server>.png)")
    p.add_argument("--export", metavar="FILE.json", type=Path, default=None,
                   help="also write the server's PDUs (federation JSON array, all events, for simfed resolve)")
    p.add_argument("--last", metavar="N", type=int, default=DEFAULT_LAST,
                   help=f"draw only the last N events by depth (default {DEFAULT_LAST}; 0: all)")
    p.set_defaults(func=dag_command)


def dag_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from simfed.experiment.dag import DAG_TABLES, DagError, _servers, export_dag, extremity_args, plot_dag

    if args.last < 0:
        print(f"simfed dag: --last: {args.last} is too small (expected an integer >= 0)", file=sys.stderr)
        return EXIT_INVALID
    d = args.results
    if not (d / "summary.json").is_file():
        print(f"simfed dag: {d}: not a results directory of simfed run (no summary.json)", file=sys.stderr)
        return EXIT_INVALID
    missing = [f"{n}.parquet" for n in DAG_TABLES if not (d / f"{n}.parquet").is_file()]
    if missing:
        print(f"simfed dag: {d}: no {' or '.join(missing)} (written by simfed run since the DAG view); "
              "run the scenario again", file=sys.stderr)
        return EXIT_INVALID
    tables = {n: pd.read_parquet(d / f"{n}.parquet", engine="pyarrow") for n in DAG_TABLES}
    try:
        server = args.server or next(iter(_servers(tables["dag"])), None)
        out = args.out if args.out is not None else d / f"dag-{server}.png"
        plot_dag(tables, server, room_id=args.room, last=args.last or None, path=out)
        print(f"DAG of {server}: {out}")
        if args.export is not None:
            ext = export_dag(tables, args.export, server, room_id=args.room)
            print(f"PDUs of {server}: {args.export}; its state: simfed resolve {args.export} {extremity_args(ext)}")
    except DagError as exc:
        print(f"simfed dag: {d}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK
