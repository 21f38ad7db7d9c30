"""Big-room scaling: wall time and peak memory of ``scenarios/big-room.toml``
against the number of servers.

Runs ``simfed run scenarios/big-room.toml --set servers.count=N --no-plots``
once per size, each in its own process (so ``peak_rss_mb`` is that run's
alone), and prints ``sim_cpu_time_s`` and ``sim_wall_time_s`` (the
simulation, without the tables) and ``peak_rss_mb`` from each
``summary.json``, with the CPU time ratio of each size to the smallest (CPU
time: the machine is shared, and wall time carries other jobs) against the
work ratio (deliveries grow as the square of
the server count: 300 servers do 9x the work of 100). Goal (issue 14): the
time grows no faster than the work, with 20% slack (500 servers <= 30x the
time of 100, where the work grows 25x).

The absolute goals of the issue are checked too: 500 servers under 2 GiB of
peak memory; 1,000 servers (10 simulated minutes) in under 3 minutes and
4 GiB. A run over ``--timeout`` seconds is stopped and reported as such.

    python benchmarks/bigroom.py                  # 100, 200, 300 servers
    python benchmarks/bigroom.py --sizes 100,500  # goal: time ratio <= 30, < 2 GiB
    python benchmarks/bigroom.py --sizes 1000     # goal: < 180 s, < 4 GiB
    python benchmarks/bigroom.py --quick          # 20, 40 servers: seconds
    python benchmarks/bigroom.py --keep DIR       # keep each run's results in DIR/n<N>
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: the issue's goal: 30x the time for 25x the work
GOAL_SLACK = 1.2
#: absolute goals by size: (simulation wall seconds or None, peak MiB)
ABSOLUTE = {500: (None, 2048), 1000: (180.0, 4096)}
SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "big-room.toml"


def run(n: int, out: Path, timeout: float | None = None) -> dict | None:
    """One ``simfed run`` of the big room with ``n`` servers; its summary
    (None if it ran over ``timeout`` seconds)."""
    cmd = [sys.executable, "-m", "simfed", "run", str(SCENARIO), "--set", f"servers.count={n}",
           "--no-plots", "--quiet", "--out", str(out)]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    summary = json.loads((out / "summary.json").read_text())
    summary["_deliveries"] = deliveries(out)
    return summary


def deliveries(out: Path) -> int:
    """Rows of the run's ``deliveries`` table: every event a server stored
    or dropped, by any path (pushed, fetched, backfilled, in a join's
    answer), the work as the servers did it."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(out / "deliveries.parquet").metadata.num_rows


def absolute_goal(n: int, s: dict) -> str:
    """``yes``/``no`` against the issue's absolute goal for ``n`` servers, or ``-``."""
    goal = ABSOLUTE.get(n)
    if goal is None:
        return "-"
    wall, mib = goal
    ok = s["peak_rss_mb"] < mib and (wall is None or s["sim_wall_time_s"] < wall)
    return "yes" if ok else "no"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,200,300", help="comma-separated server counts")
    ap.add_argument("--quick", action="store_true", help="20 and 40 servers")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="keep each run's results in DIR/n<N>")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is stopped")
    args = ap.parse_args()
    sizes = [20, 40] if args.quick else [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        rows = [(n, run(n, root / f"n{n}", args.timeout)) for n in sizes]
    n0, s0 = rows[0]
    print(f"{'servers':>7} {'sim CPU s':>9} {'sim wall s':>10} {'peak MiB':>9} {'messages':>9} {'time ratio':>10} "
          f"{'work ratio':>10} {'msg ratio':>9} {'deliveries':>10} {'dlv ratio':>9} {'us/dlv':>7} {'ratio goal':>10} "
          f"{'abs. goal':>9}")
    for n, s in rows:
        if s is None:
            print(f"{n:>7} {'> ' + format(args.timeout, '.0f'):>10} (stopped)")
            continue
        t = cpu_seconds(s)
        work_ratio = (n / n0) ** 2
        time_ratio = t / cpu_seconds(s0) if s0 is not None else float("nan")
        msg_ratio = messages(s) / messages(s0) if s0 is not None else float("nan")
        dlv_ratio = s["_deliveries"] / s0["_deliveries"] if s0 is not None else float("nan")
        ratio_ok = "-" if n == n0 or s0 is None else ("yes" if time_ratio <= GOAL_SLACK * work_ratio else "no")
        print(f"{n:>7} {t:>9.1f} {s['sim_wall_time_s']:>10.1f} {s['peak_rss_mb']:>9.0f} {messages(s):>9,} "
              f"{time_ratio:>10.2f} {work_ratio:>10.2f} {msg_ratio:>9.2f} {s['_deliveries']:>10,} {dlv_ratio:>9.2f} "
              f"{1e6 * t / max(1, s['_deliveries']):>7.0f} "
              f"{ratio_ok:>10} {absolute_goal(n, s):>9}")
    print(f"goals: time ratio (CPU seconds of the simulation) <= {GOAL_SLACK} x work ratio (issue 14: 500 servers "
          "<= 30x the time of 100); 500 servers < 2 GiB; 1,000 servers < 180 s (wall) and < 4 GiB. "
          "msg ratio: the federation messages sent; dlv ratio: the events the servers stored or dropped by "
          "any path (the deliveries table), the work as measured; us/dlv: CPU microseconds per delivery")


def cpu_seconds(s: dict) -> float:
    """The simulation's CPU seconds (its wall seconds from runs before ``sim_cpu_time_s`` existed)."""
    return float(s.get("sim_cpu_time_s", s["sim_wall_time_s"]))


def messages(s: dict) -> int:
    """Federation messages sent in the run (requests and responses of every kind)."""
    return int(sum(s["messages"].values()))


if __name__ == "__main__":
    main()
