"""``withhold``: children pushed, parents never given out (issue 13 item 3).

Honest servers must drop the children (and keep the same state), the run
must go on, and the cost to honest events -- the room worker held up by each
silent ``/get_missing_events`` -- must show in the measures.
"""

from __future__ import annotations

import pytest

from simfed import simulate
from simfed.metrics.convergence import event_convergence

BASE = """
[simulation]
duration = "6m"
seed = 4
[servers]
count = 5
[workload]
stop = "3m"
messages_per_user_per_minute = 2
"""
HONEST = {"hs0", "hs1", "hs2", "hs3"}


def _adv(**params) -> str:
    lines = ['[[adversaries]]', 'server = "hs4"', 'behaviour = "withhold"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in params.items()]
    return "\n".join(lines) + "\n"


def _run(extra: str):
    res = simulate(BASE + extra)
    res.tables = res.recorder.tables()
    return res


def _honest_events(res):
    ec = event_convergence(res.tables, honest=HONEST)
    return ec[ec["creator"].isin(HONEST)]


@pytest.fixture(scope="module")
def silent():
    return _run(_adv(rate=2))


def test_children_are_dropped_and_honest_servers_agree(silent):
    res = silent
    assert res.completed
    adv = res.tables["adversary"]
    hidden = set(adv.loc[adv["action"] == "hide", "event_id"])
    children = set(adv.loc[adv["action"] == "push_child", "event_id"])
    assert len(hidden) == 5 * len(children) and children
    assert not adv["illegitimate"].any()
    d = res.tables["deliveries"]
    at_honest = d[d["server"].isin(HONEST)]
    got = at_honest[at_honest["event_id"].isin(children)]
    assert set(got["outcome"]) == {"dropped"} and set(got["reason"]) == {"missing_prev_events"}
    assert not at_honest["event_id"].isin(hidden).any(), "a kept-back event reached an honest server"
    states = {tuple(sorted(res.servers[n].rooms[res.room_id].current_state().items())) for n in HONEST}
    assert len(states) == 1
    for n in HONEST:
        assert not (hidden | children) & set(res.servers[n].rooms[res.room_id].graph.events)


def test_silence_delays_honest_events_and_a_404_does_not(silent):
    base = _honest_events(_run(""))
    slow = _honest_events(silent)
    quick = _honest_events(_run(_adv(rate=2, answer="not_found")))
    assert len(base) == len(slow) == len(quick) > 30
    # a lost event counts as never converged
    p50 = {k: v["convergence_ms"].fillna(float("inf")).median()
           for k, v in (("base", base), ("slow", slow), ("quick", quick))}
    # Each silent request holds up the receiving room for its 60 s timeout.
    assert p50["slow"] > 20_000 > 20 * p50["base"], p50
    assert p50["quick"] < 2 * p50["base"] + 100, p50
    assert slow["lost"].sum() > 0 and quick["lost"].sum() == base["lost"].sum() == 0
    adv = silent.tables["adversary"]
    assert (adv["action"] == "silence:get_missing_events").sum() > 0
    assert sum(silent.servers[n].counters["request_failed:get_missing_events"] for n in HONEST) > 0


def test_get_missing_events_is_tried_once_as_synapse_does():
    def silences_and_failures(extra: str) -> tuple[int, int]:
        # Without the adversary's rate limiter, every failed request is one it kept silent.
        res = _run(_adv(rate=1) + extra + "[federation.rate_limit]\nenabled = false\n")
        adv = res.tables["adversary"]
        silences = int((adv["action"] == "silence:get_missing_events").sum())
        return silences, sum(res.servers[n].counters["request_failed:get_missing_events"] for n in HONEST)

    once, failed = silences_and_failures("")
    # one attempt a failure; at most one request per honest room worker still waiting at the end
    assert failed > 0 and failed <= once <= failed + len(HONEST)
    tries, failed4 = silences_and_failures("[homeserver]\nget_missing_events_retries = 3\n")
    assert failed4 > 0 and 4 * failed4 <= tries <= 4 * failed4 + 4 * len(HONEST)


def test_only_requests_that_would_reveal_a_kept_back_event_are_withheld(silent):
    b = silent.servers["hs4"].behaviours[0]
    room = silent.servers["hs4"].rooms[silent.room_id]
    adv = silent.tables["adversary"]
    child = adv.loc[adv["action"] == "push_child", "event_id"].iloc[0]
    hidden = room.graph[child].prev_events[0]
    assert hidden in b.hidden
    rid = silent.room_id
    assert b.reveals("hs0", "event", {"event_id": hidden}) == hidden
    assert b.reveals("hs0", "state_ids", {"room_id": rid, "event_id": hidden}) == hidden
    assert b.reveals("hs0", "get_missing_events", {"room_id": rid, "latest_events": [child], "limit": 10}) in b.hidden
    assert b.reveals("hs0", "backfill", {"room_id": rid, "v": [child], "limit": 10}) in b.hidden
    create = min(room.graph.events.values(), key=lambda e: e.depth).event_id
    assert b.reveals("hs0", "event", {"event_id": create}) is None
    assert b.reveals("hs0", "make_join", {"room_id": rid, "user_id": "@x:hs0"}) is None
