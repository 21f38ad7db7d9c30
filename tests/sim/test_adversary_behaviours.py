"""Equivocate, backdate, state_reset, flood and key_compromise (issue 13 item 3):
what each adversary does, and what honest servers must do about it."""

from __future__ import annotations

import pytest

from simfed import simulate
from simfed.api import resolve_scenario
from simfed.experiment.scenario import ScenarioError
from simfed.metrics.security import content_versions, security_measures

BASE = """
[simulation]
duration = "3m"
seed = 3
state_resolution = "{algo}"
[servers]
count = 5
users_per_server = 2
[workload]
stop = "2m"
"""
HONEST = ("hs0", "hs1", "hs2", "hs3")


def _run(entry: str, algo: str = "v2"):
    res = simulate(BASE.format(algo=algo) + '[[adversaries]]\nserver = "hs4"\n' + entry + "\n")
    res.tables = res.recorder.tables()
    res.security = security_measures(res.tables, honest=res.honest, end_t=res.end_t, states=res.recorder.states,
                                     versions=content_versions(res.servers, res.honest, res.room_id))
    return res


def _room(res, name):
    return res.servers[name].rooms[res.room_id]


def _sent(res, action=None):
    adv = res.tables["adversary"]
    if action is not None:
        adv = adv[adv["action"] == action]
    return [e for e in adv["event_id"].astype(str) if e]


def test_fork_sends_two_valid_versions_on_the_same_prevs_to_two_halves():
    res = _run('behaviour = "equivocate"\nmode = "fork"\nrate = 6')
    adv = res.tables["adversary"]
    pairs = list(adv.groupby("t"))
    assert len(pairs) >= 5
    for _, pair in pairs:
        a, b = (_room(res, "hs4").events.get(e) for e in pair["event_id"])
        assert len(pair) == 2 and a is not None
        targets = [set(t.split(",")) for t in pair["target"]]
        assert not targets[0] & targets[1] and targets[0] | targets[1] == set(HONEST)
    assert res.security["equivocations_seen"] >= 5
    assert res.security["illegitimate_in_state"] == 0
    states = {tuple(sorted(_room(res, n).current_state().items())) for n in HONEST}
    assert len(states) == 1


def test_same_id_leaves_honest_servers_holding_two_contents_of_one_id():
    res = _run('behaviour = "equivocate"\nmode = "same_id"\nrate = 6')
    adv = res.tables["adversary"]
    ids = set(adv["event_id"])
    assert len(adv) == 2 * len(ids) >= 10
    versions = content_versions(res.servers, res.honest, res.room_id)
    assert set(versions) <= ids and len(versions) >= 5
    for eid in versions:
        held = {n: _room(res, n).events[eid].content for n in HONEST if eid in _room(res, n).events}
        assert {} in held.values() and any(c.get("body", "").endswith("version A") for c in held.values())
        assert not any(c.get("body", "").endswith("altered") for c in held.values())
    assert res.security["content_divergence"] == len(versions)


@pytest.mark.parametrize("depth", ["low", "high"])
def test_backdated_events_are_accepted_with_the_claimed_time_and_depth(depth):
    res = _run(f'behaviour = "backdate"\nts_offset = "-30d"\ndepth = "{depth}"\nrate = 6')
    ids = _sent(res)
    assert len(ids) >= 5
    d = res.tables["deliveries"]
    got = d[d["event_id"].isin(ids) & d["server"].isin(HONEST)]
    assert (got["outcome"] == "accepted").all() and got["event_id"].nunique() == len(ids)
    ev = _room(res, "hs0").events[ids[0]]
    assert ev.origin_server_ts < res.servers["hs0"].now_ts() - 29 * 86_400_000
    if depth == "low":
        assert ev.depth == 1
    else:
        assert ev.depth > 1_000_000
        later = res.tables["events"]
        honest_after = later[(later["server"] == "hs0") & (later["created_at"] > 120_000)]
        assert honest_after.empty or honest_after["depth"].max() > 1_000_000


RESET = ('behaviour = "state_reset"\nstart = "10s"\nban_at = "30s"\nmerge_after = "30s"\nrate = 30')


def _member(res, name, user="@u0:hs4"):
    room = _room(res, name)
    return room.events[room.current_state()[("m.room.member", user)]].membership


@pytest.mark.parametrize("algo", ["v2", "v1"])
def test_state_reset_fails_under_v2_and_v1_the_ban_holds(algo):
    res = _run(RESET, algo)
    assert len(_sent(res, "fork")) >= 5 and len(_sent(res, "merge")) == 1
    assert {_member(res, n) for n in HONEST} == {"ban"}
    fork = set(_sent(res, "fork"))
    for n in HONEST:
        assert not fork & {_room(res, n).current_state()[("m.room.member", "@u0:hs4")]}
    if algo == "v2":
        assert res.security["illegitimate_in_state"] == 0
    d = res.tables["deliveries"]
    got = d[d["event_id"].isin(fork) & d["server"].isin(HONEST)]
    assert not (got["outcome"] == "accepted").any()


def test_state_reset_lets_the_ban_back_in_under_naive():
    res = _run(RESET, "naive")
    assert {_member(res, n) for n in HONEST} == {"join"}
    assert res.security["illegitimate_in_state_at_end"] >= 1


def test_state_reset_ban_must_come_after_start():
    with pytest.raises(ScenarioError) as e:
        resolve_scenario(BASE.format(algo="v2") + '[[adversaries]]\nserver = "hs4"\nbehaviour = "state_reset"\n'
                         'start = "1m"\nban_at = "30s"\n')
    assert "adversaries[0].ban_at" in str(e.value)


def test_valid_flood_is_accepted_everywhere():
    res = _run('behaviour = "flood"\nkind = "valid"\nbatch = 30\nrate = 2')
    ids = _sent(res)
    assert len(ids) >= 30
    for n in HONEST:
        assert set(ids) <= set(_room(res, n).events)


def test_unknown_prevs_cost_fetches_and_are_dropped():
    res = _run('behaviour = "flood"\nkind = "unknown_prevs"\nbatch = 20\nrate = 2')
    ids = _sent(res)
    assert len(ids) >= 20
    d = res.tables["deliveries"]
    got = d[d["event_id"].isin(ids) & d["server"].isin(HONEST)]
    assert set(got["outcome"]) == {"dropped"} and set(got["reason"]) == {"missing_prev_events"}
    asked = sum(res.servers[n].counters["request:get_missing_events"] for n in HONEST)
    assert asked >= len(ids) * len(HONEST)
    assert res.security["requests_made"] > asked


def test_huge_transactions_are_refused_whole_with_400():
    res = _run('behaviour = "flood"\nkind = "huge_txn"\nbatch = 60\nrate = 1')
    adv = res.tables["adversary"]
    answers = adv[adv["action"].str.startswith("huge_txn_answer")]
    assert len(answers) >= 4 and set(answers["action"]) == {"huge_txn_answer:400"}
    assert sum(res.servers[n].counters["txn_too_large"] for n in HONEST) == len(answers)
    small = _run('behaviour = "flood"\nkind = "huge_txn"\nbatch = 50\nrate = 1')
    small_answers = small.tables["adversary"]
    assert set(small_answers[small_answers["action"].str.startswith("huge_txn_answer")]["action"]) == {
        "huge_txn_answer:200"}


def test_key_compromise_events_verify_and_are_accepted():
    res = _run('behaviour = "key_compromise"\nvictim = "hs1"\nrate = 6\nstart = "30s"')
    ids = _sent(res)
    assert len(ids) >= 5
    for eid in ids:
        ev = _room(res, "hs0").events[eid]
        assert ev.sender.endswith(":hs1") and "hs1" in ev.signatures and "hs4" not in ev.signatures
    d = res.tables["deliveries"]
    got = d[d["event_id"].isin(ids) & d["server"].isin(HONEST)]
    assert set(got["outcome"]) == {"accepted"} and "hs1" not in set(got["server"][got["via"] == "push"])
    assert res.security["illegitimate_accepted"] == len(ids) == res.security["illegitimate_sent"]


def test_key_compromise_leave_gets_into_state():
    res = _run('behaviour = "key_compromise"\nvictim = "hs1"\nkind = "leave"\nrate = 6\nstart = "30s"')
    assert _member(res, "hs0", "@u0:hs1") == "leave" or _member(res, "hs0", "@u1:hs1") == "leave"
    assert res.security["illegitimate_in_state"] >= 1


def test_behaviours_are_reproducible():
    entry = 'behaviour = "equivocate"\nmode = "fork"\nrate = 6'
    a, b = _run(entry), _run(entry)
    assert a.tables["adversary"]["event_id"].tolist() == b.tables["adversary"]["event_id"].tolist()
    assert a.security == b.security


def test_state_reset_merge_resolves_as_synapse_does(oracle):
    """The resolution the merge forces on an honest server (v2), against Synapse's on the same DAG."""
    from oracle_client import resolved_map

    res = _run(RESET, "v2")
    [merge] = _sent(res, "merge")
    room = _room(res, "hs0")
    ev = room.events[merge]
    events = list(room.graph.events.values()) + list(room.graph.outliers.values())
    sets = [room.state_after(p) for p in ev.prev_events]
    # The fork's tip holds the banned user's join, the room's extremities the ban: a real conflict.
    assert {room.events[s[("m.room.member", "@u0:hs4")]].membership for s in sets} == {"join", "ban"}
    [theirs] = oracle.resolve([e.pdu_with_id() for e in events], [[sorted(s.values()) for s in sets]], "11",
                              rejected={e: "auth_error" for e in room.rejected})
    want = resolved_map(theirs)
    assert room.resolve(sets) == want
    assert room.events[want[("m.room.member", "@u0:hs4")]].membership == "ban"
