"""Content hashes, reference hashes, event IDs and event signing."""

from __future__ import annotations

import hashlib
from typing import Any

from .canonical import canonical_json, encode_base64, encode_base64_urlsafe
from .crypto import SigningKey
from .redaction import redact
from .roomversions import RoomVersion

__all__ = ["content_hash", "event_id", "reference_hash", "sign_event"]

# Keys left out of the content hash: the spec's three, plus the internal keys
# Synapse also strips (so hashes agree with the reference homeserver).
_NOT_HASHED = frozenset({"unsigned", "signatures", "hashes", "age_ts", "outlier", "destinations"})
_NOT_SIGNED = ("signatures", "unsigned")


def _content_hash_bytes(pdu: dict, *, check: bool = True) -> bytes:
    body = {k: v for k, v in pdu.items() if k not in _NOT_HASHED}
    return hashlib.sha256(canonical_json(body, check=check)).digest()


def content_hash(pdu: dict) -> str:
    """Unpadded base64 SHA-256 of the event without unsigned/signatures/hashes."""
    return encode_base64(_content_hash_bytes(pdu))


def _signed_form_bytes(
    pdu: dict, room_version: str | RoomVersion, *, check: bool = True, strip_id: bool = False
) -> bytes:
    r = redact(pdu, room_version)
    for k in _NOT_SIGNED:
        r.pop(k, None)
    if strip_id:
        r.pop("event_id", None)
    return canonical_json(r, check=check)


def reference_hash(pdu: dict, room_version: str | RoomVersion = "11") -> str:
    """Unpadded (standard) base64 SHA-256 of the redacted, unsigned event.

    An ``event_id`` key is not part of a v3+ event and is ignored.
    """
    return encode_base64(hashlib.sha256(_signed_form_bytes(pdu, room_version, strip_id=True)).digest())


def _event_id_from_signed_form(signed_form: bytes) -> str:
    return "$" + encode_base64_urlsafe(hashlib.sha256(signed_form).digest())


def event_id(pdu: dict, room_version: str | RoomVersion = "11") -> str:
    """The event ID: ``$`` + URL-safe unpadded base64 of the reference hash."""
    return _event_id_from_signed_form(_signed_form_bytes(pdu, room_version, strip_id=True))


def _sign_event(pdu: dict, server_name: str, key: SigningKey, room_version: str | RoomVersion) -> tuple[dict, str]:
    out: dict[str, Any] = dict(pdu)
    out["hashes"] = {"sha256": encode_base64(_content_hash_bytes(out))}
    # Everything reachable from ``out`` was validated by the content hash.
    signed_form = _signed_form_bytes(out, room_version, check=False)
    sigs = {name: dict(v) for name, v in (pdu.get("signatures") or {}).items()}
    sigs.setdefault(server_name, {})[key.key_id] = encode_base64(key.sign(signed_form))
    out["signatures"] = sigs
    return out, _event_id_from_signed_form(signed_form)


def sign_event(pdu: dict, server_name: str, key: SigningKey, room_version: str | RoomVersion = "11") -> dict:
    """Return a copy of ``pdu`` with ``hashes.sha256`` set and signed by ``server_name``.

    The signature covers the redacted form, so it survives redaction. The
    PDU is hashed and signed exactly as given: pass federation-format PDUs
    (no ``event_id`` key) for room versions 3 and later.
    """
    return _sign_event(pdu, server_name, key, room_version)[0]
