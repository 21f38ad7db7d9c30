"""Fan-out strategies side by side on the same traffic and seed.

For 100 servers and about 1,000 events (the issue's setting), runs each
strategy on the same scenario (SimBlock regions, 0.5% loss until the
workload stops, then a quiet drain) and prints one row per strategy:
copies pushed per event, repair requests per event, redundancy factor,
share of arrivals by fetching,
p50/p99 event convergence time, events lost, and the simulator's wall time
(also as a ratio to the full mesh's, measured in the same run).

    python benchmarks/topologies.py                    # 100 servers, ~1,000 events
    python benchmarks/topologies.py --quick            # 20 servers, ~200 events
    python benchmarks/topologies.py --servers 50 --events 500 --loss 0.02
"""

from __future__ import annotations

import argparse
import time

from simfed.experiment.scenario import load_scenario
from simfed.metrics import headline
from simfed.sim.world import simulate

STRATEGIES = ("full_mesh", "relay", "gossip", "tree")


def scenario(strategy: str, n: int, events: int, loss: float, seed: int):
    users, minutes = 1, 10
    return load_scenario({
        "simulation": {"seed": seed, "duration": f"{minutes + 10}m"},
        "servers": {"count": n, "users_per_server": users, "regions": "simblock-2019"},
        "network": {"latency": {"model": "regions"}, "loss": loss,
                    "loss_window": {"start": "0s", "end": f"{minutes}m"}},
        "workload": {"messages_per_user_per_minute": events / (n * users * minutes),
                     "state_changes_per_minute": 0.5, "join_spread": "30s", "stop": f"{minutes}m"},
        "federation": {"retry": {"backoff_initial": "20s", "backoff_max": "2m"}},
        "metrics": {"sample_interval": "10s"},
        "topology": {"strategy": strategy, "relay": {"hubs": [f"hs{i}" for i in range(0, n, max(1, n // 4))][:4]},
                     "gossip": {"fanout": 4, "anti_entropy_interval": "30s"}},
    })


def measure(strategy: str, n: int, events: int, loss: float, seed: int) -> dict:
    sc = scenario(strategy, n, events, loss, seed)
    t0 = time.perf_counter()
    res = simulate(sc)
    wall = time.perf_counter() - t0
    h = headline(res.recorder.tables(), honest=res.honest, end_t=res.end_t, states=res.recorder.states)
    topo = h["topology"]
    ec = h["event_convergence_ms"]
    return {
        "strategy": strategy, "events": h["events_created"], "lost": h["events_lost"],
        "copies/event": topo["push_messages_per_event"], "redundancy": topo["redundancy_factor"],
        "repairs/event": topo["repair_requests_per_event"],
        "fetched": topo["fetched_share"], "p50 s": (ec["p50"] or float("nan")) / 1000,
        "p99 s": (ec["p99"] or float("nan")) / 1000, "wall s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--loss", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--quick", action="store_true", help="20 servers, 200 events")
    a = ap.parse_args()
    n, events = (20, 200) if a.quick else (a.servers, a.events)
    print(f"{n} servers, ~{events} events, loss {a.loss:g} until the workload stops, seed {a.seed}")
    header = f"{'strategy':<10} {'events':>6} {'lost':>4} {'copies/ev':>9} {'repair/ev':>9} {'redund.':>7} {'fetched':>7} " \
             f"{'p50 s':>7} {'p99 s':>7} {'wall s':>7} {'vs mesh':>7}"
    print(header)
    print("-" * len(header))
    base = None
    for strategy in a.strategies.split(","):
        r = measure(strategy.strip(), n, events, a.loss, a.seed)
        base = base or (r["wall s"] if strategy == "full_mesh" else None)
        ratio = r["wall s"] / base if base else float("nan")
        print(f"{r['strategy']:<10} {r['events']:>6} {r['lost']:>4} {r['copies/event']:>9.1f} {r['repairs/event']:>9.1f} "
              f"{r['redundancy']:>7.2f} "
              f"{r['fetched']:>7.1%} {r['p50 s']:>7.2f} {r['p99 s']:>7.1f} {r['wall s']:>7.1f} {ratio:>7.2f}",
              flush=True)


if __name__ == "__main__":
    main()
