"""State resolution on two long concurrent power-level chains with merges (issue 13, item 7).

The shape: after create, joins and a first power-levels event, two admins
(on two servers) each extend their own chain of ``m.room.power_levels``
events, every one citing the previous event of its own chain as its power
levels auth event, so the two chains never meet in the auth graph. Every
``--merge-every`` events per chain, admin A's next event is a merge (a
message whose prev_events are both chain tips); A's chain carries on from
it. Half of the events are power-levels changes, the rest topic changes,
alternating. At the end the room has two forward extremities whose state
sets conflict on everything the chains touched.

Timed, median of ``--repeats``, at each size:

* process: ``process_room`` (what ``simfed resolve`` does: authorise every
  event and compute the state after each, resolving at every merge), under
  ``compat="synapse"`` (the CLI's default) and ``compat="spec"``, once each;
* simfed v2: one resolution at the two tips, ``resolve_state("v2", ...,
  compat="synapse")`` with a fresh ``AuthChainIndex``;
* Synapse v2 on the same state sets (``benchmarks/_oracle_stateres.py`` in
  the oracle venv); the resolved states are compared.

Usage::

    python benchmarks/plchains.py                       # 1000,2000,5000 events
    python benchmarks/plchains.py --sizes 500 --no-synapse

Always exits 0: it prints figures, ratios to the smallest size (growth) and
simfed / Synapse in the same run. The auth checks state resolution makes
while processing the room (counted by wrapping ``auth_checker`` and
``nonmember_checker`` in ``simfed.protocol.stateres.v2``) measure the work
independently of the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import simfed.protocol.stateres.v2 as v2  # noqa: E402
from simfed.protocol import Event, derive_server_key, process_room, resolve_state  # noqa: E402
from stateres import synapse_time  # noqa: E402

ROOM = "!chains:a.test"
A, B = "@admin:a.test", "@admin:b.test"


def pl_chains(n_events: int, merge_every: int = 10, seed: int = 0) -> list[Event]:
    """About ``n_events`` signed v11 events of the shape described above, in creation order.

    ``merge_every=0``: no merges (two chains that never meet in the DAG either).
    """
    keys = {s: derive_server_key(seed, s) for s in ("a.test", "b.test")}
    out: list[Event] = []
    ts = 1_700_000_000_000

    def add(sender: str, type_: str, content: dict, prev: list[Event], auth: list[Event],
            state_key: str | None = "") -> Event:
        nonlocal ts
        ts += 1
        fields = {"room_id": ROOM, "sender": sender, "type": type_, "content": content,
                  "prev_events": [p.event_id for p in prev], "auth_events": [a.event_id for a in auth],
                  "depth": max((p.depth for p in prev), default=0) + 1, "origin_server_ts": ts}
        if state_key is not None:
            fields["state_key"] = state_key
        ev = Event.create(fields, sender.partition(":")[2], keys[sender.partition(":")[2]])
        out.append(ev)
        return ev

    create = add(A, "m.room.create", {"room_version": "11"}, [], [])
    join_a = add(A, "m.room.member", {"membership": "join"}, [create], [create], A)
    pl0 = add(A, "m.room.power_levels", {"users": {A: 100, B: 100}}, [join_a], [create, join_a])
    jr = add(A, "m.room.join_rules", {"join_rule": "public"}, [pl0], [create, join_a, pl0])
    join_b = add(B, "m.room.member", {"membership": "join"}, [jr], [create, pl0, jr], B)
    tips = {A: join_b, B: join_b}
    pls = {A: pl0, B: pl0}
    joins = {A: join_a, B: join_b}
    i = 0
    while len(out) < n_events:
        for who in (A, B):
            i += 1
            prev = [tips[who]]
            if who == A and merge_every and i % (2 * merge_every) == 1 and tips[A] is not tips[B]:
                tips[A] = add(A, "m.room.message", {"msgtype": "m.text", "body": f"merge {i}"},
                              [tips[A], tips[B]], [create, pls[A], joins[A]], None)
                prev = [tips[A]]
            auth = [create, pls[who], joins[who]]
            if i % 2:
                ev = add(who, "m.room.power_levels",
                         {"users": {A: 100, B: 100}, "events": {"org.example.n": i % 100}}, prev, auth)
                pls[who] = ev
            else:
                ev = add(who, "m.room.topic", {"topic": f"{who} {i}"}, prev, auth)
            tips[who] = ev
    return out


def _counting_checks(fn):
    """(number of auth checks state resolution made, fn()): a load-independent measure of work."""
    originals = v2.auth_checker, v2.nonmember_checker
    n = 0

    def counting(factory):
        def make(*args, **kwargs):
            allowed = factory(*args, **kwargs)

            def counted(*check_args):
                nonlocal n
                n += 1
                return allowed(*check_args)

            return counted

        return make

    v2.auth_checker, v2.nonmember_checker = (counting(f) for f in originals)
    try:
        out = fn()
    finally:
        v2.auth_checker, v2.nonmember_checker = originals
    return n, out


def _median(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,2000,5000")
    ap.add_argument("--merge-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-synapse", action="store_true")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    print(f"two power-level chains, a merge every {a.merge_every} events per chain; median of {a.repeats}")
    print(f"{'events':>7} {'process synapse':>15} {'(auth checks)':>13} {'process spec':>13} {'simfed v2':>10} "
          f"{'Synapse v2':>11} {'Synapse/simfed':>15} same")
    base = None
    for n in sizes:
        events = pl_chains(n, a.merge_every)
        by_id = {e.event_id: e for e in events}
        proc_s, (checks, res) = _median(lambda: _counting_checks(lambda: process_room(events, "11", compat="synapse")), 1)
        spec_s, _ = _median(lambda: process_room(events, "11", compat="spec"), 1)
        tips = res.forward_extremities
        sets = [res.state_after(t) for t in tips]
        rejected = {e: d.code for e, d in res.room.status.items() if d.outcome == "rejected"}
        s_med, s_res = _median(lambda: resolve_state("v2", sets, by_id, "11", compat="synapse",
                                                     rejected=rejected), a.repeats)
        if a.no_synapse:
            y_med, y_res = None, None
        else:
            y_med, y_res = synapse_time(events, sets, rejected, a.repeats)
        same = "-" if not isinstance(y_res, dict) else ("yes" if y_res == s_res else "NO")
        ratio = f"{y_med / s_med:15.1f}" if isinstance(y_med, float) else f"{'-':>15}"
        y_txt = f"{y_med:10.3f}s" if isinstance(y_med, float) else f"{'-':>11}"
        print(f"{len(events):7d} {proc_s:14.2f}s {checks:13d} {spec_s:12.2f}s {s_med:9.3f}s {y_txt} {ratio} {same}",
              flush=True)
        if base is None:
            base = (len(events), proc_s, checks, spec_s, s_med)
        else:
            k = len(events) / base[0]
            print(f"{'':7} growth vs {base[0]} events (x{k:.1f} events, x{k * k:.1f} if quadratic): process synapse "
                  f"x{proc_s / base[1]:.1f} (auth checks x{checks / base[2]:.1f}), spec x{spec_s / base[3]:.1f}, "
                  f"one v2 resolution x{s_med / base[4]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
