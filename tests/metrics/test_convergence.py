"""Event and state convergence on hand-built observation streams."""

import math

import pytest

from simfed.metrics import (
    Recorder,
    delivery_latency,
    event_convergence,
    expected_holders,
    percentiles,
    state_convergence,
)

R = "!room"


def world(servers=("a", "b", "c"), dishonest=("m",)) -> Recorder:
    r = Recorder()
    for s in servers:
        r.server_info(s, True, None)
        r.membership(0.0, s, R, True)
    for s in dishonest:
        r.server_info(s, False, None)
        r.membership(0.0, s, R, True)
    return r


def create(r, t, server, eid, **kw):
    r.event_created(t, server, eid, R, kw.get("type", "m.room.message"),
                    kw.get("is_state", False), 1, 1, f"@u:{server}")
    r.event_outcome(t, server, eid, R, "accepted", "created")


def test_late_server_sets_convergence_and_missing_server_loses_event():
    r = world()
    create(r, 100.0, "a", "$e1")
    r.event_outcome(150.0, "b", "$e1", R, "accepted", "push")
    r.event_outcome(600.0, "c", "$e1", R, "accepted", "get_missing_events")  # 500 ms late
    create(r, 1000.0, "b", "$e2")
    r.event_outcome(1100.0, "a", "$e2", R, "accepted", "push")
    # c never gets $e2; the dishonest m never gets anything: not waited for.
    conv = event_convergence(r.tables(), end_t=5000.0).set_index("event_id")
    assert conv.loc["$e1", "convergence_ms"] == 500.0
    assert conv.loc["$e1", "converged_at"] == 600.0
    assert conv.loc["$e1", "n_expected"] == 3
    assert not conv.loc["$e1", "lost"]
    assert conv.loc["$e2", "lost"]
    assert math.isnan(conv.loc["$e2", "convergence_ms"])
    assert (conv.loc["$e2", "n_expected"], conv.loc["$e2", "n_held"]) == (3, 2)


def test_soft_failed_and_rejected_count_as_held_dropped_does_not():
    r = world()
    create(r, 0.0, "a", "$e")
    r.event_outcome(10.0, "b", "$e", R, "soft_failed", "push")
    r.event_outcome(20.0, "c", "$e", R, "dropped", "push", reason="bad_hash")
    conv = event_convergence(r.tables(), end_t=100.0)
    assert conv["lost"].item()
    r.event_outcome(70.0, "c", "$e", R, "rejected", "state_fetch", reason="auth")
    conv = event_convergence(r.tables(), end_t=100.0)
    assert conv["convergence_ms"].item() == 70.0


def test_outcomes_after_end_t_do_not_count():
    r = world(servers=("a", "b"), dishonest=())
    create(r, 0.0, "a", "$e")
    r.event_outcome(200.0, "b", "$e", R, "accepted", "push")
    assert event_convergence(r.tables(), end_t=100.0)["lost"].item()
    assert event_convergence(r.tables(), end_t=300.0)["convergence_ms"].item() == 200.0


def test_creator_holds_its_event_without_reporting_it():
    r = world(servers=("a", "b"), dishonest=())
    r.event_created(5.0, "a", "$e", R, "m.room.message", False, 1, 1, "@u:a")
    r.event_outcome(25.0, "b", "$e", R, "accepted", "push")
    assert event_convergence(r.tables())["convergence_ms"].item() == 20.0


def test_membership_decides_who_should_hold():
    r = Recorder()
    for s in ("a", "b", "c", "d"):
        r.server_info(s, True, None)
    r.membership(0.0, "a", R, True)
    r.membership(0.0, "b", R, True)
    r.membership(500.0, "c", R, True)        # joins after $early
    r.membership(0.0, "d", R, True)
    r.membership(800.0, "d", R, False)       # leaves before the end
    create(r, 100.0, "a", "$early")
    r.event_outcome(130.0, "b", "$early", R, "accepted", "push")
    create(r, 600.0, "a", "$late")
    r.event_outcome(610.0, "b", "$late", R, "accepted", "push")
    r.event_outcome(900.0, "c", "$late", R, "accepted", "push")
    exp = expected_holders(r.tables(), end_t=1000.0)
    got = {(e, s) for e, s in zip(exp["event_id"], exp["server"])}
    assert got == {("$early", "a"), ("$early", "b"), ("$late", "a"),
                   ("$late", "b"), ("$late", "c")}
    conv = event_convergence(r.tables(), end_t=1000.0).set_index("event_id")
    assert conv.loc["$early", "convergence_ms"] == 30.0
    assert conv.loc["$late", "convergence_ms"] == 300.0


def test_rejoin_counts_from_the_final_joined_period():
    r = world(servers=("a", "b"), dishonest=())
    r.membership(200.0, "b", R, False)
    r.membership(400.0, "b", R, True)
    r.membership(450.0, "b", R, True)  # a repeated join does not restart the period
    create(r, 100.0, "a", "$before")
    create(r, 420.0, "a", "$during")
    exp = expected_holders(r.tables(), end_t=1000.0)
    assert set(exp.loc[exp["server"] == "b", "event_id"]) == {"$during"}


def test_dishonest_creator_is_reported_but_flagged():
    r = world()
    create(r, 0.0, "m", "$x")
    r.event_outcome(10.0, "a", "$x", R, "rejected", "push", reason="auth")
    conv = event_convergence(r.tables(), end_t=50.0)
    assert not conv["honest_creator"].item()
    assert conv["n_expected"].item() == 3 and conv["lost"].item()


def test_delivery_latency_per_server():
    r = world(servers=("a", "b", "c"), dishonest=())
    create(r, 100.0, "a", "$e1")
    r.event_outcome(150.0, "b", "$e1", R, "soft_failed", "push")
    r.event_outcome(175.0, "b", "$e1", R, "accepted", "backfill")  # later: not first
    r.event_outcome(600.0, "c", "$e1", R, "accepted", "get_missing_events")
    lat = delivery_latency(r.tables()).set_index("server")
    assert lat.loc["b", "latency_ms"] == 50.0 and lat.loc["b", "via"] == "push"
    assert lat.loc["c", "latency_ms"] == 500.0
    assert "a" not in lat.index
    assert len(delivery_latency(r.tables(), include_creator=True)) == 3


def test_percentiles():
    p = percentiles([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert p == {"p50": 2.5, "p95": pytest.approx(3.85), "p99": pytest.approx(3.97), "max": 4.0}
    assert all(math.isnan(v) for v in percentiles([]).values())


# -- state convergence -------------------------------------------------

def sample(r, t, server, h, up=True, ext=1, backlog=0):
    r.state_sample(t, server, R, up, ext, h, 3, backlog)


def base_states(r):
    for s in ("a", "b", "c"):
        sample(r, 0.0, s, "h0")
    create(r, 1000.0, "a", "$name", type="m.room.name", is_state=True)
    sample(r, 1000.0, "a", "h1")
    sample(r, 1200.0, "b", "h1")
    sample(r, 1500.0, "c", "h1")


def test_state_converges_at_a_known_time():
    r = world()
    base_states(r)
    sample(r, 1300.0, "m", "evil")  # dishonest: ignored
    sample(r, 4000.0, "a", "h1", ext=2)  # a later sample that keeps agreement
    assert state_convergence(r.tables(), end_t=5000.0) == 500.0


def test_re_divergence_measures_from_the_later_moment():
    r = world()
    base_states(r)
    r.perturbation(3000.0, "partition_heal")
    sample(r, 3000.0, "a", "h2")
    sample(r, 3400.0, "b", "h2")
    sample(r, 3800.0, "c", "h2")
    assert state_convergence(r.tables(), end_t=5000.0) == 800.0


def test_agreement_before_the_last_perturbation_is_zero():
    r = world()
    base_states(r)
    r.perturbation(2000.0, "restart", "b")
    assert state_convergence(r.tables(), end_t=5000.0) == 0.0


def test_down_servers_are_excluded_and_never_agreeing_is_nan():
    r = world()
    base_states(r)
    r.perturbation(2000.0, "crash", "c")
    sample(r, 2000.0, "c", "h1", up=False)
    sample(r, 2100.0, "a", "h2")
    sample(r, 2300.0, "b", "h2")   # c is down with h1: does not count
    assert state_convergence(r.tables(), end_t=5000.0) == 300.0
    sample(r, 2500.0, "c", "h1", up=True)  # c restarts, stale, never catches up
    assert math.isnan(state_convergence(r.tables(), end_t=5000.0))


def test_state_convergence_needs_every_room():
    r = world(servers=("a", "b"), dishonest=())
    sample(r, 0.0, "a", "h0")
    sample(r, 0.0, "b", "h0")
    r.state_sample(0.0, "a", "!other", True, 1, "x1", 1, 0)
    r.state_sample(0.0, "b", "!other", True, 1, "x2", 1, 0)
    r.state_sample(700.0, "b", "!other", True, 1, "x1", 1, 0)
    r.perturbation(100.0, "partition_heal")
    assert state_convergence(r.tables(), end_t=1000.0) == 600.0


# -- headline (summary.json) and traffic --------------------------------

import json  # noqa: E402

from simfed.metrics import headline, messages_per_event, traffic_by_kind  # noqa: E402

HEADLINE_KEYS = {
    "events_created", "events_lost", "events_lost_in_gaps", "converged", "event_convergence_ms",
    "state_convergence_ms", "max_divergence", "messages", "bytes", "rejected",
    "soft_failed", "topology", "state_converged", "state_agreed_since_ms",
    "state_convergence_after_last_fault_ms", "last_fault", "faults",
    "auth_disagreements", "soft_fail_disagreements",
}


def full_run() -> Recorder:
    r = world()
    base_states(r)  # $name by a at 1000, state agrees from 1500
    r.event_outcome(1100.0, "b", "$name", R, "accepted", "push")
    r.event_outcome(1400.0, "c", "$name", R, "accepted", "push")
    create(r, 0.0, "m", "$x")
    r.event_outcome(10.0, "a", "$x", R, "rejected", "push", reason="auth")
    r.event_outcome(20.0, "b", "$x", R, "rejected", "push", reason="signature")
    r.event_outcome(20.0, "c", "$x", R, "soft_failed", "push")
    r.event_outcome(20.0, "m", "$x", R, "rejected", "push", reason="ignored")  # dishonest
    r.message(1000.0, 1050.0, "transaction", "a", "b", 500, True)
    r.message(1000.0, 1000.0, "transaction", "a", "c", 500, False, reason="loss")
    r.message(1300.0, 1400.0, "transaction", "a", "c", 500, True)
    r.message(1300.0, 1350.0, "transaction_response", "c", "a", 20, True)
    return r


def test_headline_values_and_json():
    h = headline(full_run().tables(), end_t=5000.0)
    assert set(h) == HEADLINE_KEYS
    json.dumps(h, allow_nan=False)
    assert h["events_created"] == 2
    assert h["events_lost"] == 0
    # $x entered c's DAG (soft-failed) and a, b hold it (rejected): every
    # event is held everywhere, but a and b rejected what c passed.
    assert h["auth_disagreements"] == 1 and h["soft_fail_disagreements"] == 0
    assert h["converged"] is False
    assert h["event_convergence_ms"]["max"] == 400.0
    assert h["event_convergence_ms"]["events_lost"] == 0
    assert h["state_convergence_ms"] == 500.0
    assert h["state_converged"] is True
    assert h["max_divergence"] == {"distinct_states": 2, "state_entries": None, "distinct_states_at_end": 1}
    assert h["messages"] == {"transaction": 3, "transaction_response": 1}
    assert h["bytes"] == {"transaction": 1500, "transaction_response": 20}
    assert h["rejected"] == {"auth": 1, "signature": 1}
    assert h["soft_failed"] == 1


def test_headline_not_converged_when_an_event_is_lost():
    r = full_run()
    create(r, 2000.0, "b", "$lost")
    h = headline(r.tables(), end_t=5000.0)
    assert h["events_lost"] == 1 and h["converged"] is False


def test_headline_of_an_empty_run_is_json():
    h = headline(Recorder().tables())
    assert set(h) == HEADLINE_KEYS
    assert h["state_convergence_ms"] is None
    json.dumps(h, allow_nan=False)


def test_traffic_by_kind_and_per_event():
    t = full_run().tables()
    tk = traffic_by_kind(t)
    assert tk.loc["transaction"].to_dict() == {
        "messages": 3, "bytes": 1500, "delivered": 2, "delivered_bytes": 1000,
        "dropped": 1, "dropped_bytes": 500,
    }
    m = messages_per_event(t)
    assert m["transactions_per_event"] == 1.5
    assert m["pdu_messages"] == 3
    assert m["messages_per_event"] == 2.0
    assert m["bytes_per_event"] == 760.0
