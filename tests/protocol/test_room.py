"""Behaviour tests for :class:`RoomState`, :func:`process_room` and
:func:`causal_order` (protocol.md §3.1, §4.1, §4.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import RoomBuilder, worked_example
from simfed.protocol import RoomInputError, RoomState, causal_order, process_room
from simfed.protocol.room import conflicted_size

A, B, C = "@alice:a", "@bob:b", "@carol:c"
TOPIC = ("m.room.topic", "")
NAME = ("m.room.name", "")


def base(users: dict | None = None) -> RoomBuilder:
    """create, alice join, PL (alice 100 + users; topic level 0), public join
    rules, bob's join."""
    b = RoomBuilder()
    b.add("CREATE", "m.room.create", A, {"room_version": "11"}, state_key="")
    b.member("A_JOIN", A, "join", prev=["CREATE"], auth=["CREATE"])
    b.add("PL", "m.room.power_levels", A, {"users": {A: 100, **(users or {})}, "events": {"m.room.topic": 0}},
          state_key="", prev=["A_JOIN"], auth=["CREATE", "A_JOIN"])
    b.add("JR", "m.room.join_rules", A, {"join_rule": "public"}, state_key="",
          prev=["PL"], auth=["CREATE", "PL", "A_JOIN"])
    b.member("B_JOIN", B, "join", prev=["JR"], auth=["CREATE", "PL", "JR"])
    return b


def feed(b: RoomBuilder, names: list[str], **kw) -> RoomState:
    room = RoomState("11", **kw)
    for n in names:
        d = room.add(b[n])
        assert d.outcome == "accepted", (n, d)
    return room


BASE = ["CREATE", "A_JOIN", "PL", "JR", "B_JOIN"]


# -- rejected events -------------------------------------------------------------------------------


def test_rejected_event_leaves_state_unchanged_and_is_not_an_extremity():
    b = base()
    # bob (level 0) tries to rename the room (m.room.name needs state_default 50)
    b.add("BAD", "m.room.name", B, {"name": "mine"}, state_key="", prev=["B_JOIN"],
          auth=["CREATE", "PL", "B_JOIN"])
    room = feed(b, BASE)
    d = room.add(b["BAD"])
    assert d.outcome == "rejected"
    assert d.stage == "auth_events" and d.rule == "7"
    assert d.code == "auth_events:7"
    assert room.state_after(b.id("BAD")) == room.state_after(b.id("B_JOIN"))
    assert NAME not in room.state_after(b.id("BAD"))
    assert room.forward_extremities == {b.id("B_JOIN")}
    assert b.id("BAD") in room.rejected
    assert room.current_state() == room.state_after(b.id("B_JOIN"))
    # adding it again returns the stored decision
    assert room.add(b["BAD"]) is d


def test_rejected_against_state_before():
    """Auth events allow it (stale PL cited) but the state before does not."""
    b = base({B: 50})
    b.add("PL2", "m.room.power_levels", A, {"users": {A: 100, B: 0}}, state_key="",
          prev=["B_JOIN"], auth=["CREATE", "PL", "A_JOIN"])
    b.add("N", "m.room.name", B, {"name": "x"}, state_key="", prev=["PL2"],
          auth=["CREATE", "PL", "B_JOIN"])
    room = feed(b, BASE + ["PL2"])
    d = room.add(b["N"])
    assert (d.outcome, d.stage, d.rule) == ("rejected", "state_before", "7")
    assert NAME not in room.state_after(b.id("N"))
    assert room.forward_extremities == {b.id("PL2")}


def test_event_citing_rejected_auth_event_is_rejected():
    b = base()
    b.add("BADPL", "m.room.power_levels", B, {"users": {A: 100, B: 100}}, state_key="",
          prev=["B_JOIN"], auth=["CREATE", "PL", "B_JOIN"])
    b.add("N", "m.room.name", B, {"name": "x"}, state_key="", prev=["BADPL"],
          auth=["CREATE", "BADPL", "B_JOIN"])
    room = feed(b, BASE)
    assert room.add(b["BADPL"]).outcome == "rejected"
    d = room.add(b["N"])
    assert (d.outcome, d.rule) == ("rejected", "2.3")


def test_child_of_rejected_event_replaces_its_parents_as_extremity():
    b = base()
    b.add("BAD", "m.room.name", B, {"name": "mine"}, state_key="", prev=["B_JOIN"],
          auth=["CREATE", "PL", "B_JOIN"])
    b.add("T", "m.room.topic", A, {"topic": "t"}, state_key="", prev=["BAD"], auth=["CREATE", "PL", "A_JOIN"])
    room = feed(b, BASE)
    room.add(b["BAD"])
    assert room.add(b["T"]).outcome == "accepted"
    assert room.forward_extremities == {b.id("T")}
    assert room.state_after(b.id("T"))[TOPIC] == b.id("T")
    assert NAME not in room.state_after(b.id("T"))


# -- soft failure --------------------------------------------------------------------------------------


def _ban_scenario():
    b = base()
    b.member("BAN", A, "ban", target=B, prev=["B_JOIN"], auth=["CREATE", "PL", "A_JOIN", "B_JOIN"])
    # bob, banned on the current state, sends a topic whose prev_events point
    # to before the ban
    b.add("T_B", "m.room.topic", B, {"topic": "from bob"}, state_key="", prev=["B_JOIN"],
          auth=["CREATE", "PL", "B_JOIN"])
    return b


def test_soft_fail():
    b = _ban_scenario()
    room = feed(b, BASE + ["BAN"])
    before = room.state_after(b.id("B_JOIN"))
    # accepted against its auth events and the state before it ...
    assert room.authorise(b["T_B"], before).outcome == "accepted"
    # ... but soft-failed against the current state
    d = room.add(b["T_B"])
    assert d.outcome == "soft_failed"
    assert d.stage == "current_state" and d.rule == "5"
    assert d.code == "current_state:5"
    assert b.id("T_B") not in room.rejected
    assert room.forward_extremities == {b.id("BAN")}
    # the state after it is still computed (a soft-failed event is not rejected)
    assert room.state_after(b.id("T_B")) == {**before, TOPIC: b.id("T_B")}
    assert room.current_state() == room.state_after(b.id("BAN"))


def test_soft_fail_disabled_and_backfill():
    b = _ban_scenario()
    room = feed(b, BASE + ["BAN"])
    assert room.add(b["T_B"], soft_fail=False).outcome == "accepted"
    assert room.forward_extremities == {b.id("BAN"), b.id("T_B")}
    room2 = feed(b, BASE + ["BAN"])
    assert room2.add(b["T_B"], backfilled=True).outcome == "accepted"
    assert room2.forward_extremities == {b.id("BAN")}  # backfill never moves extremities


def test_process_room_does_not_soft_fail():
    b = _ban_scenario()
    res = process_room(list(b.by_name.values()))
    assert res.room.status[b.id("T_B")].outcome == "accepted"
    assert res.forward_extremities == sorted([b.id("BAN"), b.id("T_B")])
    # at the merge, the ban (a power event) is replayed first: bob's topic fails
    assert TOPIC not in res.current_state()
    assert res.current_state()[("m.room.member", B)] == b.id("BAN")


def test_no_soft_fail_check_when_prevs_are_the_extremities():
    b = base()
    b.add("T", "m.room.topic", B, {"topic": "t"}, state_key="", prev=["B_JOIN"], auth=["CREATE", "PL", "B_JOIN"])
    room = feed(b, BASE)
    checks = room.auth_checks
    assert room.add(b["T"]).outcome == "accepted"
    assert room.auth_checks - checks == 1  # only against its own auth events


# -- forward extremities ---------------------------------------------------------------------------------


def test_fork_and_merge():
    b = base()
    b.add("X", "m.room.topic", A, {"topic": "x"}, state_key="", prev=["B_JOIN"], auth=["CREATE", "PL", "A_JOIN"], ts=100)
    b.add("Y", "m.room.topic", B, {"topic": "y"}, state_key="", prev=["B_JOIN"], auth=["CREATE", "PL", "B_JOIN"], ts=200)
    b.add("M", "m.room.message", A, {"body": "m"}, prev=["X", "Y"], auth=["CREATE", "PL", "A_JOIN"], ts=300)
    room = RoomState("11")
    for n in BASE + ["X", "Y"]:
        assert room.add(b[n], soft_fail=False).outcome == "accepted"
    assert room.forward_extremities == {b.id("X"), b.id("Y")}
    # current state is the resolution of the two branches: same power, same
    # PL → timestamp order, Y (later) wins
    assert room.current_state()[TOPIC] == b.id("Y")
    assert room.graph.forward_extremities == frozenset({b.id("X"), b.id("Y")})
    assert room.add(b["M"]).outcome == "accepted"
    assert room.forward_extremities == {b.id("M")}
    assert room.state_before(b["M"])[TOPIC] == b.id("Y")
    assert room.current_state() == room.state_after(b.id("M"))
    assert room.state_after(b.id("M")) == room.state_before(b["M"])  # message: no state change


def test_state_after_worked_example_merge():
    b = worked_example()
    room = RoomState("11")
    for n in ["CREATE", "A_JOIN", "PL1", "JR", "B_JOIN", "C_JOIN", "PL2", "N1", "T1", "KICK"]:
        room.add(b[n], soft_fail=False)
    assert room.forward_extremities == {b.id("N1"), b.id("KICK")}
    cur = b.names(room.current_state())
    assert cur[("m.room.member", C)] == "C_JOIN" and cur[("m.room.power_levels", "")] == "PL2"
    assert TOPIC not in cur


# -- process_room errors ------------------------------------------------------------------------------------


def test_missing_ancestor():
    b = base()
    evs = [b[n] for n in ["CREATE", "A_JOIN", "JR", "B_JOIN"]]  # PL left out
    with pytest.raises(RoomInputError) as ei:
        process_room(evs)
    assert ei.value.event_id in (b.id("JR"), b.id("B_JOIN"))
    assert b.id("PL") in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_missing_auth_event_not_an_ancestor():
    """An auth event on another branch, absent from the input (no cycle)."""
    b = base({B: 50})
    b.add("PL_SIDE", "m.room.power_levels", A, {"users": {A: 100, B: 60}}, state_key="",
          prev=["B_JOIN"], auth=["CREATE", "PL", "A_JOIN"])
    b.add("T", "m.room.topic", B, {"topic": "t"}, state_key="", prev=["B_JOIN"],
          auth=["CREATE", "PL_SIDE", "B_JOIN"])
    evs = [b[n] for n in BASE + ["T"]]
    with pytest.raises(RoomInputError) as ei:
        process_room(evs)
    assert ei.value.event_id == b.id("T")
    assert "auth_event" in str(ei.value) and b.id("PL_SIDE") in str(ei.value)
    # with it, fine
    res = process_room(evs + [b["PL_SIDE"]])
    assert res.room.status[b.id("T")].outcome == "accepted"


def test_non_create_without_prev_events():
    b = base()
    b.add("ORPHAN", "m.room.message", A, {"body": "x"}, auth=["CREATE", "PL", "A_JOIN"])
    with pytest.raises(RoomInputError) as ei:
        process_room([b[n] for n in BASE] + [b["ORPHAN"]])
    assert ei.value.event_id == b.id("ORPHAN")


def test_events_of_two_rooms():
    b = base()
    other = RoomBuilder(room_id="!other:a")
    other.add("CREATE", "m.room.create", A, {"room_version": "11"}, state_key="")
    with pytest.raises(RoomInputError):
        process_room([b[n] for n in BASE] + [other["CREATE"]])


def test_process_room_result_views():
    b = base()
    res = process_room(list(b.by_name.values()))
    assert res.rejected == {}
    assert res.order[0] == b.id("CREATE")
    assert res.forward_extremities == [b.id("B_JOIN")]
    assert res.state_before(b.id("CREATE")) == {}
    assert res.state_after(b.id("CREATE")) == {("m.room.create", ""): b.id("CREATE")}
    assert res.resolve_at([]) == {}
    assert res.resolve_at([b.id("B_JOIN")]) == res.current_state() == res.state_after(b.id("B_JOIN"))
    assert len(res.current_state()) == 5


def test_process_room_reports_rejections():
    b = base()
    b.add("BAD", "m.room.name", B, {"name": "mine"}, state_key="", prev=["B_JOIN"],
          auth=["CREATE", "PL", "B_JOIN"])
    res = process_room(list(b.by_name.values()))
    assert list(res.rejected) == [b.id("BAD")]
    assert res.rejected[b.id("BAD")].startswith("auth_events:7")


# -- causal_order -------------------------------------------------------------------------------------------


def _check_causal(events: dict, order: list[str]) -> None:
    pos = {e: i for i, e in enumerate(order)}
    assert sorted(order) == sorted(events)
    for eid, ev in events.items():
        for p in (*ev.prev_events, *ev.auth_events):
            assert pos[p] < pos[eid]


def test_causal_order_respects_auth_edges_against_depth():
    """An auth event with a (claimed) depth above the event citing it: depth
    alone would order them wrongly; causal_order must not."""
    b = base({B: 50})
    b.add("PL_SIDE", "m.room.power_levels", A, {"users": {A: 100, B: 60}}, state_key="",
          prev=["B_JOIN"], auth=["CREATE", "PL", "A_JOIN"], depth=99)
    b.add("T", "m.room.topic", B, {"topic": "t"}, state_key="", prev=["B_JOIN"],
          auth=["CREATE", "PL_SIDE", "B_JOIN"], depth=6)
    events = b.events()
    order = causal_order(events)
    _check_causal(events, order)
    assert order.index(b.id("PL_SIDE")) < order.index(b.id("T"))


def test_causal_order_worked_example_and_ties():
    b = worked_example()
    events = b.events()
    order = causal_order(events)
    _check_causal(events, order)
    # deterministic whatever the mapping's order
    assert causal_order(dict(reversed(list(events.items())))) == order


def test_causal_order_missing_parent():
    b = base()
    events = {e.event_id: e for n, e in b.by_name.items() if n != "A_JOIN"}
    with pytest.raises(RoomInputError) as ei:
        causal_order(events)
    assert "prev_event" in str(ei.value) or "auth_event" in str(ei.value)


def test_causal_order_on_random_rooms():
    import random

    from test_stateres import random_room

    for seed in range(8):
        b, _ = random_room(random.Random(seed))
        events = b.events()
        _check_causal(events, causal_order(events))


def _conflicted_by_definition(state_sets) -> int:
    """The conflicted state's size straight from its definition: the events
    of every key that some set maps differently (or not at all)."""
    keys = set().union(*state_sets)
    conflicted = {k for k in keys if len({s.get(k) for s in state_sets}) > 1}
    return len({s[k] for s in state_sets for k in conflicted if k in s})


@pytest.mark.parametrize("seed", range(30))
def test_conflicted_size_matches_its_definition(seed):
    import random

    from simfed.protocol.room import conflicted_size

    rnd = random.Random(seed)
    keys = [("m.room.member", f"@u{i}:s") for i in range(12)] + [("m.room.topic", "")]
    base_map = {k: f"$e{i}" for i, k in enumerate(keys)}
    sets = []
    for _ in range(rnd.randint(1, 4)):
        m = dict(base_map) if rnd.random() < 0.8 else {}
        for k in rnd.sample(keys, rnd.randint(0, 5)):
            if rnd.random() < 0.3:
                m.pop(k, None)
            else:
                m[k] = f"$x{rnd.randint(0, 3)}"
        sets.append(m)
    if rnd.random() < 0.3:
        sets.append(sets[0])  # the same map twice, as servers share maps
    assert conflicted_size(sets) == _conflicted_by_definition(sets)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from([("m.room.member", f"@u{i}:x") for i in range(6)] + [("m.room.topic", "")]),
                                st.sampled_from(["$a", "$b", "$c", "$d"]), max_size=7), min_size=1, max_size=5))
def test_conflicted_size_counts_the_events_of_every_conflicted_key(sets):
    keys = {k for s in sets for k in s if len({s2.get(k) for s2 in sets}) > 1}
    expected = {s[k] for s in sets for k in keys if k in s}
    assert conflicted_size(sets) == (len(expected) if len(sets) > 1 else 0)


def test_counting_the_current_state_defers_it_but_counts_as_resolving_it():
    b = worked_example()
    order = ["CREATE", "A_JOIN", "PL1", "JR", "B_JOIN", "C_JOIN", "PL2", "N1", "T1", "KICK"]
    eager, lazy = RoomState("11"), RoomState("11")
    for n in order:
        eager.add(b[n], soft_fail=False)
        eager.current_state()
        lazy.add(b[n], soft_fail=False)
        lazy.count_current_state()
    assert (lazy.resolutions, lazy.conflicted_events) == (eager.resolutions, eager.conflicted_events)
    assert eager.resolutions > 0
    cur = lazy.current_state()  # computed now, counted once already
    assert cur == eager.current_state()
    assert (lazy.resolutions, lazy.conflicted_events) == (eager.resolutions, eager.conflicted_events)
    assert b.names(cur)[("m.room.member", C)] == "C_JOIN"


def test_a_deferred_current_state_is_settled_before_a_held_event_becomes_rejected():
    b = worked_example()
    room = RoomState("11")
    for n in ["CREATE", "A_JOIN", "PL1", "JR", "B_JOIN", "C_JOIN", "PL2", "N1", "T1", "KICK"]:
        room.add(b[n], soft_fail=False)
    room.set_forward_extremities([b.id("N1"), b.id("KICK")])
    room.count_current_state()
    assert room._owed
    room._settle_owed()
    assert not room._owed
    assert b.names(room.current_state())[("m.room.power_levels", "")] == "PL2"


def test_a_state_learnt_from_elsewhere_is_the_shared_map_when_equal():
    """A state after an event from a /state_ids answer: the room's shared
    map of the same content when one server stored it from the full
    ancestry; otherwise (different content, or no shared memo) itself."""
    from simfed.protocol.room import SharedStateMemo

    b = base()
    b.add("TOPIC", "m.room.topic", B, {"topic": "t"}, state_key="", prev=["B_JOIN"], auth=["CREATE", "PL", "B_JOIN"])
    b.add("MSG", "m.room.message", B, {"body": "hi"}, prev=["TOPIC"], auth=["CREATE", "PL", "B_JOIN"])
    shared = SharedStateMemo()
    room = feed(b, [*BASE, "TOPIC", "MSG"], shared=shared)
    after_topic = room.state_after(b["TOPIC"].event_id)
    fetched = dict(after_topic)
    assert fetched is not after_topic
    assert room.as_known_state_after(b["TOPIC"].event_id, fetched) is after_topic  # a state event's after-map
    assert room.as_known_state_after(b["MSG"].event_id, dict(fetched)) is after_topic  # a message's: its before
    other = {**fetched, TOPIC: b["B_JOIN"].event_id}
    assert room.as_known_state_after(b["TOPIC"].event_id, other) is other
    alone = feed(b, [*BASE, "TOPIC"])
    assert alone.as_known_state_after(b["TOPIC"].event_id, fetched) is fetched
