"""Time Synapse's own per-event work (run with the ORACLE python).

Called by ``benchmarks/calibrate_processing.py``; can be run by hand::

    .oracle-venv/bin/python benchmarks/_oracle_processing.py IN.json [--repeats 5]

IN.json = {"room_version": "11", "keys": {server: public key base64},
"rooms": [{"events": [PDUs with event_id], "rejected": {id: reason},
"cases": [[[event_id, ...], ...], ...]}]}: each case is a list of state sets.

Prints JSON with per-operation seconds (medians over ``--repeats``):

* ``verify_s``: Synapse's signature check of one received PDU
  (``VerifyJsonRequest.from_event`` then ``Keyring.process_json``: redaction,
  canonical JSON, ed25519 verify), per event;
* ``hash_s``: ``compute_content_hash`` of one PDU, per event;
* ``sign_s``: ``add_hashes_and_signatures`` of one new PDU (content hash,
  redaction, ed25519 sign), per event;
* ``auth_s``: ``synapse_oracle.auth_check_events`` (validation, state-
  independent and state-dependent auth rules against the event's auth
  events), per event;
* ``resolve_s``: per room, per case, Synapse's v2 ``resolve_state`` in
  ``mode="persisted"`` (the in-memory store's auth chain difference).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time

from _oracle_common import median_per_item, oracle_input


def main() -> int:
    so, inp, repeats = oracle_input()
    from signedjson.key import generate_signing_key
    rv = so.room_version(inp.get("room_version", "11"))
    vkeys = {s: so.decode_verify_key_bytes("ed25519:1", so.decode_base64(k)) for s, k in inp["keys"].items()}
    raw = [d for room in inp["rooms"] for d in room["events"]]
    events = [so.load_event(d, rv) for d in raw]

    def verify(ev) -> None:
        server = ev.sender.partition(":")[2]
        req = so.VerifyJsonRequest.from_event(server, ev, 0)
        so.run_sync(so.Keyring.process_json(None, vkeys[server], req))

    key = generate_signing_key("1")
    unsigned = []
    for d in raw:
        u = {k: v for k, v in d.items() if k not in ("event_id", "signatures", "hashes", "unsigned")}
        unsigned.append(u)

    def sign(d) -> None:
        so.add_hashes_and_signatures(rv, dict(d), "calibration.example", key)

    out = {
        "synapse_version": so.SYNAPSE_VERSION,
        "events": len(events),
        "verify_s": median_per_item(verify, events, repeats),
        "hash_s": median_per_item(lambda ev: so.compute_content_hash(ev.get_pdu_json(), hashlib.sha256), events, repeats),
        "sign_s": median_per_item(sign, unsigned, repeats),
    }
    auth_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = 0
        for room in inp["rooms"]:
            so.auth_check_events(rv, room["events"])
            n += len(room["events"])
        auth_times.append((time.perf_counter() - t0) / n)
    out["auth_s"] = statistics.median(auth_times)

    resolve = []
    for room in inp["rooms"]:
        evs = so.load_events(room["events"], rv, room.get("rejected"))
        by_id = {e.event_id: e for e in evs}
        per_case = []
        for case in room["cases"]:
            sets = [so.state_map_from_ids(s, by_id) for s in case]
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                so.resolve_state(rv, evs, sets, mode="persisted")
                times.append(time.perf_counter() - t0)
            per_case.append(statistics.median(times))
        resolve.append(per_case)
    out["resolve_s"] = resolve
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
