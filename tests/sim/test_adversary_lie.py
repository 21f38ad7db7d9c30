"""``lie``: false answers to fetch requests (issue 13 item 3), and the
requester-side checks of :mod:`simfed.sim.answers` that keep them out.

Honest servers must never take a forged, unauthorised or other-room event
into their state, must agree at the end, and the run must go on. A lying
``/send_join`` can give a joiner a false state for a while (the joiner
trusts the state once its events pass the auth checks, as Synapse does);
the next honest event heals it.
"""

from __future__ import annotations

import pytest

from simfed import simulate
from simfed.experiment.scenario import load_scenario
from simfed.metrics import Recorder
from simfed.metrics.convergence import event_convergence
from simfed.metrics.outcomes import outcome_agreement
from simfed.sim.adversary.lying import LIES
from simfed.sim.world import World

BASE = """
[simulation]
duration = "6m"
seed = 4
[servers]
count = 6
[workload]
stop = "3m"
messages_per_user_per_minute = 2
state_changes_per_minute = 1
"""
#: hs5 lies where the gap is fetched, hs4 in the state requests after it
LIARS = """
[[adversaries]]
server = "hs5"
behaviour = "lie"
endpoints = ["get_missing_events"]
rate = 3
[[adversaries]]
server = "hs4"
behaviour = "lie"
endpoints = ["state_ids", "state"]
rate = 3
"""
HONEST = {"hs0", "hs1", "hs2", "hs3"}


def _run(extra: str):
    res = simulate(BASE + extra)
    res.tables = res.recorder.tables()
    return res


@pytest.fixture(scope="module")
def lied_to():
    return _run(LIARS)


def test_every_lie_is_told(lied_to):
    actions = set(lied_to.tables["adversary"]["action"])
    for endpoint in ("get_missing_events", "state_ids", "state"):
        for lie in LIES[endpoint]:
            assert f"{endpoint}:{lie}" in actions, (endpoint, lie)


def test_no_lie_enters_an_honest_state(lied_to):
    res = lied_to
    made_up = set()
    for liar in ("hs4", "hs5"):
        made_up |= set(res.servers[liar].behaviours[0].made_up)
    assert made_up
    states = {}
    for n in HONEST:
        room = res.servers[n].rooms[res.room_id]
        state = room.current_state()
        states[n] = tuple(sorted(state.items()))
        assert not made_up & set(room.events), n
        assert all(e.room_id == res.room_id for e in room.events.values()), n
        assert not set(state.values()) & set(room.rejected), n
    assert len(set(states.values())) == 1
    bad = {k: sum(res.servers[n].counters[f"bad_answer_{k}"] for n in HONEST)
           for k in ("wrong_room", "unasked", "not_state")}
    assert all(bad.values()), bad


def test_honest_events_are_unharmed_and_only_the_liars_events_are_disputed(lied_to):
    base = _run("")
    ec = {k: event_convergence(r.tables, honest=HONEST) for k, r in (("base", base), ("lied", lied_to))}
    honest_ev = {k: v[v["creator"].isin(HONEST)] for k, v in ec.items()}
    assert len(honest_ev["lied"]) > 30 and len(honest_ev["base"]) > 30
    assert honest_ev["lied"]["lost"].sum() == 0
    assert honest_ev["lied"]["convergence_ms"].median() < 2 * honest_ev["base"]["convergence_ms"].median() + 100
    agree = outcome_agreement(lied_to.tables, honest=HONEST)
    disputed = set(agree.loc[agree["auth_disagreement"], "event_id"])
    creators = dict(zip(lied_to.tables["events"]["event_id"], lied_to.tables["events"]["server"]))
    assert {str(creators[e]) for e in disputed} <= {"hs4", "hs5"}


def _join_through_liar(lie: str):
    """hs1 starts outside the room; at 90 s it joins through the liar hs3."""
    sc = load_scenario({
        "simulation": {"duration": "20m", "seed": 2}, "servers": {"count": 4},
        "workload": {"stop": "1m", "messages_per_user_per_minute": 2},
        "topology": {"changes": [{"kind": "join", "server": "hs1", "at": "19m"}]},
        "adversaries": [{"server": "hs3", "behaviour": "lie", "endpoints": ["send_join"], "lies": [lie],
                         "rate": 0.01}]})
    w = World(sc, Recorder())
    w.run(should_stop=lambda: w.env.now >= 90_000)
    hs1 = w.servers["hs1"]
    p = w.env.process(hs1.join_via(w.room_id, hs1.users[0], "hs3"))
    w.env.run(until=p)
    return w, p.value


def _differs(w) -> dict:
    ref = w.servers["hs0"].rooms[w.room_id].current_state()
    got = w.servers["hs1"].rooms[w.room_id].current_state()
    return {k for k in set(ref) | set(got) if ref.get(k) != got.get(k)}


def _honest_message_heals(w) -> None:
    hs0 = w.servers["hs0"]
    hs0.create_event(w.room_id, hs0.users[0], "m.room.message", {"msgtype": "m.text", "body": "hello"})
    w.env.run(until=w.env.now + 30_000)
    assert not _differs(w)


def test_send_join_stale_state_fools_the_joiner_until_an_honest_event_arrives():
    w, joined = _join_through_liar("stale")
    assert joined
    wrong = _differs(w)
    # the members who joined after the room was set up are missing
    assert wrong and all(k[0] == "m.room.member" or k == ("m.room.history_visibility", "") for k in wrong)
    _honest_message_heals(w)


def test_send_join_forged_power_levels_are_in_the_joiners_state_but_never_obeyed():
    w, joined = _join_through_liar("forged")
    assert joined
    room = w.servers["hs1"].rooms[w.room_id]
    assert _differs(w) == {("m.room.power_levels", "")}
    forged = room.current_state()[("m.room.power_levels", "")]
    assert forged in room.rejected  # as Synapse: kept in the map, ignored by the auth rules
    _honest_message_heals(w)


def test_send_join_without_create_event_is_refused():
    w, joined = _join_through_liar("no_create")
    hs1 = w.servers["hs1"]
    assert not joined and not hs1.has_member(w.room_id)
    assert hs1.counters["bad_answer_no_create"] == 1


def _event(room_id: str, etype: str, content: dict, state_key: str | None = "", depth: int = 1):
    from simfed.protocol import Event, derive_server_key

    fields = {"room_id": room_id, "sender": "@a:hsx", "type": etype, "content": content, "prev_events": [],
              "auth_events": [], "depth": depth, "origin_server_ts": depth}
    if state_key is not None:
        fields["state_key"] = state_key
    return Event.create(fields, "hsx", derive_server_key(1, "hsx"), "11")


def test_answer_checks_refuse_what_synapse_refuses():
    from collections import Counter
    from types import SimpleNamespace

    from simfed.sim.answers import BadAnswer, backfill_events, fetched_events, send_join_problem

    hs = SimpleNamespace(counters=Counter(), config=SimpleNamespace(room_version="11"))
    create = _event("!r:hsx", "m.room.create", {"room_version": "11"})
    join = _event("!r:hsx", "m.room.member", {"membership": "join"}, "@a:hsx", depth=2)
    other = _event("!o:hsx", "m.room.create", {"room_version": "11"})
    old = _event("!r:hsx", "m.room.create", {"room_version": "10"})
    ok = {"state": [create], "auth_chain": [], "event": join}
    assert send_join_problem(hs, "!r:hsx", join, ok) is None
    assert send_join_problem(hs, "!r:hsx", join, {**ok, "state": [other]}) == "no_create"
    assert send_join_problem(hs, "!r:hsx", join, {**ok, "state": [old]}) == "room_version"
    assert send_join_problem(hs, "!r:hsx", join, {**ok, "auth_chain": [old]}) == "other_create"
    assert send_join_problem(hs, "!r:hsx", join, {**ok, "event": create}) == "join_event"
    assert fetched_events(hs, "!r:hsx", [create, other, join], asked=[create.event_id, other.event_id]) == [create]
    assert backfill_events(hs, "!r:hsx", [create, join]) == [create, join]
    with pytest.raises(BadAnswer):
        backfill_events(hs, "!r:hsx", [create, other])
    assert hs.counters == Counter({"bad_answer_no_create": 1, "bad_answer_room_version": 1,
                                   "bad_answer_other_create": 1, "bad_answer_join_event": 1,
                                   "bad_answer_wrong_room": 2, "bad_answer_unasked": 1})
