"""Presence: who receives a user's presence, presence lists across servers,
last_active_ago, and the batching of m.presence EDUs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfed.experiment.scenario import load_scenario
from simfed.metrics import Recorder
from simfed.sim.transport import Response
from simfed.sim.world import World

QUIET = {"sessions_per_user_per_hour": 0, "actions_per_user_per_minute": 0, "online_at_start": 0}


def make_world(*, servers: int = 4, users: int = 2, services: dict | None = None, **extra) -> World:
    data = {
        "simulation": {"duration": "2h", "seed": 1},
        "servers": {"count": servers, "users_per_server": users},
        "network": {"latency": {"model": "constant", "ms": 20}},
        "workload": {"messages_per_user_per_minute": 0, "state_changes_per_minute": 0},
        "homeserver": {"dummy_events": {"enabled": False}},
        "services": services if services is not None else {"presence": {"enabled": True, **QUIET}},
        **extra,
    }
    return World(load_scenario(data), Recorder())


def room_with(w: World, joined: list[str]) -> None:
    """hs0 creates the room; each server in ``joined`` joins it through hs0 (first user only)."""
    w.workload.create_room()
    for n in joined:
        hs = w.servers[n]
        w.env.process(hs.join_via(w.room_id, hs.users[0], "hs0"))
    w.env.run(until=w.env.now + 2_000)
    for n in joined:
        assert w.servers[n].is_joined(w.room_id, w.servers[n].users[0])


def run(w: World, ms: float) -> None:
    w.env.run(until=w.env.now + ms)


def drive(w: World, gen):
    """Run a service process to completion; return its value."""
    proc = w.env.process(gen)
    w.env.run(until=proc)
    return proc.value


def presence_dsts(w: World) -> set[str]:
    e = w.recorder.tables()["edus"]
    return set(e[e["edu_type"] == "m.presence"]["dst"].astype(str))


# -- visibility ------------------------------------------------------------------------


def test_only_servers_sharing_a_room_or_subscribed_receive_presence():
    w = make_world(servers=5)
    room_with(w, ["hs1"])  # hs0 and hs1 share the room; hs2, hs3, hs4 are outside it
    p = w.services.presence
    u = "@u0:hs0"
    assert drive(w, p.invite("@u0:hs2", u, accept=True)) == "accepted"
    assert drive(w, p.invite("@u0:hs3", u, accept=False)) == "declined"
    p.set_state(w.servers["hs0"], u, "online", proactive=True)
    run(w, 5_000)
    assert p.view("hs1", u) == "online"      # shares the room
    assert p.view("hs2", u) == "online"      # on u's presence list
    assert p.view("hs3", u) is None          # declined: not allowed
    assert p.view("hs4", u) is None          # nothing in common
    assert presence_dsts(w) == {"hs1", "hs2"}
    p.set_state(w.servers["hs0"], u, "unavailable")
    run(w, 5_000)
    assert p.view("hs1", u) == p.view("hs2", u) == "unavailable"
    assert presence_dsts(w) == {"hs1", "hs2"}


def test_a_server_that_leaves_every_shared_room_stops_receiving():
    w = make_world(servers=3)
    room_with(w, ["hs1", "hs2"])
    p = w.services.presence
    u = "@u1:hs0"
    w.servers["hs0"].create_event(w.room_id, u, "m.room.member", {"membership": "join"}, u)
    run(w, 2_000)
    p.set_state(w.servers["hs0"], u, "online", proactive=True)
    run(w, 2_000)
    assert p.view("hs2", u) == "online"
    w.servers["hs2"].create_event(w.room_id, "@u0:hs2", "m.room.member", {"membership": "leave"}, "@u0:hs2")
    run(w, 2_000)
    assert "hs2" not in p.audience(u)
    p.set_state(w.servers["hs0"], u, "offline")
    run(w, 2_000)
    assert p.view("hs1", u) == "offline"
    assert p.view("hs2", u) == "online"       # stale, but it is no longer allowed to see u


def test_receiver_refuses_presence_for_another_servers_user():
    w = make_world(servers=2)
    p = w.services.presence
    w.services.on_edus(w.servers["hs1"], "hs0",
                       [{"edu_type": "m.presence", "content": {"push": [
                           {"user_id": "@u0:hs0", "presence": "online", "last_active_ago": 0},
                           {"user_id": "@u0:hs1", "presence": "offline", "last_active_ago": 0}]}}])
    assert p.view("hs1", "@u0:hs0") == "online"
    assert p.counters["entries_refused"] == 1


# -- presence lists --------------------------------------------------------------------


def test_presence_list_accept_is_tracked_by_both_servers():
    w = make_world()
    p = w.services.presence
    observer, observed = "@u1:hs1", "@u0:hs3"
    proc = w.env.process(p.invite(observer, observed, accept=True))
    run(w, 1_000)  # the invite has arrived, no answer yet
    assert (observer, observed) in p.invites["hs1"] and (observer, observed) in p.invites["hs3"]
    w.env.run(until=proc)
    assert proc.value == "accepted"
    assert observer in p.followers["hs3"][observed]
    assert observed in p.following["hs1"][observer]
    assert not p.invites["hs1"] and not p.invites["hs3"]
    run(w, 1_000)
    assert p.view("hs1", observed) == "offline"  # the current presence was pushed at once


def test_presence_list_decline_leaves_no_subscription():
    w = make_world()
    p = w.services.presence
    assert drive(w, p.invite("@u0:hs1", "@u0:hs2", accept=False)) == "declined"
    assert not p.followers["hs2"].get("@u0:hs2")
    assert not p.following["hs1"].get("@u0:hs1")
    assert not p.invites["hs1"] and not p.invites["hs2"]


def test_presence_list_errors_are_standard():
    w = make_world()
    p = w.services.presence
    assert drive(w, p.invite("@u0:hs1", "@nobody:hs2")) == "M_NOT_FOUND"
    assert not p.invites["hs1"]
    # An accept nobody asked for.
    req = w.transport.request("hs2", "hs1", "presence_accept",
                              {"observer_user": "@u0:hs1", "observed_user": "@u0:hs2"}, 100, timeout_ms=5_000)
    res = drive(w, (lambda: (yield req))())
    assert isinstance(res, Response) and res.status == 403
    assert res.body["errcode"] == "M_FORBIDDEN" and res.body["error"]


# -- last_active_ago -------------------------------------------------------------------


def test_last_active_ago_counts_from_the_last_proactive_event():
    w = make_world(servers=2)
    p = w.services.presence
    hs, u = w.servers["hs0"], "@u0:hs0"
    run(w, 1_000)
    p.set_state(hs, u, "online")                    # moving up is proactive
    run(w, 30_000)
    e = p.entry(u)
    assert e["last_active_ago"] == 30_000 and e["currently_active"] is True
    run(w, 40_000)
    p.set_state(hs, u, "unavailable")               # moving down is not proactive
    assert p.entry(u)["last_active_ago"] == 70_000
    assert "currently_active" not in p.entry(u)
    run(w, 5_000)
    p.set_state(hs, u, "online")                    # unavailable -> online: proactive again
    assert p.entry(u)["last_active_ago"] == 0
    run(w, 10_000)
    p.set_state(hs, u, "online", proactive=True)    # a message
    assert p.entry(u)["last_active_ago"] == 0


def test_remote_server_derives_last_active_from_the_edu():
    w = make_world(servers=2)
    room_with(w, ["hs1"])
    p = w.services.presence
    t_active = w.env.now
    p.set_state(w.servers["hs0"], "@u0:hs0", "online", proactive=True)
    run(w, 2_000)
    state, active, last_ts, _at = p.views[("hs1", "@u0:hs0")]
    assert state == "online" and active
    # off by the transmission delay at most: 20 ms one way, after the TCP and
    # TLS handshakes of hs0's new connection to hs1 (2 round trips of 40 ms)
    assert t_active <= last_ts <= t_active + 20 + 2 * 40 + 1


def test_actions_within_the_granularity_are_not_pushed():
    w = make_world(servers=2)
    room_with(w, ["hs1"])
    p = w.services.presence
    hs, u = w.servers["hs0"], "@u0:hs0"
    assert p.set_state(hs, u, "online", proactive=True)
    run(w, 10_000)
    assert not p.set_state(hs, u, "online", proactive=True)      # 10 s later: nothing new to say
    run(w, 70_000)
    assert p.set_state(hs, u, "online", proactive=True)          # > 60 s later: pushed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 200_000), st.sampled_from(["online", "unavailable", "offline"]),
                          st.booleans()), min_size=1, max_size=12))
def test_last_active_ago_is_time_since_last_proactive_event(steps):
    w = make_world(servers=1)
    p = w.services.presence
    hs, u = w.servers["hs0"], "@u0:hs0"
    last = None
    level = {"offline": 0, "unavailable": 1, "online": 2}
    for dt, state, proactive in steps:
        run(w, dt)
        before = p.local[u].state
        p.set_state(hs, u, state, proactive=proactive)
        if proactive or level[state] > level[before]:
            last = w.env.now
        e = p.entry(u)
        assert e["presence"] == state
        assert e["last_active_ago"] >= 0
        if last is not None:
            assert e["last_active_ago"] == int(w.env.now - last)
        if state != "online":
            assert "currently_active" not in e


# -- batching ------------------------------------------------------------------------------


def test_presence_batched_at_most_50_users_per_edu_and_100_edus_per_transaction():
    w = make_world(servers=2, users=130)
    p = w.services.presence
    sizes: list[list[int]] = []
    orig = w.services.on_edus

    def spy(hs, origin, edus):
        sizes.append([len(e["content"]["push"]) for e in edus if e["edu_type"] == "m.presence"])
        orig(hs, origin, edus)

    w.services.on_edus = spy
    hs = w.servers["hs0"]
    for u in hs.users:
        p.local[u].state = "online"
        p._push(hs, u, "change", only=["hs1"])
    p._push(hs, hs.users[0], "change", only=["hs1"])  # a newer state replaces the queued one
    run(w, 5_000)
    flat = sorted(n for t in sizes for n in t)
    assert sum(flat) == 130                      # one entry per user: the repeat replaced its queued entry
    assert max(flat) <= 50 and len(flat) == 3
    assert all(len(t) <= 100 for t in sizes)
    assert all(p.view("hs1", u) == "online" for u in hs.users)


def test_no_more_than_100_edus_per_transaction_and_typing_replacement():
    w = make_world(servers=2, services={"typing": {"enabled": True, "starts_per_user_per_minute": 0}})
    room_with(w, ["hs1"])
    t = w.services.typing
    per_txn: list[list[dict]] = []
    orig = w.services.on_edus

    def spy(hs, origin, edus):
        per_txn.append(list(edus))
        orig(hs, origin, edus)

    w.services.on_edus = spy
    hs = w.servers["hs0"]
    # Occupy the destination with one transaction so the rest queue up behind it.
    t.notify(hs, w.room_id, "@u0:hs0", True)
    for i in range(250):
        t.notify(hs, w.room_id, f"@x{i}:hs0", True)
    t.notify(hs, w.room_id, "@u1:hs0", True)
    t.notify(hs, w.room_id, "@u1:hs0", False)    # replaces the unsent "true"
    run(w, 5_000)
    assert all(len(txn) <= 100 for txn in per_txn)
    sent = [e["content"] for txn in per_txn for e in txn]
    assert len(sent) == 253 - 1
    u1 = [c for c in sent if c["user_id"] == "@u1:hs0"]
    assert u1 == [{"room_id": w.room_id, "user_id": "@u1:hs0", "typing": False}]
    assert t.typists("hs1", w.room_id) == ["@u0:hs0"]  # the @x users are not in the room: refused


def test_clients_go_idle_and_remote_views_follow():
    w = make_world(servers=2, services={"presence": {
        "enabled": True, "sessions_per_user_per_hour": 0, "actions_per_user_per_minute": 0,
        "online_at_start": 1, "session": "1000h"}})
    room_with(w, ["hs1"])
    p = w.services.presence
    w.services.start()
    u = "@u0:hs0"
    run(w, 1_000)
    assert p.local[u].state == "online" and p.view("hs1", u) == "online"
    run(w, 5 * 60_000)                           # idle_after = 5 min without an action
    assert p.local[u].state == "unavailable" and p.view("hs1", u) == "unavailable"
    local = w.recorder.tables()["presence"]
    local = local[(local["role"] == "local") & (local["user"] == u)]
    # online (active) -> currently_active false after 60 s -> unavailable after 5 min
    assert list(local["state"].astype(str)) == ["online", "online", "unavailable"]
    assert list(local["currently_active"]) == [True, False, False]


def test_remote_presence_times_out_to_offline_when_the_home_server_is_gone():
    w = make_world(servers=2, services={"presence": {**QUIET, "enabled": True}})
    room_with(w, ["hs1"])
    p = w.services.presence
    w.services.start()
    p.set_state(w.servers["hs0"], "@u0:hs0", "online", proactive=True)
    run(w, 1_000)
    assert p.view("hs1", "@u0:hs0") == "online"
    w.servers["hs0"].crash()
    run(w, 36 * 60_000)                          # 30 min without a refresh, checked every 5 min
    assert p.view("hs1", "@u0:hs0") == "offline"
    rows = w.recorder.tables()["presence"]
    assert "timeout" in set(rows[rows["role"] == "remote"]["reason"].astype(str))


def test_last_active_ago_is_counted_to_when_the_transaction_is_built():
    """An update queued behind a transaction in flight leaves in a later
    transaction; the entry it carries says how long ago the user was active
    *when that transaction is built* (Synapse formats queued presence then),
    not when the update was queued."""
    w = make_world(servers=2)
    room_with(w, ["hs1"])
    run(w, 5_000)
    p = w.services.presence
    u = "@u0:hs0"
    hs0 = w.servers["hs0"]
    w.servers["hs1"].crash()
    hs0.create_event(w.room_id, u, "m.room.message", {"msgtype": "m.text", "body": "into the void"})
    run(w, 1_000)  # that transaction is now in flight, retrying
    p.set_state(hs0, u, "online", proactive=True)
    t_active = w.env.now
    run(w, 90_000)
    w.servers["hs1"].restart()
    run(w, 20 * 60_000)
    e = w.recorder.tables()["presence"]
    seen = e[(e["role"].astype(str) == "remote") & (e["server"].astype(str) == "hs1") & (e["user"].astype(str) == u)]
    assert len(seen) >= 1
    first = seen.iloc[0]
    # Queued at t_active, sent much later: the entry counts the wait.
    assert first["last_active_ago"] >= 30_000
    assert first["last_active_ago"] <= first["t"] - t_active
