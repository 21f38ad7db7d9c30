"""Big-room scaling: wall time and peak memory of ``scenarios/big-room.toml``
against the number of servers.

Runs ``simfed run scenarios/big-room.toml --set servers.count=N --no-plots``
once per size, each in its own process (so ``peak_rss_mb`` is that run's
alone), and prints ``sim_wall_time_s`` (the simulation, without the tables)
and ``peak_rss_mb`` from each ``summary.json``, with the time ratio of each
size to the smallest against the work ratio (deliveries grow as the square of
the server count: 300 servers do 9x the work of 100). Goal (issue 14): the
time grows no faster than the work, with 20% slack (500 servers <= 30x the
time of 100, where the work grows 25x).

    python benchmarks/bigroom.py                  # 100, 200, 300 servers
    python benchmarks/bigroom.py --sizes 100,500
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
SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "big-room.toml"


def run(n: int, out: Path) -> dict:
    """One ``simfed run`` of the big room with ``n`` servers; its summary."""
    cmd = [sys.executable, "-m", "simfed", "run", str(SCENARIO), "--set", f"servers.count={n}",
           "--no-plots", "--quiet", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,200,300", help="comma-separated server counts")
    ap.add_argument("--quick", action="store_true", help="20 and 40 servers")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="keep each run's results in DIR/n<N>")
    args = ap.parse_args()
    sizes = [20, 40] if args.quick else [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        rows = [(n, run(n, root / f"n{n}")) for n in sizes]
    n0, s0 = rows[0]
    print(f"{'servers':>7} {'sim wall s':>10} {'peak MiB':>9} {'time ratio':>10} {'work ratio':>10} {'goal met':>8}")
    for n, s in rows:
        t = s["sim_wall_time_s"]
        time_ratio, work_ratio = t / s0["sim_wall_time_s"], (n / n0) ** 2
        print(f"{n:>7} {t:>10.1f} {s['peak_rss_mb']:>9.0f} {time_ratio:>10.2f} {work_ratio:>10.2f} "
              f"{'yes' if time_ratio <= GOAL_SLACK * work_ratio else 'no':>8}")
    print(f"goal: time ratio <= {GOAL_SLACK} x work ratio (issue 14: 500 servers <= 30x the time of 100)")


if __name__ == "__main__":
    main()
