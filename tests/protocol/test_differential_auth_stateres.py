"""Differential tests: simfed's authorisation and state resolution v2 against
Synapse (the oracle), on random room DAGs (tests/roomgen.py) and on the
worked example of protocol.md §3.5.

- Auth: ``process_room(..., compat="synapse")`` accepts/rejects every event
  exactly as Synapse does when handed the same events in order, each with the
  state before it as simfed computed it (Synapse's checks against the
  event's own auth events and against that state).
- State resolution: ``resolve_state("v2", sets, events, compat="synapse")``
  equals Synapse's ``resolve_events_with_store`` (persisted mode) for every
  merge in the DAG and for random pairs/triples of events.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings

from oracle_client import check, resolved_map
from roomgen import generate_room
from simfed.protocol import Event, process_room, resolve_state
from strategies import room_params

pytestmark = pytest.mark.oracle

#: The mode checked here is the one the simulator runs by default
#: (``simulation.compat``; test_the_simulator_runs_the_mode_checked_here).
COMPAT = "synapse"


# -- helpers ----------------------------------------------------------------------


def _ids(state: dict) -> list[str]:
    return sorted(state.values())


def _describe(ev: Event) -> dict:
    d = {"event_id": ev.event_id, "type": ev.type, "sender": ev.sender, "content": dict(ev.content),
         "prev_events": list(ev.prev_events), "auth_events": list(ev.auth_events),
         "origin_server_ts": ev.origin_server_ts}
    if ev.state_key is not None:
        d["state_key"] = ev.state_key
    return d


def _named_state(state: dict, by_id: dict[str, Event]) -> dict:
    return {f"{k[0]}|{k[1]}": f"{v} ({by_id[v].sender} {dict(by_id[v].content)})" if v in by_id else v
            for k, v in sorted(state.items())}


_STAGES = {None: None, "validate": "auth_events", "state_independent": "auth_events",
           "state_dependent": "auth_events", "state_before": "state_before"}


def auth_mismatches(oracle, events: list[Event], room_version: str = "11") -> tuple[list[dict], int]:
    """Per-event accept/reject differences between process_room and Synapse."""
    res = process_room(events, room_version, compat=COMPAT)
    rejected = res.rejected
    pdus = []
    for ev in events:
        d = ev.pdu_with_id()
        if ev.prev_events:
            d["state_before"] = _ids(res.state_before(ev.event_id))
        pdus.append(d)
    [theirs] = oracle.authcheck([pdus], room_version)
    check(theirs)
    by_id = {e.event_id: e for e in events}
    bad = []
    for ev, r in zip(events, theirs):
        assert r["event_id"] == ev.event_id, (r, ev)
        mine_ok = ev.event_id not in rejected
        # Which check rejected: against the event's own auth events or
        # against the state before it (Synapse's "validate" stage is rule 4.2's
        # missing authoriser signature, an own-auth-events check in simfed).
        mine_stage = None if mine_ok else res.room.status[ev.event_id].stage
        their_stage = _STAGES.get(r["stage"], r["stage"])
        if mine_ok != r["accepted"] or mine_stage != their_stage:
            bad.append({
                "event": _describe(ev),
                "simfed": rejected.get(ev.event_id, "accepted"),
                "synapse": "accepted" if r["accepted"] else f"{r['stage']}: {r['reason']}",
                "auth_events": [_describe(by_id[a]) for a in ev.auth_events if a in by_id],
                "state_before": _named_state(res.state_before(ev.event_id), by_id) if ev.prev_events else {},
            })
    return bad, len(events)


def resolve_mismatches(oracle, events: list[Event], cases: list[list[str]], room_version: str = "11",
                       res=None, mode: str = "persisted") -> tuple[list[dict], int]:
    """Compare simfed's v2 resolution of state_after(t) for t in each case with Synapse's."""
    if res is None:
        res = process_room(events, room_version, compat=COMPAT)
    by_id = {e.event_id: e for e in events}
    rejected = res.room.rejected
    sets_list = [[res.state_after(t) for t in tips] for tips in cases]
    theirs = oracle.resolve([e.pdu_with_id() for e in events], [[_ids(s) for s in sets] for sets in sets_list],
                            room_version, rejected={e: "auth_error" for e in rejected}, mode=mode)
    bad = []
    for tips, sets, t in zip(cases, sets_list, theirs):
        mine = resolve_state("v2", sets, by_id, room_version, compat=COMPAT, rejected=rejected)
        want = resolved_map(t)
        if mine != want:
            diff = {f"{k[0]}|{k[1]}": {"simfed": mine.get(k), "synapse": want.get(k)}
                    for k in sorted(set(mine) | set(want)) if mine.get(k) != want.get(k)}
            bad.append({"tips": tips, "diff": diff,
                        "diff_events": {eid: _describe(by_id[eid]) for d in diff.values() for eid in d.values()
                                        if eid in by_id}})
    return bad, len(cases)


def merge_cases(events: list[Event], res, rng: random.Random, n_random: int) -> list[list[str]]:
    """Every merge in the DAG, plus random pairs/triples of events."""
    cases = [list(e.prev_events) for e in events if len(e.prev_events) > 1]
    ids = [e.event_id for e in events[1:]]
    for _ in range(n_random):
        k = rng.choice([2, 2, 3])
        cases.append(rng.sample(ids, min(k, len(ids))))
    # also the room's final forward extremities
    if len(res.forward_extremities) > 1:
        cases.append(list(res.forward_extremities))
    return cases


def _fail(what: str, bad: list, total: int, seed=None) -> None:
    if bad:
        pytest.fail(
            f"{len(bad)}/{total} {what} mismatch(es) (seed {seed}); first:\n"
            + json.dumps(bad[0], indent=1, sort_keys=True, default=str, ensure_ascii=False),
            pytrace=False,
        )


# Room shapes for the default run: (count, generate_room kwargs)
DEFAULT_ROOMS: list[dict] = (
    [dict(seed=s, n_events=30, n_servers=2, n_users=4, fork_prob=0.2, merge_prob=0.3) for s in range(40)]
    + [dict(seed=100 + s, n_events=60, n_servers=3, n_users=6, fork_prob=0.3, merge_prob=0.3) for s in range(40)]
    + [dict(seed=200 + s, n_events=120, n_servers=4, n_users=9, fork_prob=0.35, merge_prob=0.4) for s in range(20)]
    + [dict(seed=300 + s, n_events=80, n_servers=3, n_users=6, fork_prob=0.3, merge_prob=0.3,
            room_version="10") for s in range(20)]
)


def _rooms_by_chunk(rooms: list[dict], n_chunks: int) -> list[list[dict]]:
    return [rooms[i::n_chunks] for i in range(n_chunks)]


# -- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", range(4))
def test_auth_decisions_match_synapse(oracle, chunk):
    for kw in _rooms_by_chunk(DEFAULT_ROOMS, 4)[chunk]:
        events = generate_room(**kw)
        bad, total = auth_mismatches(oracle, events, kw.get("room_version", "11"))
        _fail("auth decision", bad, total, kw)


# -- state resolution ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk", range(4))
def test_state_resolution_matches_synapse(oracle, chunk):
    for kw in _rooms_by_chunk(DEFAULT_ROOMS, 4)[chunk]:
        rv = kw.get("room_version", "11")
        events = generate_room(**kw)
        res = process_room(events, rv, compat=COMPAT)
        cases = merge_cases(events, res, random.Random(kw["seed"]), n_random=8)
        bad, total = resolve_mismatches(oracle, events, cases, rv, res=res)
        _fail("state resolution", bad, total, kw)


def test_state_resolution_matches_synapse_unpersisted(oracle):
    """Small rooms with Synapse computing the auth chain difference itself
    (event_map mode) rather than the oracle's store: checks the store's
    definition too (protocol.md §8 item 4)."""
    for s in range(16):
        kw = dict(seed=900 + s, n_events=40, n_servers=2, n_users=4, fork_prob=0.3, merge_prob=0.4)
        events = generate_room(**kw)
        res = process_room(events, compat=COMPAT)
        cases = merge_cases(events, res, random.Random(s), n_random=4)
        bad, total = resolve_mismatches(oracle, events, cases, res=res, mode="unpersisted")
        _fail("state resolution (unpersisted)", bad, total, kw)


def test_generated_rooms_exercise_rejections_and_merges():
    """The generator is worth its salt: rejections, merges, forks and PL changes happen."""
    n = rej = merges = pl = 0
    for kw in DEFAULT_ROOMS[40:60]:
        g = generate_room(**kw, return_gen=True)
        n += len(g.events)
        rej += len(g.room.rejected)
        merges += sum(len(e.prev_events) > 1 for e in g.events)
        pl += sum(e.type == "m.room.power_levels" for e in g.events)
    assert 0.05 < rej / n < 0.5
    assert merges > 50 and pl > 20


def test_generated_rooms_separate_spec_from_synapse():
    """The random merges have power: on some of them the spec's state
    resolution and Synapse's deviations (protocol.md §8 items 4, 5, 14) give
    different answers, so agreeing with the oracle is not vacuous."""
    differ = 0
    for kw in DEFAULT_ROOMS[40:65]:
        events = generate_room(**kw)
        res = process_room(events, compat=COMPAT)
        by_id = {e.event_id: e for e in events}
        for tips in merge_cases(events, res, random.Random(kw["seed"]), 8):
            sets = [res.state_after(t) for t in tips]
            a = resolve_state("v2", sets, by_id, compat="synapse", rejected=res.room.rejected)
            b = resolve_state("v2", sets, by_id, compat="spec", rejected=res.room.rejected)
            differ += a != b
    assert differ >= 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=room_params(max_events=80))
def test_property_auth_and_resolution_match_synapse(oracle, params):
    events = generate_room(**params)
    bad, total = auth_mismatches(oracle, events)
    _fail("auth decision", bad, total, params)
    res = process_room(events, compat=COMPAT)
    bad, total = resolve_mismatches(oracle, events, merge_cases(events, res, random.Random(params["seed"]), 4), res=res)
    _fail("state resolution", bad, total, params)


def test_the_simulator_runs_the_mode_checked_here():
    from simfed.config import Scenario
    from simfed.sim import HomeserverConfig

    assert Scenario().simulation.compat == HomeserverConfig().compat == COMPAT


# -- the worked example of protocol.md §3.5 --------------------------------------------------


def test_worked_example_matches_synapse(oracle):
    from builders import worked_example

    b = worked_example()
    events = list(b.by_name.values())
    by_id = b.events()
    sx, sy = b.id("N1"), b.id("KICK")
    res = process_room(events, compat=COMPAT)
    sets = [res.state_after(sx), res.state_after(sy)]
    [theirs] = oracle.resolve([e.pdu_with_id() for e in events], [[_ids(s) for s in sets]], "11")
    expected = {
        ("m.room.create", ""): "CREATE", ("m.room.member", "@alice:a"): "A_JOIN",
        ("m.room.join_rules", ""): "JR", ("m.room.member", "@bob:b"): "B_JOIN",
        ("m.room.member", "@carol:c"): "C_JOIN", ("m.room.power_levels", ""): "PL2",
        ("m.room.name", ""): "N1",
    }
    assert b.names(resolved_map(theirs)) == expected
    for compat in ("synapse", "spec"):
        assert b.names(resolve_state("v2", sets, by_id, "11", compat=compat)) == expected
    bad, total = auth_mismatches(oracle, events)
    _fail("auth decision", bad, total, "worked example")


# -- regressions: disagreements found earlier, now fixed ---------------------------------------


def test_known_knock_while_invited(oracle):
    from roomgen import RoomGen

    g = RoomGen(0, n_servers=2, n_users=3, join_rule="knock")
    g.start()
    u0, _, u2 = g.users
    inv = g.emit("m.room.member", u0, {"membership": "invite"}, state_key=u2, prevs=[g.events[-1].event_id])
    g.emit("m.room.member", u2, {"membership": "knock"}, state_key=u2, prevs=[inv.event_id])
    res = process_room(g.events, compat=COMPAT)
    pdus = [dict(e.pdu_with_id(), **({"state_before": _ids(res.state_before(e.event_id))} if e.prev_events else {}))
            for e in g.events]
    [theirs] = oracle.authcheck([pdus])
    assert [e.event_id not in res.rejected for e in g.events] == [r["accepted"] for r in theirs], theirs[-1]


@pytest.mark.parametrize("federate", [0, "false", None])
def test_known_nonbool_federate(oracle, federate):
    from roomgen import RoomGen

    g = RoomGen(1, n_servers=2, n_users=2, join_rule="public")
    c = g.creator
    create = g.emit("m.room.create", c, {"room_version": "11", "m.federate": federate}, state_key="")
    j = g.emit("m.room.member", c, {"membership": "join"}, state_key=c, prevs=[create.event_id])
    pl = g.emit("m.room.power_levels", c, {"users": {c: 100}}, state_key="", prevs=[j.event_id])
    jr = g.emit("m.room.join_rules", c, {"join_rule": "public"}, state_key="", prevs=[pl.event_id])
    u = g.users[1]  # on another server
    g.emit("m.room.member", u, {"membership": "join"}, state_key=u, prevs=[jr.event_id])
    res = process_room(g.events, compat=COMPAT)
    pdus = [dict(e.pdu_with_id(), **({"state_before": _ids(res.state_before(e.event_id))} if e.prev_events else {}))
            for e in g.events]
    [theirs] = oracle.authcheck([pdus])
    assert [e.event_id not in res.rejected for e in g.events] == [r["accepted"] for r in theirs], theirs[-1]


# -- slow: many more and bigger rooms ------------------------------------------------------------


SLOW_SHAPES = [
    dict(n_events=40, n_servers=2, n_users=4, fork_prob=0.3, merge_prob=0.4),
    dict(n_events=100, n_servers=3, n_users=7, fork_prob=0.3, merge_prob=0.3),
    dict(n_events=150, n_servers=5, n_users=12, fork_prob=0.4, merge_prob=0.3, max_tips=6),
    dict(n_events=60, n_servers=3, n_users=5, fork_prob=0.5, merge_prob=0.2, bad_prob=0.25, stale_prob=0.1),
]


@pytest.mark.slow
@pytest.mark.parametrize("block", range(10))
def test_slow_many_rooms_match_synapse(oracle, block):
    """1000 rooms (10 blocks of 100): auth decisions and all merges + random resolutions."""
    for i in range(100):
        seed = 10_000 + block * 100 + i
        kw = dict(SLOW_SHAPES[i % len(SLOW_SHAPES)], seed=seed, room_version="10" if i % 5 == 4 else "11")
        events = generate_room(**kw)
        bad, total = auth_mismatches(oracle, events, kw["room_version"])
        _fail("auth decision", bad, total, kw)
        res = process_room(events, kw["room_version"], compat=COMPAT)
        cases = merge_cases(events, res, random.Random(seed), n_random=6)
        bad, total = resolve_mismatches(oracle, events, cases, kw["room_version"], res=res)
        _fail("state resolution", bad, total, kw)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_slow_big_rooms_match_synapse(oracle, seed):
    kw = dict(seed=50_000 + seed, n_events=1000, n_servers=6, n_users=20, fork_prob=0.3, merge_prob=0.3, max_tips=8)
    events = generate_room(**kw)
    bad, total = auth_mismatches(oracle, events)
    _fail("auth decision", bad, total, kw)
    res = process_room(events, compat=COMPAT)
    bad, total = resolve_mismatches(oracle, events, merge_cases(events, res, random.Random(seed), 30), res=res)
    _fail("state resolution", bad, total, kw)
