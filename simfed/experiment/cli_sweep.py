"""``simfed sweep``: run a scenario over a grid of values, many times, in parallel.

Registered through :func:`add_parser` (see ``simfed.cli.COMMAND_MODULES``).
The work is :func:`simfed.experiment.sweep.sweep`; this module parses the
command line, chooses the start method of the local pool, prints the result
and maps it to an exit status:

0  every planned run finished (converged or not: that is a result);
1  some runs failed (recorded with their error; running the same command
   again retries them), or the executor could not be reached;
2  a bad scenario, grid, option, or an ``--out`` directory holding another
   sweep (one line per problem on stderr, never a traceback);
130 after Ctrl-C, once the finished runs are tabulated (the same command
   resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "sweep_command", "default_out_dir"]

from simfed.exitcodes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``sweep`` to the ``simfed`` command line."""
    p = subparsers.add_parser(
        "sweep",
        help="run a scenario over a grid of values and repetitions, in parallel (resumable)",
        description="Run a scenario for every combination of the --grid values, --repeat times each, "
        "each run with its own seed derived from the base seed, its grid values and its repetition "
        "(sha256; see simfed.experiment.sweep). Writes DIR/sweep.json (the manifest), "
        "DIR/runs/<run_id>/summary.json per run, DIR/runs.parquet (one row per run) and "
        "DIR/sweep_summary.parquet/.csv (mean and 95% confidence interval per grid point). "
        "Running the same command again skips finished runs; Ctrl-C keeps them.",
    )
    p.add_argument("file", metavar="SCENARIO", help="scenario TOML file")
    p.add_argument(
        "--grid",
        "-g",
        dest="grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one scenario key, e.g. --grid network.loss=0,0.1,0.3 --grid servers.count=10,50 "
        "(repeatable; the sweep runs the cartesian product)",
    )
    p.add_argument("--repeat", "-r", type=int, default=1, metavar="N", help="runs per grid point (default 1)")
    p.add_argument(
        "--workers",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes (default: one per CPU; 0: run in this process)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on Dask: tcp://host:8786 for a running cluster, local:N to start a LocalCluster "
        "of N worker processes",
    )
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        type=Path,
        default=None,
        help="sweep directory (default: results/<scenario name>-sweep/)",
    )
    p.add_argument(
        "--common-seeds",
        dest="common_seeds",
        action="append",
        default=[],
        metavar="KEY",
        help="a grid key whose values share seeds (paired comparison on the same traffic), "
        "e.g. --common-seeds topology.strategy (repeatable)",
    )
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="base seed (default: the scenario's simulation.seed)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the base scenario, e.g. --set simulation.duration=2m (repeatable)",
    )
    p.add_argument("--keep-tables", action="store_true",
                   help="also keep each run's Parquet tables in DIR/runs/<run_id>/")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show the progress bar even when stderr is not a terminal")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar and no summary; print only the sweep directory")
    p.add_argument(
        "--start-method",
        choices=("spawn", "forkserver"),
        default="spawn",
        help="how local worker processes start (default spawn)",
    )
    p.set_defaults(func=sweep_command)


def default_out_dir(file: str | Path) -> Path:
    """``results/<scenario file stem>-sweep`` (relative to the working directory)."""
    return Path("results") / f"{Path(file).stem}-sweep"


def _report_invalid(file: str, exc) -> int:
    for line in exc.lines(file):
        print(line, file=sys.stderr)
    return EXIT_INVALID


def sweep_command(args: argparse.Namespace) -> int:
    from simfed.experiment.executors import ExecutorError
    from simfed.experiment.scenario import ScenarioError
    from simfed.experiment.sweep import ManifestMismatch, parse_grid, sweep

    if args.seed is not None and args.seed < 0:
        print(f"{args.file}: --seed: {args.seed} is too small (expected an integer >= 0)", file=sys.stderr)
        return EXIT_INVALID
    if args.workers is not None and args.workers < 0:
        print(f"simfed sweep: --workers: {args.workers} is too small (expected an integer >= 0)", file=sys.stderr)
        return EXIT_INVALID
    if args.workers is not None and args.scheduler is not None:
        print("simfed sweep: give --workers or --scheduler, not both "
              "(with --scheduler local:N, N is the number of workers)", file=sys.stderr)
        return EXIT_INVALID
    out = args.out if args.out is not None else default_out_dir(args.file)
    try:
        grid = parse_grid(args.grid)
        result = sweep(
            args.file,
            grid,
            args.repeat,
            workers=args.workers,
            scheduler=args.scheduler,
            out_dir=out,
            progress=False if args.quiet else args.progress,
            keep_tables=args.keep_tables,
            seed=args.seed,
            set=list(args.overrides),
            start_method=args.start_method,
            common_seeds=[k for item in args.common_seeds for k in item.split(",") if k],
        )
    except ScenarioError as exc:
        return _report_invalid(args.file, exc)
    except ManifestMismatch as exc:
        print(f"simfed sweep: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ExecutorError as exc:
        print(f"simfed sweep: {exc}", file=sys.stderr)
        return EXIT_INVALID if exc.usage else EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"simfed sweep: interrupted; finished runs are kept in {out} (run the same command to resume)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"simfed sweep: cannot write results to {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE

    n_err = len(result.errors)
    if args.quiet:
        print(out)
    else:
        points = len(result.summary) if len(result.summary) else "no"
        print(f"sweep: {result.planned} runs ({result.planned // result.repeat} grid points x {result.repeat}); "
              f"{result.computed} computed, {result.skipped} already done, {n_err} failed "
              f"[{result.executor or 'nothing to run'}; {result.wall_time_s:.1f} s]")
        print(f"results: {out}/ (runs.parquet, sweep_summary.parquet, sweep_summary.csv; "
              f"{points} grid points)")
        if len(result.summary):
            print(result.report())
    if result.interrupted:
        print(f"simfed sweep: interrupted; {len(result.runs)} of {result.planned} runs recorded in {out} "
              "(run the same command to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if n_err:
        first = result.errors.iloc[0]
        print(f"simfed sweep: {n_err} runs failed (e.g. {first['run_id']}: {first['error']}); see "
              f"{out}/runs/<run_id>/error.json; the same command retries them", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
