"""Security measures (issue 13 item 5): hand-built tables, then whole runs
with their paired baseline."""

from __future__ import annotations

import pytest

from simfed.api import resolve_scenario
from simfed.experiment.results import security_lines
from simfed.experiment.runner import run_scenario, without_adversaries
from simfed.metrics import Recorder
from simfed.metrics.security import SECURITY_KEYS, caused_by_adversaries, request_counts, security_measures

R = "!room"


def _world() -> Recorder:
    r = Recorder()
    for s, honest in (("a", True), ("b", True), ("x", False)):
        r.server_info(s, honest, None)
        r.membership(0.0, s, R, True)
    return r


def test_illegitimate_events_are_counted_where_they_got_in():
    r = _world()
    r.adversary_action(1.0, "x", "unauthorised", "send", "$bad1", "a,b", True)
    r.adversary_action(2.0, "x", "unauthorised", "send", "$bad2", "a,b", True)
    r.adversary_action(3.0, "x", "backdate", "send", "$ok", "a,b", False)
    r.event_outcome(5.0, "a", "$bad1", R, "accepted", "push")
    r.event_outcome(5.0, "b", "$bad2", R, "rejected", "push", "auth")
    r.event_outcome(5.0, "x", "$bad2", R, "accepted", "created")  # the adversary's own copy does not count
    r.event_outcome(5.0, "b", "$ok", R, "accepted", "push")
    # a holds $bad1 in its state at t=10 only; x (not honest) holds $bad2 in its state.
    r.state_sample(10.0, "a", R, True, 1, "h1", 1, 0, state={("m.room.member", "@x:x"): "$bad1"})
    r.state_sample(20.0, "a", R, True, 1, "h0", 1, 0, state={("m.room.member", "@x:x"): "$old"})
    r.state_sample(20.0, "x", R, True, 1, "h2", 1, 0, state={("m.room.member", "@x:x"): "$bad2"})
    sec = security_measures(r.tables(), end_t=30.0, states=r.states)
    assert set(sec) == set(SECURITY_KEYS)
    assert sec["adversary_servers"] == 1
    assert (sec["adversarial_events"], sec["adversarial_accepted"]) == (3, 2)
    assert (sec["illegitimate_sent"], sec["illegitimate_accepted"]) == (2, 1)
    assert (sec["illegitimate_in_state"], sec["illegitimate_in_state_at_end"]) == (1, 0)
    assert sec["content_divergence"] is None and sec["baseline"] is None and sec["caused"] is None


def test_a_fork_is_seen_only_when_both_versions_reach_honest_servers():
    r = _world()
    for t, ids in ((1.0, ("$a1", "$b1")), (2.0, ("$a2", "$b2"))):
        for eid in ids:
            r.adversary_action(t, "x", "equivocate", "fork", eid, "a")
    r.event_outcome(5.0, "a", "$a1", R, "accepted", "push")
    r.event_outcome(6.0, "b", "$b1", R, "accepted", "push")
    r.event_outcome(6.0, "b", "$a2", R, "accepted", "push")
    r.event_outcome(6.0, "x", "$b2", R, "accepted", "created")
    assert security_measures(r.tables(), end_t=30.0, versions={"$s": 2})["equivocations_seen"] == 1 + 1


def test_requests_count_what_honest_servers_sent_and_were_delivered():
    r = _world()
    r.message(0.0, 1.0, "get_missing_events", "a", "x", 10, True)
    r.message(1.0, 2.0, "get_missing_events_response", "x", "a", 10, True)
    r.message(0.0, 1.0, "transaction", "x", "b", 10, True)
    r.message(0.0, 1.0, "transaction", "x", "a", 10, False)
    r.message(40.0, 41.0, "transaction", "a", "b", 10, True)  # after the end
    assert request_counts(r.tables(), {"a", "b"}, 30.0) == {"requests_made": 1, "requests_served": 1}


def test_caused_is_run_minus_baseline():
    sec = {"adversarial_events": 4, "requests_made": 30, "requests_served": 20}
    run = {"events_lost": 3, "event_convergence_ms": {"p50": 150.0, "p95": None}}
    base = {"events_lost": 1, "event_convergence_ms": {"p50": 100.0, "p95": 900.0}}
    out = caused_by_adversaries(sec, run, base, {"requests_made": 10, "requests_served": 20})
    assert out["caused"] == {"events_lost": 2, "p50_convergence_ms": 50.0, "p95_convergence_ms": None,
                             "requests": 20, "work_amplification": 5.0}
    assert out["baseline"]["event_convergence_ms"] == {"p50": 100.0, "p95": 900.0}


SMALL = """
[simulation]
duration = "2m"
seed = 2
[servers]
count = 4
[workload]
stop = "1m"
"""


def test_a_run_with_adversaries_reports_security_against_its_paired_baseline():
    sc = resolve_scenario(SMALL + '[[adversaries]]\nserver = "hs3"\nbehaviour = "flood"\nkind = "unknown_prevs"\n'
                                  'batch = 10\nrate = 3\n')
    res = run_scenario(sc, out_dir=None, progress=False, plots=False)
    sec = res.security
    assert set(sec) == set(SECURITY_KEYS) and res.summary["security"] == sec
    assert sec["adversarial_events"] >= 10 and sec["content_divergence"] == 0
    assert sec["baseline"] is not None and sec["caused"]["requests"] > sec["adversarial_events"]
    assert sec["caused"]["work_amplification"] == sec["caused"]["requests"] / sec["adversarial_events"]
    (label, text), = security_lines(res.summary)
    assert label == "security" and "vs paired baseline" in text
    assert "security" in res.report()
    off = run_scenario(resolve_scenario(SMALL + '[metrics]\npaired_baseline = false\n[[adversaries]]\n'
                                                'server = "hs3"\nbehaviour = "flood"\nkind = "unknown_prevs"\n'
                                                'batch = 10\nrate = 3\n'),
                       out_dir=None, progress=False, plots=False)
    assert off.security["baseline"] is None and off.security["caused"] is None
    assert {k: v for k, v in off.security.items() if k not in ("baseline", "caused")} == {
        k: v for k, v in sec.items() if k not in ("baseline", "caused")}


def test_a_run_without_adversaries_has_zero_measures_and_no_security_line():
    res = run_scenario(resolve_scenario(SMALL), out_dir=None, progress=False, plots=False)
    sec = res.security
    assert sec["adversary_servers"] == sec["adversarial_events"] == sec["illegitimate_in_state"] == 0
    assert sec["baseline"] is None and security_lines(res.summary) == []
    assert "security" not in res.report()


def test_legacy_malicious_forgeries_are_in_the_adversary_table_and_never_in_state():
    res = run_scenario(resolve_scenario(SMALL.replace("count = 4", 'count = 4\nmalicious = ["hs3"]')),
                       out_dir=None, progress=False, plots=False)
    adv = res.tables["adversary"]
    assert len(adv) > 0 and set(adv["behaviour"]) == {"malicious"} and adv["illegitimate"].all()
    assert res.security["illegitimate_sent"] == len(adv) and res.security["illegitimate_in_state"] == 0
    assert res.security["caused"] is not None


@pytest.mark.parametrize("entry", ['behaviour = "forge_user"\nrate = 6', 'behaviour = "equivocate"\nrate = 6'])
def test_the_baseline_keeps_every_honest_draw(entry):
    """Common random numbers: without the adversary, honest servers create the same events in number."""
    sc = resolve_scenario(SMALL + f'[[adversaries]]\nserver = "hs3"\n{entry}\n')
    base = without_adversaries(sc)
    assert not base.adversaries and base.simulation.seed == sc.simulation.seed
    runs = [run_scenario(s, out_dir=None, progress=False, plots=False) for s in (sc, base)]
    counts = [r.tables["events"].groupby("server", observed=True).size().to_dict() for r in runs]
    assert {k: v for k, v in counts[0].items() if k != "hs3"} == {k: v for k, v in counts[1].items() if k != "hs3"}


def test_sweep_rows_carry_the_security_figures():
    from simfed.experiment.sweep_stats import HEADLINE_COLUMNS, flatten_summary

    sec = {"illegitimate_in_state": 2, "equivocations_seen": 3, "content_divergence": 1,
           "caused": {"events_lost": -1, "p95_convergence_ms": 12.5, "requests": 40, "work_amplification": 4.0}}
    row = flatten_summary({"security": sec})
    assert set(row) == set(HEADLINE_COLUMNS)
    assert (row["security_illegitimate_in_state"], row["security_equivocations_seen"],
            row["security_content_divergence"]) == (2, 3, 1)
    assert (row["security_caused_events_lost"], row["security_caused_p95_convergence_ms"],
            row["security_caused_requests"], row["security_work_amplification"]) == (-1, 12.5, 40, 4.0)
    empty = flatten_summary({"security": {**sec, "caused": None}})
    assert empty["security_caused_requests"] is None and empty["security_illegitimate_in_state"] == 2
