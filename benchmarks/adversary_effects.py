"""What an adversary costs the honest servers: a scenario with its
``[[adversaries]]`` against the same scenario (same seed) without them.

Prints, for the events created by the servers that stay honest in both
runs: how many there are, how many some honest server never held by the
end (lost), and their convergence time (p50/p95/max, ms; a lost event
counts as never converged, inf); the honest servers' counters that show the adversary's effect
(failed requests, refused answers, signature checks); what the adversary
did; and whether the honest servers end in one state::

    .venv/bin/python benchmarks/adversary_effects.py scenarios/adversary-withhold.toml
    .venv/bin/python benchmarks/adversary_effects.py scenarios/adversary-withhold.toml \
        --set 'adversaries[0].answer="not_found"'
"""

from __future__ import annotations

import argparse
from collections import Counter

from simfed import simulate
from simfed.experiment.scenario import load_scenario
from simfed.metrics.convergence import event_convergence

COUNTED = ("request_failed:", "bad_answer_", "request:get_missing_events", "request:state_ids", "signature_checks")


def measure(scenario, honest: set[str]) -> dict:
    res = simulate(scenario)
    tables = res.recorder.tables()
    ec = event_convergence(tables, honest=honest)
    mine = ec[ec["creator"].isin(honest) & (ec["n_expected"] > 0)]
    conv = mine["convergence_ms"].fillna(float("inf"))
    counters: Counter[str] = Counter()
    for name in honest:
        counters.update({k: v for k, v in res.servers[name].counters.items() if k.startswith(COUNTED)})
    states = {tuple(sorted(res.servers[n].rooms[res.room_id].current_state().items())) for n in honest}
    adv = tables.get("adversary")
    return {
        "events": len(mine), "lost": int(mine["lost"].sum()),
        "p50": conv.quantile(0.5, interpolation="higher"), "p95": conv.quantile(0.95, interpolation="higher"),
        "max": conv.max(),
        "counters": dict(sorted(counters.items())), "one_state": len(states) == 1,
        "actions": adv["action"].value_counts().to_dict() if adv is not None and len(adv) else {},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--set", action="append", default=[], help="override KEY=VALUE (as simfed run --set)")
    args = ap.parse_args()
    scenario = load_scenario(args.scenario, overrides=args.set)
    bad = {a.server for a in scenario.adversaries} | set(scenario.servers.malicious)
    honest = set(scenario.server_names()) - bad
    runs = {"with adversaries": scenario, "without": scenario.model_copy(update={"adversaries": ()})}
    for label, sc in runs.items():
        m = measure(sc, honest)
        print(f"{label}: honest events {m['events']}, lost {m['lost']}, convergence ms p50 {m['p50']:.0f} "
              f"p95 {m['p95']:.0f} max {m['max']:.0f}, honest servers in one state: {m['one_state']}")
        print(f"  honest counters: {m['counters']}")
        if m["actions"]:
            print(f"  adversary actions: {m['actions']}")


if __name__ == "__main__":
    main()
