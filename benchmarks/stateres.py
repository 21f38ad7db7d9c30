"""simfed's state resolution v2 against Synapse's, on the same input, over a grid of shapes.

Issue 14 goal: simfed's v2 (``compat="synapse"``) at least 5x faster than
Synapse's v2 at 2k, 10k and 50k events, for fork counts 2-16 and for long
concurrent power-level chains; every cell is reported.

Shapes (one input per cell, generated deterministically from ``--seed``):

* ``forks=k``: a random room from ``tests/roomgen.py`` (``--members`` users on
  ``members/10`` servers, public room; members joining, leaving, invited,
  kicked, banned; power-level, topic, name and join-rule changes; messages;
  ~3% deliberately unauthorised events) on at most ``k`` concurrent forks
  that merge rarely. After ``n`` events the walk goes on until exactly ``k``
  forward extremities stand (at most ``n/2`` more events); the states after
  them (the generator's own ``RoomState``, ``compat="synapse"``) are the
  ``k`` state sets.
* ``plchains``: two admins on two servers each extend their own chain of
  ``m.room.power_levels`` events alternating with topic changes
  (``benchmarks/plchains.py``, no merges), so the chains never meet; the two
  tips' states are the state sets and the full conflicted set holds both
  whole chains.

Timed per cell, in this order, each a median of ``--repeats`` (``--big-repeats``
for cells of 20,000 events or more, the same count for both sides), after
one untimed warm-up call on each side:

* simfed: ``resolve_state("v2", state_sets, events, compat="synapse",
  rejected=...)`` with no ``auth_chains`` argument, so every call builds a
  fresh ``AuthChainIndex``, and with the ``check_auth`` memo cleared before
  each call: nothing is cached between repeats;
* Synapse: ``benchmarks/_oracle_stateres.py`` in the oracle venv times
  ``synapse_oracle.resolve_state(rv, events, state_sets, mode="persisted")``
  (Synapse's ``v2.resolve_events_with_store`` over an in-memory store whose
  auth chain difference is a plain graph walk; loading events is not timed).

Each repeat records process CPU time and wall-clock time; the speed-up
compared with the goal is the CPU-time one (the machine is shared, so wall
times carry other jobs' load; both are printed). Both resolved states are
compared key by key. Usage::

    python benchmarks/stateres.py                               # 2k,10k,50k x forks 2,4,8,16 + plchains
    python benchmarks/stateres.py --sizes 2000,10000 --forks 4  # a sub-grid
    python benchmarks/stateres.py --quick                       # 500 events, forks 2,16 + plchains
    python benchmarks/stateres.py --cache /tmp/sr               # keep generated inputs between runs
    python benchmarks/stateres.py --no-synapse --profile 15     # simfed only, cProfile top 15 per cell

Always exits 0: this prints figures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pickle
import pstats
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for tests/roomgen.py
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from simfed.protocol import AuthChainIndex, auth_chain_difference, process_room, resolve_state  # noqa: E402
from simfed.protocol.auth import clear_auth_memo as _clear_auth_memo  # noqa: E402
from simfed.protocol.stateres.v2 import clear_replay_infos  # noqa: E402


def clear_auth_memo() -> None:
    """Forget the check_auth memo and the replay's per-event info: each
    timed repeat starts from nothing content-derived."""
    _clear_auth_memo()
    clear_replay_infos()
from simfed.protocol.stateres import separate  # noqa: E402
from tests.roomgen import generate_room  # noqa: E402

GOAL = 5.0
BIG = 20_000
ORACLE_PY = os.environ.get("SIMFED_ORACLE_PYTHON", os.path.join(REPO, ".oracle-venv", "bin", "python"))
ORACLE_SCRIPT = os.path.join(REPO, "benchmarks", "_oracle_stateres.py")


def fork_room(n: int, forks: int, seed: int, members: int):
    """(events, state sets, rejected) of a random room ending on ``forks`` tips."""
    g = generate_room(
        seed, n_events=n, n_servers=max(2, members // 10), n_users=members,
        fork_prob=0.3, merge_prob=0.04, max_tips=forks, bad_prob=0.03, stale_prob=0.02,
        compat="synapse", join_rule="public", return_gen=True,
    )
    extra = 0
    while len(g.room.forward_extremities) != forks and extra < n // 2:
        g.step()
        extra += 1
    tips = sorted(g.room.forward_extremities)
    return g.events, [g.room.state_after(t) for t in tips], dict(g.room.rejected)


def plchain_room(n: int, seed: int):
    """(events, state sets, rejected) of two power-level chains that never merge."""
    from plchains import pl_chains

    events = pl_chains(n, merge_every=0, seed=seed)
    res = process_room(events, "11", compat="synapse")
    rejected = {e: d.code for e, d in res.room.status.items() if d.outcome == "rejected"}
    return events, [res.state_after(t) for t in res.forward_extremities], rejected


def make_cell(shape: str, n: int, seed: int, members: int, cache: str | None):
    """The input of one cell and the seconds it took to make (or load)."""
    t0 = time.perf_counter()
    path = os.path.join(cache, f"{shape}-{n}-s{seed}-m{members}.pickle") if cache else None
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            cell = pickle.load(f)
    else:
        if shape == "plchains":
            cell = plchain_room(n, seed)
        else:
            cell = fork_room(n, int(shape.removeprefix("forks=")), seed, members)
        if path:
            os.makedirs(cache, exist_ok=True)
            with open(path, "wb") as f:
                pickle.dump(cell, f, protocol=pickle.HIGHEST_PROTOCOL)
    return cell, time.perf_counter() - t0


def simfed_time(state_sets, events_map, rejected, repeats: int):
    """(median wall seconds, median CPU seconds, resolved state)."""
    times, cpu, out = [], [], None
    resolve_state("v2", state_sets, events_map, "11", compat="synapse", rejected=rejected)  # warm-up, untimed
    for _ in range(repeats):
        clear_auth_memo()  # no check_auth answer from an earlier repeat (or from making the input)
        t0, c0 = time.perf_counter(), time.process_time()
        out = resolve_state("v2", state_sets, events_map, "11", compat="synapse", rejected=rejected)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu), out


def simfed_profile(state_sets, events_map, rejected, top: int) -> str:
    prof = cProfile.Profile()
    clear_auth_memo()
    prof.enable()
    resolve_state("v2", state_sets, events_map, "11", compat="synapse", rejected=rejected)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def synapse_run(events, state_sets, rejected, repeats: int):
    """The oracle's answer (``median_s``, ``median_cpu_s``, ``resolved`` as a
    dict), or a string saying why there is none."""
    if not os.path.exists(ORACLE_PY):
        return f"no oracle python at {ORACLE_PY} (set SIMFED_ORACLE_PYTHON)"
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
                           capture_output=True, text=True, timeout=3600)
    finally:
        os.unlink(path)
    if p.returncode != 0:
        return "oracle failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    out = json.loads(p.stdout)
    out["resolved"] = {(t, k): e for t, k, e in out["resolved"]}
    return out


def synapse_time(events, state_sets, rejected, repeats: int):
    """(median wall seconds, resolved dict) from the oracle, or (None, reason)."""
    out = synapse_run(events, state_sets, rejected, repeats)
    if isinstance(out, str):
        return None, out
    return out["median_s"], out["resolved"]


def full_conflicted_size(state_sets, events_map) -> tuple[int, int]:
    """(conflicted keys, full conflicted set) by Synapse's definition."""
    _, conflicted = separate(state_sets)
    if not conflicted:
        return 0, 0
    full = auth_chain_difference([s.values() for s in state_sets], AuthChainIndex(events_map),
                                 include_state_events=True)
    for c in conflicted.values():
        full |= c
    return len(conflicted), len(full)


def _ints(ap: argparse.ArgumentParser, name: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--{name}={text!r}: expected comma-separated integers, e.g. 2,4,8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,10000,50000", help="room sizes in events (default 2000,10000,50000)")
    ap.add_argument("--forks", default="2,4,8,16", help="fork counts (default 2,4,8,16)")
    ap.add_argument("--no-plchains", action="store_true", help="skip the power-level chains shape")
    ap.add_argument("--members", type=int, default=50, help="users in the fork rooms (default 50)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per side (default 5)")
    ap.add_argument("--big-repeats", type=int, default=3,
                    help=f"timed repeats per side for cells of {BIG} events or more (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", metavar="DIR", help="keep generated inputs in DIR and reuse them")
    ap.add_argument("--quick", action="store_true", help="smoke test: 500 events, forks 2 and 16, plchains")
    ap.add_argument("--no-synapse", action="store_true", help="skip the Synapse timing")
    ap.add_argument("--profile", type=int, metavar="N", default=0, help="print simfed's cProfile top N per cell")
    a = ap.parse_args(argv)
    sizes = [500] if a.quick else _ints(ap, "sizes", a.sizes)
    forks = [2, 16] if a.quick else _ints(ap, "forks", a.forks)
    if any(k < 2 for k in forks):
        ap.error(f"--forks={a.forks!r}: every fork count must be at least 2")
    shapes = [f"forks={k}" for k in forks] + ([] if a.no_plchains else ["plchains"])
    repeats = 3 if a.quick else a.repeats

    print(f"state resolution v2 (compat='synapse', room v11): simfed vs Synapse on the same input, "
          f"median of {repeats} ({a.big_repeats} from {BIG} events), {a.members} members in fork rooms")
    print(f"goal: simfed >= {GOAL}x faster than Synapse in every cell\n", flush=True)
    rows = []
    for n in sizes:
        for shape in shapes:
            (events, state_sets, rejected), make_s = make_cell(shape, n, a.seed, a.members, a.cache)
            events_map = {e.event_id: e for e in events}
            reps = repeats if len(events) < BIG else a.big_repeats
            confl, full = full_conflicted_size(state_sets, events_map)
            s_wall, s_cpu, s_res = simfed_time(state_sets, events_map, rejected, reps)
            y = "skipped (--no-synapse)" if a.no_synapse else synapse_run(events, state_sets, rejected, reps)
            same = (s_res == y["resolved"]) if isinstance(y, dict) else None
            row = dict(n=len(events), shape=shape, sets=len(state_sets), conflicted=confl, full=full,
                       simfed=s_cpu, simfed_wall=s_wall, same=same, reps=reps,
                       synapse=y["median_cpu_s"] if isinstance(y, dict) else None,
                       synapse_wall=y["median_s"] if isinstance(y, dict) else None)
            rows.append(row)
            y_txt = "-" if row["synapse"] is None else f"{row['synapse'] * 1e3:.1f} ms"
            ratio = f"{row['synapse'] / s_cpu:.1f}x" if row["synapse"] else "-"
            print(f"  {shape:<9} {len(events):>6} events (made/loaded in {make_s:.1f} s): {len(state_sets)} sets, "
                  f"full conflicted {full}; CPU simfed {s_cpu * 1e3:.1f} ms, Synapse {y_txt}, {ratio}", flush=True)
            if not isinstance(y, dict):
                print(f"    Synapse: {y}")
            elif not same:
                y_res = y["resolved"]
                diff = sorted(k for k in set(s_res) | set(y_res) if s_res.get(k) != y_res.get(k))
                print(f"    MISMATCH on {len(diff)} keys, e.g. {diff[:3]}: simfed "
                      f"{[s_res.get(k) for k in diff[:3]]} vs Synapse {[y_res.get(k) for k in diff[:3]]}")
            if a.profile:
                print(simfed_profile(state_sets, events_map, rejected, a.profile))

    print()
    hdr = (f"{'shape':<9}{'events':>7}{'sets':>5}{'confl.':>7}{'full':>7} | {'simfed ms':>10}{'Synapse ms':>11}"
           f"{'speed-up':>9} | {'wall: simfed':>12}{'Synapse':>9}{'speed-up':>9} | {'same':>4} {'reps':>4}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if r["synapse"] is not None:
            y = f"{r['synapse'] * 1e3:>11.1f}{r['synapse'] / r['simfed']:>8.1f}x"
            yw = f"{r['synapse_wall'] * 1e3:>9.1f}{r['synapse_wall'] / r['simfed_wall']:>8.1f}x"
        else:
            y, yw = f"{'-':>11}{'-':>9}", f"{'-':>9}{'-':>9}"
        same = {True: "yes", False: "NO", None: "-"}[r["same"]]
        print(f"{r['shape']:<9}{r['n']:>7}{r['sets']:>5}{r['conflicted']:>7}{r['full']:>7} | "
              f"{r['simfed'] * 1e3:>10.1f}{y} | {r['simfed_wall'] * 1e3:>12.1f}{yw} | {same:>4} {r['reps']:>4}")
    print("\nsets = state sets (fork tips); confl. = conflicted keys; full = full conflicted set (conflicted "
          "events + auth chain difference, Synapse's definition); ms = median process CPU time of one "
          "resolution (the figure compared: the machine is shared), wall = median wall-clock time; "
          "reps = timed repeats per side")
    timed = [r for r in rows if r["synapse"] is not None]
    if timed:
        worst = min(timed, key=lambda r: r["synapse"] / r["simfed"])
        met = sum(r["synapse"] / r["simfed"] >= GOAL for r in timed)
        print(f"goal >= {GOAL}x (CPU time) met in {met} of {len(timed)} cells; worst "
              f"{worst['synapse'] / worst['simfed']:.1f}x ({worst['shape']}, {worst['n']} events); results "
              f"identical in {sum(bool(r['same']) for r in timed)} of {len(timed)}")
    return 0


if __name__ == "__main__":
    main()
