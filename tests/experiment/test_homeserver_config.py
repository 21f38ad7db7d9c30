"""``[homeserver]`` and ``simulation.compat``: Synapse's defaults, every
HomeserverConfig field settable, clear errors, wired to every server."""

from __future__ import annotations

import dataclasses
import json

import pytest

from simfed.config import Scenario
from simfed.experiment.scenario import ScenarioError, json_schema, load_scenario
from simfed.metrics import Recorder
from simfed.sim import HomeserverConfig
from simfed.sim.world import World

#: HomeserverConfig fields set from [simulation] rather than [homeserver].
FROM_SIMULATION = {"room_version", "algorithm", "compat"}


def error_of(data: dict) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(data)
    return info.value


def world(data: dict) -> World:
    base = {"servers": {"count": 3}, "workload": {"messages_per_user_per_minute": 0, "state_changes_per_minute": 0}}
    return World(load_scenario({**base, **data}), Recorder())


def test_defaults_are_synapses_and_match_the_dataclass():
    sc = Scenario()
    assert sc.simulation.compat == "synapse"
    hs = sc.homeserver
    assert (hs.prev_events_max, hs.get_missing_events_limit, hs.fetch_retries, hs.backfill_limit) == (10, 10, 3, 100)
    assert hs.request_timeout_ms == 60_000 and hs.state_fetch_ratio == 0.1
    assert hs.dummy_events.enabled and hs.dummy_events.extremities_threshold == 10
    assert hs.dummy_events.interval_ms == 300_000 and not hs.dummy_events.push
    assert hs.gap_fill_retries == 0 and hs.history_backfill_ms == 0
    built = HomeserverConfig(**hs.homeserver_kwargs())
    assert built == HomeserverConfig()


def test_every_field_is_settable_from_the_scenario():
    kwargs = Scenario().homeserver.homeserver_kwargs()
    fields = {f.name for f in dataclasses.fields(HomeserverConfig)}
    assert set(kwargs) | FROM_SIMULATION == fields


def test_values_reach_every_server():
    w = world({
        "simulation": {"compat": "spec", "state_resolution": "v1"},
        "homeserver": {"prev_events_max": 3, "get_missing_events_limit": 7, "request_timeout": "20s",
                       "fetch_retries": 1, "state_fetch_ratio": 0.5, "backfill_limit": 30,
                       "dummy_events": {"enabled": False, "extremities_threshold": 4, "interval": "1m", "push": True},
                       "gap_fill_retries": 2, "gap_fill_backoff": "5s", "history_backfill": "2m"},
    })
    expected = HomeserverConfig(
        room_version="11", algorithm="v1", compat="spec", prev_events_max=3, get_missing_events_limit=7,
        request_timeout_ms=20_000.0, fetch_retries=1, state_fetch_ratio=0.5, backfill_limit=30,
        dummy_events=False, dummy_threshold=4, dummy_interval_ms=60_000.0, dummy_push=True,
        gap_fill_retries=2, gap_fill_backoff_ms=5_000.0, history_backfill_ms=120_000.0)
    for hs in w.servers.values():
        assert hs.config == expected
    w.workload.create_room()
    room = w.servers["hs0"].rooms[w.room_id]
    assert room.compat == "spec" and room.algorithm == "v1"


def test_default_run_resolves_in_synapse_mode():
    w = world({})
    w.workload.create_room()
    assert w.servers["hs0"].rooms[w.room_id].compat == "synapse"


@pytest.mark.parametrize("data, path, words", [
    ({"homeserver": {"gap_fill_retries": -1}}, "homeserver.gap_fill_retries", ["-1"]),
    ({"homeserver": {"state_fetch_ratio": 0}}, "homeserver.state_fetch_ratio", ["0"]),
    ({"homeserver": {"history_backfill": "soon"}}, "homeserver.history_backfill", ['"soon"']),
    ({"homeserver": {"dummy_events": {"threshold": 3}}}, "homeserver.dummy_events.threshold",
     ['did you mean "extremities_threshold"']),
    ({"homeserver": {"gap_fill_retry": 3}}, "homeserver.gap_fill_retry", ['did you mean "gap_fill_retries"']),
    ({"simulation": {"compat": "dendrite"}}, "simulation.compat", ['"dendrite"']),
    ({"federation": {"dummy_events": {"enabled": False}}}, "federation.dummy_events",
     ["homeserver.dummy_events"]),
    ({"federation": {"prev_events_max": 5}}, "federation.prev_events_max", ["homeserver.prev_events_max"]),
])
def test_bad_values_name_the_field_and_value(data, path, words):
    err = error_of(data)
    line = next(ln for ln in str(err).splitlines() if ln.startswith(f"{path}: "))
    for w in words:
        assert w in line, line


def test_schema_describes_the_section():
    schema = json.loads(json.dumps(json_schema()))
    assert "homeserver" in schema["properties"]
    props = schema["$defs"]["HomeserverSection"]["properties"]
    assert {"gap_fill_retries", "history_backfill", "dummy_events", "state_fetch_ratio"} <= set(props)
    assert "compat" in schema["$defs"]["SimulationConfig"]["properties"]
