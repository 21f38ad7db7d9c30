"""Server ACLs: the pure matcher (simfed.protocol.acl) and enforcement in a run."""

from __future__ import annotations

import pytest

from simfed.metrics import Recorder
from simfed.protocol.acl import ServerAcl, glob_matches, server_host
from simfed.sim.transport import M_FORBIDDEN, Response
from simfed.sim.world import World

from test_world import scenario


@pytest.mark.parametrize("glob,name,ok", [
    ("*", "anything.example", True),
    ("*.example.org", "matrix.example.org", True),
    ("*.example.org", "example.org", False),
    ("hs?", "hs1", True),
    ("hs?", "hs10", False),
    ("hs??*", "hs10", True),
    ("HS1", "hs1", True),  # case-insensitive
    ("a.b", "aXb", False),  # '.' is literal
    ("ev*l", "evil", True),
    ("ev*l", "evil.org", False),  # whole name
    ("*a*b*", "xaybz", True),
    ("*a*b*", "xbyaz", False),
    ("a**?", "a", False),
    ("a**?", "ab", True),
    ("", "", True),
])
def test_glob(glob, name, ok):
    assert glob_matches(glob, name) is ok


def test_hostile_glob_does_not_backtrack():
    # a backtracking regex takes for ever on these; the matcher answers at once
    assert not glob_matches("a*" * 200 + "b", "a" * 250)
    assert glob_matches("*a" * 120 + "*", "a" * 250)
    assert glob_matches("*?" * 5000, "x" * 5000) and not glob_matches("*?" * 5000, "x" * 4999)


def test_server_host_strips_port():
    assert server_host("example.org:8448") == "example.org"
    assert server_host("[::1]:8448") == "[::1]"
    assert server_host("hs0") == "hs0"


def test_acl_evaluation_as_synapse():
    acl = ServerAcl.from_content({"allow": ["*"], "deny": ["evil.org", "*.evil.org"], "allow_ip_literals": False})
    assert acl.allows("good.org") and acl.allows("good.org:8448")
    assert not acl.allows("evil.org:443") and not acl.allows("a.evil.org")
    assert not acl.allows("1.2.3.4") and not acl.allows("[::1]:8448")
    assert not ServerAcl.from_content({}).allows("any.org")  # no allow list: nobody
    assert ServerAcl.from_content({"allow": ["*"]}).allows("1.2.3.4")  # IP literals allowed by default


def test_bad_content_is_read_leniently():
    acl = ServerAcl.from_content({"allow": ["*", 5, None], "deny": "evil.org", "allow_ip_literals": "no"})
    assert acl.allow == ("*",) and acl.deny == () and acl.allow_ip_literals is True
    assert acl.allows("evil.org") and acl.allows("1.2.3.4")
    assert ServerAcl.from_content([]) == ServerAcl()


def test_acl_denying_a_server_in_a_run():
    """The admin denies hs3 at 60 s: after that, honest servers drop what hs3
    pushes and refuse its requests about the room; before, they accepted it."""
    sc = scenario(11, servers={"count": 4, "users_per_server": 2},
                  simulation={"seed": 11, "duration": "5m"},
                  workload={"messages_per_user_per_minute": 6, "state_changes_per_minute": 0, "stop": "4m"})
    world = World(sc, Recorder())
    rid = world.room_id
    admin_hs = world.workload.creator_hs
    assert admin_hs.name != "hs3"
    refused: list = []

    def admin():
        yield world.env.timeout(60_000)
        ev = admin_hs.create_event(rid, world.workload.creator, "m.room.server_acl",
                                   {"allow": ["*"], "deny": ["hs3"], "allow_ip_literals": True}, "")
        assert ev is not None
        yield world.env.timeout(60_000)
        body = {"room_id": rid, "v": sorted(admin_hs.rooms[rid].forward_extremities), "limit": 10}
        refused.append((yield world.transport.request("hs3", admin_hs.name, "backfill", body, 300,
                                                       timeout_ms=60_000)))

    world.env.process(admin())
    _, completed = world.run()
    assert completed
    hs3_room = world.servers["hs3"].rooms[rid]
    cutoff_ts = world.epoch_ms + 90_000  # the ACL has reached everyone by then
    own = [e for e in hs3_room.events.values() if e.sender_server == "hs3"]
    late = [e.event_id for e in own if e.origin_server_ts > cutoff_ts]
    early = [e.event_id for e in own if e.origin_server_ts < world.epoch_ms + 55_000]
    assert len(late) > 10 and len(early) > 5
    for name in ("hs0", "hs1", "hs2"):
        hs = world.servers[name]
        status = hs.rooms[rid].status
        assert all(e in status and status[e].outcome == "accepted" for e in early), name
        assert not any(e in status for e in late), name
        assert hs.counters["acl_denied"] > 0
    assert isinstance(refused[0], Response) and refused[0].status == 403
    assert refused[0].body["errcode"] == M_FORBIDDEN
    assert admin_hs.counters["acl_refused_requests"] >= 1
    # hs3 still receives the room's events (Synapse does not filter destinations by ACL)
    assert world.servers["hs0"].rooms[rid].forward_extremities <= set(hs3_room.status) | set(hs3_room.graph.events)


def test_server_cannot_create_acl_denying_itself():
    world = World(scenario(12, simulation={"seed": 12, "duration": "1m"}, workload={"stop": "30s"}), Recorder())
    world.workload.create_room()
    hs, user = world.workload.creator_hs, world.workload.creator
    refused = hs.counters["refused"]
    assert hs.create_event(world.room_id, user, "m.room.server_acl", {"allow": ["*"], "deny": [hs.name]}, "") is None
    assert hs.counters["refused"] == refused + 1
