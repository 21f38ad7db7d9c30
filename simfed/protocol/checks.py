"""Receive-side checks that need no room state (protocol.md §4.1, checks 1-3).

``check_event`` answers with data, never an exception: a malformed or forged
PDU is reported with a reason code (for counting) and a sentence (for people).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from .canonical import CanonicalJSONError, JSONTooDeepError, check_canonical, decode_base64, encode_base64, encode_base64_urlsafe
from .crypto import VerifyKey, verify_signature
from .events import Event
from .hashing import _NOT_HASHED, _content_hash_bytes, _signed_form_bytes
from .redaction import redact
from .roomversions import DEFAULT_ROOM_VERSION, get_room_version

from canonicaljson import encode_canonical_json

__all__ = ["CheckResult", "DropReason", "check_event", "MAX_PDU_SIZE", "MAX_PREV_EVENTS", "MAX_AUTH_EVENTS"]

MAX_PDU_SIZE = 65536
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
MAX_ID_BYTES = 255
_UNSIGNED_MEMBER = frozenset({"age", "invite_room_state", "knock_room_state"})
_UNSIGNED_OTHER = frozenset({"age"})


class DropReason(str, enum.Enum):
    """Why a PDU failed the state-independent checks (it is then dropped)."""

    MALFORMED = "malformed"
    NOT_CANONICAL = "not_canonical"
    TOO_DEEP = "too_deep"
    TOO_LARGE = "too_large"
    TOO_MANY_PREV_EVENTS = "too_many_prev_events"
    TOO_MANY_AUTH_EVENTS = "too_many_auth_events"
    BAD_DEPTH = "bad_depth"
    FIELD_TOO_LONG = "field_too_long"
    UNKNOWN_KEY = "unknown_key"
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Outcome of :func:`check_event`.

    ``status`` is ``"ok"``, ``"redacted"`` (content hash mismatch: ``event``
    is the redacted copy, which is what the receiver keeps) or ``"rejected"``
    (``event`` is ``None``; the PDU is dropped). ``reason`` is a sentence for
    people; ``code`` a :class:`DropReason` (or ``None``) for counting.
    """

    status: str
    event: Event | None = None
    reason: str | None = None
    code: DropReason | None = None
    event_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


def _reject(code: DropReason, reason: str, event_id: str | None = None) -> CheckResult:
    return CheckResult("rejected", None, reason, code, event_id)


_STR_FIELDS = ("room_id", "sender", "type")
_INT_FIELDS = ("depth", "origin_server_ts")


def _shape_problem(pdu: Any) -> str | None:
    if not isinstance(pdu, dict):
        return f"a PDU must be a JSON object, got {type(pdu).__name__}"
    for f in _STR_FIELDS:
        if f not in pdu:
            return f"missing required field {f!r}"
        if not isinstance(pdu[f], str):
            return f"{f} must be a string, got {type(pdu[f]).__name__}"
    for f in _INT_FIELDS:
        if f not in pdu:
            return f"missing required field {f!r}"
        if type(pdu[f]) is not int:
            return f"{f} must be an integer, got {type(pdu[f]).__name__}"
    if not isinstance(pdu.get("content"), dict):
        return "content must be an object" if "content" in pdu else "missing required field 'content'"
    for f in ("prev_events", "auth_events"):
        v = pdu.get(f)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f"{f} must be a list of event IDs" if f in pdu else f"missing required field {f!r}"
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        return "state_key must be a string"
    h = pdu.get("hashes")
    if not isinstance(h, dict) or not isinstance(h.get("sha256"), str):
        return "hashes.sha256 must be a string"
    s = pdu.get("signatures")
    if not isinstance(s, dict) or not all(isinstance(v, dict) for v in s.values()):
        return "signatures must be an object of objects"
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        return "unsigned must be an object"
    if ":" not in pdu["sender"] or not pdu["sender"].startswith("@"):
        return f"sender {pdu['sender']!r} is not a user ID"
    if ":" not in pdu["room_id"] or not pdu["room_id"].startswith("!"):
        return f"room_id {pdu['room_id']!r} is not a room ID"
    return None


def _required_signers(pdu: dict) -> list[str]:
    signers = [pdu["sender"].partition(":")[2]]
    if pdu["type"] == "m.room.member":
        content = pdu["content"]
        via = content.get("join_authorised_via_users_server")
        if content.get("membership") == "join" and isinstance(via, str) and ":" in via:
            signers.append(via.partition(":")[2])
        if content.get("membership") == "invite" and "third_party_invite" in content:
            # An invite made from a third-party invite may be sent on the
            # inviter's behalf: the sender's server need not sign it.
            signers = signers[1:]
    return list(dict.fromkeys(signers))


def _as_key(k: Any, key_id: str) -> VerifyKey:
    if isinstance(k, VerifyKey):
        return k
    vk = getattr(k, "verify_key", None)
    if isinstance(vk, VerifyKey):
        return vk
    if isinstance(k, (bytes, str)):
        return VerifyKey(k, key_id)
    return VerifyKey(bytes(k), key_id)


def check_event(
    pdu: dict,
    room_version: str = DEFAULT_ROOM_VERSION,
    keys: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    memo: bool = False,
) -> CheckResult:
    """Run the checks a server applies to a PDU before it looks at room state.

    In order: well-formed fields and types; canonical JSON (which also
    refuses strings with no UTF-8 form, such as a lone surrogate, and
    nesting deeper than ``MAX_JSON_DEPTH`` levels: reason ``too_deep``); size and limits
    (65,536 bytes, ≤ 20 prev_events, ≤ 10 auth_events, depth in range,
    255-byte identifiers); a valid signature from every required server
    (``keys`` maps server name → {key_id: verify key}; ``None`` skips the
    signature check, for offline tools that have no keys); the content hash.
    A content hash mismatch keeps the event, redacted (status ``"redacted"``).
    ``memo`` caches signature checks by content (for the simulator).
    """
    rv = get_room_version(room_version)
    problem = _shape_problem(pdu)
    if problem:
        return _reject(DropReason.MALFORMED, problem)
    if "event_id" in pdu:  # not a field of v3+ events; IDs are computed
        pdu = {k: v for k, v in pdu.items() if k != "event_id"}
    # ``unsigned`` is not covered by hashes or signatures and any hop may
    # rewrite it: keep only the keys a receiver uses (as Synapse does).
    unsigned = pdu.get("unsigned")
    if unsigned is not None:
        allowed = _UNSIGNED_MEMBER if pdu["type"] == "m.room.member" else _UNSIGNED_OTHER
        pdu = dict(pdu, unsigned={k: v for k, v in unsigned.items() if k in allowed})
    try:
        check_canonical(pdu)
    except JSONTooDeepError as e:
        return _reject(DropReason.TOO_DEEP, str(e))
    except CanonicalJSONError as e:
        return _reject(DropReason.NOT_CANONICAL, str(e))
    if len(pdu["prev_events"]) > MAX_PREV_EVENTS:
        return _reject(DropReason.TOO_MANY_PREV_EVENTS, f"{len(pdu['prev_events'])} prev_events (limit {MAX_PREV_EVENTS})")
    if len(pdu["auth_events"]) > MAX_AUTH_EVENTS:
        return _reject(DropReason.TOO_MANY_AUTH_EVENTS, f"{len(pdu['auth_events'])} auth_events (limit {MAX_AUTH_EVENTS})")
    depth = pdu["depth"]
    if depth < 0 or depth > rv.max_depth:
        return _reject(DropReason.BAD_DEPTH, f"depth {depth} outside [0, {rv.max_depth}]")
    for f in ("room_id", "sender", "type", "state_key"):
        v = pdu.get(f)
        if v is not None and len(v.encode("utf-8")) > MAX_ID_BYTES:
            return _reject(DropReason.FIELD_TOO_LONG, f"{f} is longer than {MAX_ID_BYTES} bytes")

    # Content hash form; its size plus the remaining keys gives the PDU size,
    # measured as the reference homeserver does: with the kept ``unsigned``
    # keys other than ``age`` (an empty object when there are none).
    body = {k: v for k, v in pdu.items() if k not in _NOT_HASHED}
    body_bytes = encode_canonical_json(body)
    size = len(body_bytes)
    for k in _NOT_HASHED:
        if k == "unsigned":
            kept = {u: v for u, v in (pdu.get("unsigned") or {}).items() if u != "age"}
            size += len(k) + 4 + len(encode_canonical_json(kept))
        elif k in pdu:
            size += len(k) + 4 + len(encode_canonical_json(pdu[k]))
    if size > MAX_PDU_SIZE:
        return _reject(DropReason.TOO_LARGE, f"PDU is {size} bytes (limit {MAX_PDU_SIZE})")

    signed_form = _signed_form_bytes(pdu, rv, check=False)
    eid = "$" + encode_base64_urlsafe(hashlib.sha256(signed_form).digest())
    sigs = pdu["signatures"]
    for server in _required_signers(pdu) if keys is not None else ():
        server_sigs = sigs.get(server)
        if not server_sigs:
            return _reject(DropReason.MISSING_SIGNATURE, f"no signature from {server}", eid)
        known = keys.get(server) or {}
        checked = 0
        for key_id, b64 in server_sigs.items():
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:") or key_id not in known:
                continue
            try:
                raw = decode_base64(b64) if isinstance(b64, str) else b""
            except ValueError:
                raw = b""
            if len(raw) != 64 or not verify_signature(_as_key(known[key_id], key_id), signed_form, raw, memo=memo):
                return _reject(DropReason.BAD_SIGNATURE, f"signature {server}/{key_id} does not verify", eid)
            checked += 1
        if not checked:
            return _reject(DropReason.UNKNOWN_KEY, f"no signature from {server} with a known key", eid)

    digest = hashlib.sha256(body_bytes).digest()
    if pdu["hashes"]["sha256"] == encode_base64(digest):
        return CheckResult("ok", Event._intern(pdu, rv.identifier, eid, digest), None, None, eid)
    red = redact(pdu, rv)
    red_digest = _content_hash_bytes(red, check=False)
    return CheckResult(
        "redacted", Event._intern(red, rv.identifier, eid, red_digest),
        "content hash mismatch: kept in redacted form", None, eid,
    )
