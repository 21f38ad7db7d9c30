"""Parallel efficiency of ``simfed sweep`` on a Dask cluster: 1 worker against 2.

The same sweep -- ``scenarios/big-room.toml`` at ``--servers`` servers
(default 200, about 10 s a run on an idle core), ``--repeat`` runs of equal
size (default 8, one grid point, each run its own seed) -- runs

- on a running Dask ``LocalCluster`` of 1 worker process, then of 2
  (``processes=True, threads_per_worker=1``), reached by address exactly
  as ``simfed sweep --scheduler tcp://HOST:8786`` reaches a cluster; the
  workers have imported simfed before the clock starts (a running cluster
  has), and
- on a local process pool of 1 worker started by the sweep (``simfed sweep
  --workers 1``), the baseline without Dask.

Every sweep writes its directory as ``simfed sweep --out`` does (in a
temporary folder). It prints each wall time, the parallel efficiency
``T1 / (2 * T2)`` (goal from issue 14: at least 0.9), the same against
the local 1-worker pool, and where a shortfall comes from: ``busy`` is the
runs' own time in the workers over ``workers * wall time`` (below 1:
workers idle, i.e. scheduling overhead or a tail of unequal runs), and
``run slowdown`` is the mean run time with 2 workers over that with 1 (above
1: the two runs slow each other down, e.g. on cores shared with other
work), and ``CPU share`` is the CPU time the worker processes got over
``workers * wall time`` (below 1 with the workers busy: the cores were
not free, other processes had part of them). Finally it checks that the three sweeps give the same runs table
(apart from wall_time_s).

The efficiency needs 2 idle cores: the load average is printed before and
after, and figures taken under load say more about the load than about
simfed.

    python benchmarks/dask_sweep.py                # 8 runs of 200 servers (~4 min)
    python benchmarks/dask_sweep.py --quick        # 4 runs of 60 servers (~30 s)
    python benchmarks/dask_sweep.py --servers 300 --repeat 8

Exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "big-room.toml"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process so far (run on each Dask worker)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 runs of 60 servers")
    ap.add_argument("--servers", type=int, default=None, help="servers.count of each run (default 200)")
    ap.add_argument("--repeat", type=int, default=None, help="runs in the sweep (default 8)")
    args = ap.parse_args()
    servers = args.servers or (60 if args.quick else 200)
    repeat = args.repeat or (4 if args.quick else 8)

    import distributed

    from simfed.experiment.sweep import sweep

    print(f"dask sweep benchmark: {repeat} runs of big-room.toml at servers.count={servers}; "
          f"{os.cpu_count()} CPUs; load average (1/5/15 min) {load()}")
    kw = {"servers__count": servers}
    timings: dict[str, tuple[float, pd.DataFrame]] = {}
    cpu_share: dict[int, float] = {}

    with tempfile.TemporaryDirectory(prefix="simfed-dask-sweep-") as tmp:
        def timed(label: str, **ex) -> None:
            t0 = time.perf_counter()
            res = sweep(SCENARIO, {}, repeat, out_dir=Path(tmp) / label.replace(" ", "-"), progress=False,
                        **ex, **kw)
            wall = time.perf_counter() - t0
            assert res.complete, res.errors
            timings[label] = (wall, res.runs)
            print(f"  {label:<28} {wall:7.1f} s  ({res.executor}; load {load()})", flush=True)

        for n in (1, 2):
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                    distributed.Client(cluster) as client:
                client.run(importlib.import_module, "simfed.experiment.sweep")  # warm, as a running cluster is
                label = f"dask {n} worker{'s' if n > 1 else ''}"
                before = client.run(cpu_seconds)
                timed(label, scheduler=cluster.scheduler_address)
                after = client.run(cpu_seconds)
                used = sum(after[w] - before[w] for w in after)
                cpu_share[n] = used / (n * timings[label][0])
        timed("local processes 1 worker", workers=1)

    t1, runs1 = timings["dask 1 worker"]
    t2, runs2 = timings["dask 2 workers"]
    tl, runsl = timings["local processes 1 worker"]
    eff = t1 / (2 * t2)
    print(f"\nparallel efficiency T1 / (2 * T2), Dask 1 worker against 2: {eff:.2f} "
          f"(goal >= 0.9: {'met' if eff >= 0.9 else 'NOT met'})")
    print(f"against the local 1-worker pool (--workers 1): {tl / (2 * t2):.2f}")
    for label, n, (t, runs) in (("1 worker", 1, (t1, runs1)), ("2 workers", 2, (t2, runs2))):
        print(f"  dask {label}: busy {runs['wall_time_s'].sum() / (n * t):.2f}, "
              f"CPU share {cpu_share[n]:.2f}, mean run {runs['wall_time_s'].mean():.1f} s")
    slowdown = runs2["wall_time_s"].mean() / runs1["wall_time_s"].mean()
    busy1, busy2 = runs1["wall_time_s"].sum() / t1, runs2["wall_time_s"].sum() / (2 * t2)
    print(f"  run slowdown with 2 workers: {slowdown:.2f}x")
    print(f"  efficiency = busy ratio / run slowdown = {busy2 / busy1:.2f} / {slowdown:.2f}: the sweep's own "
          f"share (idle workers) is the busy ratio, the rest is runs slowing each other down")
    same = all(r.drop(columns="wall_time_s").equals(runs1.drop(columns="wall_time_s")) for r in (runs2, runsl))
    print(f"same runs table from every executor (apart from wall_time_s): {'yes' if same else 'NO'}")
    print(f"load average now {load()}")


if __name__ == "__main__":  # required: spawned workers import this file as __mp_main__
    main()
