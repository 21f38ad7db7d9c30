"""Deliveries per CPU second of a real ``simfed run`` against a bare SimPy
store-and-forward loop doing the same deliveries (issue 14: >= 0.3 of the floor
at 50 servers).

simfed: ``simfed run scenarios/big-room.toml --set servers.count=50 --set
workload.messages_per_user_per_minute=3`` in this process (``run_scenario``,
as the CLI does, no files written), the simulation timed with
``time.process_time``; deliveries are the rows of its ``deliveries`` table
(event outcomes at servers). At that rate the room makes ~760 events and
~39,000 deliveries, about 10 s of CPU.

floor: 50 SimPy processes, each with a ``simpy.Store`` as inbox; every event
originates at a server (round robin, at spaced times) and is forwarded to the
49 others, each copy through a latency timeout whose callback puts it into
the receiver's store, where the receiver's process takes it (a delivery).
The number of events is chosen so the deliveries match simfed's. Same
process, same run, CPU time (the floor: median of 5 runs); the ratio is the
figure.

The breakdown comes from a second, profiled run (cProfile): own time grouped
by layer (the file a function is in; the time of C builtins is charged to
the layers that called them, in proportion), as a share and as microseconds
per delivery scaled to the unprofiled CPU time.

    python benchmarks/floor.py                    # 50 servers, rate 3
    python benchmarks/floor.py --servers 100 --rate 1
    python benchmarks/floor.py --no-profile       # ratio only
    python benchmarks/floor.py --repeats 3        # median of 3 simfed runs
    python benchmarks/floor.py --quick            # 10 servers, seconds
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import simpy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simfed.experiment.runner import run_scenario  # noqa: E402
from simfed.experiment.scenario import load_scenario  # noqa: E402

GOAL = 0.3
#: the floor is short: the median of this many runs
FLOOR_REPEATS = 5
SCENARIO = REPO / "scenarios" / "big-room.toml"

#: (path fragment, layer), first match wins
LAYERS = (
    ("simfed/sim/network.py", "network (links, latency, loss, tcp)"),
    ("simfed/sim/tcp.py", "network (links, latency, loss, tcp)"),
    ("simfed/sim/latency.py", "network (links, latency, loss, tcp)"),
    ("simfed/sim/loss.py", "network (links, latency, loss, tcp)"),
    ("simfed/sim/streams.py", "network (links, latency, loss, tcp)"),
    ("simfed/sim/transport.py", "transport (requests, answers)"),
    ("simfed/sim/deadlines.py", "transport (requests, answers)"),
    ("simfed/sim/federation.py", "federation sender"),
    ("simfed/sim/serving.py", "serving + defences"),
    ("simfed/sim/defences", "serving + defences"),
    ("simfed/sim/processing.py", "processing (CPU model)"),
    ("simfed/sim/detached.py", "simpy (and simfed's process driver)"),
    ("simfed/sim/homeserver.py", "homeserver"),
    ("simfed/sim/", "sim other (world, workload, fanout, ...)"),
    ("simfed/metrics/", "metrics recorder"),
    ("simfed/protocol/stateres", "state resolution"),
    ("simfed/protocol/auth", "auth rules + chains"),
    ("simfed/protocol/room.py", "room state"),
    ("simfed/protocol/", "protocol other (events, checks, dag)"),
    ("simpy/", "simpy (and simfed's process driver)"),
)


def bare_floor(n_servers: int, n_deliveries: int) -> tuple[int, float]:
    """(deliveries, CPU seconds) of the bare store-and-forward loop."""
    env = simpy.Environment()
    inboxes = [simpy.Store(env) for _ in range(n_servers)]
    got = [0] * n_servers
    n_events = -(-n_deliveries // (n_servers - 1))

    def server(i: int):
        inbox = inboxes[i]
        while True:
            yield inbox.get()
            got[i] += 1

    def origin():
        for e in range(n_events):
            yield env.timeout(7.0)
            src = e % n_servers
            for k in range(1, n_servers):
                dst = (src + k) % n_servers
                ev = env.timeout(20.0 + (e * 31 + dst * 17) % 200, (dst, e))
                ev.callbacks.append(lambda ev: inboxes[ev.value[0]].put(ev.value))

    for i in range(n_servers):
        env.process(server(i))
    env.process(origin())
    t0 = time.process_time()
    env.run()
    dt = time.process_time() - t0
    return sum(got), dt


def scenario(servers: int, rate: float):
    """big-room.toml with ``servers`` servers and ``rate`` messages per user per minute."""
    return load_scenario(SCENARIO, overrides=[f"servers.count={servers}",
                                              f"workload.messages_per_user_per_minute={rate}"])


def run_simfed(servers: int, rate: float, profile: cProfile.Profile | None = None) -> tuple[int, float]:
    """(deliveries, CPU seconds of the simulation) of one in-process run."""
    from simfed.sim.world import simulate

    cpu = [0.0]

    def timed(*args, **kwargs):
        if profile is not None:
            profile.enable()
        t0 = time.process_time()
        try:
            return simulate(*args, **kwargs)
        finally:
            cpu[0] = time.process_time() - t0
            if profile is not None:
                profile.disable()

    res = run_scenario(scenario(servers, rate), out_dir=None, progress=False, plots=False, simulator=timed)
    return len(res.tables["deliveries"]), cpu[0]


def layer_of(filename: str) -> str | None:
    f = filename.replace(os.sep, "/")
    for frag, name in LAYERS:
        if frag in f:
            return name
    if f.startswith("~") or f.startswith("<"):
        return None  # builtin: charged to its callers
    return "other Python (stdlib, numpy, ...)"


def breakdown(pr: cProfile.Profile) -> dict[str, float]:
    """Own seconds per layer, builtins' own time charged to their callers' layers."""
    stats = pstats.Stats(pr).stats  # type: ignore[attr-defined]
    out: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), (_cc, _nc, tt, _ct, callers) in stats.items():
        layer = layer_of(filename)
        if layer is not None:
            out[layer] += tt
            continue
        total = sum(c[2] for c in callers.values()) or 0.0
        if not callers or total <= 0:
            out["builtins (no caller)"] += tt
            continue
        for (cf, _cl, _cn), c in callers.items():
            out[layer_of(cf) or "builtins (called by builtins)"] += tt * c[2] / total
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--rate", type=float, default=3.0, help="workload.messages_per_user_per_minute")
    ap.add_argument("--repeats", type=int, default=1, help="simfed runs (the median counts)")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiled run (the breakdown)")
    ap.add_argument("--quick", action="store_true", help="10 servers, rate 3")
    args = ap.parse_args()
    servers = 10 if args.quick else args.servers
    run_simfed(4, 1.0)  # warm imports and caches
    runs = sorted(run_simfed(servers, args.rate) for _ in range(max(1, args.repeats)))
    deliveries, cpu = runs[len(runs) // 2]
    floors = sorted(bare_floor(servers, deliveries) for _ in range(FLOOR_REPEATS))
    floor_n, floor_cpu = floors[FLOOR_REPEATS // 2]
    rate, floor_rate = deliveries / cpu, floor_n / floor_cpu
    print(f"scenario: big-room.toml, servers.count={servers}, "
          f"workload.messages_per_user_per_minute={args.rate}")
    print(f"simfed:  {deliveries:>9,} deliveries in {cpu:7.2f} s CPU = {rate:>9,.0f} /s "
          f"({cpu / deliveries * 1e6:.1f} us per delivery)")
    print(f"floor:   {floor_n:>9,} deliveries in {floor_cpu:7.2f} s CPU = {floor_rate:>9,.0f} /s "
          f"({floor_cpu / floor_n * 1e6:.1f} us per delivery)")
    ratio = rate / floor_rate
    print(f"ratio:   {ratio:.3f} of the floor (goal >= {GOAL}: {'met' if ratio >= GOAL else 'not met'})")
    if args.no_profile:
        return
    pr = cProfile.Profile()
    pdeliv, _ = run_simfed(servers, args.rate, profile=pr)
    layers = breakdown(pr)
    total = sum(layers.values())
    print(f"\nper-delivery cost by layer (cProfile own time, builtins charged to callers; "
          f"us scaled to the unprofiled {cpu / deliveries * 1e6:.1f} us):")
    for name, t in sorted(layers.items(), key=lambda kv: -kv[1]):
        share = t / total
        print(f"  {name:<42} {share:6.1%} {share * cpu / deliveries * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
