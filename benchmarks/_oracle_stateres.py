"""Time Synapse's state resolution on one input (run with the ORACLE python).

Called by ``benchmarks/stateres.py``; not meant to be run by hand, but can be::

    .oracle-venv/bin/python benchmarks/_oracle_stateres.py IN.json [--repeats 5]

IN.json = {"room_version": "11", "events": [PDUs with event_id],
"state_sets": [[event_id, ...], ...], "rejected": {event_id: reason}}.
Prints JSON: {"median_s", "times_s", "median_cpu_s", "cpu_s" (process CPU time), "resolved": [[type, state_key, id]],
"synapse_version", "load_s"}. Loading events into Synapse objects is not
timed, nor is one warm-up call; each timed call is ``synapse_oracle.resolve_state(rv, events,
state_sets, mode="persisted")`` (a fresh in-memory store per call).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from _oracle_common import oracle_input


def main() -> int:
    so, inp, repeats = oracle_input()
    t0 = time.perf_counter()
    rv = so.room_version(inp.get("room_version", "11"))
    events = so.load_events(inp["events"], rv, inp.get("rejected"))
    by_id = {e.event_id: e for e in events}
    state_sets = [so.state_map_from_ids(s, by_id) for s in inp["state_sets"]]
    load_s = time.perf_counter() - t0

    times, cpu, res = [], [], None
    so.resolve_state(rv, events, state_sets, mode="persisted")  # warm-up, untimed (as on simfed's side)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = so.resolve_state(rv, events, state_sets, mode="persisted")
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    json.dump({
        "median_s": statistics.median(times),
        "times_s": times,
        "median_cpu_s": statistics.median(cpu),
        "cpu_s": cpu,
        "load_s": load_s,
        "resolved": so.triples(res),
        "synapse_version": so.SYNAPSE_VERSION,
    }, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
