"""Measures that cannot look good while the system is broken (issue 12 §4),
on small hand-built recorder inputs."""

import json
import math
import re

import numpy as np
import pytest

from simfed.experiment.results import headline_lines
from simfed.metrics import (
    Recorder,
    censored_percentiles,
    delivery_latency,
    event_convergence,
    headline,
    lost_in_gaps,
)
from simfed.metrics.agreement import fault_agreement
from simfed.metrics.outcomes import outcome_agreement

R = "!room"


def world(servers=("a", "b", "c")) -> Recorder:
    r = Recorder()
    for s in servers:
        r.server_info(s, True, None)
        r.membership(0.0, s, R, True)
    return r


def create(r, t, server, eid, **kw):
    r.event_created(t, server, eid, R, kw.get("type", "m.room.message"),
                    kw.get("is_state", False), 1, 1, f"@u:{server}")
    r.event_outcome(t, server, eid, R, "accepted", "created")


def sample(r, t, server, h, up=True):
    r.state_sample(t, server, R, up, 1, h, 3, 0)


def agreeing_states(r, servers=("a", "b", "c"), t=0.0):
    for s in servers:
        sample(r, t, s, "h0")


# -- 1. outliers count only once they enter the room DAG ------------------

def test_outlier_delivery_counts_only_from_dag_entry():
    r = world()
    create(r, 0.0, "a", "$e")
    r.event_outcome(10.0, "b", "$e", R, "accepted", "push")
    # c fetches $e as a state event at 50 ms, and only at 900 ms pulls it into its DAG.
    r.event_outcome(50.0, "c", "$e", R, "accepted", "state_fetch", stage="outlier")
    r.event_outcome(900.0, "c", "$e", R, "accepted", "backfill")
    conv = event_convergence(r.tables(), end_t=5000.0)
    assert conv["convergence_ms"].item() == 900.0
    lat = delivery_latency(r.tables(), end_t=5000.0).set_index("server")
    assert lat.loc["c", "latency_ms"] == 900.0 and lat.loc["c", "via"] == "backfill"


def test_outlier_that_never_enters_the_dag_is_lost():
    r = world()
    create(r, 0.0, "a", "$e")
    r.event_outcome(10.0, "b", "$e", R, "accepted", "push")
    r.event_outcome(50.0, "c", "$e", R, "accepted", "send_join", stage="outlier")
    agreeing_states(r)
    conv = event_convergence(r.tables(), end_t=5000.0)
    assert conv["lost"].item() and math.isnan(conv["convergence_ms"].item())
    h = headline(r.tables(), end_t=5000.0)
    assert h["events_lost"] == 1 and h["converged"] is False


def test_lost_events_held_only_as_outliers_are_counted_as_in_gaps():
    r = world()
    create(r, 0.0, "a", "$gap")   # b has it in its DAG, c only as an outlier: in a gap at c
    r.event_outcome(10.0, "b", "$gap", R, "accepted", "push")
    r.event_outcome(50.0, "c", "$gap", R, "accepted", "state_fetch", stage="outlier")
    create(r, 0.0, "a", "$never")  # b has it as an outlier, c never saw it: lost outright
    r.event_outcome(60.0, "b", "$never", R, "accepted", "state_fetch", stage="outlier")
    create(r, 0.0, "a", "$ok")
    for s_ in ("b", "c"):
        r.event_outcome(20.0, s_, "$ok", R, "accepted", "push")
    agreeing_states(r)
    assert lost_in_gaps(r.tables(), end_t=5000.0) == {"$gap"}
    h = headline(r.tables(), end_t=5000.0)
    assert (h["events_lost"], h["events_lost_in_gaps"], h["converged"]) == (2, 1, False)
    assert dict(headline_lines(h))["events"] == "3 created, 2 lost (1 of them only as outliers, in timeline gaps)"


def test_lost_events_behind_a_backward_extremity_are_in_gaps():
    import pandas as pd

    r = world()
    create(r, 0.0, "a", "$old")      # c holds its child $new but not $old: $old is behind c's gap
    create(r, 1.0, "a", "$new")
    create(r, 2.0, "a", "$lone")     # nothing c holds cites $lone: it never reached c
    for eid in ("$old", "$new", "$lone"):
        r.event_outcome(10.0, "b", eid, R, "accepted", "push")
    r.event_outcome(20.0, "c", "$new", R, "accepted", "push")
    agreeing_states(r)
    tables = r.tables()
    prevs = {"$old": [], "$new": ["$old"], "$lone": ["$old"]}
    tables["pdus"] = pd.DataFrame({"run_id": "run", "event_id": list(prevs), "room_id": R,
                                   "pdu": [json.dumps({"prev_events": p}) for p in prevs.values()]})
    assert lost_in_gaps(tables, end_t=5000.0) == {"$old"}
    del tables["pdus"]
    assert lost_in_gaps(tables, end_t=5000.0) == set()  # without PDUs only outliers count


# -- 2. lost events make percentiles censored -----------------------------

def test_censored_percentiles_match_numpy_without_losses():
    vals = [5.0, 1.0, 9.0, 3.0, 7.0]
    p = censored_percentiles(vals)
    for q in (50, 95, 99):
        assert p[f"p{q}"] == pytest.approx(np.percentile(vals, q))
    assert p["censored"] == [] and p["events_lost"] == 0 and p["events"] == 5


def test_a_percentile_falling_on_a_lost_event_is_infinite():
    # 10 events, one lost: p50 is finite, p95/p99/max fall on the lost one.
    vals = [float(i) for i in range(1, 10)] + [math.inf]
    p = censored_percentiles(vals)
    assert p["p50"] == pytest.approx(5.5)
    assert p["p95"] == math.inf and p["max"] == math.inf
    assert p["censored"] == ["p95", "p99", "max"]
    assert p["events_lost"] == 1 and p["events"] == 10


def test_headline_percentiles_count_lost_events_and_say_so():
    r = world()
    agreeing_states(r)
    for i in range(4):
        create(r, 100.0 * i, "a", f"$e{i}")
        r.event_outcome(100.0 * i + 40, "b", f"$e{i}", R, "accepted", "push")
        if i < 3:  # c never gets $e3
            r.event_outcome(100.0 * i + 60, "c", f"$e{i}", R, "accepted", "push")
    h = headline(r.tables(), end_t=5000.0)
    ec = h["event_convergence_ms"]
    json.dumps(h, allow_nan=False)
    # Dropping the lost event would give p99 = max = 60 ms: it is +inf instead.
    assert ec["p50"] == 60.0
    assert ec["p99"] is None and ec["max"] is None
    assert "p99" in ec["censored"] and "max" in ec["censored"]
    assert ec["events_lost"] == h["events_lost"] == 1 and ec["events"] == 4
    text = dict(headline_lines(h))["event convergence"]
    assert "max lost" in text and "1 lost" in text


# -- 3. auth decisions must agree; soft-fail decisions may differ ---------

def converged_world():
    r = world()
    agreeing_states(r)
    create(r, 0.0, "a", "$e")
    r.event_outcome(10.0, "b", "$e", R, "accepted", "push")
    r.event_outcome(20.0, "c", "$e", R, "accepted", "push")
    return r


def test_auth_disagreement_means_not_converged():
    r = converged_world()
    assert headline(r.tables(), end_t=1000.0)["converged"] is True
    create(r, 100.0, "b", "$x")
    r.event_outcome(150.0, "a", "$x", R, "accepted", "push")
    r.event_outcome(160.0, "c", "$x", R, "rejected", "push", reason="auth_error")
    h = headline(r.tables(), end_t=1000.0)
    assert h["events_lost"] == 0 and h["state_converged"] is True
    assert h["auth_disagreements"] == 1
    assert h["converged"] is False
    assert "1 auth disagreements" in dict(headline_lines(h))["converged"]


def test_soft_fail_disagreement_is_counted_but_does_not_block():
    r = converged_world()
    create(r, 100.0, "b", "$x")
    r.event_outcome(150.0, "a", "$x", R, "soft_failed", "push")
    r.event_outcome(160.0, "c", "$x", R, "accepted", "push")
    h = headline(r.tables(), end_t=1000.0)
    assert h["soft_fail_disagreements"] == 1 and h["auth_disagreements"] == 0
    assert h["converged"] is True


def test_outlier_decisions_are_not_compared():
    r = converged_world()
    create(r, 100.0, "b", "$x")
    # c rejected $x as an outlier (own auth events only) then passed it in its DAG.
    r.event_outcome(120.0, "c", "$x", R, "rejected", "state_fetch", reason="auth_events", stage="outlier")
    r.event_outcome(150.0, "a", "$x", R, "accepted", "push")
    r.event_outcome(300.0, "c", "$x", R, "accepted", "get_missing_events")
    agree = outcome_agreement(r.tables(), end_t=1000.0).set_index("event_id")
    assert not agree.loc["$x", "auth_disagreement"]
    assert agree.loc["$x", "n_servers"] == 3


# -- 4. per-fault agreement times; the headline after the last fault ------

def faulty_world():
    r = world()
    agreeing_states(r)
    r.perturbation(1000.0, "partition_start", "a | b,c")
    sample(r, 1200.0, "a", "h1")          # diverges during the split
    r.perturbation(3000.0, "partition_heal", "")
    sample(r, 3500.0, "b", "h1")
    sample(r, 3800.0, "c", "h1")          # all agree 800 ms after the heal
    r.perturbation(5000.0, "crash", "c")
    sample(r, 5000.0, "c", "h1", up=False)
    r.perturbation(6000.0, "restart", "c")
    sample(r, 6000.0, "c", "h0")          # stale after restart
    sample(r, 6250.0, "c", "h1")          # caught up 250 ms later
    return r


def test_each_fault_gets_its_time_to_agree_again():
    fa = fault_agreement(faulty_world().tables(), end_t=9000.0).set_index("kind")
    assert not fa.loc["partition_start", "agreed"]
    assert fa.loc["partition_start", "until"] == "next_fault"
    assert fa.loc["partition_start", "distinct_states_at_end"] == 2
    assert fa.loc["partition_heal", "agreement_ms"] == 800.0
    assert fa.loc["crash", "agreement_ms"] == 0.0     # the others agree; c is down
    assert fa.loc["restart", "agreement_ms"] == 250.0
    assert fa.loc["restart", "until"] == "end"


def test_headline_answers_how_long_after_the_last_fault():
    h = headline(faulty_world().tables(), end_t=9000.0)
    assert h["state_convergence_after_last_fault_ms"] == 250.0
    assert h["last_fault"] == {"t": 6000.0, "kind": "restart", "detail": "c"}
    assert [f["kind"] for f in h["faults"]] == ["partition_start", "partition_heal", "crash", "restart"]
    lines = dict(headline_lines(h))
    assert lines["after last fault"] == "restart at 6.00 s: all agree after 250 ms"
    assert lines["  partition_heal at 3.00 s"] == "all agree after 800 ms"
    assert lines["  partition_start at 1.00 s"].startswith("NOT agreed before the next fault at 3.00 s")


def test_no_faults_is_said_not_zero():
    r = converged_world()
    h = headline(r.tables(), end_t=1000.0)
    assert h["state_convergence_after_last_fault_ms"] is None and h["last_fault"] is None
    assert dict(headline_lines(h))["after last fault"] == "no faults in this run"


def test_distinct_final_states_never_print_zero_ms():
    r = world()
    agreeing_states(r)
    create(r, 0.0, "a", "$e")
    r.event_outcome(10.0, "b", "$e", R, "accepted", "push")
    r.event_outcome(20.0, "c", "$e", R, "accepted", "push")
    r.perturbation(100.0, "partition_start", "a | b,c")
    sample(r, 150.0, "a", "h1")
    r.perturbation(200.0, "partition_heal", "")
    # the heal comes, a's branch never reaches b and c: two states to the end
    h = headline(r.tables(), end_t=9000.0)
    assert h["state_converged"] is False and h["converged"] is False
    assert h["state_convergence_after_last_fault_ms"] is None
    assert h["max_divergence"]["distinct_states_at_end"] == 2
    text = "\n".join(f"{k} {v}" for k, v in headline_lines(h))
    assert not re.search(r"(?<![0-9.])0 ms", text)
    assert "NEVER agreed again before the end" in text
    assert dict(headline_lines(h))["state convergence"] == "NO: 2 distinct states at the end"


# -- end to end: a real small run ------------------------------------------

@pytest.fixture(scope="module")
def small_run():
    from simfed.experiment.runner import run_scenario
    from simfed.experiment.scenario import load_scenario

    sc = load_scenario({
        "simulation": {"seed": 1, "duration": "3m"},
        "servers": {"count": 4, "users_per_server": 1},
        "network": {"latency": {"model": "lognormal", "median": "50ms", "sigma": 0.5},
                    "partitions": [{"start": "40s", "end": "1m20s", "groups": [["hs0", "hs1"], ["hs2", "hs3"]]}]},
        "workload": {"messages_per_user_per_minute": 2, "state_changes_per_minute": 2, "stop": "1m40s"},
    })
    return run_scenario(sc, out_dir=None, progress=False, plots=False)


def test_real_run_counts_joined_state_from_dag_entry(small_run):
    from simfed.metrics import held_at

    d = small_run.deliveries
    assert set(d["stage"].astype(object)) == {"outlier", "timeline"}  # joins store state as outliers
    outl = d[d["stage"] == "outlier"]
    held = held_at(small_run.tables, small_run.end_t).set_index(["event_id", "server"])
    timeline = d[d["stage"] == "timeline"].groupby(["event_id", "server"], observed=True)["t"].min()
    for key in zip(outl["event_id"].astype(object), outl["server"].astype(object)):
        if key in timeline.index:
            assert held.loc[key, "t"] == timeline[key]
        else:
            assert key not in held.index


def test_real_run_summary_is_consistent_and_honest(small_run):
    s = small_run.summary
    json.dumps(s, allow_nan=False)
    ec = s["event_convergence_ms"]
    assert ec["events_lost"] == s["events_lost"]
    assert ("max" in ec["censored"]) == (s["events_lost"] > 0)
    assert [f["kind"] for f in s["faults"]] == ["partition_start", "partition_heal"]
    assert s["last_fault"]["kind"] == "partition_heal"
    assert s["state_convergence_after_last_fault_ms"] == s["faults"][-1]["agreement_ms"]
    assert (s["state_convergence_after_last_fault_ms"] is None) == (not s["state_converged"])
    if s["converged"]:
        assert s["events_lost"] == 0 and s["state_converged"] and s["auth_disagreements"] == 0
    report = small_run.report()
    state_lines = [ln for ln in report.splitlines() if "state convergence" in ln or "last fault" in ln]
    if not s["state_converged"]:
        assert not any(re.search(r"(?<![0-9.])0 ms", ln) for ln in state_lines)
        assert "NEVER agreed again" in report
