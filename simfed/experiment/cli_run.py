"""``simfed run``: run a scenario file and write its results.

Registered through :func:`add_parser` (see ``simfed.cli.COMMAND_MODULES``).

Without a terminal on stderr (no progress bar), one line on stderr says when
the simulation is under way (``simfed run: simulation started; ...``): from
then on Ctrl-C (SIGINT) stops it and writes what was collected. Scripts that
drive ``simfed run`` can wait for that line before interrupting it. A plain
progress line follows at every tenth of the simulated time (for logs).

Exit status: 0 when the run finished (converged or not: that is a result,
not an error); 2 for a bad scenario or bad overrides (one line per problem on
stderr, never a traceback); 1 when the results can't be written; 130 after
Ctrl-C, once what was collected has been written (``"complete": false``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run_command", "default_out_dir"]

from simfed.exitcodes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``run`` to the ``simfed`` command line."""
    p = subparsers.add_parser(
        "run",
        help="run a scenario and write its results (Parquet tables, summary.json, plots)",
        description="Run a scenario file and write its results: events, deliveries, state and "
        "traffic tables (Parquet), summary.json (the resolved scenario, versions, headline "
        "figures) and PNG plots. Ctrl-C stops the run and still writes what was collected.",
    )
    p.add_argument("file", metavar="SCENARIO", help="scenario TOML file")
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        type=Path,
        default=None,
        help="results directory (default: results/<scenario name>-seed<N>/)",
    )
    p.add_argument("--seed", type=int, default=None, metavar="N", help="override simulation.seed")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value, e.g. --set network.loss=0.1 --set servers.count=20 (repeatable)",
    )
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar and no headline figures; print only the results directory",
    )
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.set_defaults(func=run_command)


def default_out_dir(file: str | Path, seed: int) -> Path:
    """``results/<scenario file stem>-seed<N>`` (relative to the working directory)."""
    return Path("results") / f"{Path(file).stem}-seed{seed}"


def _report_invalid(file: str, exc) -> int:
    for line in exc.lines(file):
        print(line, file=sys.stderr)
    return EXIT_INVALID


#: The line ``simfed run`` writes on stderr once the simulation is under way.
STARTED_LINE = "simfed run: simulation started; Ctrl-C stops it and writes what was collected"


class _AnnounceStart:
    """Polled by the simulator at its progress checks (about every 1% of simulated
    time, the first after 1%); prints :data:`STARTED_LINE` at the first. Never stops the run."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self) -> bool:
        if not self.done:
            self.done = True
            print(STARTED_LINE, file=sys.stderr, flush=True)
        return False


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def run_command(args: argparse.Namespace) -> int:
    from simfed.errors import ScenarioMismatch
    from simfed.experiment.scenario import ScenarioError, load_scenario

    overrides = list(args.overrides)
    if args.seed is not None:
        if args.seed < 0:
            print(f"{args.file}: --seed: {args.seed} is too small (expected an integer >= 0)", file=sys.stderr)
            return EXIT_INVALID
        overrides.append(f"simulation.seed={args.seed}")
    try:
        scenario = load_scenario(args.file, overrides=overrides)
    except ScenarioError as exc:
        return _report_invalid(args.file, exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED

    from simfed.experiment.runner import run_scenario

    out = args.out if args.out is not None else default_out_dir(args.file, scenario.simulation.seed)
    try:
        result = run_scenario(
            scenario,
            out_dir=out,
            progress=False if args.quiet else (None if _stderr_is_terminal() else "lines"),
            name=Path(args.file).stem,
            plots=args.plots,
            should_stop=None if args.quiet or _stderr_is_terminal() else _AnnounceStart(),
        )
    except KeyboardInterrupt:
        # Ctrl-C while measuring or writing (after the simulation stopped).
        print(f"simfed run: interrupted; results in {out} may be incomplete", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"simfed run: cannot write results to {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ScenarioMismatch as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return EXIT_INVALID

    if args.quiet:
        print(out)
    else:
        print(f"results: {out}/")
        print(result.report())
    if result.interrupted:
        print(f"simfed run: interrupted at {result.end_t / 1000:.1f} s simulated; "
              f"partial results written (complete = false)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK
