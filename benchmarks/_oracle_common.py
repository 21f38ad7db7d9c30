"""What the benchmark scripts that run under the ORACLE python share: where
the Synapse wrapper lives, and a per-item timer (standard library only, so
both the simfed and the oracle environments can import it)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any


def oracle_dir() -> str:
    """``$SIMFED_ORACLE_DIR``, else the repository's own ``tests/oracle``."""
    env = os.environ.get("SIMFED_ORACLE_DIR")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, "tests", "oracle")


def median_per_item(fn: Callable[[object], object], items: Iterable[object], repeats: int) -> float:
    """Median over ``repeats`` of (time of ``fn`` over all items) / number of items."""
    items = list(items)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        times.append((time.perf_counter() - t0) / len(items))
    return statistics.median(times)


def oracle_input() -> tuple[ModuleType, dict[str, Any], int]:
    """The command line every oracle script takes (``IN.json [--repeats N]``):
    the imported ``synapse_oracle`` wrapper, the parsed input, and the repeats."""
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    sys.path.insert(0, oracle_dir())
    import synapse_oracle  # noqa: E402  (needs the path above)

    with open(a.input) as f:
        return synapse_oracle, json.load(f), max(1, a.repeats)
