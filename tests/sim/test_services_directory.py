"""Room aliases: lookups at the alias's server, through a partition, stale
cached answers, joining by alias, and the standard errors; profile queries."""

from __future__ import annotations

from sim.test_services_presence import drive, make_world, room_with, run
from simfed.sim.transport import Response

QUIET_DIR = {"enabled": True, "aliases_per_server": 0, "creates_per_minute": 0, "moves_per_minute": 0,
             "deletes_per_minute": 0, "queries_per_server_per_minute": 0, "join_by_alias": False}


def directory_world(*, cache_ttl: str = "0s", partitions: list | None = None):
    net = {"latency": {"model": "constant", "ms": 20}}
    if partitions:
        net["partitions"] = partitions
    w = make_world(services={"directory": {**QUIET_DIR, "cache_ttl": cache_ttl}}, network=net)
    return w


def test_alias_resolves_at_its_server_with_room_and_servers():
    w = directory_world()
    room_with(w, ["hs1", "hs2"])
    d = w.services.directory
    alias = d.create(w.servers["hs1"])
    assert alias.endswith(":hs1")
    ans = drive(w, d.lookup(w.servers["hs3"], alias))
    assert ans.outcome == "ok" and ans.room_id == w.room_id
    assert ans.servers[0] == "hs1" and set(ans.servers) == {"hs0", "hs1", "hs2"}


def test_unknown_alias_is_m_not_found():
    w = directory_world()
    room_with(w, [])
    d = w.services.directory
    ans = drive(w, d.lookup(w.servers["hs1"], "#nope:hs0"))
    assert ans.outcome == "not_found" and ans.errcode == "M_NOT_FOUND"
    req = w.transport.request("hs1", "hs0", "query_directory", {"room_alias": "#nope:hs0"}, 100, timeout_ms=5_000)
    res = drive(w, (lambda: (yield req))())
    assert isinstance(res, Response) and res.status == 404
    assert set(res.body) == {"errcode", "error"} and res.body["errcode"] == "M_NOT_FOUND"


def test_alias_lookup_through_a_partition():
    # hs3 is cut off from hs0 (the alias's server) between 100 s and 400 s.
    w = directory_world(cache_ttl="10m",
                        partitions=[{"start": "100s", "end": "400s", "groups": [["hs0", "hs1", "hs2"], ["hs3"]]}])
    room_with(w, ["hs1"])
    d = w.services.directory
    alias = d.create(w.servers["hs0"])
    hs1, hs3 = w.servers["hs1"], w.servers["hs3"]
    assert drive(w, d.lookup(hs3, alias)).outcome == "ok"          # before: answered, and cached
    run(w, 120_000 - w.env.now)
    ans = drive(w, d.lookup(hs3, alias))
    assert ans.outcome == "ok" and ans.cached                       # during: from the cache
    d.move(alias)                                                   # the alias moves meanwhile
    ans = drive(w, d.lookup(hs3, alias))
    assert ans.outcome == "stale" and ans.cached and ans.room_id == w.room_id
    assert drive(w, d.lookup(hs1, alias)).room_id != w.room_id      # hs1 reaches hs0: fresh answer
    d.cache["hs3"].clear()
    ans = drive(w, d.lookup(hs3, alias))
    assert ans.outcome == "failed" and not ans.cached               # no cache: the request times out
    run(w, max(0.0, 400_000 - w.env.now))
    ans = drive(w, d.lookup(hs3, alias))
    assert ans.outcome == "ok" and ans.room_id == d.resolve_truth(alias)  # healed
    q = w.recorder.tables()["directory"]
    q = q[q["kind"] == "query"]
    assert list(q["outcome"].astype(str)) == ["ok", "ok", "stale", "ok", "failed", "ok"]


def test_deleted_alias_served_stale_from_cache_then_not_found():
    w = directory_world(cache_ttl="30s")
    room_with(w, [])
    d = w.services.directory
    alias = d.create(w.servers["hs0"])
    assert drive(w, d.lookup(w.servers["hs2"], alias)).outcome == "ok"
    d.delete(alias)
    assert drive(w, d.lookup(w.servers["hs2"], alias)).outcome == "stale"
    run(w, 31_000)
    assert drive(w, d.lookup(w.servers["hs2"], alias)).outcome == "not_found"


def test_join_by_alias():
    w = directory_world()
    room_with(w, ["hs1"])
    d = w.services.directory
    d.create(w.servers["hs1"])
    hs3 = w.servers["hs3"]
    assert w.room_id not in hs3.rooms
    assert drive(w, d.join_by_alias(hs3, w.rng("test"))) is True
    run(w, 2_000)
    assert hs3.is_joined(w.room_id, hs3.users[0])
    assert "hs3" in w.servers["hs0"].joined_servers(w.servers["hs0"].rooms[w.room_id])


def test_profile_query_answered_by_the_users_server():
    w = make_world(services={"profiles": {"enabled": True, "changes_per_user_per_hour": 0,
                                          "queries_per_server_per_minute": 0}})
    room_with(w, ["hs1"])
    pr = w.services.profiles
    eid = pr.change(w.servers["hs0"], "@u0:hs0")
    assert eid is not None
    run(w, 1_000)  # the new member event reaches hs1, whose view is then current
    res = drive(w, pr.query(w.servers["hs1"], "@u0:hs0"))
    assert res.ok and res.body["displayname"].startswith("u0 v")
    res = drive(w, pr.query(w.servers["hs1"], "@ghost:hs0"))
    assert res.status == 404 and res.body["errcode"] == "M_NOT_FOUND"
    rows = w.recorder.tables()["profiles"]
    assert list(rows["kind"].astype(str)) == ["change", "query", "query"]
    assert list(rows["outcome"].astype(str)) == ["ok", "ok", "error"]


def test_a_scheduled_joiner_is_not_joined_by_alias_before_its_time():
    from simfed.experiment.runner import run_scenario
    from simfed.experiment.scenario import load_scenario

    sc = load_scenario({
        "simulation": {"seed": 1, "duration": "4m"},
        "servers": {"count": 4, "users_per_server": 1},
        "workload": {"stop": "3m"},
        "topology": {"changes": [{"kind": "join", "at": "2m", "server": "hs3"}]},
        "services": {"directory": {"enabled": True, "join_by_alias": True}},
    })
    res = run_scenario(sc, out_dir=None, progress=False)
    mem = res.membership
    joins = mem[(mem["server"].astype(str) == "hs3") & mem["joined"]]["t"]
    assert len(joins) and joins.min() >= 120_000
    d = res.tables["directory"]
    failed_joins = d[(d["kind"].astype(str) == "join") & (d["outcome"].astype(str) == "failed")]
    assert failed_joins.empty
