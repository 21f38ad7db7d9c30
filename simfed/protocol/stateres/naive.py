"""The naive merge the early Matrix specification describes.

For each ``(type, state_key)``: take every candidate any state set holds,
drop those that are a DAG ancestor of another candidate (a later write wins
over what it saw), and pick the greatest ``(depth, event_id)`` among the
rest. A key missing from some sets is not a conflict (deleting loses every
conflict). No authorisation at all: that is its weakness.

Ancestry is followed through ``prev_events`` of the events in ``events``;
pass the room's DAG events to let it see it (``process_room`` and the
simulator do). Without them it falls back to depth and ID alone. The result
depends only on the set of candidates, so it is transitive and independent
of arrival order.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..events import Event
from . import ResolutionContext, StateMap, register

__all__ = ["resolve_naive"]


def _is_ancestor(a: str, b: str, events: Mapping[str, Event], min_depth: int) -> bool:
    """True if ``a`` is reachable from ``b`` through prev_events."""
    stack = list(events[b].prev_events)
    seen: set[str] = set()
    while stack:
        eid = stack.pop()
        if eid == a:
            return True
        if eid in seen:
            continue
        seen.add(eid)
        ev = events.get(eid)
        if ev is not None and ev.depth >= min_depth:
            stack.extend(ev.prev_events)
    return False


@register("naive")
def resolve_naive(state_sets: Sequence[StateMap], events: Mapping[str, Event], ctx: ResolutionContext) -> dict:
    cands: dict[tuple[str, str], set[str]] = {}
    for s in state_sets:
        for k, v in s.items():
            cands.setdefault(k, set()).add(v)
    out: dict[tuple[str, str], str] = {}
    for k, ids in cands.items():
        if len(ids) == 1:
            out[k] = next(iter(ids))
            continue
        known = [i for i in ids if i in events]
        latest = [
            i for i in known
            if not any(j != i and _is_ancestor(i, j, events, events[i].depth) for j in known)
        ] or known or sorted(ids)
        out[k] = max(latest, key=lambda i: (events[i].depth, i) if i in events else (-1, i))
    return out
