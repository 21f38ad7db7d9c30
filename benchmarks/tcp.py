"""Cost of the TCP packet-loss model on simulator throughput.

Runs one scenario (default ``scenarios/baseline.toml``) in five network
modes on the same seed and prints, per mode, the median wall time of 5
repeats, simulated events per wall second, messages sent, and the ratio of
wall time to the "no loss, no TCP" baseline measured in the same run:

- ``no loss, no TCP``: ``network.tcp.enabled = false``, ``loss = 0`` (the
  network before the TCP model: no handshakes, nothing lost)
- ``TCP, no loss``: handshakes and kept-alive connections only
- ``TCP, loss p``: packet loss ``p`` (default 0.05) under TCP (the default model)
- ``TCP + Mathis, loss p``: the same with the throughput cap
- ``request_loss p``: whole messages dropped with probability p, no TCP

Usage: ``python benchmarks/tcp.py [scenario.toml] [--loss 0.05] [--repeat 5] [--quick]``.
Not a test: always exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from simfed.experiment.scenario import load_scenario
from simfed.sim.world import simulate

ROOT = Path(__file__).resolve().parents[1]


def modes(p: float) -> list[tuple[str, list[str]]]:
    return [
        ("no loss, no TCP", ["network.tcp.enabled=false", "network.loss=0"]),
        ("TCP, no loss", ["network.loss=0"]),
        (f"TCP, loss {p}", [f"network.loss={p}"]),
        (f"TCP + Mathis, loss {p}", [f"network.loss={p}", "network.tcp.mathis=true"]),
        (f"request_loss {p}", ["network.tcp.enabled=false", "network.loss=0", f"network.request_loss={p}"]),
    ]


def run(path: Path, overrides: list[str], repeat: int) -> tuple[float, int, int, int]:
    sc = load_scenario(path, overrides=overrides)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = simulate(sc)
        times.append(time.perf_counter() - t0)
    t = res.recorder.tables()
    traffic = t["traffic"]
    retrans = int(traffic["retransmissions"].sum())
    return statistics.median(times), len(t["events"]), len(traffic), retrans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "baseline.toml"))
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 repeat")
    args = ap.parse_args()
    repeat = 1 if args.quick else args.repeat
    path = Path(args.scenario)
    print(f"scenario: {path.name}, median of {repeat} run(s) per mode")
    print(f"{'mode':<26} {'wall s':>8} {'events':>7} {'events/s':>9} {'messages':>9} {'retrans':>8} {'vs base':>8}")
    base = None
    for name, overrides in modes(args.loss):
        wall, events, messages, retrans = run(path, overrides, repeat)
        base = base or wall
        print(f"{name:<26} {wall:8.2f} {events:7d} {events / wall:9.0f} {messages:9d} {retrans:8d} {wall / base:8.2f}")


if __name__ == "__main__":
    main()
