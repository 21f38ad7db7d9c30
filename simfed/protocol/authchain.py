"""Auth chains and the auth chain difference, memoised by event ID.

The auth chain of an event (everything reachable through ``auth_events``,
the event itself excluded) depends only on the event, which its ID pins, so
a chain computed once is valid for every server and every resolution.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

from .events import Event

__all__ = ["AuthChainIndex", "auth_chain_difference"]

Lookup = Callable[[str], "Event | None"]


class AuthChainIndex:
    """Computes and caches auth chains for the events ``lookup`` can find.

    Events the lookup cannot find are treated as leaves (a chain through a
    missing event is incomplete and is not cached).
    """

    __slots__ = ("_lookup", "_chains")

    def __init__(self, lookup: Lookup | Mapping[str, Event]) -> None:
        self._lookup: Lookup = lookup.get if isinstance(lookup, Mapping) else lookup
        self._chains: dict[str, frozenset[str]] = {}

    def chain(self, event_id: str) -> frozenset[str]:
        """The auth chain of ``event_id`` (empty for an unknown event)."""
        hit = self._chains.get(event_id)
        if hit is not None:
            return hit
        chains = self._chains
        lookup = self._lookup
        incomplete: set[str] = set()
        # Iterative post-order walk: no recursion limit on deep auth graphs.
        stack: list[tuple[str, bool]] = [(event_id, False)]
        local: dict[str, frozenset[str]] = {}
        while stack:
            eid, expanded = stack.pop()
            if eid in chains or eid in local:
                continue
            ev = lookup(eid)
            if ev is None:
                local[eid] = frozenset()
                incomplete.add(eid)
                continue
            if not expanded:
                stack.append((eid, True))
                for a in ev.auth_events:
                    if a not in chains and a not in local:
                        stack.append((a, False))
                continue
            acc: set[str] = set()
            bad = False
            for a in ev.auth_events:
                acc.add(a)
                sub = chains.get(a)
                if sub is None:
                    sub = local[a]
                    bad = bad or a in incomplete
                acc |= sub
            fs = frozenset(acc)
            if bad:
                incomplete.add(eid)
                local[eid] = fs
            else:
                chains[eid] = fs
        return chains.get(event_id) or local.get(event_id, frozenset())

    def union_chain(self, event_ids: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for e in event_ids:
            out |= self.chain(e)
        return out


def auth_chain_difference(
    state_sets: Sequence[Iterable[str]],
    index: AuthChainIndex,
    *,
    include_state_events: bool = False,
) -> set[str]:
    """Events in some but not all of the state sets' auth chains.

    ``include_state_events``: count each set's own events as part of its
    chain, as Synapse does (protocol.md §3.4); the spec leaves them out.
    """
    chains = []
    for s in state_sets:
        ids = list(s)
        c = index.union_chain(ids)
        if include_state_events:
            c.update(ids)
        chains.append(c)
    if not chains:
        return set()
    union = set().union(*chains)
    common = set(chains[0]).intersection(*chains[1:])
    return union - common
