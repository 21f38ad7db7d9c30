"""Sweep throughput: 1 vs 2 local worker processes, and Dask against local processes.

The same 16-run sweep (``scenarios/baseline.toml`` with 20 servers, about
1 s per run; grid ``network.loss = 0.002, 0.02`` x 8 repetitions) runs
in memory (no files) through

- local process pools of 1 and 2 workers started by the sweep (the
  baseline is 1 worker),
- the same pools already running and warmed by one sweep, passed as
  ``executor=`` (the runs alone: no process start-up, imports done),
- a Dask ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``
  started by the sweep (``scheduler="local:2"``), and
- the same kind of cluster already running and warmed, passed as
  ``executor=client``.

Each timing is the whole ``simfed.sweep`` call, median of ``--repeats``.
It prints the speed-up of 2 workers over 1 with and without the pool's
start-up (goal from the issue: at least 1.8 on 2 cores), Dask's overhead
relative to local processes (cold against cold, running against running),
and checks that every configuration gives the same ``runs`` table (apart
from wall_time_s). The machine is shared: the load average is printed
before and after; figures taken under load are not worth quoting.

    python benchmarks/sweep.py              # 16 runs of ~1 s, 3 repeats (~5 min)
    python benchmarks/sweep.py --quick      # 8 runs of 10 servers, 1 repeat (~40 s)
    python benchmarks/sweep.py --servers 30 --repeat 8 --repeats 5

Exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import pandas as pd

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "baseline.toml"
GRID = {"network.loss": [0.002, 0.02]}


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 runs of 10 servers, one repeat")
    ap.add_argument("--servers", type=int, default=None, help="servers.count of each run (default 20)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per grid point (default 8)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per configuration (default 3)")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask measurements")
    args = ap.parse_args()
    servers = args.servers or (10 if args.quick else 20)
    repeat = args.repeat or (4 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)

    import simfed
    from simfed.experiment.sweep import sweep

    kw = {"servers__count": servers}
    n_runs = repeat * len(GRID["network.loss"])
    t0 = time.perf_counter()
    one = simfed.run(SCENARIO, **kw)
    per_run = time.perf_counter() - t0
    print(f"sweep benchmark: {n_runs} runs (baseline.toml, servers.count={servers}, "
          f"network.loss={GRID['network.loss']} x {repeat}); one run in this process ~{per_run:.2f} s "
          f"({one.summary['events_created']} events); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; median of {repeats}")

    def run(**ex):
        return sweep(SCENARIO, GRID, repeat, progress=False, **ex, **kw)

    rows: list[tuple[str, float, list[float]]] = []
    tables = []

    def measure(label: str, repeats: int, **ex) -> float:
        t, ts, res = timed(lambda: run(**ex), repeats)
        rows.append((label, t, ts))
        tables.append(res.runs)
        return t

    # Cold: the sweep starts its pool or cluster (what a user waits for).
    t1 = measure("local processes, 1 worker", repeats, workers=1)
    t2 = measure("local processes, 2 workers", repeats, workers=2)
    # Warm: the pool is running and has run once (imports done): the runs alone.
    from simfed.experiment.executors import LocalProcessExecutor

    warm = {}
    for n in (1, 2):
        with LocalProcessExecutor(n) as pool:
            run(executor=pool)
            warm[n] = measure(f"local processes, {n} worker{'s' if n > 1 else ''}, pool already running",
                              repeats, executor=pool)
    td = tdr = None
    if not args.no_dask:
        td = measure("Dask LocalCluster, 2 workers, started by the sweep", repeats, scheduler="local:2")
        import distributed

        t_start = time.perf_counter()
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            t_cluster = time.perf_counter() - t_start
            run(executor=client)  # warm the workers (imports), as a running cluster would be
            tdr = measure(f"Dask LocalCluster, 2 workers, already running (start-up {t_cluster:.1f} s)",
                          repeats, executor=client)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'executor':<{width}}  {'wall s':>7}  {'runs/s':>6}  all")
    for name, t, ts in rows:
        print(f"{name:<{width}}  {t:7.2f}  {n_runs / t:6.2f}  {', '.join(f'{x:.1f}' for x in ts)}")

    same = all(a.drop(columns="wall_time_s").equals(tables[0].drop(columns="wall_time_s")) for a in tables[1:])
    cold, hot = t1 / t2, warm[1] / warm[2]
    print(f"\nspeed-up, 2 local workers over 1 (goal >= 1.8 on 2 cores): {cold:.2f}x including the pool's "
          f"start-up ({'met' if cold >= 1.8 else 'NOT met'}), {hot:.2f}x on a running pool "
          f"({'met' if hot >= 1.8 else 'NOT met'})")
    if td is not None:
        print(f"Dask overhead vs 2 local processes: {100 * (td / t2 - 1):+.0f}% started by the sweep, "
              f"{100 * (tdr / warm[2] - 1):+.0f}% on a running cluster (vs a running pool)")
    print(f"same runs table from every executor (apart from wall_time_s): {'yes' if same else 'NO'}")
    mean_run = pd.concat([t["wall_time_s"] for t in tables]).mean()
    print(f"mean wall time of a run inside the workers: {mean_run:.2f} s; "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":  # required: spawned workers import this file as __mp_main__
    main()
