"""Synapse's federation rate limiter (simfed.sim.defences) through the Transport."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import simpy

from simfed.metrics import Recorder
from simfed.sim.defences import FederationRateLimiter, RateLimitSettings, defence_totals
from simfed.sim.latency import ConstantLatency
from simfed.sim.network import Network
from simfed.sim.transport import M_LIMIT_EXCEEDED, Response, Transport
from simfed.sim.world import World

from test_world import scenario


def setup(settings: RateLimitSettings, work_ms: float = 0.0, destinations=None):
    env = simpy.Environment()
    net = Network(env, ("a", "b", "c"), latency=ConstantLatency(0.0), rng=np.random.default_rng(0))
    counts: Counter = Counter()
    lim = FederationRateLimiter(env, settings, destinations, on_count=lambda d, w: counts.update([(d, w)]))
    tr = Transport(env, net, limiter=lim)
    started: list[float] = []

    def handler(origin, kind, body):
        started.append(env.now)
        if work_ms <= 0:
            return Response(200, body, 10)

        def work():
            yield env.timeout(work_ms)
            return Response(200, body, 10)

        return env.process(work())

    tr.register("b", handler)
    out: list[tuple[float, object]] = []

    def ask(src="a", kind="event", timeout_ms=60_000.0):
        ev = tr.request(src, "b", kind, "x", 10, timeout_ms=timeout_ms)
        ev.callbacks.append(lambda e: out.append((env.now, e.value)))

    return env, ask, out, started, counts


def test_requests_beyond_sleep_limit_wait_sleep_delay():
    env, ask, out, started, counts = setup(RateLimitSettings(sleep_limit=3, sleep_delay_ms=500))
    for _ in range(5):
        ask()
    env.run()
    assert started == [0, 0, 0, 500, 500]
    assert all(r.status == 200 for _, r in out)
    assert counts[("b", "rate_limit_slept")] == 2


def test_window_forgets_old_requests():
    env, ask, out, started, _ = setup(RateLimitSettings(sleep_limit=2, window_ms=1000))
    for t in (0, 0, 999, 1000, 1000):
        env.timeout(t).callbacks.append(lambda _e: ask())
    env.run()
    # at 999 three requests are in the window: it sleeps; at 1000 the two at 0
    # left it, so the first at 1000 runs at once and the second (third in the window) sleeps
    assert started == [0, 0, 1000, 1499, 1500]


def test_concurrency_limit_queues_fifo():
    env, ask, out, started, counts = setup(RateLimitSettings(concurrent=2, sleep_limit=100), work_ms=100)
    for _ in range(5):
        ask()
    env.run()
    assert started == [0, 0, 100, 100, 200]
    assert [t for t, _ in out] == [100, 100, 200, 200, 300]
    assert counts[("b", "rate_limit_queued")] == 3


def test_reject_beyond_reject_limit_with_retry_after():
    env, ask, out, started, counts = setup(RateLimitSettings(sleep_limit=1, reject_limit=2, sleep_delay_ms=500))
    for _ in range(6):
        ask()
    env.run()
    statuses = [r.status for _, r in out]
    # 1 runs, 2..4 sleep (waiting 1, 2, 3 > reject_limit=2 only from the 5th), 5th and 6th refused
    assert sorted(statuses) == [200, 200, 200, 200, 429, 429]
    refused = [r for _, r in out if r.status == 429]
    assert refused[0].body["errcode"] == M_LIMIT_EXCEEDED and refused[0].body["retry_after_ms"] == 1000
    assert counts[("b", "rate_limited")] == 2


def test_per_origin_and_exempt_and_destinations():
    env, ask, out, started, _ = setup(RateLimitSettings(sleep_limit=1))
    ask("a")
    ask("c")  # another origin: its own window
    ask("a", kind="transaction")  # /send is exempt
    env.run()
    assert started == [0, 0, 0]
    env, ask, out, started, _ = setup(RateLimitSettings(sleep_limit=1), destinations=("c",))
    ask()
    ask()
    env.run()
    assert started == [0, 0]  # b is not a limited destination


def test_abandoned_request_not_processed_and_frees_slot():
    env, ask, out, started, _ = setup(RateLimitSettings(concurrent=1, sleep_limit=100), work_ms=1000)
    ask()
    ask(timeout_ms=500)  # gives up while queued
    ask()
    env.run()
    assert started == [0, 1000]
    assert [(t, getattr(r, "reason", None) or r.status) for t, r in out] == [(500, "timeout"), (1000, 200),
                                                                             (2000, 200)]


def test_settings_validated():
    with pytest.raises(ValueError, match="sleep_limit"):
        RateLimitSettings(sleep_limit=0)
    assert RateLimitSettings().retry_after_ms == 100


def test_defence_totals_sum_servers():
    c = {"a": {"rate_limited": 2, "bad_answer_wrong_room": 1, "accepted": 5}, "b": {"rate_limited": 1}}
    tot = defence_totals(c, ["a", "b"])
    assert tot["rate_limited"] == 3 and tot["bad_answer_wrong_room"] == 1 and "accepted" not in tot


def _flood_run(enabled: bool):
    sc = scenario(41, servers={"count": 4}, simulation={"seed": 41, "duration": "3m"}, workload={"stop": "2m"},
                  federation={"rate_limit": {"enabled": enabled}})
    world = World(sc, Recorder())
    answers: list = []

    def flood():
        yield world.env.timeout(60_000)
        room = world.servers["hs3"].rooms[world.room_id]
        body = {"room_id": world.room_id, "event_id": sorted(room.forward_extremities)[0]}
        calls = [world.transport.request("hs3", "hs0", "state_ids", body, 300, timeout_ms=60_000)
                 for _ in range(120)]
        for c in calls:
            answers.append((yield c))

    world.env.process(flood())
    _, completed = world.run()
    assert completed
    return world, answers


def test_flood_of_requests_in_a_run_is_slept_and_refused():
    world, answers = _flood_run(True)
    statuses = Counter(getattr(r, "status", None) for r in answers)
    c = world.servers["hs0"].counters
    assert statuses[429] == c["rate_limited"] > 0 and statuses[200] == 120 - statuses[429]
    assert c["rate_limit_slept"] > 0 and c["rate_limit_queued"] > 0
    assert defence_totals({n: s.counters for n, s in world.servers.items()}, ["hs0"])["rate_limited"] == statuses[429]
    world, answers = _flood_run(False)
    assert all(r.status == 200 for r in answers)
    assert world.servers["hs0"].counters["rate_limited"] == 0


def test_scenario_keys_reach_the_limiter():
    sc = scenario(42, federation={"rate_limit": {"sleep_limit": 4, "sleep_delay": "1s", "reject_limit": 7,
                                                 "concurrent": 2, "window": "2s"}})
    lim = World(sc, Recorder()).transport.limiter
    assert lim.settings == RateLimitSettings(2000.0, 4, 1000.0, 7, 2)
    assert lim.applies("hs0", "state") and not lim.applies("hs0", "transaction")
    assert World(scenario(42, federation={"rate_limit": {"enabled": False}}), Recorder()).transport.limiter is None
