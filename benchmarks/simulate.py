"""Simulator throughput against a bare SimPy floor, and memory per (server, event).

For full meshes of 10, 50 and 200 servers with about 1,000 events each, runs
``simfed.simulate`` and prints deliveries (event outcomes at servers) per
wall-clock second, the ratio to a bare SimPy store-and-forward loop moving the
same number of messages in the same run (a timeout with a callback per
message, the cheapest SimPy delivery), and the peak memory per (server,
event) held. Goal from the issue: at least 0.5 of the floor.

    python benchmarks/simulate.py                 # 10, 50, 200 servers
    python benchmarks/simulate.py --sizes 10,50 --events 500
    python benchmarks/simulate.py --quick         # seconds, a smoke test
    python benchmarks/simulate.py --profile 50    # cProfile of one size
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import pstats
import resource
import time

import simpy

from simfed.experiment.scenario import load_scenario
from simfed.sim.world import simulate


def bare_floor(n_messages: int, n_nodes: int) -> float:
    """Messages per second of a bare SimPy loop: each message is one timeout
    whose callback appends to the receiver's inbox (no processes)."""
    env = simpy.Environment()
    inbox = [0] * n_nodes

    def deliver(ev: simpy.Event) -> None:
        inbox[ev.value] += 1

    t0 = time.perf_counter()
    for i in range(n_messages):
        env.timeout(float(i % 1000) * 0.37, i % n_nodes).callbacks.append(deliver)
    env.run()
    dt = time.perf_counter() - t0
    assert sum(inbox) == n_messages
    return n_messages / dt


def scenario(n: int, events: int, seed: int = 1):
    users, minutes = 2, 5
    rate = events / (n * users * minutes)
    return load_scenario({
        "simulation": {"seed": seed, "duration": f"{minutes + 5}m"},
        "servers": {"count": n, "users_per_server": users},
        "network": {"latency": {"model": "lognormal", "median": "50ms", "sigma": 0.5}},
        "workload": {"messages_per_user_per_minute": rate, "state_changes_per_minute": 2, "stop": f"{minutes}m"},
        "metrics": {"sample_interval": "10s"},
    })


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(n: int, events: int) -> dict:
    """One size, in a fresh process so peak RSS growth is this run's alone."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (n, events))


def _measure(n: int, events: int) -> dict:
    import simfed.metrics  # noqa: F401  (imported before the baseline: pandas is large)

    sc = scenario(n, events)
    simulate(scenario(2, 10))  # warm imports and caches
    base = _rss_bytes()
    t0 = time.perf_counter()
    res = simulate(sc)
    wall = time.perf_counter() - t0
    peak = _rss_bytes() - base
    tables = res.recorder.tables()
    deliveries = len(tables["deliveries"])
    messages = len(tables["traffic"])
    held = sum(len(s.rooms[res.room_id].status) for s in res.servers.values() if res.room_id in s.rooms)
    floor = bare_floor(messages, n)
    rate = deliveries / wall
    return {"n": n, "events": len(tables["events"]), "deliveries": deliveries, "messages": messages,
            "wall": wall, "rate": rate, "floor": floor, "ratio": rate / floor,
            "bytes_per_held": peak / max(held, 1), "peak_mib": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,50,200")
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", type=int, metavar="N", help="profile one run with N servers instead")
    args = ap.parse_args()
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        simulate(scenario(args.profile, args.events))
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
        return
    sizes = [5] if args.quick else [int(x) for x in args.sizes.split(",")]
    events = 100 if args.quick else args.events
    print(f"{'servers':>7} {'events':>6} {'deliveries':>10} {'messages':>9} {'wall s':>7} "
          f"{'deliv/s':>8} {'floor msg/s':>11} {'ratio':>6} {'B/(server,event)':>16} {'peak MiB':>8}")
    for n in sizes:
        r = measure(n, events)
        print(f"{r['n']:>7} {r['events']:>6} {r['deliveries']:>10} {r['messages']:>9} {r['wall']:>7.1f} "
              f"{r['rate']:>8.0f} {r['floor']:>11.0f} {r['ratio']:>6.3f} {r['bytes_per_held']:>16.0f} "
              f"{r['peak_mib']:>8.1f}")
    print("goal: deliveries/s >= 0.5 x the bare SimPy floor (ratio column)")


if __name__ == "__main__":
    main()
