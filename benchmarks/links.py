"""Per directed link: the memory a big-room run holds for each (server, other
server) pair, and the CPU time of seeding a link's two random streams.

Memory: ``scenarios/big-room.toml`` at ``--servers`` servers, under
``tracemalloc`` in a fresh process; the memory traced at the end of the run
(servers and network still alive), grouped by the file that allocated it,
divided by the directed links ``n (n - 1)``. Only the files that keep state
per link are listed (network, streams, tcp, federation, homeserver); the
rest grows with the events, not the links.

Seeding: a ``Network`` of ``--servers`` servers built as a run builds it,
then ``link_rngs`` for every directed link, timed with ``time.process_time``
(median of ``--repeats``): what a full mesh costs before its first message.

    python benchmarks/links.py                   # 200 servers
    python benchmarks/links.py --servers 300 --repeats 5
    python benchmarks/links.py --repo /path/to/other/checkout   # measure another tree
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import tomllib
import tracemalloc
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIO = REPO / "scenarios" / "big-room.toml"
FILES = ("simfed/sim/network.py", "simfed/sim/streams.py", "simfed/sim/tcp.py",
         "simfed/sim/federation.py", "simfed/sim/homeserver.py")


def _memory(repo: str, n: int) -> dict[str, float]:
    sys.path.insert(0, repo)
    from simfed.experiment.scenario import load_scenario
    from simfed.sim.world import simulate

    data = tomllib.loads(SCENARIO.read_text())
    simulate(load_scenario({**data, "servers": {**data["servers"], "count": 2}}))  # warm imports
    data["servers"]["count"] = n
    sc = load_scenario(data)
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    res = simulate(sc)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_file: dict[str, float] = defaultdict(float)
    for s in snap.compare_to(base, "filename"):
        f = s.traceback[0].filename.replace("\\", "/")
        for frag in FILES:
            if f.endswith(frag):
                by_file[frag] += s.size_diff
    links = n * (n - 1)
    del res
    return {k: v / links for k, v in by_file.items()}


def _seeding(repo: str, n: int, repeats: int) -> float:
    sys.path.insert(0, repo)
    from simfed.experiment.scenario import load_scenario
    from simfed.sim.world import World

    data = tomllib.loads(SCENARIO.read_text())
    data["servers"]["count"] = n
    times = []
    for _ in range(repeats):
        net = World(load_scenario(data)).network
        names = net.servers
        t0 = time.process_time()
        for a in names:
            for b in names:
                if a != b:
                    net.link_rngs(a, b)
        times.append(time.process_time() - t0)
    times.sort()
    return times[len(times) // 2] / (n * (n - 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repo", default=str(REPO), help="the checkout whose simfed is measured")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        seed_s = pool.apply(_seeding, (args.repo, args.servers, args.repeats))
    with ctx.Pool(1) as pool:
        mem = pool.apply(_memory, (args.repo, args.servers))
    print(f"big-room.toml, {args.servers} servers, {args.servers * (args.servers - 1):,} directed links")
    print(f"seeding a link's two streams (link_rngs, full mesh): {seed_s * 1e6:.1f} us CPU per link")
    print("memory held at the end of the run, bytes per directed link, by allocating file:")
    for frag in FILES:
        print(f"  {mem.get(frag, 0.0):8.0f}  {frag}")
    print(f"  {sum(mem.values()):8.0f}  total of these files")


if __name__ == "__main__":
    main()
