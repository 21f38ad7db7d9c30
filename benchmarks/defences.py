"""What Synapse's federation rate limiter does to honest runs.

Runs each shipped scenario twice on the same seed, with
``[federation.rate_limit]`` on (the default, Synapse's ``rc_federation``)
and off, and prints per run: the defence counters summed over honest
servers (requests slept, queued, refused), fetch requests made, events
lost, p95 event convergence time and whether state converged.

    python benchmarks/defences.py                        # a few shipped scenarios
    python benchmarks/defences.py scenarios/partition-heal.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simfed.experiment.runner import run_scenario
from simfed.experiment.scenario import load_scenario

DEFAULT = ("baseline.toml", "partition-heal.toml", "crash-restart.toml", "lossy-network.toml")


def row(path: Path, enabled: bool) -> str:
    sc = load_scenario(path, overrides=[f"federation.rate_limit.enabled={'true' if enabled else 'false'}"])
    res = run_scenario(sc, out_dir=None, progress=False, plots=False)
    s = res.summary
    d = s["defences"]
    fetches = sum(v for k, v in s["messages"].items()
                  if k in ("get_missing_events", "state_ids", "state", "event", "event_auth", "backfill"))
    p95 = s["event_convergence_ms"]["p95"]
    return (f"{path.name:28} {'on ' if enabled else 'off'} slept={d['rate_limit_slept']:5} "
            f"queued={d['rate_limit_queued']:4} refused={d['rate_limited']:4} fetches={fetches:6} "
            f"lost={s['events_lost']:4} p95_ms={p95 if p95 is None else round(p95):>7} "
            f"state_converged={s['state_converged']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", type=Path)
    args = ap.parse_args()
    here = Path(__file__).resolve().parent.parent / "scenarios"
    for path in args.scenarios or [here / n for n in DEFAULT]:
        for enabled in (True, False):
            print(row(path, enabled), flush=True)


if __name__ == "__main__":
    main()
