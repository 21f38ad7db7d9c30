"""A hostile peer inside a run: its bad PDUs and requests fail alone (issue 13)."""

from __future__ import annotations

from simfed.metrics import Recorder
from simfed.protocol import Event, auth_events_for
from simfed.sim.transport import M_BAD_JSON, MatrixError, Response
from simfed.sim.world import World

from test_world import scenario

BAD_REQUESTS = [
    ("transaction", {"pdus": 5}),
    ("transaction", {"pdus": [{"type": "m.room.message"}]}),
    ("transaction", "not an object"),
    ("get_missing_events", {}),
    ("get_missing_events", {"room_id": "!r:hs0", "latest_events": 5}),
    ("get_missing_events", {"room_id": "!r:hs0", "latest_events": [], "limit": "x"}),
    ("get_missing_events", {"room_id": "!r:hs0", "latest_events": [], "earliest_events": None}),
    ("backfill", {"room_id": "!r:hs0", "v": 7}),
    ("state_ids", {"room_id": "!r:hs0", "event_id": []}),
    ("event", {"event_id": {"$": 1}}),
    ("make_join", {"room_id": "!r:hs0"}),
    ("send_join", {"room_id": "!r:hs0", "event": {"type": "m.room.member"}}),
]


def test_malformed_requests_fail_with_bad_json_naming_the_field():
    world = World(scenario(7, simulation={"seed": 7, "duration": "1m"}, workload={"stop": "30s"}), Recorder())
    hs0 = world.servers["hs0"]
    for kind, body in BAD_REQUESTS:
        try:
            hs0._handle("hs1", kind, body)
        except MatrixError as e:
            assert e.body()["errcode"] == M_BAD_JSON, (kind, body)
            assert kind in e.body()["error"]
        else:
            raise AssertionError(f"{kind} {body!r} was answered")


def test_hostile_peer_mid_run_is_refused_counted_and_the_run_goes_on():
    sc = scenario(8, servers={"count": 4, "users_per_server": 2, "malicious": ["hs3"]},
                  simulation={"seed": 8, "duration": "6m"}, workload={"stop": "3m"})
    world = World(sc, Recorder())
    rid = world.room_id
    answers: list = []
    sent: dict[str, Event] = {}

    def attack():
        yield world.env.timeout(90_000)
        hs = world.servers["hs3"]
        room = hs.rooms[rid]
        # Prev events every honest server holds: a pushed event whose prevs
        # its origin will not divulge is dropped, as Synapse drops it.
        common = set(room.graph.events)
        for n in ("hs0", "hs1", "hs2"):
            common &= set(world.servers[n].rooms[rid].graph.events)
        prevs = [max(common, key=lambda e: (room.graph[e].depth, e))]
        content = {"msgtype": "m.text", "body": "what hs3 signed"}
        fields = {"room_id": rid, "sender": hs.users[0], "type": "m.room.message", "content": content,
                  "prev_events": prevs, "depth": max(room.graph[p].depth for p in prevs) + 1,
                  "origin_server_ts": hs.now_ts(),
                  "auth_events": auth_events_for("m.room.message", None, hs.users[0], content,
                                                 room.current_state())}
        signed = Event.create(fields, hs.name, hs.key, hs.config.room_version)
        pdu = signed.pdu()
        pdu["content"]["body"] = "what hs3 claims after signing"
        sent["altered"] = altered = Event.from_pdu(pdu, hs.config.room_version)
        for dest in ("hs0", "hs1", "hs2"):
            hs.sender.send_pdu(dest, altered, rid)
        for kind, body in BAD_REQUESTS:
            body = {**body, "room_id": rid} if isinstance(body, dict) and "room_id" in body else body
            r = yield world.transport.request("hs3", "hs0", kind, body, 300, timeout_ms=60_000)
            answers.append(r)

    world.env.process(attack())
    end_t, completed = world.run()
    assert completed and end_t == sc.simulation.duration_ms
    assert len(answers) == len(BAD_REQUESTS)
    assert all(isinstance(r, Response) and r.status == 400 and r.body["errcode"] == M_BAD_JSON for r in answers)
    altered = sent["altered"]
    for n in ("hs0", "hs1", "hs2"):
        stored = world.servers[n].rooms[rid].events.get(altered.event_id)
        assert stored is not None, n
        assert stored is not altered and not stored.content_hash_ok
        assert dict(stored.content) == {}, "an honest server must keep the redacted form"
