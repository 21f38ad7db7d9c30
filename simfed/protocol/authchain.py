"""Auth chains and the auth chain difference, memoised by event ID.

The auth chain of an event (everything reachable through ``auth_events``,
the event itself excluded) depends only on the event, which its ID pins, so
a chain computed once is valid for every server and every resolution.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Collection, Iterable, Mapping, Sequence

from .events import Event

__all__ = ["AuthChainIndex", "auth_chain_difference", "state_chain_difference"]

Lookup = Callable[[str], "Event | None"]


class AuthChainIndex:
    """Computes and caches auth chains for the events ``lookup`` can find.

    Events the lookup cannot find are treated as leaves (a chain through a
    missing event is incomplete and is not cached).

    ``shared``: a cache of complete chains that several indexes (servers)
    fill and read. A complete chain depends only on its event, but it is
    what this index would compute only if this index's lookup holds the
    whole auth closure of every event it holds; ``closed()`` says so, and
    shared chains are read only while it answers True (they are always
    written). Without ``shared`` every chain is this index's own.
    """

    __slots__ = ("_lookup", "_chains", "_shared", "_closed", "_state_chains")

    #: :meth:`state_chain` keeps at most about this many event IDs in all
    #: (oldest maps dropped first)
    MAX_STATE_CHAIN_IDS = 1_000_000

    def __init__(
        self,
        lookup: Lookup | Mapping[str, Event],
        *,
        shared: "dict[str, frozenset[str]] | None" = None,
        closed: Callable[[], bool] | None = None,
        state_chains: "OrderedDict[tuple[int, bool], tuple] | None" = None,
    ) -> None:
        self._lookup: Lookup = lookup.get if isinstance(lookup, Mapping) else lookup
        self._chains: dict[str, frozenset[str]] = {}
        self._shared = shared
        self._closed = closed
        self._state_chains = state_chains

    def _cache(self) -> dict[str, frozenset[str]]:
        """The chains this index may read now: the shared ones when closed."""
        shared = self._shared
        if shared is not None and (self._closed is None or self._closed()):
            return shared
        return self._chains

    def _keep(self, event_id: str, chain: frozenset[str]) -> None:
        if self._shared is not None:
            self._shared[event_id] = chain
            if self._closed is None or self._closed():
                return
        self._chains[event_id] = chain

    def _walk(self, starts: list[str], acc: set[str], cache: dict[str, frozenset[str]],
              known: Collection[str] = frozenset()) -> bool:
        """Add everything reachable from ``starts`` through auth_events to
        ``acc``, merging cached chains whole; events in ``known`` are neither
        added nor walked through. True if no event was missing."""
        lookup = self._lookup
        complete = True
        stack = starts
        pop, push, add = stack.pop, stack.extend, acc.add
        if not cache:  # a fresh index: no chain to merge, a tighter loop
            while stack:
                a = pop()
                if a in acc or a in known:
                    continue
                add(a)
                aev = lookup(a)
                if aev is None:
                    complete = False
                else:
                    push(aev.auth_events)
            return complete
        merged = False
        while stack:
            a = pop()
            if a in acc or a in known:
                continue
            add(a)
            sub = cache.get(a)
            if sub is not None:
                acc |= sub
                merged = True
                continue
            aev = lookup(a)
            if aev is None:
                complete = False
                continue
            push(aev.auth_events)
        if merged and known:
            acc -= known
        return complete

    def state_chain(self, state: Mapping, include_state_events: bool, held: "Callable[[Iterable[str]], bool]") -> frozenset[str] | None:
        """The union of the auth chains of ``state``'s events (and the
        events themselves with ``include_state_events``), kept by the map's
        identity in ``state_chains`` for every index that reads the shared
        chains; None if this index does not read them, or if ``held`` (a
        test of the map's events, given as any iterable) says this server
        lacks some of them. The map's events are not kept as a set (the map
        is kept, and a set of them cost as much as the chain).

        With every event of the map held and every auth chain complete, the
        union is a function of the map's content alone, so the servers that
        resolve the same (canonical, shared) map compute it once."""
        memo = self._state_chains
        if memo is None or self._shared is None or (self._closed is not None and not self._closed()):
            return None
        key = (id(state), include_state_events)
        hit = memo.get(key)
        if hit is None or hit[0] is not state:
            ids = frozenset(state.values())
            if not held(ids):
                return None
            acc = self.union_chain(ids)
            if include_state_events:
                acc |= ids
            hit = memo[key] = (state, frozenset(acc))
            self._trim_state_chains(len(acc))
        elif not held(state.values()):
            return None
        return hit[1]

    def _trim_state_chains(self, size: int) -> None:
        memo = self._state_chains
        assert memo is not None
        if len(memo) * max(1, size) > self.MAX_STATE_CHAIN_IDS and len(memo) > 64:
            memo.popitem(last=False)

    def chain(self, event_id: str) -> frozenset[str]:
        """The auth chain of ``event_id`` (empty for an unknown event).

        One walk, linear in the chain's size; chains cached earlier are
        merged in whole instead of walked again. Only chains that were asked
        for are cached, so a deep auth graph costs memory in proportion to
        what callers use, never quadratically.
        """
        cache = self._cache()
        hit = cache.get(event_id)
        if hit is not None and cache is self._chains:
            return hit
        ev = self._lookup(event_id)
        if ev is None:
            return frozenset()
        if hit is not None:
            return hit
        acc: set[str] = set()
        complete = self._walk(list(ev.auth_events), acc, cache)
        fs = frozenset(acc)
        if complete:
            self._keep(event_id, fs)
        return fs

    def union_chain(self, event_ids: Iterable[str], known: Collection[str] = frozenset()) -> set[str]:
        """The union of the auth chains of ``event_ids``, in one walk.

        ``known``: a set closed under auth_events (e.g. the union chain of
        other events), left out of the result; the walk stops where it meets
        it. Chains cached earlier are merged in whole; nothing new is cached
        (a state set's union is rarely asked for twice), except with a shared
        cache, where each event's chain is cached (once for all indexes).
        """
        acc: set[str] = set()
        cache = self._cache()
        if self._shared is not None:
            own = cache is self._chains
            lookup = self._lookup
            for e in event_ids:
                hit = cache.get(e)
                if hit is None:
                    hit = self.chain(e)
                elif not own and lookup(e) is None:
                    continue
                acc |= hit
            if known:
                acc -= known
            return acc
        starts: list[str] = []
        for e in event_ids:
            hit = cache.get(e)
            if hit is not None:
                acc |= hit
                continue
            ev = self._lookup(e)
            if ev is not None:
                starts.extend(ev.auth_events)
        if known and acc:
            acc -= known
        self._walk(starts, acc, cache, known)
        return acc

    def nearest_ancestors(self, nodes: Collection[str]) -> dict[str, set[str]]:
        """For each of ``nodes``, the nodes first met on each path down its auth events.

        Their transitive closure is ``chain(n) & nodes`` for every ``n``, so a
        topological sort over them equals one over the full relation; but each
        event is walked once (the nodes below an event outside ``nodes`` are
        memoised), so the cost is linear in the auth graph below ``nodes``
        instead of ``len(nodes)`` times the chain length.
        """
        lookup = self._lookup
        below: dict[str, frozenset[str]] = {}  # for events outside ``nodes``

        def parents_of(eid: str) -> tuple[str, ...]:
            ev = lookup(eid)
            return ev.auth_events if ev is not None else ()

        def frontier(start: str) -> frozenset[str]:
            # Iterative post-order over events outside ``nodes``.
            stack: list[tuple[str, bool]] = [(start, False)]
            on_path: set[str] = set()
            while stack:
                eid, done = stack.pop()
                if eid in below:
                    continue
                if done:
                    on_path.discard(eid)
                    acc: set[str] = set()
                    for a in parents_of(eid):
                        if a in nodes:
                            acc.add(a)
                        else:
                            acc |= below.get(a, frozenset())
                    below[eid] = frozenset(acc)
                    continue
                if eid in on_path:  # a cycle (impossible with hash IDs): cut it
                    continue
                on_path.add(eid)
                stack.append((eid, True))
                stack.extend((a, False) for a in parents_of(eid) if a not in nodes and a not in below)
            return below[start]

        out: dict[str, set[str]] = {}
        for n in nodes:
            ps: set[str] = set()
            for a in parents_of(n):
                if a in nodes:
                    ps.add(a)
                else:
                    ps |= frontier(a)
            out[n] = ps
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
    id_lists = [list(s) for s in state_sets]
    if not id_lists:
        return set()
    # The events every set holds contribute the same chain to each: walk it
    # once, then each set only from its own other events, stopping at it.
    # Set i's chain is then ``base`` plus a disjoint ``extra_i``, so the
    # difference is the union of the extras less their intersection.
    common = set(id_lists[0]).intersection(*id_lists[1:])
    base = index.union_chain(common)
    if len(id_lists) >= MASKED_MIN_SETS and not index._cache():
        masked = _masked_difference([[e for e in ids if e not in common] for ids in id_lists],
                                    index._lookup, base, include_state_events)
        if masked is not None:
            return masked - common if include_state_events else masked
    extras = []
    for ids in id_lists:
        extra = index.union_chain([e for e in ids if e not in common], base)
        if include_state_events:
            extra.update(e for e in ids if e not in base)
        extras.append(extra)
    if len(extras) == 2:  # in one set but not the other: one C operation, no copies
        return extras[0] ^ extras[1]
    return set().union(*extras) - set(extras[0]).intersection(*extras[1:])


def state_chain_difference(
    state_maps: Sequence[Mapping],
    index: AuthChainIndex,
    *,
    include_state_events: bool = False,
    held: "Callable[[Iterable[str]], bool] | None" = None,
) -> set[str]:
    """:func:`auth_chain_difference` of state maps: from each map's whole
    chain (:meth:`AuthChainIndex.state_chain`, shared by identity) when the
    index keeps them and ``held`` (a test that the server holds some event
    IDs) passes for every map, by C set operations; otherwise as
    :func:`auth_chain_difference` of their values."""
    if held is not None and len(state_maps) > 1:
        chains = []
        for m in state_maps:
            c = index.state_chain(m, include_state_events, held)
            if c is None:
                break
            chains.append(c)
        else:
            out = set().union(*chains)
            out.difference_update(chains[0].intersection(*chains[1:]))
            return out
    return auth_chain_difference([m.values() for m in state_maps], index, include_state_events=include_state_events)


#: From this many state sets, a fresh index (no chains to merge) finds the
#: difference in one walk of the union of the sets' chains (each event once,
#: carrying the bit mask of the sets that reach it) instead of one walk per set.
MASKED_MIN_SETS = 3


def _masked_difference(groups: list[list[str]], lookup: Lookup, base: set[str], include: bool) -> set[str] | None:
    """The events outside ``base`` that some but not all groups reach.

    Group ``i`` reaches its events' auth chains (and, with ``include``, the
    events themselves); ``base`` is closed under auth_events and reached by
    every group, so no path from outside it into it leads out again. The
    masks are pushed down the auth edges in order of decreasing ``depth``,
    so each event passes on its final mask once; if some auth event is not
    strictly shallower than an event citing it (``depth`` is what senders
    claim), None: the caller walks set by set instead.
    """
    mask: dict[str, int] = {}
    get = mask.get
    for i, ids in enumerate(groups):
        bit = 1 << i
        for e in ids:
            if include:
                targets: tuple[str, ...] | list[str] = (e,)
            else:
                ev = lookup(e)
                targets = ev.auth_events if ev is not None else ()
            for t in targets:
                if t not in base:
                    mask[t] = get(t, 0) | bit
    # Every event below the seeds, outside base, with its depth (unknown
    # events are leaves: nothing to pass on).
    depth: dict[str, int] = {}
    parents: dict[str, tuple[str, ...]] = {}
    stack = list(mask)
    pop, push = stack.pop, stack.append
    while stack:
        x = pop()
        if x in depth:
            continue
        ev = lookup(x)
        if ev is None:
            depth[x] = -1
            continue
        depth[x] = ev.depth
        ps = parents[x] = ev.auth_events
        for a in ps:
            if a not in depth and a not in base:
                push(a)
    try:
        order = sorted(parents, key=depth.__getitem__, reverse=True)
    except TypeError:  # a depth that is not a number
        return None
    for x in order:
        m = get(x)
        if m is None:  # an event citing x comes later: depths out of order
            return None
        dx = depth[x]
        for a in parents[x]:
            if a in base:
                continue
            if depth[a] >= dx:
                return None
            mask[a] = get(a, 0) | m
    full = (1 << len(groups)) - 1
    return {x for x, m in mask.items() if m != full}
