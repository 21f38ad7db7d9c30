"""``[[adversaries]]``: the scenario section, the framework and the forgeries (issue 13)."""

from __future__ import annotations

import pytest

from simfed import simulate
from simfed.config import ConfigProblems, Scenario
from simfed.api import resolve_scenario
from simfed.experiment.scenario import ScenarioError

BASE = """
[simulation]
duration = "4m"
seed = 5
[servers]
count = 4
[workload]
stop = "3m"
"""


def _run(extra: str):
    res = simulate(BASE + extra)
    res.tables = res.recorder.tables()
    return res


def test_unknown_behaviour_and_foreign_parameter_are_refused_by_name():
    with pytest.raises(ScenarioError) as e:
        resolve_scenario(BASE + '[[adversaries]]\nserver = "hs3"\nbehaviour = "teleport"\n')
    assert "adversaries[0].behaviour" in str(e.value) and '"teleport"' in str(e.value)
    with pytest.raises(ScenarioError) as e:
        resolve_scenario(BASE + '[[adversaries]]\nserver = "hs3"\nbehaviour = "forge_user"\ncorrupt = "hash"\n')
    assert "adversaries[0].corrupt" in str(e.value)


def test_cross_references_are_checked():
    for entry, path in [('server = "hs9"\nbehaviour = "flood"', "adversaries[0].server"),
                        ('server = "hs3"\nbehaviour = "flood"\ntargets = ["hs0", "hsx"]', "adversaries[0].targets[1]"),
                        ('server = "hs3"\nbehaviour = "key_compromise"\nvictim = "hs3"', "adversaries[0].victim"),
                        ('server = "hs3"\nbehaviour = "flood"\nstart = "2m"\nend = "1m"', "adversaries[0].end")]:
        with pytest.raises(ScenarioError) as e:
            resolve_scenario(BASE + "[[adversaries]]\n" + entry + "\n")
        assert path in str(e.value), (entry, str(e.value))
    with pytest.raises((ConfigProblems, ValueError)):
        Scenario.model_validate({"servers": {"count": 2}, "adversaries": [
            {"server": "hs0", "behaviour": "flood"}, {"server": "hs1", "behaviour": "unauthorised"}]})


def test_forgeries_are_kept_out_of_every_honest_state():
    res = _run("""
[[adversaries]]
server = "hs3"
behaviour = "forge_user"
rate = 6
[[adversaries]]
server = "hs2"
behaviour = "unauthorised"
rate = 6
[[adversaries]]
server = "hs2"
behaviour = "bad_signature"
rate = 6
""")
    t = res.tables
    adv = t["adversary"]
    assert set(adv["behaviour"]) == {"forge_user", "unauthorised", "bad_signature"}
    assert adv["illegitimate"].all() and len(adv) >= 20
    forged = set(adv["event_id"])
    d = t["deliveries"]
    honest = {"hs0", "hs1"}
    got = d[d["event_id"].isin(forged) & d["server"].isin(honest)]
    assert len(got) > 0 and not (got["outcome"] == "accepted").any()
    assert set(got["reason"]) <= {"missing_signature", "bad_signature", "missing_prev_events"} | {
        r for r in got["reason"] if str(r).startswith("auth_events")}
    for name in honest:
        state = res.servers[name].rooms[res.room_id].current_state()
        assert not forged & set(state.values())
    digests = {res.servers[n].rooms[res.room_id].current_state() == res.servers["hs0"].rooms[res.room_id].current_state()
               for n in honest}
    assert digests == {True}


def test_hash_corruption_is_stored_redacted_never_altered():
    res = _run('[[adversaries]]\nserver = "hs3"\nbehaviour = "bad_signature"\ncorrupt = "hash"\nrate = 6\n')
    ids = set(res.tables["adversary"]["event_id"])
    assert ids
    held = 0
    for name in ("hs0", "hs1", "hs2"):
        room = res.servers[name].rooms[res.room_id]
        for eid in ids & set(room.events):
            held += 1
            assert room.events[eid].content == {}, (name, eid, room.events[eid].content)
    assert held > 0


def test_adversary_actions_fall_in_their_window_and_are_reproducible():
    extra = '[[adversaries]]\nserver = "hs3"\nbehaviour = "forge_user"\nrate = 20\nstart = "1m"\nend = "2m"\n'
    a, b = _run(extra), _run(extra)
    ta, tb = a.tables["adversary"], b.tables["adversary"]
    assert ta["t"].between(60_000, 120_000).all() and len(ta) >= 5
    assert ta["event_id"].tolist() == tb["event_id"].tolist()


def test_adversary_servers_users_still_send_messages():
    res = _run('[[adversaries]]\nserver = "hs3"\nbehaviour = "unauthorised"\n')
    ev = res.tables["events"]
    assert (ev["server"] == "hs3").any()
    assert "hs3" not in res.honest
