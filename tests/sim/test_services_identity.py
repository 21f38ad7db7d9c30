"""Identity servers: binds, lookups, replication by push and anti-entropy,
convergence after a partition heals, and the standard errors."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.test_services_presence import drive, make_world, run
from simfed.sim.services.identity import Binding, IdentityServer
from simfed.sim.transport import Response

QUIET_ID = {"enabled": True, "count": 3, "binds_per_user_per_hour": 0, "lookups_per_server_per_minute": 0,
            "anti_entropy_interval": "10s"}


def identity_world(partitions: list | None = None, **cfg):
    net = {"latency": {"model": "constant", "ms": 20}}
    if partitions:
        net["partitions"] = partitions
    return make_world(services={"identity": {**QUIET_ID, **cfg}}, network=net)


def test_bind_then_lookup_at_every_identity_server():
    w = identity_world()
    c = w.services.identity
    w.services.start()
    hs0 = w.servers["hs0"]
    res = drive(w, c.bind(hs0, "@u0:hs0", "email", "a@example.org", "is1", token_ok=True))
    assert res.ok
    run(w, 1_000)
    for name in ("is0", "is1", "is2"):
        assert drive(w, c.lookup(w.servers["hs3"], "email", "a@example.org", name)) == "ok"
    assert drive(w, c.lookup(hs0, "email", "b@example.org", "is0")) == "not_found"
    assert c.converged()


def test_identity_mappings_converge_after_a_partition_heals():
    # is0 (with hs0) is cut off from is1, is2 and the other homeservers for 60 s..300 s.
    groups = [["is0", "hs0"], ["is1", "is2", "hs1", "hs2", "hs3"]]
    w = identity_world(partitions=[{"start": "60s", "end": "300s", "groups": groups}])
    c = w.services.identity
    w.services.start()
    run(w, 70_000)
    hs0, hs1 = w.servers["hs0"], w.servers["hs1"]
    assert drive(w, c.bind(hs0, "@u0:hs0", "email", "x@example.org", "is0", token_ok=True)).ok
    assert drive(w, c.bind(hs1, "@u0:hs1", "msisdn", "44200", "is2", token_ok=True)).ok
    run(w, 30_000)
    assert not c.converged()
    assert drive(w, c.lookup(hs1, "email", "x@example.org", "is1")) == "missing"
    assert drive(w, c.lookup(hs0, "msisdn", "44200", "is0")) == "missing"
    # The same 3PID bound again, to another user, on the other side: last writer wins everywhere.
    assert drive(w, c.bind(hs1, "@u1:hs1", "email", "x@example.org", "is1", token_ok=True)).ok
    assert drive(w, c.lookup(hs0, "email", "x@example.org", "is0")) == "stale"
    run(w, max(0.0, 300_000 - w.env.now) + 60_000)   # healed, then a few anti-entropy rounds
    assert c.converged()
    for name in ("is0", "is1", "is2"):
        assert c.servers[name].mappings[("email", "x@example.org")].mxid == "@u1:hs1"
        assert drive(w, c.lookup(hs0, "email", "x@example.org", name)) == "ok"
    rows = w.recorder.tables()["identity"]
    applied = rows[rows["kind"] == "applied"]
    assert set(applied["node"].astype(str)) == {"is0", "is1", "is2"}
    # Every record reached every identity server, the partitioned ones only after the heal.
    late = applied[(applied["t"] >= 300_000)]
    assert len(late) > 0


def test_identity_errors_are_standard():
    w = identity_world(max_requests_per_second=5)
    c = w.services.identity
    hs0 = w.servers["hs0"]
    res = drive(w, c.bind(hs0, "@u0:hs0", "email", "z@example.org", "is0", token_ok=False))
    assert res.status == 403 and res.body["errcode"] == "M_FORBIDDEN" and res.body["error"]
    bodies = []
    for _ in range(7):
        req = w.transport.request("hs1", "is0", "3pid_lookup", {"medium": "email", "address": "q@x"}, 100,
                                  timeout_ms=5_000)
        req.callbacks.append(lambda ev: bodies.append(ev.value))
    run(w, 1_000)
    codes = [b.body["errcode"] for b in bodies]
    assert codes.count("M_NOT_FOUND") == 5 and codes.count("M_LIMIT_EXCEEDED") == 2
    limited = [b for b in bodies if b.body["errcode"] == "M_LIMIT_EXCEEDED"]
    assert all(b.status == 429 and b.body["retry_after_ms"] > 0 for b in limited)
    req = w.transport.request("hs1", "is1", "no_such_endpoint", {}, 100, timeout_ms=5_000)
    res = drive(w, (lambda: (yield req))())
    assert isinstance(res, Response) and res.status == 404 and res.body["errcode"] == "M_UNRECOGNIZED"
    req = w.transport.request("hs1", "is1", "is_replicate", {"records": []}, 100, timeout_ms=5_000)
    res = drive(w, (lambda: (yield req))())
    assert res.status == 403 and res.body["errcode"] == "M_FORBIDDEN"   # only peers replicate


def _server() -> IdentityServer:
    world = SimpleNamespace(recorder=None)
    cluster = SimpleNamespace(world=world, env=SimpleNamespace(now=0.0), cfg=None, servers={})
    return IdentityServer(cluster, "isX")


bindings = st.lists(
    st.builds(lambda a, m, ts, o, s: Binding("email", f"{a}@x", f"@u{m}:hs0", float(ts), f"is{o}", s),
              st.integers(0, 3), st.integers(0, 3), st.integers(0, 5), st.integers(0, 2), st.integers(1, 6)),
    max_size=20,
).map(lambda bs: list({(b.origin, b.seq): b for b in bs}.values()))


@settings(max_examples=60, deadline=None)
@given(bindings, st.randoms(use_true_random=False))
def test_replicas_holding_the_same_records_agree_whatever_the_order(records, rnd):
    a, b = _server(), _server()
    for r in records:
        a.apply(r)
    shuffled = list(records) + list(records)  # duplicates are harmless
    rnd.shuffle(shuffled)
    for r in shuffled:
        b.apply(r)
    assert a.mappings == b.mappings
    assert a.vector() == b.vector()
    assert b.beyond(a.vector()) == [r for r in b.beyond({}) if r.seq > a.vector().get(r.origin, 0)]


def test_malformed_requests_answer_m_bad_json():
    w = make_world(services={"identity": QUIET_ID, "directory": {"enabled": True},
                             "profiles": {"enabled": True}})
    for dst, kind in (("is0", "3pid_lookup"), ("hs0", "query_directory"), ("hs0", "query_profile")):
        req = w.transport.request("hs1", dst, kind, None, 100, timeout_ms=5_000)
        res = drive(w, (lambda r=req: (yield r))())
        assert res.status == 400 and res.body["errcode"] == "M_BAD_JSON", (dst, kind, res)


def test_a_cut_off_identity_server_leaves_records_unconverged_and_lookups_pending():
    """is2 is unreachable for the whole run: no record reaches it, so none has
    converged; lookups sent to it never return and are reported as pending."""
    from simfed.experiment.runner import run_scenario
    from simfed.experiment.scenario import load_scenario

    sc = load_scenario({
        "simulation": {"seed": 2, "duration": "5m"},
        "servers": {"count": 4, "users_per_server": 2},
        "workload": {"stop": "4m"},
        "network": {"partitions": [{"start": "0s", "end": "5m", "groups": [["is2"]]}]},
        "services": {"identity": {"enabled": True, "count": 3, "binds_per_user_per_hour": 30,
                                  "lookups_per_server_per_minute": 2}},
    })
    s = run_scenario(sc, out_dir=None, progress=False).summary["identity"]
    assert s["binds"] > 0
    assert s["unconverged_records"] == s["binds"]
    assert s["lookup_outcomes"].get("pending", 0) > 0
