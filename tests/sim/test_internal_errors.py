"""Servers that fail requests internally answer 500 M_UNKNOWN, and the room still converges."""

from __future__ import annotations

import numpy as np
import simpy

from simfed.experiment.scenario import load_scenario
from simfed.metrics import headline
from simfed.sim.latency import ConstantLatency
from simfed.sim.network import Network
from simfed.sim.transport import M_UNKNOWN, Response, Transport
from simfed.sim.world import simulate


def test_a_failing_server_answers_500_m_unknown_without_handling():
    env = simpy.Environment()
    net = Network(env, ["a", "b"], latency=ConstantLatency(10.0), rng=np.random.default_rng(0))
    tr = Transport(env, net, internal_error_rate=1.0, rng=np.random.default_rng(1))
    handled = []
    tr.register("b", lambda origin, kind, body: handled.append(kind) or Response(200, {}, 10))
    ev = tr.request("a", "b", "event", {}, 100, timeout_ms=1000.0)
    env.run()
    res = ev.value
    assert res.status == 500 and res.body["errcode"] == M_UNKNOWN
    assert handled == []


def _scenario(rate: float):
    return load_scenario({
        "simulation": {"seed": 2, "duration": "12m"},
        "servers": {"count": 5, "users_per_server": 2},
        "workload": {"messages_per_user_per_minute": 1, "state_changes_per_minute": 1, "stop": "3m"},
        "federation": {"internal_error_rate": rate, "retry": {"backoff_initial": "20s", "backoff_max": "1m"}},
    })


def test_the_room_converges_despite_internal_errors():
    res = simulate(_scenario(0.05))
    t = res.recorder.tables()
    h = headline(t, honest=res.honest, states=res.recorder.states)
    assert h["events_lost"] == 0 and h["converged"], h
    # Failed transactions are retried: more of them than on a healthy run.
    healthy = simulate(_scenario(0.0)).recorder.tables()["traffic"]
    kinds = t["traffic"]["kind"].astype(str)
    assert (kinds == "transaction").sum() > (healthy["kind"].astype(str) == "transaction").sum()
