"""Fewer cyclic garbage collections while a simulation runs.

A run allocates containers (SimPy events, requests, per-server records)
far faster than CPython's default young-generation threshold (700) expects,
and each young collection that promotes survivors eventually triggers a full
collection of everything the run holds: about a fifth of the CPU of a
50-server big room went to full collections. Raising the young threshold
while the run lasts leaves the collector on (cycles are still collected) and
changes no result: nothing in the simulator depends on when garbage goes.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

__all__ = ["YOUNG_THRESHOLD", "fewer_collections"]

#: young-generation threshold during a run (CPython's default is 700)
YOUNG_THRESHOLD = 20_000


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Run the body with the young-generation threshold at least ``young``;
    the previous thresholds come back afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(max(young, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
