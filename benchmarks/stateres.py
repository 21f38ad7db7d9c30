"""simfed's state resolution v2 against Synapse's, on the same input.

Issue goal: simfed's v2 (``compat="synapse"``) at least 5x faster than
Synapse's v2 on the same input (the issue quotes Synapse at roughly 0.15 s
for 2k events and 1.4 s for 10k).

Per size: a random room of about that many signed v11 events is generated
with ``tests/roomgen.py`` (members joining, leaving, invited, kicked, banned;
power-level, topic, name and join-rule changes; messages; some unauthorised
events) on up to ``--max-forks`` concurrent forks that merge rarely, with
``--members`` users. ``process_room(events, compat="synapse")`` runs once
(timed and reported as "process DAG", not part of the comparison). The
states after the forward extremities (the fork tips) are the state sets.

Timed, median of ``--repeats``:

* simfed: ``resolve_state("v2", state_sets, events, compat="synapse",
  rejected=...)`` with no ``auth_chains`` argument, so every call builds a
  fresh ``AuthChainIndex`` and nothing is cached between repeats;
* Synapse: ``benchmarks/_oracle_stateres.py`` in the oracle venv times
  ``synapse_oracle.resolve_state(rv, events, state_sets, mode="persisted")``
  (Synapse's ``v2.resolve_events_with_store`` over an in-memory store whose
  auth chain difference is a plain graph walk; loading events is not timed).

Both resolved states are compared. Usage::

    python benchmarks/stateres.py                      # sizes 2000,10000
    python benchmarks/stateres.py --sizes 2000,10000,50000
    python benchmarks/stateres.py --quick              # one room of 500 events
    python benchmarks/stateres.py --no-synapse         # simfed only

Always exits 0: this prints figures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for tests/roomgen.py

from simfed.protocol import AuthChainIndex, auth_chain_difference, process_room, resolve_state  # noqa: E402
from simfed.protocol.stateres import separate  # noqa: E402
from tests.roomgen import generate_room  # noqa: E402

GOAL = 5.0
ORACLE_PY = os.environ.get("SIMFED_ORACLE_PYTHON", os.path.join(REPO, ".oracle-venv", "bin", "python"))
ORACLE_SCRIPT = os.path.join(REPO, "benchmarks", "_oracle_stateres.py")


def make_room(n: int, seed: int, members: int, max_forks: int):
    """Events of one room, the DAG processed, the fork tips' state sets."""
    t0 = time.perf_counter()
    events = generate_room(
        seed, n_events=n, n_servers=max(2, members // 10), n_users=members,
        fork_prob=0.3, merge_prob=0.04, max_tips=max_forks, bad_prob=0.03, stale_prob=0.02,
        compat="synapse", join_rule="public",
    )
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = process_room(events, "11", compat="synapse")
    proc_s = time.perf_counter() - t0
    tips = res.forward_extremities
    return events, res, tips, gen_s, proc_s


def simfed_time(state_sets, events_map, rejected, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = resolve_state("v2", state_sets, events_map, "11", compat="synapse", rejected=rejected)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def synapse_time(events, state_sets, rejected, repeats: int):
    """(median seconds, resolved dict) from the oracle, or (None, reason)."""
    if not os.path.exists(ORACLE_PY):
        return None, f"no oracle python at {ORACLE_PY} (set SIMFED_ORACLE_PYTHON)"
    payload = {
        "room_version": "11",
        "events": [e.pdu_with_id() for e in events],
        "state_sets": [sorted(s.values()) for s in state_sets],
        "rejected": rejected,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload, f)
        path = f.name
    try:
        p = subprocess.run([ORACLE_PY, ORACLE_SCRIPT, path, "--repeats", str(repeats)],
                           capture_output=True, text=True, timeout=1800)
    finally:
        os.unlink(path)
    if p.returncode != 0:
        return None, "oracle failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    out = json.loads(p.stdout)
    return out["median_s"], {(t, k): e for t, k, e in out["resolved"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,10000", help="comma-separated room sizes in events (default 2000,10000)")
    ap.add_argument("--members", type=int, default=60, help="users in the room (default 60)")
    ap.add_argument("--max-forks", type=int, default=8, help="most concurrent forks (default 8)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke test: one room of 500 events, 3 repeats")
    ap.add_argument("--no-synapse", action="store_true", help="skip the Synapse timing")
    a = ap.parse_args(argv)
    try:
        sizes = [500] if a.quick else [int(x) for x in a.sizes.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--sizes={a.sizes!r}: expected comma-separated integers, e.g. 2000,10000")
    repeats = 3 if a.quick else a.repeats

    print(f"state resolution v2 (compat='synapse', room v11): simfed vs Synapse, median of {repeats}")
    print(f"goal: simfed >= {GOAL}x faster than Synapse on the same input\n")
    rows = []
    for n in sizes:
        events, res, tips, gen_s, proc_s = make_room(n, a.seed, a.members, a.max_forks)
        events_map = {e.event_id: e for e in events}
        rejected = {e: d.code for e, d in res.room.status.items() if d.outcome == "rejected"}
        state_sets = [res.state_after(t) for t in tips]
        _, conflicted = separate(state_sets) if len(state_sets) > 1 else ({}, {})
        full = set()
        if conflicted:
            full = auth_chain_difference([s.values() for s in state_sets], AuthChainIndex(events_map),
                                         include_state_events=True)
            for c in conflicted.values():
                full |= c
        s_med, s_res = simfed_time(state_sets, events_map, rejected, repeats)
        if a.no_synapse:
            y_med, y_res = None, "skipped (--no-synapse)"
        else:
            y_med, y_res = synapse_time(events, state_sets, rejected, repeats)
        same = (s_res == y_res) if isinstance(y_res, dict) else None
        row = dict(n=len(events), sets=len(state_sets), conflicted=len(conflicted), full=len(full),
                   rejected=len(rejected), state=len(s_res), simfed=s_med, synapse=y_med, same=same,
                   gen=gen_s, proc=proc_s)
        rows.append(row)
        print(f"  room of {len(events)} events: generated in {gen_s:.1f} s, process DAG {proc_s:.2f} s, "
              f"{len(rejected)} rejected, {len(tips)} tips", flush=True)
        if y_med is None:
            print(f"  Synapse: {y_res}")
        elif not same:
            diff = sorted(k for k in set(s_res) | set(y_res) if s_res.get(k) != y_res.get(k))
            print(f"  MISMATCH on {len(diff)} keys, e.g. {diff[:3]}: simfed "
                  f"{[s_res.get(k) for k in diff[:3]]} vs Synapse {[y_res.get(k) for k in diff[:3]]}")

    print()
    hdr = (f"{'events':>7}{'sets':>5}{'confl.':>7}{'full':>7}{'state':>7} | {'simfed ms':>10}{'Synapse ms':>11}"
           f"{'speed-up':>9} | {'same':>5} | {'process DAG s':>13}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        y = f"{r['synapse'] * 1e3:>11.1f}" if r["synapse"] is not None else f"{'-':>11}"
        sp = f"{r['synapse'] / r['simfed']:>8.1f}x" if r["synapse"] is not None else f"{'-':>9}"
        same = {True: "yes", False: "NO", None: "-"}[r["same"]]
        print(f"{r['n']:>7}{r['sets']:>5}{r['conflicted']:>7}{r['full']:>7}{r['state']:>7} | "
              f"{r['simfed'] * 1e3:>10.1f}{y}{sp} | {same:>5} | {r['proc']:>13.2f}")
    print("\nsets = fork tips (state sets); confl. = conflicted keys; full = full conflicted set "
          "(conflicted events + auth chain difference, Synapse's definition); state = resolved entries")
    for r in rows:
        if r["synapse"] is None:
            continue
        sp = r["synapse"] / r["simfed"]
        print(f"{r['n']:>7} events: {sp:.1f}x faster (goal >= {GOAL}x): {'MET' if sp >= GOAL else 'NOT MET'}"
              f"{'' if r['same'] else '  (results differ!)'}")
    return 0


if __name__ == "__main__":
    main()
