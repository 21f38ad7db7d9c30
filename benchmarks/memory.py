"""Memory per (server, event): what a run holds, by the code that allocated it.

Runs ``scenarios/big-room.toml`` with ``servers.count = N`` for each size,
each in a fresh process under ``tracemalloc``, and at the end of the run (the
servers and the recorder still alive) prints the memory traced, divided by
the (server, event) pairs held (events each server stores in the room: DAG
members and outliers), with the largest allocation sites. The difference
between two sizes divided by the difference in pairs is the marginal cost of
one more (server, event); goal (issue 14): under 500 bytes.

    python benchmarks/memory.py                  # 50 and 100 servers
    python benchmarks/memory.py --sizes 100,200 --top 15
    python benchmarks/memory.py --quick          # 20 and 30 servers
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tomllib
import tracemalloc
from pathlib import Path

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "big-room.toml"
GOAL_BYTES = 500


def _site(frame: tracemalloc.Frame) -> str:
    parts = Path(frame.filename).parts
    if "simfed" in parts:
        parts = parts[parts.index("simfed"):]
    return f"{'/'.join(parts[-3:])}:{frame.lineno}"


def _measure(n: int, top: int) -> dict:
    from simfed.experiment.scenario import load_scenario
    from simfed.sim.world import simulate

    data = tomllib.loads(SCENARIO.read_text())
    data["servers"]["count"] = n
    sc = load_scenario(data)
    simulate(load_scenario({**data, "servers": {**data["servers"], "count": 2}}))  # warm imports and caches
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    res = simulate(sc)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    pairs = sum(len(s.rooms[res.room_id].events) for s in res.servers.values() if res.room_id in s.rooms)
    stats = snap.compare_to(base, "lineno")
    total = sum(s.size_diff for s in stats)
    sites = [(_site(s.traceback[0]), s.size_diff) for s in stats[:top]]
    return {"n": n, "pairs": pairs, "total": total, "sites": sites}


def measure(n: int, top: int) -> dict:
    """One size in a fresh process (nothing cached from another size)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (n, top))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,100", help="two or more comma-separated server counts")
    ap.add_argument("--top", type=int, default=10, help="allocation sites to list for the largest size")
    ap.add_argument("--quick", action="store_true", help="20 and 30 servers")
    args = ap.parse_args()
    sizes = [20, 30] if args.quick else [int(x) for x in args.sizes.split(",")]
    rows = [measure(n, args.top) for n in sizes]
    print(f"{'servers':>7} {'(server, event) pairs':>21} {'traced MiB':>10} {'B per pair':>10}")
    for r in rows:
        print(f"{r['n']:>7} {r['pairs']:>21,} {r['total'] / 2**20:>10.1f} {r['total'] / r['pairs']:>10.0f}")
    a, b = rows[0], rows[-1]
    if b["pairs"] > a["pairs"]:
        marginal = (b["total"] - a["total"]) / (b["pairs"] - a["pairs"])
        print(f"marginal bytes per (server, event), {a['n']} -> {b['n']} servers: {marginal:.0f} "
              f"(goal < {GOAL_BYTES}: {'met' if marginal < GOAL_BYTES else 'not met'})")
    print(f"largest allocation sites at {b['n']} servers (bytes per pair):")
    for site, size in b["sites"]:
        print(f"  {size / b['pairs']:>8.0f}  {site}")


if __name__ == "__main__":
    main()
