"""Cost per message of ``Network.send`` against a bare timeout-with-callback.

Prints microseconds per message for both and their ratio, measured in the
same run (absolute numbers depend on the machine; the ratio is the figure
to watch). Usage: ``python benchmarks/network_floor.py [n_messages]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import simpy

from simfed.sim.latency import UniformLatency
from simfed.sim.loss import BernoulliLoss
from simfed.sim.network import Network


def bare(n: int, servers: list[str]) -> float:
    env = simpy.Environment()
    rng = np.random.default_rng(0)
    sink: list[object] = []
    t0 = time.perf_counter()
    for i in range(n):
        delay = 1.0 + 99.0 * rng.random()
        ev = env.timeout(delay)
        ev.callbacks.append(lambda _ev, i=i: sink.append(i))
    env.run()
    return (time.perf_counter() - t0) / n * 1e6


def network(n: int, servers: list[str]) -> float:
    env = simpy.Environment()
    net = Network(env, servers, latency=UniformLatency(1.0, 100.0), loss=BernoulliLoss(0.01),
                  rng=np.random.default_rng(0), upload_bps=100e6)
    sink: list[object] = []
    k = len(servers)
    t0 = time.perf_counter()
    for i in range(n):
        net.send(servers[i % k], servers[(i * 7 + 1) % k], 2000, i, sink.append, kind="m")
    env.run()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    servers = [f"hs{i}" for i in range(100)]
    base = min(bare(n, servers) for _ in range(3))
    net = min(network(n, servers) for _ in range(3))
    print(f"messages: {n}")
    print(f"bare timeout+callback: {base:.2f} us/message")
    print(f"Network.send:          {net:.2f} us/message")
    print(f"ratio:                 {net / base:.2f}")


if __name__ == "__main__":
    main()
