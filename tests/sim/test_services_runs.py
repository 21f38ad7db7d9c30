"""Whole runs with services: off by default, deterministic, receipts batched
per room, scenario keys validated with their dotted paths."""

from __future__ import annotations

import pandas as pd
import pytest

from sim.test_services_presence import make_world, room_with, run
from simfed.config import Scenario
from simfed.experiment.results import WALL_CLOCK_KEYS
from simfed.experiment.runner import run_scenario
from simfed.experiment.scenario import ScenarioError, load_scenario
from simfed.metrics.services import SERVICE_KEYS, SERVICE_TABLE_COLUMNS

ALL_ON = {
    "presence": {"enabled": True, "lists": {"invites_per_user_per_hour": 4}},
    "typing": {"enabled": True},
    "receipts": {"enabled": True},
    "profiles": {"enabled": True, "changes_per_user_per_hour": 6},
    "directory": {"enabled": True, "moves_per_minute": 1, "deletes_per_minute": 0.5},
    "identity": {"enabled": True, "binds_per_user_per_hour": 20},
}


def small(services: dict | None = None, seed: int = 3) -> Scenario:
    data = {"simulation": {"duration": "4m", "seed": seed}, "servers": {"count": 4},
            "network": {"loss": 0.01}, "workload": {"stop": "2m", "join_spread": "20s"}}
    if services is not None:
        data["services"] = services
    return load_scenario(data)


def test_services_are_off_by_default_and_leave_runs_unchanged():
    assert not any(getattr(Scenario().services, k).enabled
                   for k in ("presence", "typing", "receipts", "profiles", "directory", "identity"))
    a = run_scenario(small(), out_dir=None, progress=False, plots=False)
    b = run_scenario(small({"presence": {"enabled": False}}), out_dir=None, progress=False, plots=False)
    for name in SERVICE_TABLE_COLUMNS:
        assert a.tables[name].empty
    for name in ("events", "deliveries", "traffic", "state"):
        pd.testing.assert_frame_equal(a.tables[name].drop(columns="run_id"), b.tables[name].drop(columns="run_id"))
    assert set(SERVICE_KEYS) <= set(a.summary)
    assert a.summary["presence"]["updates"] == 0 and a.summary["edus"] == {}


def test_same_scenario_and_seed_give_identical_service_tables():
    a = run_scenario(small(ALL_ON), out_dir=None, progress=False, plots=False)
    b = run_scenario(small(ALL_ON), out_dir=None, progress=False, plots=False)
    for name in (*SERVICE_TABLE_COLUMNS, "events", "traffic"):
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    strip = {*WALL_CLOCK_KEYS}
    assert {k: v for k, v in a.summary.items() if k not in strip} == \
        {k: v for k, v in b.summary.items() if k not in strip}
    for name in ("edus", "presence", "profiles", "directory", "identity"):
        assert not a.tables[name].empty, name
    assert a.summary["converged"] and a.summary["events_lost"] == 0
    c = run_scenario(small(ALL_ON, seed=4), out_dir=None, progress=False, plots=False)
    assert not c.tables["presence"].equals(a.tables["presence"])


def test_receipts_batched_into_one_edu_per_room_and_destination():
    w = make_world(servers=2, users=5, services={"receipts": {"enabled": True, "reads_per_user_per_minute": 0}})
    room_with(w, ["hs1"])
    for u in w.servers["hs0"].users[1:]:
        w.servers["hs0"].create_event(w.room_id, u, "m.room.member", {"membership": "join"}, u)
    run(w, 2_000)
    r = w.services.receipts
    seen: list[list[dict]] = []
    orig = w.services.on_edus
    w.services.on_edus = lambda hs, o, edus: (seen.append(list(edus)), orig(hs, o, edus))
    hs0 = w.servers["hs0"]
    for u in hs0.users:
        r.read(hs0, w.room_id, u)
    r.read(hs0, w.room_id, hs0.users[0])   # again: replaces its own entry
    run(w, 2_000)
    receipts = [e for txn in seen for e in txn if e["edu_type"] == "m.receipt"]
    assert len(receipts) == 1
    (content,) = [e["content"] for e in receipts]
    assert set(content[w.room_id]["m.read"]) == set(hs0.users)
    assert r.receipts[("hs1", w.room_id)] == r.receipts[("hs0", w.room_id)]


@pytest.mark.parametrize("override, path, value", [
    ("services.presence.enabld=true", "services.presence.enabld", "enabled"),
    ("services.presence.sessions_per_user_per_hour=-1", "services.presence.sessions_per_user_per_hour", "-1"),
    ("services.presence.lists.accept_probability=1.5", "services.presence.lists.accept_probability", "1.5"),
    ("services.identity.count=0", "services.identity.count", "0"),
    ("services.directory.cache_ttl=\"soon\"", "services.directory.cache_ttl", "soon"),
    ("services.typing.timeout=\"0s\"", "services.typing.timeout", "0s"),
])
def test_bad_service_keys_name_their_path(override, path, value):
    with pytest.raises(ScenarioError) as info:
        load_scenario({}, overrides=[override])
    text = str(info.value)
    assert path in text and value in text


def test_cross_section_checks():
    with pytest.raises(ScenarioError, match=r"services\.presence\.idle_after.*shorter than"):
        load_scenario({"services": {"presence": {"enabled": True, "idle_after": "30s"}}})
    with pytest.raises(ScenarioError, match=r"services\.typing\.remote_expiry"):
        load_scenario({"services": {"typing": {"enabled": True, "timeout": "2m", "remote_expiry": "1m"}}})
    with pytest.raises(ScenarioError, match=r"services\.identity\.count.*name of a homeserver"):
        load_scenario({"servers": {"count": 2, "names": ["is0", "x"]}, "services": {"identity": {"enabled": True}}})
    # Partitions may name identity servers (network nodes), but only when they exist.
    part = {"network": {"partitions": [{"start": "1s", "end": "2s", "groups": [["is0"], ["hs0"]]}]}}
    load_scenario({**part, "services": {"identity": {"enabled": True}}})
    with pytest.raises(ScenarioError, match=r"network\.partitions\[0\]\.groups\[0\]\[0\].*\"is0\" is not a server"):
        load_scenario(part)
