"""Pure Matrix protocol logic: no clock, no I/O, no simulator.

Everything here takes values and returns values, so it is deterministic and
testable on its own. This package must never import simpy, pandas or
matplotlib (a test checks).
"""

from .auth import AuthResult, auth_events_for, auth_types_for_event, check_auth, check_auth_events_sanity
from .authchain import AuthChainIndex, auth_chain_difference
from .canonical import (
    MAX_JSON_DEPTH,
    CanonicalJSONError,
    JSONTooDeepError,
    canonical_json,
    check_canonical,
    decode_base64,
    encode_base64,
    encode_base64_urlsafe,
)
from .checks import CheckResult, DropReason, check_event
from .crypto import SignatureError, SigningKey, VerifyKey, derive_server_key, sign_json, verify_json
from .dag import MissingParentsError, RoomGraph
from .events import Event, server_name_of
from .hashing import content_hash, event_id, reference_hash, sign_event
from .redaction import redact
from .room import Decision, RoomInputError, RoomResult, RoomState, causal_order, process_room
from .roomversions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion, get_room_version
from .stateres import available_algorithms, register, resolve_state

__all__ = [
    "AuthResult",
    "Decision",
    "RoomInputError",
    "RoomResult",
    "RoomState",
    "auth_events_for",
    "auth_types_for_event",
    "available_algorithms",
    "causal_order",
    "check_auth",
    "check_auth_events_sanity",
    "process_room",
    "register",
    "resolve_state",
    "AuthChainIndex",
    "CanonicalJSONError",
    "JSONTooDeepError",
    "MAX_JSON_DEPTH",
    "CheckResult",
    "DEFAULT_ROOM_VERSION",
    "DropReason",
    "Event",
    "KNOWN_ROOM_VERSIONS",
    "MissingParentsError",
    "RoomGraph",
    "RoomVersion",
    "SignatureError",
    "SigningKey",
    "VerifyKey",
    "auth_chain_difference",
    "canonical_json",
    "check_canonical",
    "check_event",
    "content_hash",
    "decode_base64",
    "derive_server_key",
    "encode_base64",
    "encode_base64_urlsafe",
    "event_id",
    "get_room_version",
    "redact",
    "reference_hash",
    "server_name_of",
    "sign_event",
    "sign_json",
    "verify_json",
]
