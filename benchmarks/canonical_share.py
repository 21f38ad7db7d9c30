"""How much of a simulator run canonical JSON encoding takes (issue 14: add a
faster encoder only "if measurements show it matters").

Runs ``simfed run SCENARIO --no-plots --quiet`` (plus any ``--set``) in this
process with the encoder (``canonicaljson.encode_canonical_json``, every
place simfed calls it) and simfed's validation walk (``check_canonical``)
wrapped in CPU-time counters, and prints their calls, time and share of the
run's CPU time. No profiler: a profiler inflates Python code many times more
than the C encoder and would understate the share. The share is the bound on
what any faster encoder could save. State resolution itself encodes nothing (it works on
parsed events), so it is not measured here.

Usage::

    python benchmarks/canonical_share.py                                    # scenarios/baseline.toml
    python benchmarks/canonical_share.py scenarios/big-room.toml --set servers.count=60

Always exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from simfed.cli import main as simfed_main  # noqa: E402

PATCH = (("simfed.protocol.canonical", "encode_canonical_json"), ("simfed.protocol.checks", "encode_canonical_json"),
         ("simfed.protocol.canonical", "check_canonical"), ("simfed.protocol.events", "check_canonical"))


def _counted(fn, acc: dict, name: str):
    clock = time.process_time

    def wrapper(*args, **kwargs):
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[name][0] += 1
            acc[name][1] += clock() - t0

    return wrapper


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", nargs="?", default=os.path.join(REPO, "scenarios", "baseline.toml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to simfed run")
    a = ap.parse_args(argv)
    extra = [x for kv in a.set for x in ("--set", kv)]
    acc = {"encode_canonical_json": [0, 0.0], "check_canonical": [0, 0.0]}
    for mod, name in PATCH:
        m = importlib.import_module(mod)
        setattr(m, name, _counted(getattr(m, name), acc, name))
    with tempfile.TemporaryDirectory() as out:
        t0 = time.process_time()
        try:
            simfed_main(["run", a.scenario, "--out", out, "--no-plots", "--quiet", *extra])
        except SystemExit:
            pass
        total = time.process_time() - t0
    print(f"{a.scenario} {' '.join(extra)}: {total:.2f} s CPU")
    for name, (calls, secs) in acc.items():
        print(f"  {name:<24}{calls:>9} calls {secs:>8.3f} s  {secs / total:>7.2%} of the run")
    print(f"the most a faster encoder could save: {acc['encode_canonical_json'][1] / total:.2%} of the run")
    return 0


if __name__ == "__main__":
    main()
