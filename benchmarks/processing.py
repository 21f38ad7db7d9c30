"""What the processing model costs the simulator: throughput with
``servers.processing = "none"`` against ``"calibrated"``, in one run.

For full meshes of 10 and 30 servers with about 600 events each (the same
scenario and seed both ways), runs ``simfed.simulate`` and prints wall time,
deliveries (event outcomes at servers) per wall-clock second, and the ratio
calibrated / none. The calibrated model adds a CPU queue per server (a SimPy
resource request and a timeout per received event, created event and
answered request), the work bookkeeping, and the current state Synapse
computes when it persists an event (a resolution that the zero-time model
leaves lazy). Median of ``--repeats`` per configuration.

    python benchmarks/processing.py                 # 10, 30 servers, 3 repeats
    python benchmarks/processing.py --sizes 10,50 --events 1000
    python benchmarks/processing.py --quick         # seconds, a smoke test

Always exits 0: it prints figures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import statistics
import time

from simfed.experiment.scenario import load_scenario
from simfed.sim.world import simulate


def scenario(n: int, events: int, processing: str, seed: int = 1):
    users, minutes = 2, 3
    rate = events / (n * users * minutes)
    return load_scenario({
        "simulation": {"seed": seed, "duration": f"{minutes + 3}m"},
        "servers": {"count": n, "users_per_server": users, "processing": processing},
        "network": {"latency": {"model": "lognormal", "median": "50ms", "sigma": 0.5}},
        "workload": {"messages_per_user_per_minute": rate, "state_changes_per_minute": 2, "stop": f"{minutes}m"},
        "metrics": {"sample_interval": "10s"},
    })


def measure(n: int, events: int, processing: str, repeats: int) -> dict:
    times, deliveries = [], 0
    for _ in range(repeats):
        sc = scenario(n, events, processing)
        t0 = time.perf_counter()
        res = simulate(sc)
        times.append(time.perf_counter() - t0)
        deliveries = len(res.recorder.tables()["deliveries"])
    wall = statistics.median(times)
    return {"wall": wall, "deliveries": deliveries, "rate": deliveries / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,30", help="servers per run (default 10,30)")
    ap.add_argument("--events", type=int, default=600, help="events per run, about (default 600)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="5 servers, 100 events, 1 repeat")
    a = ap.parse_args(argv)
    sizes = [5] if a.quick else [int(x) for x in a.sizes.split(",") if x.strip()]
    events = 100 if a.quick else a.events
    repeats = 1 if a.quick else a.repeats

    simulate(scenario(4, 50, "calibrated"))  # warm-up: imports, interning, caches (not timed)
    print(f"simulator throughput, processing none vs calibrated (median of {repeats}, same scenario and seed)\n")
    hdr = f"{'servers':>7} {'deliveries':>10} | {'none s':>7} {'/s':>8} | {'calibrated s':>12} {'/s':>8} | {'ratio':>5}"
    print(hdr)
    print("-" * len(hdr))
    for n in sizes:
        none = measure(n, events, "none", repeats)
        cal = measure(n, events, "calibrated", repeats)
        print(f"{n:>7} {none['deliveries']:>10} | {none['wall']:>7.2f} {none['rate']:>8.0f} | "
              f"{cal['wall']:>12.2f} {cal['rate']:>8.0f} | {cal['rate'] / none['rate']:>5.2f}", flush=True)
    print("\nratio = deliveries per second with the calibrated model / without it (1.0: free)")
    return 0


if __name__ == "__main__":
    main()
