"""Readers (``workload.readers``): a timeline gap makes a reading client page
back after its delay, and the server backfills from the gap; with
``"none"`` the gap stays open."""

from __future__ import annotations

import pytest

from simfed.experiment.runner import run_scenario
from simfed.experiment.scenario import ScenarioError, load_scenario
from simfed.metrics import Recorder
from simfed.sim.world import World

DELAY_MS = 2_000.0


def scenario(readers: str, **workload):
    """4 servers racing their joins with a busy room: with a
    get_missing_events limit of 2, early gaps are bridged by state fetches
    (seed 2: hs1 and hs2 are left with holes)."""
    return load_scenario({
        "simulation": {"seed": 2, "duration": "60s"},
        "servers": {"count": 4, "users_per_server": 2},
        "homeserver": {"get_missing_events_limit": 2},
        "workload": {"messages_per_user_per_minute": 12, "state_changes_per_minute": 0, "stop": "45s",
                     "readers": readers, "reader_delay": f"{DELAY_MS / 1000}s", **workload},
    })


def run(readers: str, **workload) -> tuple[World, list[tuple[float, str, str]]]:
    world = World(scenario(readers, **workload), Recorder())
    announced: list[tuple[float, str, str]] = []
    hook = world.workload.on_holes

    def spy(hs, room, holes, via):
        announced.append((world.env.now, hs.name, via))
        hook(hs, room, holes, via)

    world.workload.on_holes = spy
    world.run()
    return world, announced


def holes_left(world: World) -> dict[str, int]:
    return {n: len(hs.holes(hs.rooms[world.room_id])) for n, hs in world.servers.items()}


def test_a_gap_makes_its_reader_backfill_after_the_delay_and_closes_it():
    world, announced = run("on_gap")
    pages = world.recorder.tables()["reader_pages"]
    assert len(pages) > 0 and pages["answered"].all() and pages["events"].sum() > 0
    gaps = [(t, s) for t, s, via in announced if via == "get_missing_events"]
    assert gaps, "the scenario no longer makes gaps"
    for server, rows in pages.groupby("server", observed=True):
        first = float(rows["t"].min())
        since = [first - t for t, s in gaps if s == server and t <= first]
        assert since and 0.5 * DELAY_MS <= min(since) <= 1.5 * DELAY_MS, (server, since)
    assert sum(holes_left(world).values()) == 0
    assert world.servers["hs1"].counters["reader_pages"] == int((pages["server"] == "hs1").sum())


def test_without_readers_the_same_gaps_stay_open():
    world, announced = run("none")
    assert any(via == "get_missing_events" for _, _, via in announced)
    assert len(world.recorder.tables()["reader_pages"]) == 0
    assert sum(holes_left(world).values()) > 0


def test_a_reader_pages_at_most_reader_pages_times_per_gap():
    world, _ = run("on_gap", reader_pages=1)
    pages = world.recorder.tables()["reader_pages"]
    assert len(pages) > 0
    assert (pages.groupby(["server", "gap"], observed=True).size() == 1).all()


def test_readers_in_summary():
    on = run_scenario(scenario("on_gap"), out_dir=None, progress=False, plots=False).summary
    r = on["readers"]
    assert r["pages"] > 0 and r["gaps"] >= 1 and r["events_backfilled"] > 0 and r["unanswered_pages"] == 0
    assert on["events_lost"] == 0
    off = run_scenario(scenario("none"), out_dir=None, progress=False, plots=False).summary
    assert off["readers"] == {"gaps": 0, "pages": 0, "events_backfilled": 0, "unanswered_pages": 0, "servers": 0}
    assert off["events_lost"] == off["events_lost_in_gaps"] > 0


def test_backfill_asks_the_longest_joined_server_first():
    world, _ = run("none")
    hs = world.servers["hs2"]
    order = hs.longest_in_room(hs.rooms[world.room_id])
    assert order[0] == world.workload.creator_hs.name and "hs2" not in order
    assert sorted(order) == sorted(hs.joined_servers(hs.rooms[world.room_id]) - {"hs2"})


def test_reader_config_defaults_and_errors():
    w = load_scenario({}).workload
    assert (w.readers, w.reader_delay_ms, w.reader_pages) == ("on_gap", 1_000.0, 5)
    for key, value in (("readers", "sometimes"), ("reader_pages", 0), ("reader_delay", "0s")):
        with pytest.raises(ScenarioError) as info:
            load_scenario({"workload": {key: value}})
        msg = str(info.value)
        assert f"workload.{key}" in msg and str(value) in msg, msg
