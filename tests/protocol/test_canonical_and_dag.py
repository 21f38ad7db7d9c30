"""Canonical JSON and RoomGraph: properties on random inputs."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from simfed.protocol import CanonicalJSONError, Event, MissingParentsError, RoomGraph, canonical_json, derive_server_key

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text())
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips_and_is_minimal(v):
    b = canonical_json(v)
    assert json.loads(b) == v
    assert b == json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    assert canonical_json(json.loads(b)) == b


@given(st.dictionaries(st.text(max_size=6), st.integers(-5, 5), max_size=6))
def test_canonical_json_sorts_keys_by_code_point(d):
    keys = list(json.loads(canonical_json(d)))
    assert keys == sorted(keys)


@pytest.mark.parametrize("bad,where", [
    ({"a": 1.5}, "$.a"),
    ({"a": [0, 2**53]}, "$.a[1]"),
    ({"a": -(2**53)}, "$.a"),
    ({1: "x"}, "key 1"),
    ({"a": {"b": float("nan")}}, "$.a.b"),
    ({"a": object()}, "$.a"),
])
def test_canonical_json_refuses_what_matrix_refuses(bad, where):
    with pytest.raises(CanonicalJSONError, match=__import__("re").escape(where)):
        canonical_json(bad)


def test_canonical_json_unicode_is_raw():
    assert canonical_json({"é": "☃"}) == '{"é":"☃"}'.encode()


KEY = derive_server_key(0, "s")


def _make_dag(rng: random.Random, n: int) -> list[Event]:
    created: list[Event] = []
    for i in range(n):
        if not created:
            prevs: list[str] = []
        else:
            k = rng.choice([1, 1, 1, 2, 3])
            prevs = sorted({rng.choice(created).event_id for _ in range(k)})
        depth = max((e.depth for e in created if e.event_id in prevs), default=0) + 1
        created.append(Event.create({"room_id": "!r:s", "sender": "@u:s", "type": "m.room.message",
                                     "content": {"i": i}, "prev_events": prevs, "auth_events": [],
                                     "depth": depth, "origin_server_ts": i}, "s", KEY))
    return created


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_roomgraph_invariants_on_random_dags(seed, n):
    rng = random.Random(seed)
    events = _make_dag(rng, n)
    g = RoomGraph()
    for e in events:
        g.add(e)
    has_child = {p for e in events for p in e.prev_events}
    assert g.forward_extremities == {e.event_id for e in events} - has_child
    order = g.topological_order()
    pos = {e: i for i, e in enumerate(order)}
    for e in events:
        for p in e.prev_events:
            assert pos[p] < pos[e.event_id]
        assert g.depth(e.event_id) == max((g.depth(p) for p in e.prev_events), default=0) + 1
    # the order does not depend on arrival order (any causal order)
    g2 = RoomGraph()
    for eid in order:
        g2.add(g[eid])
    assert g2.topological_order() == order
    leaf = events[-1].event_id
    anc = g.ancestors(leaf)
    for a in anc:
        assert leaf in g.descendants(a)


def test_missing_parents_are_reported():
    rng = random.Random(1)
    events = _make_dag(rng, 5)
    g = RoomGraph()
    g.add(events[0])
    child = next(e for e in events if e.prev_events and events[0].event_id not in e.prev_events) if False else events[-1]
    missing = g.missing_parents(child)
    if missing:
        with pytest.raises(MissingParentsError) as ei:
            g.add(child)
        assert set(ei.value.missing) == set(missing)


def test_roomgraph_handles_100k_events_without_recursion():
    g = RoomGraph()
    prev: list[str] = []
    ids = []
    for i in range(100_000):
        ev = Event.create({"room_id": "!big:s", "sender": "@u:s", "type": "t", "content": {},
                           "prev_events": prev, "auth_events": prev, "depth": i + 1,
                           "origin_server_ts": i}, "s", KEY)
        g.add(ev)
        prev = [ev.event_id]
        ids.append(ev.event_id)
    assert g.depth(ids[-1]) == 100_000
    assert len(g.ancestors(ids[-1])) == 99_999
    assert len(g.auth_chain(ids[-1])) == 99_999
    assert g.forward_extremities == {ids[-1]}
    assert g.topological_order()[0] == ids[0]


def test_protocol_does_not_import_the_simulator_or_data_stack():
    code = ("import sys, simfed.protocol, simfed.protocol.stateres.v2, simfed.protocol.room; "
            "bad = [m for m in ('simpy', 'pandas', 'matplotlib', 'simfed.sim', 'simfed.experiment') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
