"""The simulator's shortcuts are exact: disabling them changes nothing.

simfed computes content-pinned results once for all servers (a shared memo
of states and decisions, complete auth chains, answers derived from one
state map), memoises auth checks by content, skips resolutions whose
outcome is known (unconflicted auth keys) and resolves a server's current
state only when something reads it (the work is counted when it persists). These tests run the same seeded,
conflict-heavy scenario with each shortcut turned off and demand identical
observations. A malicious server in it makes honest servers reject events
too, so shared rejections are covered. Each server keeps its own auth chain
index over the events it holds; it reads the room's shared complete chains
only while it holds the auth events of everything it holds.
"""

from __future__ import annotations

import pandas as pd
import pytest

from simfed.experiment.scenario import load_scenario
from simfed.protocol import auth as auth_module
from simfed.protocol import room as room_module
from simfed.protocol.authchain import AuthChainIndex
from simfed.sim import homeserver as hs_module
from simfed.sim.world import simulate

TABLES = ("events", "deliveries", "state", "traffic", "membership")


def conflict_heavy(algorithm: str):
    return load_scenario({
        "simulation": {"seed": 11, "duration": "12m", "state_resolution": algorithm},
        "servers": {"count": 7, "users_per_server": 3, "malicious": ["hs6"]},
        "network": {"latency": {"model": "lognormal", "median": "300ms", "sigma": 0.8}, "request_loss": 0.05,
                    "partitions": [{"start": "1m", "end": "3m", "groups": [["hs0", "hs1", "hs2"], ["hs3", "hs4", "hs5"]]}]},
        "workload": {"messages_per_user_per_minute": 3, "state_changes_per_minute": 12, "stop": "5m"},
    })


def tables(sc):
    t = simulate(sc).recorder.tables()
    return {name: t[name].drop(columns="run_id") for name in TABLES}


def assert_same(a, b):
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


@pytest.mark.parametrize("algorithm", ["v2", "v1"])
def test_skipping_resolution_for_unconflicted_auth_keys_is_exact(monkeypatch, algorithm):
    sc = conflict_heavy(algorithm)
    fast = tables(sc)
    monkeypatch.setattr(room_module, "_KEEPS_UNCONFLICTED", frozenset())
    assert_same(fast, tables(sc))


@pytest.mark.parametrize("algorithm", ["v2", "v1"])
def test_resolving_current_state_only_when_read_is_exact(monkeypatch, algorithm):
    sc = conflict_heavy(algorithm)
    deferring = room_module.RoomState.count_current_state
    deferred = []

    def counted(self):
        deferring(self)
        deferred.append(type(self._current) is room_module._Owed)

    monkeypatch.setattr(room_module.RoomState, "count_current_state", counted)
    lazy = tables(sc)
    monkeypatch.setattr(room_module.RoomState, "count_current_state", room_module.RoomState.current_state)
    assert_same(lazy, tables(sc))
    assert sum(deferred) > 50


def test_reading_one_key_without_resolving_the_state_is_exact(monkeypatch):
    sc = conflict_heavy("v2")
    one_key = room_module.resolve_key_v2
    answered = []

    def counted(*args, **kwargs):
        got = one_key(*args, **kwargs)
        answered.append(got is not room_module.UNDECIDED)
        return got

    monkeypatch.setattr(room_module, "resolve_key_v2", counted)
    fast = tables(sc)
    assert sum(answered) > 20
    monkeypatch.setattr(room_module.RoomState, "one_key_reads", False)
    assert_same(fast, tables(sc))


def test_sharing_results_between_servers_is_exact(monkeypatch):
    sc = conflict_heavy("v2")
    shared = tables(sc)
    original = hs_module.Homeserver.new_room_state

    def private(self, room_id):
        room = original(self, room_id)
        room.shared = None
        room.graph.auth_chains = AuthChainIndex(room.graph.get)
        return room

    monkeypatch.setattr(hs_module.Homeserver, "new_room_state", private)
    assert_same(shared, tables(sc))


@pytest.mark.parametrize("algorithm", ["v2", "v1"])
def test_memoised_auth_checks_are_exact(monkeypatch, algorithm):
    sc = conflict_heavy(algorithm)
    auth_module.clear_auth_memo()
    memo = tables(sc)
    monkeypatch.setattr(auth_module, "AUTH_MEMO_MAX", 0)
    assert_same(memo, tables(sc))


def test_shared_auth_chains_are_exact(monkeypatch):
    sc = conflict_heavy("v2")
    shared = tables(sc)
    original = hs_module.Homeserver.new_room_state

    def own_chains(self, room_id):
        room = original(self, room_id)
        room.graph.auth_chains = AuthChainIndex(room.graph.get)
        return room

    monkeypatch.setattr(hs_module.Homeserver, "new_room_state", own_chains)
    assert_same(shared, tables(sc))


def test_shared_state_chains_are_exact(monkeypatch):
    """The auth difference from whole state maps' chains, kept by the maps'
    identity for all servers, against walking each resolution's sets."""
    sc = conflict_heavy("v2")
    state_chain = AuthChainIndex.state_chain
    used = []

    def counted(self, *args):
        got = state_chain(self, *args)
        used.append(got is not None)
        return got

    monkeypatch.setattr(AuthChainIndex, "state_chain", counted)
    shared = tables(sc)
    assert sum(used) > 100
    monkeypatch.setattr(AuthChainIndex, "state_chain", lambda self, *args: None)
    assert_same(shared, tables(sc))


def test_kept_item_sets_of_state_maps_are_exact(monkeypatch):
    """Conflicted keys and counts from item sets kept by the maps' identity,
    against the maps' own item views."""
    from simfed.protocol.stateres import ItemSets

    sc = conflict_heavy("v2")
    call = ItemSets.__call__
    used = []

    def counted(self, state):
        used.append(1)
        return call(self, state)

    monkeypatch.setattr(ItemSets, "__call__", counted)
    kept = tables(sc)
    assert len(used) > 100
    monkeypatch.setattr(ItemSets, "__call__", lambda self, state: frozenset(state.items()))  # made anew each time
    assert_same(kept, tables(sc))


def test_kept_conflicted_pairs_of_recent_map_combinations_are_exact(monkeypatch):
    """The conflicted pairs of a combination of maps, kept for the next
    count, one-key read or resolution of the same maps, against none kept."""
    from simfed.protocol.stateres import ItemSets

    sc = conflict_heavy("v2")
    kept_answers = ItemSets.conflicted_pairs
    hits = []

    def counted(self, state_sets):
        hits.append(frozenset(map(id, state_sets)) in self._conflicted)
        return kept_answers(self, state_sets)

    monkeypatch.setattr(ItemSets, "conflicted_pairs", counted)
    kept = tables(sc)
    assert sum(hits) > 50
    monkeypatch.setattr(ItemSets, "MAX_CONFLICTED", 0)
    assert_same(kept, tables(sc))


def test_the_scenario_exercises_the_shortcuts():
    res = simulate(conflict_heavy("v2"))
    t = res.recorder.tables()
    d = t["deliveries"]
    assert (d["outcome"] == "soft_failed").sum() > 20
    honest = d["server"].isin(sorted(res.honest))
    assert ((d["outcome"] == "rejected") & honest).sum() > 5
    assert sum(s.rooms[res.room_id].resolutions for s in res.servers.values()) > 100
    memo = res.servers["hs0"].world._memos[res.room_id]
    assert memo.hits > 100
    assert len(memo.chains) > 50 and len(memo.of_state) > 10
    assert auth_module._auth_memo
    assert t["state"].groupby("t")["state_hash"].nunique().max() > 1


def test_auth_chains_are_walked_over_held_events_only():
    res = simulate(conflict_heavy("v2"))
    indexes = {id(s.rooms[res.room_id].graph.auth_chains) for s in res.servers.values()}
    assert len(indexes) == len(res.servers)
    for s in res.servers.values():
        room = s.rooms[res.room_id]
        for eid in list(room.graph.events)[:50]:
            assert room.graph.auth_chain(eid) <= set(room.events), s.name
