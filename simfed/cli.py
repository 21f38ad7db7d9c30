"""The ``simfed`` command line.

Each command lives in its own module that defines ``add_parser(subparsers)``;
the parser it adds sets ``func`` (taking the parsed args, returning an exit
code). Modules are listed in ``COMMAND_MODULES`` and imported lazily, so
``simfed --help`` stays fast.

Warnings simfed raises on purpose (:class:`simfed.errors.SimfedWarning`
and its kinds, e.g. an empty scenario file) are printed as one line each on
stderr, ``simfed: warning: ...``, without Python's source-line decoration.

Every command's output may go to a pipe that closes early
(``simfed schema | head -1``): :func:`main` then stops quietly with exit
status 141, as a shell reports a process ended by SIGPIPE, instead of a
``BrokenPipeError`` traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
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

from .exitcodes import EXIT_BROKEN_PIPE, EXIT_OK


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
    """Run one ``simfed`` command; its exit status (see :mod:`simfed.exitcodes`)."""
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        fd = _stdout_fd()
        if fd is None or not _reader_gone(fd):
            raise  # some other pipe broke: a real error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)  # so that Python's final flush does not fail again
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _stdout_fd() -> int | None:
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (e.g. in tests)
        return None


def _reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe whose reading end is closed (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError):  # no poll() here: assume it was stdout
        return True


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Our own warnings as one plain line; anything else as Python shows it."""
    from .errors import SimfedWarning

    if issubclass(category, SimfedWarning):
        print(f"simfed: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _dispatch(argv: Sequence[str] | None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run_command(argv)


def _run_command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(f"simfed {__version__}")
        parser.print_help()
        return EXIT_OK
    return int(args.func(args) or EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
