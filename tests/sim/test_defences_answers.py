"""Requester-side checks of fetch answers (simfed.sim.defences_answers)."""

from __future__ import annotations

import pytest

from simfed.metrics import Recorder
from simfed.sim.defences_answers import check_answer
from simfed.sim.transport import RequestFailed, Response
from simfed.sim.world import World

from test_world import scenario


def _room_events(world, server="hs0"):
    room = world.servers[server].rooms[world.room_id]
    return sorted(room.graph.events.values(), key=lambda e: (e.depth, e.event_id))


@pytest.fixture(scope="module")
def built():
    world = World(scenario(21, servers={"count": 3}, simulation={"seed": 21, "duration": "2m"},
                           workload={"stop": "1m"}), Recorder())
    world.run()
    return world


def test_shapes(built):
    evs = _room_events(built)
    rid = built.room_id
    req = {"room_id": rid, "latest_events": [evs[-1].event_id], "limit": 10}
    assert check_answer("get_missing_events", req, {"events": evs[:3]}) is None
    assert check_answer("get_missing_events", req, "nope") == "shape"
    assert check_answer("get_missing_events", req, {}) == "shape"
    assert check_answer("get_missing_events", req, {"events": [evs[0].pdu()]}) == "shape"
    assert check_answer("state_ids", {"room_id": rid, "event_id": "$x"}, {"pdu_ids": ["$a"], "auth_chain_ids": 5}) == "shape"
    assert check_answer("state", {"room_id": rid, "event_id": "$x"}, {"pdus": [], "auth_chain": [None]}) == "shape"
    assert check_answer("make_join", {"room_id": rid, "user_id": "@u:hs1"}, {"event": [1]}) == "shape"
    assert check_answer("transaction", {}, "anything") is None  # not a fetch: unchecked here


def test_wrong_room_not_requested_and_limits(built):
    evs = _room_events(built)
    rid = built.room_id
    other = {"room_id": "!other:hs9", "latest_events": [], "limit": 10}
    assert check_answer("get_missing_events", other, {"events": evs[:2]}) == "wrong_room"
    assert check_answer("backfill", {"room_id": "!other:hs9", "v": [], "limit": 5}, {"pdus": evs[:1]}) == "wrong_room"
    assert check_answer("make_join", {"room_id": rid, "user_id": "@u:hs1"},
                        {"event": {"room_id": "!other:hs9"}}) == "wrong_room"
    assert check_answer("event", {"event_id": evs[0].event_id}, {"pdu": evs[1]}) == "not_requested"
    assert check_answer("event", {"event_id": evs[0].event_id}, {"pdu": evs[0]}) is None
    req = {"room_id": rid, "latest_events": [], "limit": 3}
    assert check_answer("get_missing_events", req, {"events": evs[:5]}) is None  # Synapse: processed whole
    assert check_answer("get_missing_events", req, {"events": evs[:5]}, strict_limits=True) == "over_limit"
    assert check_answer("get_missing_events", req, {"events": evs[:3]}, strict_limits=True) is None


def _hostile_run(strict: bool):
    """hs2 turns hostile at 60 s and answers hs0's fetches badly; the run goes on."""
    sc = scenario(22, servers={"count": 3}, simulation={"seed": 22, "duration": "3m"},
                  workload={"stop": "2m"}, homeserver={"strict_answer_limits": strict})
    world = World(sc, Recorder())
    rid = world.room_id
    got: dict[str, object] = {}

    def attack():
        yield world.env.timeout(60_000)
        evs = _room_events(world, "hs2")
        honest = world.transport._handlers["hs2"]
        answers = {
            "get_missing_events": Response(200, {"events": evs}, 1000),  # more than the limit of 10
            "state_ids": Response(200, {"pdu_ids": "all of them", "auth_chain_ids": []}, 100),
            "event": Response(200, {"pdu": evs[0]}, 100),  # not what is asked
            "backfill": Response(200, {"pdus": [{"type": "m.room.message"}]}, 100),
        }
        world.transport.register("hs2", lambda origin, kind, body: answers.get(kind) or honest(origin, kind, body))
        hs0 = world.servers["hs0"]
        tip = evs[-1].event_id
        for kind, body in [
            ("get_missing_events", {"room_id": rid, "earliest_events": [], "latest_events": [tip], "limit": 10}),
            ("state_ids", {"room_id": rid, "event_id": tip}),
            ("event", {"event_id": evs[1].event_id}),
            ("backfill", {"room_id": rid, "v": [tip], "limit": 10}),
        ]:
            got[kind] = yield from hs0.request("hs2", kind, body, 300)
        world.transport.register("hs2", honest)

    world.env.process(attack())
    _, completed = world.run()
    assert completed
    return world, got


def test_bad_answers_fail_only_their_fetch_and_are_counted():
    world, got = _hostile_run(strict=False)
    c = world.servers["hs0"].counters
    assert isinstance(got["get_missing_events"], Response)  # Synapse: an answer over the limit is used
    for kind in ("state_ids", "event", "backfill"):
        assert got[kind] == RequestFailed("bad_answer"), kind
    assert (c["bad_answer_shape"], c["bad_answer_not_requested"], c["bad_answer_over_limit"]) == (2, 1, 0)
    world, got = _hostile_run(strict=True)
    assert got["get_missing_events"] == RequestFailed("bad_answer")
    assert world.servers["hs0"].counters["bad_answer_over_limit"] == 1
