"""The room graph and room state keep fewer per-event dicts (issue 14,
memory): what they derive or share must equal what full dicts held."""

from __future__ import annotations

import random

import pytest

from roomgen import generate_room
from simfed.protocol import RoomGraph
from simfed.protocol.room import REJECTED, RoomState, SharedStateMemo, causal_order


def _reference_depths(members: dict) -> dict[str, int]:
    d: dict[str, int] = {}

    def depth(e: str) -> int:
        if e not in d:
            d[e] = 1 + max((depth(p) for p in members[e].prev_events if p in members), default=0)
        return d[e]

    for e in members:
        depth(e)
    return d


@pytest.mark.parametrize("seed", range(6))
def test_graph_members_children_and_depths_with_outliers_and_holes(seed):
    events = generate_room(seed, n_events=70, fork_prob=0.4, merge_prob=0.3)
    rng = random.Random(seed)
    order = list(events)
    rng.shuffle(order)  # parents arrive after children: holes, filled later
    g = RoomGraph()
    members: dict = {}
    outliers: dict = {}
    for ev in order:
        if rng.random() < 0.25 and ev.event_id not in members:
            g.add_outlier(ev)
            outliers.setdefault(ev.event_id, ev)
        if rng.random() < 0.8:
            g.add(ev, allow_missing=True)
            members[ev.event_id] = ev
            outliers.pop(ev.event_id, None)
        # what a dict of members, of outliers and of children would say
        view = g.events
        assert dict(view) == members and len(g) == len(members) == len(view)
        assert set(g) == set(members) and dict(g.outliers) == outliers
        for e in events[:10]:
            eid = e.event_id
            assert (eid in g) == (eid in members) == (eid in view)
            assert view.get(eid) is members.get(eid)
            assert g.is_outlier(eid) == (eid in outliers)
    kids: dict[str, set] = {}
    for eid, ev in members.items():
        for p in ev.prev_events:
            kids.setdefault(p, set()).add(eid)
    for e in events:
        assert set(g.children(e.event_id)) == kids.get(e.event_id, set())
        assert len(g.children(e.event_id)) == len(kids.get(e.event_id, ()))
    assert not outliers or g.outliers  # an emptied outliers dict is replaced, not kept
    depths = _reference_depths(members)
    assert {e: g.depth(e) for e in members} == depths
    pos = {e: i for i, e in enumerate(g.topological_order())}
    assert set(pos) == set(members)
    for e, ev in members.items():
        for p in ev.prev_events:
            if p in members:
                assert pos[p] < pos[e]
    for e in list(members)[:5]:
        assert g.descendants(e) == {c for c in members if e in g.ancestors(c)}


def _stored(room: RoomState, events, rng: random.Random) -> dict:
    """Add ``events`` to ``room``, a fifth with the state before supplied
    (as after a state fetch); what each add decided and stored."""
    want = {}
    for ev in events:
        before = None
        if ev.prev_events and rng.random() < 0.2:
            before = room.state_before(ev)
            before = dict(before) if rng.random() < 0.5 else before  # an equal copy, or the map itself
        decision = room.add(ev, before=before, soft_fail=rng.random() < 0.5)
        want[ev.event_id] = (decision, dict(room._decided_before))
    return want


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shared", [False, True])
def test_statuses_and_states_before_as_stored(seed, shared):
    events = generate_room(seed, n_events=80, bad_prob=0.2, merge_prob=0.4)
    by_id = {e.event_id: e for e in events}
    memo = SharedStateMemo() if shared else None
    room = RoomState(algorithm="v2", compat="synapse", shared=memo)
    want = _stored(room, [by_id[e] for e in causal_order(by_id)], random.Random(seed))
    assert any(d.outcome == REJECTED for d, _ in want.values())
    assert list(room.status) == list(want) and len(room.status) == len(want)
    for eid, (decision, before) in want.items():
        assert room.status[eid] == decision and room.status.get(eid) == decision and eid in room.status
        assert dict(room.stored_state_before(eid)) == before
    assert dict(room.status.items()) == {e: d for e, (d, _) in want.items()}
    assert room.status.get("$nope") is None and "$nope" not in room.status
    with pytest.raises(KeyError):
        room.status["$nope"]
    # kept only where the state after the single prev_event would not say it
    assert len(room._before) < len(want) / 2


def test_state_keys_are_one_tuple_per_room():
    memo = SharedStateMemo()
    a, b = RoomState(shared=memo), RoomState(shared=memo)
    k = a.state_key("m.room.member", "@u:s")
    assert b.state_key("m.room.member", "@u:s") is k and k == ("m.room.member", "@u:s")
    lone = RoomState()
    assert lone.state_key("m.room.member", "@u:s") == k
