"""Common random numbers (issue 12 section 6): per-link latency and loss
streams and per-user workload streams, so that paired runs differ only
where the change itself acts."""

from __future__ import annotations

import numpy as np
import simpy

from simfed.experiment.scenario import load_scenario
from simfed.sim.latency import LogNormalLatency
from simfed.sim.loss import BernoulliLoss
from simfed.sim.network import Network
from simfed.sim.tcp import TcpModel, TcpParams
from simfed.sim.world import World, component_rng, simulate


def arrivals(servers, *, p=0.1, extra_traffic=False):
    """Arrival times of 200 messages a -> b (TCP with packet loss p),
    optionally interleaved with traffic to and from the other servers."""
    env = simpy.Environment()
    lat = LogNormalLatency(50.0, 0.5)
    tcp = TcpModel(TcpParams(), BernoulliLoss(p), lambda a, b: 100.0)
    net = Network(env, servers, latency=lat, tcp=tcp, rng_for=lambda name: component_rng(3, name))
    got = []
    for i in range(200):
        net.send("a", "b", 3000, i, lambda _p: got.append(env.now), kind="m")
        if extra_traffic:
            for other in servers[2:]:
                net.send("a", other, 3000, i, lambda _p: None, kind="m")
                net.send(other, "b", 3000, i, lambda _p: None, kind="m")
        env.run(until=env.now + 1000.0)
    return got


def test_adding_servers_and_their_traffic_leaves_a_link_unchanged():
    base = arrivals(["a", "b"])
    assert len(base) == 200
    assert arrivals(["a", "b", "c", "d"], extra_traffic=True) == base


def test_loss_level_does_not_change_latency_draws():
    lat = World(load_scenario({"servers": {"count": 3}, "network": {"loss": 0.0}})).network.link_rngs("hs0", "hs1")
    lossy = World(load_scenario({"servers": {"count": 4}, "network": {"loss": 0.2}})).network.link_rngs("hs0", "hs1")
    assert np.array_equal(lat[0].random(10), lossy[0].random(10))
    assert np.array_equal(lat[1].random(10), lossy[1].random(10))
    assert not np.array_equal(lat[0].random(10), lat[1].random(10))


def _messages(loss: float, servers: int = 4) -> set[tuple[float, str]]:
    sc = load_scenario({
        "simulation": {"seed": 5, "duration": "4m"},
        "servers": {"count": servers, "users_per_server": 2},
        "network": {"latency": {"model": "lognormal", "median": "60ms", "sigma": 0.5}, "loss": loss,
                    "loss_window": {"start": "40s", "end": "4m"}},
        "workload": {"messages_per_user_per_minute": 3, "state_changes_per_minute": 0, "join_spread": "5s"},
    })
    ev = simulate(sc).recorder.tables()["events"]
    msgs = ev[(ev["type"] == "m.room.message") & (ev["created_at"] >= 40_000)]
    return {(float(t), str(s)) for t, s in zip(msgs["created_at"], msgs["sender"])}


def test_changing_loss_or_adding_a_server_keeps_the_workload():
    base = _messages(0.0)
    assert len(base) > 30
    assert _messages(0.1) == base
    grown = _messages(0.0, servers=5)
    assert {m for m in grown if not m[1].endswith(":hs4")} == base
