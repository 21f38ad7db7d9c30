"""Push cost, arrival paths and per-change convergence on hand-built observations."""

import math

import pytest

from simfed.metrics import Recorder
from simfed.metrics.topology import arrival_shares, change_convergence, push_stats

R = "!room"


def world(servers=("a", "b", "c", "d")) -> Recorder:
    r = Recorder()
    for s in servers:
        r.server_info(s, True, None)
        r.membership(0.0, s, R, True)
    return r


def create(r, t, server, eid):
    r.event_created(t, server, eid, R, "m.room.message", False, 1, 1, f"@u:{server}")
    r.event_outcome(t, server, eid, R, "accepted", "created")


def test_push_stats_count_copies_and_redundancy():
    r = world()
    create(r, 0.0, "a", "$e")
    # a relays through b: a -> b (origin), b -> c and b -> d (forward), plus a duplicate a -> c.
    r.push(0.0, "a", "b", "$e", "origin", 100)
    r.push(0.0, "a", "c", "$e", "origin", 100)
    r.push(10.0, "b", "c", "$e", "forward", 100)
    r.push(10.0, "b", "d", "$e", "forward", 100)
    for s, t in (("b", 5.0), ("c", 15.0), ("d", 20.0)):
        r.event_outcome(t, s, "$e", R, "accepted", "push")
    s = push_stats(r.tables(), end_t=100.0)
    assert s["push_messages_per_event"] == 4.0
    assert s["push_bytes_per_event"] == 400.0
    assert s["origin_copies_per_event"] == 2.0 and s["forward_copies_per_event"] == 2.0
    assert s["redundancy_factor"] == pytest.approx(4 / 3)


def test_arrival_shares_split_push_from_fetching():
    r = world()
    create(r, 0.0, "a", "$e1")
    create(r, 1.0, "a", "$e2")
    r.event_outcome(5.0, "b", "$e1", R, "accepted", "push")
    r.event_outcome(6.0, "c", "$e1", R, "accepted", "get_missing_events")
    r.event_outcome(7.0, "d", "$e1", R, "soft_failed", "anti_entropy")
    r.event_outcome(8.0, "b", "$e2", R, "accepted", "push")
    r.event_outcome(9.0, "b", "$e2", R, "accepted", "backfill")  # a later outcome: not an arrival
    s = arrival_shares(r.tables(), end_t=100.0)
    assert s["arrivals"] == {"anti_entropy": 0.25, "get_missing_events": 0.25, "push": 0.5}
    assert s["fetched_share"] == 0.5


def test_change_convergence_measures_each_window():
    r = world(servers=("a", "b"))
    for t, ha, hb in [(0.0, "x", "x"), (1000.0, "x", "y"), (3000.0, "y", "y"), (6000.0, "z", "y")]:
        r.state_sample(t, "a", R, True, 1, ha, 3, 0)
        r.state_sample(t, "b", R, True, 1, hb, 3, 0)
    r.perturbation(500.0, "link_down", "a-b")
    r.perturbation(4000.0, "link_up", "a-b")
    cc = change_convergence(r.tables(), end_t=8000.0).set_index("kind")
    # After link_down the servers disagree from 1000 and agree again at 3000: 2500 ms after the change.
    assert cc.loc["link_down", "state_convergence_ms"] == 2500.0
    assert cc.loc["link_down", "max_distinct_states"] == 2
    # After link_up they diverge at 6000 and still disagree at the end.
    assert math.isnan(cc.loc["link_up", "state_convergence_ms"])


def test_no_pushes_table_gives_nan_not_an_error():
    r = world()
    create(r, 0.0, "a", "$e")
    tables = {k: v for k, v in r.tables().items() if k != "pushes"}
    assert math.isnan(push_stats(tables, end_t=10.0)["redundancy_factor"])
