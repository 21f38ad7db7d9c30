#!/usr/bin/env python3
"""Long-lived driver around the Synapse oracle, for differential tests.

Runs INSIDE the oracle venv (it imports Synapse). It imports
``synapse_oracle.py`` as a module (directory from ``$SIMFED_ORACLE_DIR``,
default ``tests/oracle`` in this repository) and answers one JSON request per line on
stdin with one JSON response per line on stdout. Nothing is written to stdout
except responses (Synapse's logging goes to stderr).

Request: ``{"op": OP, "room_version": "11", "cases": [CASE, ...], ...}``
Response: ``{"results": [RESULT, ...]}``; a case that fails gives
``{"error": "..."}`` in its slot; a request that fails as a whole gives
``{"error": "..."}``. The driver never exits on a bad request.

Ops (CASE -> RESULT):

- ``ping``: -> ``{"synapse_version"}`` (no cases needed)
- ``eventid``: PDU -> ``event_ids_info`` (event_id, reference_hash,
  content_hash, ...)
- ``redact``: PDU -> Synapse's redacted dict (``redact_event_dict``)
- ``sign``: ``{"event", "server_name", "key_seed", "key_id"?}`` -> the signed
  PDU (federation format, no event_id)
- ``sign_json``: ``{"json", "server_name", "key_seed", "key_id"?}`` -> signed
- ``pubkey``: ``{"key_seed", "key_id"?}`` -> ``{"public_key"}``
- ``verify``: ``{"event", "server_name", "public_key", "key_id"?}`` ->
  ``verify_event_dict``
- ``receive``: ``{"event", "keys": {server: {key_id: public_key_b64}}}`` ->
  ``{"ok", "stage", "error", "event_id", "content_hash_matches", "redacted"}``:
  Synapse's receive-side checks 1-3 (``event_from_pdu_json``: depth and
  canonical JSON; ``_check_sigs_on_pdu`` with exactly these keys; content
  hash via ``compute_content_hash``). ``validate_error`` additionally
  reports ``validate_event_for_room_version`` (sizes, ID lengths) without
  gating; ``validate_unpersistable`` says whether Synapse would drop (True)
  or store as rejected (False) on a size error.
- ``canonical``: any JSON value -> ``{"bytes": canonical JSON text, "valid":
  bool}`` (``encode_canonical_json`` and ``validate_canonicaljson``)
- ``resolve``: request-level ``events`` (PDUs with event_id, loaded once) and
  optional ``rejected`` {id: reason}, ``mode``; CASE = ``{"state_sets":
  [[ids], ...]}`` -> ``{"resolved": [[type, state_key, id], ...]}``
- ``authcheck``: CASE = list of PDUs in order (optional ``state_before``) ->
  ``auth_check_events`` result list.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE_DIR = os.environ.get("SIMFED_ORACLE_DIR") or os.path.join(_HERE, "oracle")
sys.path.insert(0, os.path.abspath(ORACLE_DIR))

import synapse_oracle as so  # noqa: E402  (needs the sys.path entry above)

from signedjson.key import decode_verify_key_bytes  # noqa: E402
from signedjson.sign import sign_json  # noqa: E402
from synapse.synapse_rust.events import redact_event_dict  # noqa: E402
from unpaddedbase64 import decode_base64  # noqa: E402


def _err(e: BaseException) -> dict:
    return {"error": "%s: %s" % (type(e).__name__, so.error_text(e))}


def _key(case: dict):
    return so.signing_key_from_seed(case["key_seed"], case.get("key_id", "ed25519:1"))


def op_eventid(req, rv, case):
    return so.event_ids_info(case, rv)


def op_redact(req, rv, case):
    return redact_event_dict(rv, dict(case))


def op_sign(req, rv, case):
    return so.sign_event_dict(case["event"], rv, case["server_name"], _key(case), True)


def op_sign_json(req, rv, case):
    return sign_json(dict(case["json"]), case["server_name"], _key(case))


def op_pubkey(req, rv, case):
    key_id = case.get("key_id", "ed25519:1")
    return {"key_id": key_id, "public_key": so.public_key(case["key_seed"], key_id)}


def op_verify(req, rv, case):
    key_id = case.get("key_id", "ed25519:1")
    vkey = decode_verify_key_bytes(key_id, decode_base64(case["public_key"]))
    return so.verify_event_dict(case["event"], rv, case["server_name"], vkey)


def op_authcheck(req, rv, case):
    events = case["events"] if isinstance(case, dict) else case
    return so.auth_check_events(rv, events, skip_validate=bool(req.get("skip_validate")))


class _ResolveContext:
    def __init__(self, req, rv):
        self.events = so.load_events(req.get("events", []), rv, req.get("rejected"))
        self.by_id = {e.event_id: e for e in self.events}
        self.mode = req.get("mode", "persisted")


def op_resolve(req, rv, case, ctx=None):
    if ctx is None:
        ctx = _ResolveContext(req, rv)
    if "events" in case:  # a self-contained case
        ctx = _ResolveContext({**req, **case}, rv)
    sets = [so.state_map_from_ids(s, ctx.by_id) for s in case["state_sets"]]
    try:
        res = so.resolve_state(rv, ctx.events, sets, mode=case.get("mode", ctx.mode))
    except so.SynapseError as e:
        raise so.OracleError("state resolution raised %s: %s" % (type(e).__name__, so.error_text(e)))
    return {"resolved": so.triples(res)}


class _FixedKeyring:
    """Keyring.process_request with a fixed key directory (keys never expire)."""

    def __init__(self, keys: dict):
        self.keys = {
            srv: {kid: decode_verify_key_bytes(kid, decode_base64(pk)) for kid, pk in ks.items()}
            for srv, ks in keys.items()
        }

    async def verify_event_for_server(self, server_name, event, validity_time):
        req = so.VerifyJsonRequest.from_event(server_name, event, validity_time)
        if not req.key_ids:
            raise so.SynapseError(400, "Not signed by %s" % server_name)
        verified = False
        for kid in req.key_ids:
            vk = self.keys.get(server_name, {}).get(kid)
            if vk is None:
                continue
            await so.Keyring.process_json(None, vk, req)
            verified = True
        if not verified:
            raise so.SynapseError(401, "Failed to find any key to satisfy %s %s" % (server_name, req.key_ids))


def op_receive(req, rv, case):
    import copy as _copy
    import hashlib

    from synapse.api.errors import SynapseError
    from synapse.federation.federation_base import _check_sigs_on_pdu, event_from_pdu_json

    pdu = _copy.deepcopy(case["event"])
    out = {"ok": False, "stage": "parse", "error": None, "event_id": None,
           "content_hash_matches": None, "redacted": None, "validate_error": None}
    try:
        if not so.has_explicit_event_id(rv):
            pdu.pop("event_id", None)
        ev = event_from_pdu_json(pdu, rv)
    except Exception as e:  # noqa: BLE001
        out["error"] = "%s: %s" % (type(e).__name__, so.error_text(e))
        return out
    out["event_id"] = ev.event_id
    out["stage"] = "signatures"
    try:
        so.run_sync(_check_sigs_on_pdu(_FixedKeyring(case.get("keys", {})), rv, ev))
    except Exception as e:  # noqa: BLE001
        out["error"] = "%s: %s" % (type(e).__name__, so.error_text(e))
        return out
    out["stage"] = None
    out["ok"] = True
    try:
        name, h = so.compute_content_hash(ev.get_pdu_json(), hashlib.sha256)
        claimed = (ev.hashes or {}).get(name)
        out["content_hash_matches"] = claimed == so.encode_base64(h)
    except Exception as e:  # noqa: BLE001
        out["content_hash_matches"] = False
        out["content_hash_error"] = "%s: %s" % (type(e).__name__, so.error_text(e))
    out["redacted"] = not out["content_hash_matches"]
    try:
        so.event_auth.validate_event_for_room_version(ev)
    except (SynapseError, so.EventSizeError) as e:
        out["validate_error"] = "%s: %s" % (type(e).__name__, so.error_text(e))
        # EventSizeError.unpersistable: True = dropped, False = stored as rejected
        out["validate_unpersistable"] = getattr(e, "unpersistable", None)
    return out


def op_canonical(req, rv, case):
    from canonicaljson import encode_canonical_json
    from synapse.events.utils import validate_canonicaljson

    out = {}
    try:
        out["bytes"] = encode_canonical_json(case).decode("utf-8")
    except Exception as e:  # noqa: BLE001
        out["bytes"] = None
        out["encode_error"] = "%s: %s" % (type(e).__name__, e)
    try:
        validate_canonicaljson(case)
        out["valid"] = True
    except Exception as e:  # noqa: BLE001
        out["valid"] = False
        out["error"] = so.error_text(e)
    return out


OPS = {
    "receive": op_receive,
    "canonical": op_canonical,
    "eventid": op_eventid,
    "redact": op_redact,
    "sign": op_sign,
    "sign_json": op_sign_json,
    "pubkey": op_pubkey,
    "verify": op_verify,
    "authcheck": op_authcheck,
    "resolve": op_resolve,
}


def handle(req: dict) -> dict:
    op = req.get("op")
    if op == "ping":
        return {"synapse_version": so.SYNAPSE_VERSION, "oracle_dir": os.path.abspath(ORACLE_DIR)}
    fn = OPS.get(op)
    if fn is None:
        return {"error": "unknown op %r; known: %s" % (op, sorted(OPS) + ["ping"])}
    rv = so.room_version(req.get("room_version", "11"))
    extra = {}
    if op == "resolve":
        extra["ctx"] = _ResolveContext(req, rv)
    results = []
    for case in req.get("cases", []):
        try:
            results.append(fn(req, rv, case, **extra))
        except Exception as e:  # noqa: BLE001  (report, never crash)
            results.append(_err(e))
    return {"results": results}


def main() -> int:
    out = sys.stdout
    # Keep stray prints from Synapse off the protocol channel.
    sys.stdout = sys.stderr
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            resp = handle(json.loads(line))
        except Exception as e:  # noqa: BLE001
            resp = _err(e)
            resp["traceback"] = traceback.format_exc()
        out.write(json.dumps(resp, ensure_ascii=False) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
