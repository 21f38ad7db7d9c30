"""The auth chain difference against its definition (every set's chain walked
on its own), with and without cached chains and missing events."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomgen import generate_room
from simfed.protocol import AuthChainIndex, auth_chain_difference


def closure(ids, by_id) -> set[str]:
    """Everything reachable from ``ids`` through auth_events, ``ids`` excluded
    unless reachable (missing events are kept as leaves)."""
    out: set[str] = set()
    stack = [a for e in ids if e in by_id for a in by_id[e].auth_events]
    while stack:
        e = stack.pop()
        if e not in out:
            out.add(e)
            if e in by_id:
                stack.extend(by_id[e].auth_events)
    return out


def reference(sets, by_id, include_state_events: bool) -> set[str]:
    chains = [closure(s, by_id) | (set(s) if include_state_events else set()) for s in sets]
    return set().union(*chains) - set(chains[0]).intersection(*chains[1:])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), drop=st.floats(0.0, 0.1), warm=st.booleans(),
       synapse=st.booleans())
def test_difference_is_the_definition(seed, k, drop, warm, synapse):
    events = generate_room(seed, n_events=90, merge_prob=0.2, fork_prob=0.4, max_tips=6)
    rng = random.Random(seed)
    state = [e.event_id for e in events if e.state_key is not None]
    by_id = {e.event_id: e for e in events if rng.random() >= drop}  # some events missing
    # k state sets that share some events and differ in others
    shared = [e for e in state if rng.random() < 0.5]
    sets = [sorted(set(shared) | {e for e in state if rng.random() < 0.2}) for _ in range(k)]
    index = AuthChainIndex(by_id)
    if warm:  # chains cached earlier are merged whole
        for e in rng.sample(state, min(10, len(state))):
            index.chain(e)
    got = auth_chain_difference(sets, index, include_state_events=synapse)
    assert got == reference(sets, by_id, synapse)


def test_union_chain_leaves_out_what_is_known():
    events = generate_room(3, n_events=80)
    by_id = {e.event_id: e for e in events}
    a, b = events[20].event_id, events[-1].event_id
    for warm in (False, True):
        index = AuthChainIndex(by_id)
        if warm:
            index.chain(b)
        known = index.union_chain([a])
        before = set(known)
        assert index.union_chain([b], known) == closure([b], by_id) - closure([a], by_id)
        assert known == before  # never changed


def test_masked_walk_needs_depths_in_auth_order():
    """The one-walk difference trusts ``depth`` only to order its walk: an
    auth event not shallower than its citer makes it give up (None), and
    auth_chain_difference then walks set by set, with the same answer."""
    from types import SimpleNamespace

    from simfed.protocol import authchain

    def graph(depths):
        # c <- b <- a (a cites b, b cites c), plus x citing c; four sets.
        edges = {"a": ("b",), "b": ("c",), "c": (), "x": ("c",)}
        return {k: SimpleNamespace(event_id=k, auth_events=v, depth=depths[k]) for k, v in edges.items()}

    sets = [["a"], ["x"], ["a", "x"], ["b"]]
    good = graph({"a": 3, "b": 2, "c": 1, "x": 2})
    bad = graph({"a": 1, "b": 2, "c": 3, "x": 2})  # auth events deeper than their citers
    groups = [list(s) for s in sets]
    assert authchain._masked_difference(groups, good.get, set(), True) == {"a", "b", "x"}
    assert authchain._masked_difference(groups, bad.get, set(), True) is None
    for by_id in (good, bad):
        for synapse in (False, True):
            got = auth_chain_difference(sets, AuthChainIndex(by_id), include_state_events=synapse)
            assert got == reference(sets, by_id, synapse)


def test_state_chain_difference_equals_auth_chain_difference():
    """The difference from whole maps' cached chains (shared index, every
    event held) equals the set-by-set walk, with and without the sets' own
    events, and a map whose events are not all held falls back."""
    import random as _random
    from collections import OrderedDict

    from simfed.protocol.authchain import state_chain_difference
    from test_stateres import _state_sets, random_room

    for seed in range(30):
        rng = _random.Random(seed)
        b, room = random_room(rng)
        sets = _state_sets(rng, b, room, 2 + seed % 3)
        memo: OrderedDict = OrderedDict()
        index = AuthChainIndex(room.events, shared={}, state_chains=memo)
        has = room.events.__contains__
        for include in (False, True):
            want = auth_chain_difference([s.values() for s in sets], AuthChainIndex(room.events),
                                         include_state_events=include)
            # ``held`` is handed any iterable of event IDs (a kept map's values on a hit)
            got = state_chain_difference(sets, index, include_state_events=include,
                                         held=lambda ids: all(map(has, ids)))
            assert got == want
            again = state_chain_difference(sets, index, include_state_events=include,
                                           held=lambda ids: all(map(has, ids)))
            assert again == want
        assert memo
        assert state_chain_difference(sets, index, held=lambda ids: False) == auth_chain_difference(
            [s.values() for s in sets], AuthChainIndex(room.events))
