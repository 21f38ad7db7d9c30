"""Simulated federation end to end: delivery, convergence after faults, gap
bridging, forged events, determinism (issue: simulated federation)."""

from __future__ import annotations

import pandas as pd
import pytest

from simfed.experiment.scenario import load_scenario
from simfed.metrics import headline
from simfed.sim.transport import M_FORBIDDEN, M_NOT_FOUND
from simfed.sim import homeserver as hs_module
from simfed.sim.world import simulate


def scenario(seed: int = 0, **sections):
    base = {
        "simulation": {"seed": seed, "duration": "20m"},
        "servers": {"count": 5, "users_per_server": 2},
        "network": {"latency": {"model": "lognormal", "median": "50ms", "sigma": 0.5}},
        "workload": {"messages_per_user_per_minute": 2, "state_changes_per_minute": 2, "stop": "4m"},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v) if isinstance(v, dict) else base.__setitem__(k, v)
    return load_scenario(base)


# Opt-in deviations from Synapse: retry a failed gap fill, and readers
# paginating back fill the holes that get_missing_events' limit leaves.
# Tests of convergence under whole-request loss (a nemesis) use them.
RECOVERY = {"gap_fill_retries": 8, "history_backfill": "1m"}


def held(res, server):
    room = res.servers[server].rooms[res.room_id]
    return set(room.status) | set(room.graph.outliers)


def in_room(res, n):
    hs = res.servers[n]
    return res.room_id in hs.rooms and any(hs.is_joined(res.room_id, u) for u in hs.users)


def assert_converged(res, *, gaps_ok: bool = False):
    """Honest servers still in the room agree; every event reached every
    server that should hold it (simfed.metrics' definitions). With
    ``gaps_ok``, events held only in timeline gaps (Synapse's concurrent joins
    and bounded get_missing_events leave some as outliers) are allowed, but
    none may have failed to reach a server outright."""
    honest = sorted(n for n in res.honest if in_room(res, n))
    assert len(honest) >= 2
    states = res.final_states()
    first = states[honest[0]]
    for n in honest[1:]:
        assert states[n] == first, f"{n} ended with a different state"
    h = headline(res.recorder.tables(), honest=res.honest, states=res.recorder.states)
    if gaps_ok:
        assert h["events_lost"] == h["events_lost_in_gaps"], h
        assert h["state_converged"] and h["auth_disagreements"] == 0, h
        return h
    assert h["events_lost"] == 0
    assert h["converged"], h
    return h


def test_no_loss_every_event_everywhere_same_extremities_and_state():
    res = simulate(scenario(0))
    names = sorted(res.servers)
    created = set(res.recorder.tables()["events"]["event_id"])
    assert len(created) > 50
    for n in names:
        # Without loss every server holds exactly the events created, none as an outlier.
        assert held(res, n) == created, n
        assert not res.servers[n].rooms[res.room_id].graph.outliers, n
    fwd = {n: frozenset(res.servers[n].rooms[res.room_id].forward_extremities) for n in names}
    assert len(set(fwd.values())) == 1
    assert_converged(res)


@pytest.mark.parametrize("case", ["loss", "partition", "crash"])
def test_converges_once_healthy_and_quiet(case):
    extra = {
        # 30% of whole requests lost: Synapse alone drops pushes whose gap
        # fill fails (see test_synapse_defaults_drop_a_push_whose_gap_fill_fails)
        "loss": {"network": {"request_loss": 0.3, "loss_window": {"start": "20s", "end": "4m"}}, "homeserver": RECOVERY},
        "partition": {"network": {"partitions": [{"start": "1m", "end": "3m",
                                                   "groups": [["hs0", "hs1"], ["hs2", "hs3", "hs4"]]}]}},
        "crash": {"faults": [{"kind": "crash", "server": "hs2", "at": "1m", "restart": "2m30s"}]},
    }[case]
    res = simulate(scenario(1, **extra))
    h = assert_converged(res)
    assert h["events_created"] > 30


def simulate_then_everyone_speaks(sc, at_ms: float):
    """Run ``sc``; at ``at_ms`` one joined user of every honest server sends a
    message. Soft-failing depends on arrival order (as in Synapse), so a
    server may keep as a forward extremity an event the others soft-failed,
    and resolve another state, until it sends an event citing it: Matrix
    converges through the next events, not in silence."""
    from simfed.metrics import Recorder
    from simfed.sim.world import SimResult, World

    recorder = Recorder()
    world = World(sc, recorder)

    def speak():
        yield world.env.timeout(at_ms)
        for name in sorted(world.honest_servers()):
            hs = world.servers[name]
            user = next((u for u in hs.users if hs.up and hs.is_joined(world.room_id, u)), None)
            if user is not None:
                hs.create_event(world.room_id, user, "m.room.message", {"msgtype": "m.text", "body": "hello"})

    world.env.process(speak())
    end_t, completed = world.run()
    return SimResult(scenario=sc, recorder=recorder, end_t=end_t, completed=completed,
                     honest=frozenset(world.honest_servers()), room_id=world.room_id, servers=world.servers,
                     wall_time_s=0.0, regions=world.regions)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_convergence_property_over_seeds(seed):
    """Every honest server converges after loss, a partition and a crash heal,
    once each has spoken again."""
    res = simulate_then_everyone_speaks(scenario(
        seed,
        network={"request_loss": 0.3, "loss_window": {"start": "10s", "end": "3m"},
                 "partitions": [{"start": "30s", "end": "2m", "groups": [["hs0", "hs1", "hs2"], ["hs3", "hs4"]]}]},
        faults=[{"kind": "crash", "server": f"hs{seed % 5}", "at": "1m", "restart": "3m"}],
        homeserver=RECOVERY,
    ), at_ms=15 * 60_000)
    assert_converged(res)


@pytest.mark.parametrize("readers", [False, True])
def test_gap_longer_than_get_missing_events_limit_is_bridged_by_state_fetch(readers):
    # A partition longer than a transaction attempt's retries (~20 min):
    # senders give up, enter catch-up and later send only their newest
    # events, so hs2 faces a gap far longer than get_missing_events' limit.
    # (seed 3: kicks and leaves still leave two servers in the room at the end)
    res = simulate(scenario(
        3,
        simulation={"seed": 3, "duration": "100m"},
        servers={"count": 3, "users_per_server": 2},
        workload={"messages_per_user_per_minute": 1, "state_changes_per_minute": 1, "stop": "45m",
                  "readers": "none"},
        network={"partitions": [{"start": "1m", "end": "40m", "groups": [["hs0", "hs1"], ["hs2"]]}]},
        homeserver={"history_backfill": "1m" if readers else "0s"},
    ))
    hs2 = res.servers["hs2"]
    assert hs2.counters["request:get_missing_events"] >= 1
    assert hs2.counters["request:state_ids"] >= 1
    d = res.recorder.tables()["deliveries"]
    at2 = d[d["server"] == "hs2"]
    assert (at2["via"] == "state_fetch").any()
    if readers:
        assert_converged(res)
        return
    # Synapse without readers: the state is bridged, the events inside the
    # gap stay a hole in hs2's room DAG until a client paginates back.
    states = res.final_states()
    members = sorted(n for n in res.honest if in_room(res, n))
    assert "hs2" in members and len({str(sorted(states[n].items())) for n in members}) == 1
    room2 = hs2.rooms[res.room_id]
    assert [e for e in room2.graph.backward_extremities if e not in room2.graph]
    assert hs2.counters["request:backfill"] == 1  # the one after its join


def test_synapse_defaults_drop_a_push_whose_gap_fill_fails():
    """Synapse rejects a pushed event whose prev_events it could not fetch
    (gap_fill_retries = 0); with retries (a deviation) it is fetched later."""
    def run(retries):
        # Seed 6: a push whose prevs three /get_missing_events tries failed
        # to fetch (each try loses its request or response with p = 0.51).
        res = simulate(scenario(6, network={"request_loss": 0.3, "loss_window": {"start": "20s", "end": "4m"}},
                                homeserver={"gap_fill_retries": retries}))
        d = res.recorder.tables()["deliveries"]
        return d[(d["outcome"] == "dropped") & (d["reason"].astype(str) == "missing_prev_events")], d

    dropped, _ = run(0)
    assert len(dropped) > 0
    dropped8, d8 = run(8)
    late = [eid for eid, srv in zip(dropped8["event_id"], dropped8["server"])
            if ((d8["event_id"] == eid) & (d8["server"] == srv) & (d8["outcome"] != "dropped")).any()]
    assert len(dropped8) < len(dropped) or late


def test_forged_and_badly_signed_events_are_dropped_counted_and_the_run_goes_on():
    res = simulate(scenario(3, servers={"count": 5, "users_per_server": 2, "malicious": ["hs4"]}))
    assert res.servers["hs4"].counters["forged"] > 0
    d = res.recorder.tables()["deliveries"]
    dropped = d[(d["outcome"] == "dropped") & d["server"].isin(sorted(res.honest))]
    reasons = set(dropped["reason"].astype(str))
    assert {"missing_signature", "bad_signature"} <= reasons
    forged = dropped[dropped["reason"].astype(str).isin(["missing_signature", "bad_signature"])]
    forged_ids = set(forged["event_id"].astype(str))
    for n in res.honest:
        assert not forged_ids & set(res.servers[n].rooms[res.room_id].status), n
    assert_converged(res)


def test_same_scenario_and_seed_give_identical_observations():
    a = simulate(scenario(4, network={"loss": 0.1})).recorder.tables()
    b = simulate(scenario(4, network={"loss": 0.1})).recorder.tables()
    for name in ("events", "deliveries", "state", "traffic", "membership"):
        pd.testing.assert_frame_equal(a[name].drop(columns="run_id"), b[name].drop(columns="run_id"))
    c = simulate(scenario(5, network={"loss": 0.1})).recorder.tables()
    assert not a["events"]["event_id"].equals(c["events"]["event_id"])


def test_requests_fail_with_matrix_errors():
    res = simulate(scenario(6, simulation={"seed": 6, "duration": "1m"}, workload={"stop": "30s"}))
    hs0 = res.servers["hs0"]
    from simfed.sim.transport import MatrixError

    with pytest.raises(MatrixError) as e:
        hs0._on_event("hs1", {"event_id": "$nope"})
    assert e.value.body()["errcode"] == M_NOT_FOUND
    with pytest.raises(MatrixError) as e:
        hs0._on_get_missing_events("stranger.example", {"room_id": res.room_id, "latest_events": [],
                                                        "earliest_events": []})
    assert e.value.body()["errcode"] == M_FORBIDDEN
    with pytest.raises(MatrixError) as e:
        hs0._on_state_ids("hs1", {"room_id": "!unknown:x", "event_id": "$x"})
    assert e.value.body()["errcode"] == M_NOT_FOUND


def test_dummy_events_bound_forward_extremities():
    """Eight servers send concurrently over 2 s links, so the room ends its
    busy phase with many forward extremities. Synapse's dummy events (every
    5 minutes, above the threshold, not pushed) merge them back under the
    threshold; without them they stay where the traffic left them."""
    threshold = 2

    def run(enabled: bool):
        res = simulate(scenario(
            1, simulation={"seed": 1, "duration": "7m"}, servers={"count": 8, "users_per_server": 1},
            workload={"messages_per_user_per_minute": 20, "state_changes_per_minute": 0, "stop": "1m"},
            network={"latency": {"model": "constant", "ms": 2000}},
            homeserver={"dummy_events": {"enabled": enabled, "extremities_threshold": threshold}},
        ))
        # Concurrency over 2 s links can exceed get_missing_events' 10 events,
        # and Synapse then drops the push: some events are lost (see the
        # measures); the states still agree.
        states = res.final_states()
        assert len({str(sorted(states[n].items())) for n in res.honest if in_room(res, n)}) == 1
        st = res.recorder.tables()["state"]
        assert st[(st["t"] > 4 * 60_000) & (st["t"] < 5 * 60_000)]["extremities"].max() > threshold + 2
        st = res.recorder.tables()["state"]
        after_round = st[st["t"] > 5 * 60_000 + 30_000]  # the dummy round runs at 5m
        return res, int(after_round["extremities"].max())

    with_dummies, bounded = run(True)
    without, unbounded = run(False)
    assert sum(s.counters["dummy_events"] for s in with_dummies.servers.values()) > 0
    assert sum(s.counters["dummy_events"] for s in without.servers.values()) == 0
    assert bounded <= threshold
    assert unbounded > threshold + 2


def test_unpushed_dummy_events_stay_at_their_server():
    res = simulate(scenario(
        7, simulation={"seed": 7, "duration": "20m"}, servers={"count": 8, "users_per_server": 2},
        workload={"messages_per_user_per_minute": 20, "state_changes_per_minute": 0, "stop": "11m"},
        network={"latency": {"model": "constant", "ms": 400}},
        homeserver={"dummy_events": {"enabled": True, "extremities_threshold": 2}},
    ))
    assert sum(s.counters["dummy_events"] for s in res.servers.values()) > 0
    states = res.final_states()
    assert len({str(sorted(s.items())) for s in states.values()}) == 1
    # Synapse does not push dummy events: the last ones (cited by nothing
    # later) stay at their server; every other event reached everyone, in
    # its DAG or, for joins concurrent with its own, as an outlier.
    t = res.recorder.tables()
    ev = t["events"]
    for n, s in res.servers.items():
        room = s.rooms[res.room_id]
        missing = set(ev["event_id"]) - set(room.graph.events) - set(room.graph.outliers)
        assert set(ev[ev["event_id"].isin(missing)]["type"]) <= {"org.matrix.dummy_event"}, n


def test_pushed_dummy_events_converge():
    res = simulate(scenario(
        7, simulation={"seed": 7, "duration": "20m"}, servers={"count": 8, "users_per_server": 2},
        workload={"messages_per_user_per_minute": 20, "state_changes_per_minute": 0, "stop": "11m"},
        network={"latency": {"model": "constant", "ms": 400}},
        homeserver={"dummy_events": {"enabled": True, "extremities_threshold": 2, "push": True}},
    ))
    assert sum(s.counters["dummy_events"] for s in res.servers.values()) > 0
    assert_converged(res, gaps_ok=True)


def test_catch_up_sends_what_synapse_sends():
    """The newest PDU queued for the destination while it is still a forward
    extremity; else the extremities stored since the destination's last
    accepted PDU (or that PDU); nothing to a destination never reached."""
    from simfed.metrics import Recorder
    from simfed.sim.world import World

    w = World(scenario(8, servers={"count": 3, "users_per_server": 1},
                       network={"latency": {"model": "constant", "ms": 20}},
                       workload={"messages_per_user_per_minute": 0, "state_changes_per_minute": 0}), Recorder())
    w.workload.start()
    w.env.run(until=10_000)
    hs0, rid = w.servers["hs0"], w.room_id
    assert all(w.servers[n].has_member(rid) for n in ("hs1", "hs2"))
    ev = hs0.create_event(rid, "@u0:hs0", "m.room.message", {"msgtype": "m.text", "body": "x"})
    w.env.run(until=20_000)
    assert hs0.catchup_events("hs1", [rid]) == [(rid, [ev])]
    # hs1 moves on without hs0's help: our newest PDU for hs1 is no longer
    # an extremity; the newer extremity is sent instead.
    ev1 = w.servers["hs1"].create_event(rid, "@u0:hs1", "m.room.message", {"msgtype": "m.text", "body": "y"})
    w.env.run(until=30_000)
    assert hs0.rooms[rid].forward_extremities == {ev1.event_id}
    assert hs0.catchup_events("hs1", [rid]) == [(rid, [ev1])]
    assert hs0.catchup_events("elsewhere", [rid]) == []


def test_a_retried_transaction_gets_the_same_answer_and_is_not_processed_again():
    res = simulate(scenario(seed=3, simulation={"duration": "2m"}, workload={"stop": "1m"}))
    hs = res.servers["hs1"]
    room = hs.rooms[res.room_id]
    body = {"txn_id": "t-retried", "pdus": [room.graph[e] for e in sorted(room.graph)[:3]]}
    before = hs.counters["duplicate_transactions"]
    first = hs._on_transaction("hs0", body)
    again = hs._on_transaction("hs0", body)
    assert again == first and len(first.body["pdus"]) == 3
    assert hs.counters["duplicate_transactions"] == before + 1


def test_kept_transaction_answers_are_the_last_64_per_origin():
    """One answer kept as a pair, then a dict: the same answers as a FIFO of
    the last TXN_MEMORY transactions per origin."""
    from simfed.sim.homeserver import TXN_MEMORY

    res = simulate(scenario(seed=3, simulation={"duration": "2m"}, workload={"stop": "1m"}))
    hs = res.servers["hs1"]
    room = hs.rooms[res.room_id]
    pdus = [room.graph[e] for e in sorted(room.graph)[:2]]
    origin = "hs-test-origin"
    kept: list[str] = []
    answers = {}
    dups = hs.counters["duplicate_transactions"]
    for i in range(TXN_MEMORY + 6):
        txn = f"t{i}"
        body = {"txn_id": txn, "pdus": pdus[: 1 + i % 2]}
        answers[txn] = hs._on_transaction(origin, body)
        kept.append(txn)
        kept = kept[-TXN_MEMORY:]
        for probe in (f"t{i}", f"t{max(0, i - TXN_MEMORY)}", "t0"):
            again = hs._on_transaction(origin, {"txn_id": probe, "pdus": pdus[: 1 + int(probe[1:]) % 2]})
            if probe in kept:
                dups += 1
                assert again == answers[probe]
            else:  # forgotten: processed again, and kept as the newest
                answers[probe] = again
                kept = (kept + [probe])[-TXN_MEMORY:]
            assert hs.counters["duplicate_transactions"] == dups, (i, probe)


def test_an_answer_with_errors_is_kept_whole_for_a_retry():
    from simfed.sim.homeserver import _compact_answer, _transaction_response

    ok = _transaction_response({"$a": hs_module._PDU_OK, "$b": hs_module._PDU_OK})
    assert _compact_answer(ok) == ("$a", "$b")
    mixed = _transaction_response({"$a": hs_module._PDU_OK, "$b": {"error": "bad signature"}})
    assert _compact_answer(mixed) is mixed


def test_a_one_pdu_answer_is_kept_as_its_id_and_rebuilt_equal():
    from simfed.sim.homeserver import _all_ok_response, _compact_answer, _transaction_response

    one = _transaction_response({"$a": hs_module._PDU_OK})
    kept = _compact_answer(one)
    assert kept == "$a"
    assert _all_ok_response(kept) == one
    none = _transaction_response({})
    assert _compact_answer(none) == () and _all_ok_response(()) == none


def test_join_depths_keep_the_map_order_and_sort_longest_first():
    from simfed.sim.homeserver import _JoinDepths

    depths = {"hs3": 7, "hs1": 2, "hs10": 2, "hs0": 1, "hs2": 7}
    j = _JoinDepths(tuple(depths), tuple(depths.values()))
    assert set(j.servers) == set(depths) and list(j.servers) == list(depths)
    assert list(j.longest()) == sorted(depths, key=lambda s: (depths[s], s))
    assert j.longest() is j.longest()


def test_the_senders_compact_stream_draws_what_its_generator_would():
    from simfed.sim.streams import stream
    from simfed.sim.world import component_rng

    for seed in (0, 1, 2**40 + 7):
        gen, compact = component_rng(seed, "sender/hs3"), stream(seed, "sender/hs3")
        assert [compact.random() for _ in range(200)] == [gen.random() for _ in range(200)]
