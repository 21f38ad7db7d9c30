"""What saving each server's DAG (the ``pdus`` and ``dag`` tables) costs a run.

Runs a scenario once (no plots), then times :func:`simfed.experiment.dag.dag_tables`
on the finished simulation (median of 5) and prints it as a share of the
run's simulate-and-measure time measured in the same process, with the rows
and the Parquet size of both tables. Goal: under 5% of the run.

    python benchmarks/dag_tables.py                          # scenarios/big-room.toml
    python benchmarks/dag_tables.py scenarios/partition-heal.toml
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import simfed
from simfed.experiment.dag import dag_tables

GOAL = 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="scenarios/big-room.toml")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = simfed.run(args.scenario, plots=False, progress=False)
    run_s = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t = time.perf_counter()
        tables = dag_tables(res.sim, "bench")
        times.append(time.perf_counter() - t)
    cost = statistics.median(times)
    print(f"{args.scenario}: run {run_s:.2f} s (simulate, measure, DAG tables); "
          f"dag_tables {cost:.3f} s = {cost / run_s:.1%} of the run (goal < {GOAL:.0%}: "
          f"{'met' if cost / run_s < GOAL else 'NOT met'})")
    for name, df in tables.items():
        buf = io.BytesIO()
        df.to_parquet(buf, engine="pyarrow", index=False)
        print(f"  {name}: {len(df):,} rows, {len(buf.getvalue()) / 1e3:,.0f} kB as Parquet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
