"""Synapse's /send admission: at most 50 PDUs / 100 EDUs, one transaction per origin at a time."""

from __future__ import annotations

import pytest

from simfed.metrics import Recorder
from simfed.sim.transport import M_BAD_JSON, M_UNKNOWN, MatrixError
from simfed.sim.world import World

from test_world import scenario


def answer(world, out):
    """The Response of a handler's answer (run the simulation until a deferred one is ready)."""
    if hasattr(out, "status"):
        return out
    world.env.run(until=out)
    return out.value


@pytest.fixture()
def world():
    w = World(scenario(31, servers={"count": 3}, simulation={"seed": 31, "duration": "1m"}, workload={"stop": "30s"}),
              Recorder())
    w.workload.create_room()
    return w


def test_too_many_pdus_or_edus_refused_400(world):
    hs = world.servers["hs0"]
    ev = next(iter(hs.rooms[world.room_id].events.values()))
    for body in ({"txn_id": "t1", "pdus": [ev] * 51}, {"txn_id": "t2", "pdus": [], "edus": [{}] * 101}):
        with pytest.raises(MatrixError) as err:
            hs._handle("hs1", "transaction", body)
        assert err.value.http_status == 400 and err.value.errcode == M_BAD_JSON
    assert hs.counters["txn_too_large"] == 2
    assert answer(world, hs._handle("hs1", "transaction", {"txn_id": "t3", "pdus": [ev] * 50})).status == 200


def test_one_transaction_per_origin_at_a_time(world):
    hs = world.servers["hs0"]
    busy = world.env.event()
    hs._track_transaction("hs1", {"txn_id": "a"}, busy)
    with pytest.raises(MatrixError) as err:
        hs._handle("hs1", "transaction", {"txn_id": "b", "pdus": []})
    assert err.value.http_status == 429 and err.value.errcode == M_UNKNOWN
    assert hs.counters["txn_concurrent_refused"] == 1
    other = hs._handle("hs2", "transaction", {"txn_id": "b", "pdus": []})  # another origin
    retry = hs._handle("hs1", "transaction", {"txn_id": "a", "pdus": []})  # its retry
    busy.succeed()
    assert answer(world, other).status == 200 and answer(world, retry).status == 200
    assert answer(world, hs._handle("hs1", "transaction", {"txn_id": "b", "pdus": []})).status == 200


def test_fetches_linearized_per_origin_and_room(world):
    """Synapse serves /get_missing_events, /state, /event_auth, /backfill one
    at a time per (origin, room): a second one from the same origin waits."""
    hs = world.servers["hs0"]
    assert hs.cpu is not None
    rid = world.room_id
    tip = sorted(hs.rooms[rid].forward_extremities)
    body = {"room_id": rid, "latest_events": tip, "earliest_events": [], "limit": 10}
    # only hs0's users are in the room so far: hs0 itself is the member that asks
    outs = [hs._handle("hs0", "get_missing_events", body) for _ in range(3)]
    assert [answer(world, o).status for o in outs] == [200, 200, 200]
    assert hs.counters["linearizer_waits"] == 2
    assert not hs._linearizer  # released once answered
    hs._handle("hs0", "state_ids", {"room_id": rid, "event_id": tip[0]})  # not linearized
    assert hs.counters["linearizer_waits"] == 2


def test_linearized_refusal_is_an_error_answer(world):
    """A linearized request refused (here: from a server not in the room)
    answers 403 through the transport; the run does not crash."""
    out = []
    rid = world.room_id
    body = {"room_id": rid, "latest_events": sorted(world.servers["hs0"].rooms[rid].forward_extremities)}
    for _ in range(2):
        ev = world.transport.request("hs1", "hs0", "get_missing_events", body, 300, timeout_ms=60_000)
        ev.callbacks.append(lambda e: out.append(e.value))
    world.env.run(until=world.env.now + 5_000)
    assert [r.status for r in out] == [403, 403]
