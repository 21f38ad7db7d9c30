"""Kahn's topological sort with a tie-break key, shared by the DAG ordering
of a room's events and state resolution's power ordering."""

from __future__ import annotations

import heapq
from typing import Any, Callable, Iterable, Mapping

__all__ = ["CycleError", "toposort"]


class CycleError(ValueError):
    """Some nodes are on (or depend on) a cycle; ``stuck`` lists them, sorted."""

    def __init__(self, stuck: list[str]) -> None:
        self.stuck = stuck
        super().__init__(f"{len(stuck)} node(s) on or behind a cycle, e.g. {stuck[0]}")


def toposort(nodes: Iterable[str], preds: Mapping[str, Iterable[str]], key: Callable[[str], Any]) -> list[str]:
    """Every node after all of ``preds[node]`` (which must be nodes);
    among the nodes ready at once, the smallest ``key`` first. Raises
    :class:`CycleError` if not every node can be placed."""
    nodes = list(nodes)
    remaining: dict[str, int] = {}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for n in nodes:
        ps = set(preds[n])
        remaining[n] = len(ps)
        for p in ps:
            succs[p].append(n)
    heap = [(key(n), n) for n in nodes if remaining[n] == 0]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, n = heapq.heappop(heap)
        out.append(n)
        for s in succs[n]:
            remaining[s] -= 1
            if remaining[s] == 0:
                heapq.heappush(heap, (key(s), s))
    if len(out) != len(nodes):
        raise CycleError(sorted(n for n, r in remaining.items() if r > 0))
    return out
