"""Measure the per-operation costs behind ``simfed.sim.processing.CALIBRATED``.

The processing model charges simulated CPU time per unit of work a server's
counters record. This script measures each unit on this machine, with
Synapse's own code where Synapse has it (the oracle venv), prints the
figures and the constants derived from them. The defaults in
``simfed/sim/processing.py`` are the constants a run of this script printed
(date and machine in ``benchmarks/README.md``); they are never measured at
run time, so simulations stay deterministic.

Measured:

* raw ed25519 verify and sign per second (pynacl, this process), and
  SHA-256 of an event's canonical JSON (for orientation);
* Synapse (``_oracle_processing.py`` in the oracle venv): the signature check
  of one received PDU, ``compute_content_hash``, signing a new event,
  the auth checks of one event, and v2 state resolution on rooms of several
  sizes (``tests/roomgen.py``; state sets = fork tips and subsets of them).
  Resolution time is fitted by least squares as
  ``resolution_ms + resolution_per_conflicted_ms x conflicted events``
  (conflicted events counted as ``RoomState`` counts them:
  ``simfed.protocol.room.conflicted_size``).

Not measured (an assumption with a source, printed): the database write per
event persisted (see ``DB_WRITE_MS``).

Usage::

    python benchmarks/calibrate_processing.py            # sizes 200,500,1000,2000 (~2 min)
    python benchmarks/calibrate_processing.py --quick    # sizes 100,300 (~20 s)

Always exits 0: it prints figures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for tests/roomgen.py

from _oracle_common import median_per_item  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from simfed.protocol import derive_server_key, process_room  # noqa: E402
from simfed.protocol.canonical import canonical_json  # noqa: E402
from simfed.protocol.room import conflicted_size  # noqa: E402
from tests.roomgen import generate_room  # noqa: E402

ORACLE_PY = os.environ.get("SIMFED_ORACLE_PYTHON", os.path.join(REPO, ".oracle-venv", "bin", "python"))
ORACLE_SCRIPT = os.path.join(REPO, "benchmarks", "_oracle_processing.py")

#: Database write per event persisted, ms (assumption, not measured here).
#: Synapse persists each batch of events in one PostgreSQL transaction that
#: inserts into about ten tables (events, event_json, event_edges,
#: event_auth, state_events, current_state_events, ...); a durable commit
#: waits for a WAL flush (PostgreSQL docs, "WAL Configuration" and
#: ``synchronous_commit``), which is about a millisecond on a data-centre SSD
#: (PostgreSQL's ``pg_test_fsync`` reports 0.5-2 ms per fsync there). We take
#: 2 ms per event: one commit plus the inserts.
DB_WRITE_MS = 2.0


def raw_crypto(messages: list[bytes], repeats: int) -> dict:
    """pynacl verify/sign and SHA-256 on the given canonical messages."""
    sk = SigningKey(hashlib.sha256(b"calibration").digest())
    vk = sk.verify_key
    signed = [(m, sk.sign(m).signature) for m in messages]
    return {
        "verify_s": median_per_item(lambda ms: vk.verify(ms[0], ms[1]), signed, repeats),
        "sign_s": median_per_item(sk.sign, messages, repeats),
        "sha256_s": median_per_item(lambda m: hashlib.sha256(m).digest(), messages, repeats),
    }


def make_rooms(sizes: list[int], seed: int) -> list[dict]:
    """Rooms of the given sizes with resolution cases (lists of state sets)."""
    rooms = []
    for i, n in enumerate(sizes):
        events = generate_room(seed + i, n_events=n, n_servers=6, n_users=60, fork_prob=0.3, merge_prob=0.04,
                               max_tips=8, bad_prob=0.03, stale_prob=0.02, compat="synapse", join_rule="public")
        res = process_room(events, "11", compat="synapse")
        tips = sorted(res.forward_extremities)
        ordered = [e.event_id for e in events if e.event_id in res.room.status]
        mid = [ordered[len(ordered) // 2], ordered[len(ordered) * 3 // 4]]
        cases = [tips, tips[:2], tips[: max(2, len(tips) // 2)], [mid[0], tips[0]], [mid[1], tips[-1]]]
        cases = [c for c in dict.fromkeys(tuple(c) for c in cases) if len(c) >= 2]
        rejected = {e: d.code for e, d in res.room.status.items() if d.outcome == "rejected"}
        rooms.append({
            "events": events, "rejected": rejected,
            "cases": [[res.state_after(t) for t in c] for c in cases],
        })
    return rooms


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of ys on xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,500,1000,2000", help="room sizes in events (default 200,500,1000,2000)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="sizes 100,300, 3 repeats")
    a = ap.parse_args(argv)
    sizes = [100, 300] if a.quick else [int(x) for x in a.sizes.split(",") if x.strip()]
    repeats = 3 if a.quick else a.repeats

    print(f"processing-cost calibration, {time.strftime('%Y-%m-%d')}, {_cpu_name()} x{os.cpu_count()}, "
          f"Python {platform.python_version()}")
    rooms = make_rooms(sizes, a.seed)
    events = [e for r in rooms for e in r["events"]]
    raw = raw_crypto([canonical_json(e.pdu()) for e in events], repeats)
    print(f"\npynacl on {len(events)} canonical PDUs (median of {repeats}):")
    print(f"  ed25519 verify: {1 / raw['verify_s']:,.0f}/s ({raw['verify_s'] * 1e3:.3f} ms)")
    print(f"  ed25519 sign:   {1 / raw['sign_s']:,.0f}/s ({raw['sign_s'] * 1e3:.3f} ms)")
    print(f"  sha256:         {1 / raw['sha256_s']:,.0f}/s ({raw['sha256_s'] * 1e3:.4f} ms)")

    if not os.path.exists(ORACLE_PY):
        print(f"\nno oracle python at {ORACLE_PY} (set SIMFED_ORACLE_PYTHON): Synapse figures skipped")
        return 0
    servers = sorted({e.sender.partition(":")[2] for e in events})
    payload = {
        "room_version": "11",
        "keys": {s: derive_server_key(0, s).public_key_base64 for s in servers},
        "rooms": [{"events": [e.pdu_with_id() for e in r["events"]], "rejected": r["rejected"],
                   "cases": [[sorted(s.values()) for s in c] for c in r["cases"]]} for r in rooms],
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
        print("\noracle failed: " + (p.stderr.strip().splitlines() or ["?"])[-1])
        return 0
    out = json.loads(p.stdout)
    print(f"\nSynapse {out['synapse_version']} on {out['events']} PDUs (median of {repeats}):")
    print(f"  signature check of a received PDU: {out['verify_s'] * 1e3:.3f} ms")
    print(f"  content hash:                      {out['hash_s'] * 1e3:.3f} ms")
    print(f"  signing a new event:               {out['sign_s'] * 1e3:.3f} ms")
    print(f"  auth checks of one event:          {out['auth_s'] * 1e3:.3f} ms")
    print("\nSynapse v2 resolution:")
    print(f"  {'room':>6} {'sets':>5} {'conflicted':>10} {'ms':>9}")
    xs, ys = [], []
    for r, times in zip(rooms, out["resolve_s"]):
        for case, t in zip(r["cases"], times):
            c = conflicted_size(case)
            xs.append(c)
            ys.append(t * 1e3)
            print(f"  {len(r['events']):>6} {len(case):>5} {c:>10} {t * 1e3:>9.2f}")
    raw_base, slope = fit(xs, ys)
    base = max(raw_base, 0.0)  # a cost cannot be negative
    worst = max(abs(y - (base + slope * x)) / y for x, y in zip(xs, ys))
    clipped = f" (fitted intercept {raw_base:.3f} ms, clipped to 0)" if raw_base < 0 else ""
    print(f"  fit: {base:.3f} ms + {slope:.4f} ms x conflicted events{clipped} "
          f"(largest relative error {worst:.0%})")

    consts = {
        "signature_verify_ms": out["verify_s"] * 1e3,
        "content_hash_ms": out["hash_s"] * 1e3,
        "sign_ms": out["sign_s"] * 1e3,
        "auth_check_ms": out["auth_s"] * 1e3,
        "resolution_ms": base,
        "resolution_per_conflicted_ms": slope,
        "db_write_ms": DB_WRITE_MS,
        "request_ms": out["verify_s"] * 1e3,
    }
    print("\nconstants (CostTable fields; db_write_ms is the documented assumption, request_ms one "
          "X-Matrix signature check):")
    for k, v in consts.items():
        print(f"  {k} = {v:.4g}")
    return 0


if __name__ == "__main__":
    main()
