"""The immutable, interned :class:`Event`.

Many simulated servers hold the same event, so exactly one ``Event`` object
exists per distinct PDU. The interning key is the event ID, the SHA-256 of
the content-hash form (everything but ``hashes``, ``signatures`` and
``unsigned``) and the signatures; with the claimed hash inside the ID, that
covers every byte of the PDU. So a copy whose content was altered after
signing (same ID), its redacted form, and a copy signed differently are each
their own object, and nobody is ever handed another copy's content.
Everything derived from the PDU is computed once, when the object is built.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from types import MappingProxyType
from typing import Any, Mapping

from .canonical import canonical_json, check_canonical, decode_base64, encode_base64, json_copy
from .crypto import SigningKey
from .hashing import _content_hash_bytes, _event_id_from_signed_form, _sign_event, _signed_form_bytes
from .roomversions import DEFAULT_ROOM_VERSION, get_room_version

__all__ = ["Event", "server_name_of"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def server_name_of(identifier: str) -> str:
    """The server part of a user, room or legacy event ID (after the first ``:``)."""
    _, sep, server = identifier.partition(":")
    if not sep or not server:
        raise ValueError(f"{identifier!r} has no server part")
    return server


# Keyed by ID, content digest and signatures (see the module docstring).
# ``_by_id`` answers "the event with this ID", preferring an intact copy.
_interned: "weakref.WeakValueDictionary[tuple[str, bytes, str], Event]" = weakref.WeakValueDictionary()
_by_id: "weakref.WeakValueDictionary[str, Event]" = weakref.WeakValueDictionary()


def _sig_key(pdu: dict) -> str:
    sigs = pdu.get("signatures")
    if not sigs:
        return ""
    try:
        return repr(sorted((k, sorted(v.items())) for k, v in sigs.items()))
    except (AttributeError, TypeError):
        return repr(sigs)


class Event:
    """One room event (PDU), immutable and shared.

    Build with :meth:`Event.from_pdu` (an existing PDU) or :meth:`Event.create`
    (hash and sign a new one). ``content`` is a read-only view; treat nested
    values as read-only too.
    """

    __slots__ = (
        "event_id", "room_version", "room_id", "sender", "type", "state_key",
        "content", "prev_events", "auth_events", "depth", "origin_server_ts",
        "hashes", "signatures", "redacts", "membership", "sender_server",
        "content_hash_ok", "_pdu", "_canonical", "_digest", "__weakref__",
    )

    event_id: str
    room_version: str
    room_id: str
    sender: str
    type: str
    state_key: str | None
    content: Mapping[str, Any]
    prev_events: tuple[str, ...]
    auth_events: tuple[str, ...]
    depth: int
    origin_server_ts: int
    hashes: Mapping[str, Any]
    signatures: Mapping[str, Any]
    redacts: str | None
    membership: str | None
    sender_server: str
    content_hash_ok: bool

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Event is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Event is immutable (tried to delete {name!r})")

    # -- construction -------------------------------------------------------

    @classmethod
    def from_pdu(cls, pdu: dict, room_version: str = DEFAULT_ROOM_VERSION) -> "Event":
        """The event for a federation-format PDU (with or without ``event_id``).

        Raises ``ValueError`` when a required field is missing or has the wrong
        type, or when an ``event_id`` in the PDU differs from the computed one.
        Does not check signatures or auth rules: see :func:`check_event`.
        """
        rv = get_room_version(room_version)
        if not isinstance(pdu, dict):
            raise ValueError(f"a PDU must be a JSON object, got {type(pdu).__name__}")
        given = pdu.get("event_id")
        pdu = {k: v for k, v in pdu.items() if k not in ("event_id", "unsigned")}
        check_canonical(pdu)
        eid = _event_id_from_signed_form(_signed_form_bytes(pdu, rv, check=False))
        if given is not None and given != eid:
            raise ValueError(f"event_id {given!r} does not match the computed ID {eid}")
        return cls._intern(pdu, rv.identifier, eid, _content_hash_bytes(pdu, check=False))

    @classmethod
    def create(
        cls,
        fields: dict,
        server_name: str,
        key: SigningKey,
        room_version: str = DEFAULT_ROOM_VERSION,
    ) -> "Event":
        """Hash and sign ``fields`` as ``server_name`` and return the new event."""
        rv = get_room_version(room_version)
        if "event_id" in fields:
            fields = {k: v for k, v in fields.items() if k != "event_id"}
        pdu, eid = _sign_event(fields, server_name, key, rv)
        # The hash just computed is the digest of this very content.
        return cls._intern(pdu, rv.identifier, eid, decode_base64(pdu["hashes"]["sha256"]))

    @classmethod
    def interned(cls, event_id: str) -> "Event | None":
        """A live event with this ID, if any (auth edges are the same in every copy)."""
        return _by_id.get(event_id)

    @classmethod
    def _intern(cls, pdu: dict, room_version: str, eid: str, digest: bytes) -> "Event":
        """The one event for this PDU; ``digest`` is the SHA-256 of its content-hash form."""
        k = (eid, digest, _sig_key(pdu))
        existing = _interned.get(k)
        if existing is not None:
            return existing
        ev = object.__new__(cls)
        ev._init(pdu, room_version, eid, digest)
        _interned[k] = ev
        if ev.content_hash_ok or eid not in _by_id:
            _by_id[eid] = ev
        return ev

    def _init(self, pdu: dict, room_version: str, eid: str, digest: bytes) -> None:
        s = object.__setattr__
        try:
            pdu = {k: v for k, v in pdu.items() if k not in ("event_id", "unsigned")}
            content = pdu["content"]
            if not isinstance(content, dict):
                raise ValueError("content is not an object")
            state_key = pdu.get("state_key")
            if state_key is not None and not isinstance(state_key, str):
                raise ValueError("state_key is not a string")
            for f in ("room_id", "sender", "type"):
                if not isinstance(pdu[f], str):
                    raise ValueError(f"{f} is not a string")
            for f in ("prev_events", "auth_events"):
                if not isinstance(pdu[f], list) or not all(isinstance(x, str) for x in pdu[f]):
                    raise ValueError(f"{f} is not a list of event IDs")
            for f in ("depth", "origin_server_ts"):
                if type(pdu[f]) is not int:
                    raise ValueError(f"{f} is not an integer")
            hashes = pdu.get("hashes") or {}
            if not isinstance(hashes, dict):
                raise ValueError("hashes is not an object")
            sigs = pdu.get("signatures") or {}
            if not isinstance(sigs, dict) or not all(isinstance(v, dict) for v in sigs.values()):
                raise ValueError("signatures is not an object of objects")
            s(self, "room_id", pdu["room_id"])
            s(self, "sender", pdu["sender"])
            s(self, "type", pdu["type"])
            s(self, "prev_events", tuple(pdu["prev_events"]))
            s(self, "auth_events", tuple(pdu["auth_events"]))
            s(self, "depth", pdu["depth"])
            s(self, "origin_server_ts", pdu["origin_server_ts"])
        except KeyError as e:
            raise ValueError(f"missing required field {e.args[0]!r}") from None
        s(self, "event_id", eid)
        s(self, "room_version", room_version)
        s(self, "state_key", state_key)
        s(self, "content", MappingProxyType(content))
        s(self, "hashes", MappingProxyType(hashes))
        s(self, "signatures", MappingProxyType(sigs))
        redacts = content.get("redacts") if room_version == "11" else pdu.get("redacts")
        s(self, "redacts", redacts if isinstance(redacts, str) else None)
        m = content.get("membership") if self.type == "m.room.member" else None
        s(self, "membership", m if isinstance(m, str) else None)
        s(self, "sender_server", self.sender.partition(":")[2])
        s(self, "content_hash_ok", hashes.get("sha256") == encode_base64(digest))
        s(self, "_pdu", pdu)
        s(self, "_canonical", None)
        s(self, "_digest", digest)

    # -- derived views ------------------------------------------------------

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_tuple(self) -> tuple[str, str] | None:
        """``(type, state_key)`` for a state event, else ``None``."""
        return None if self.state_key is None else (self.type, self.state_key)

    @property
    def canonical_bytes(self) -> bytes:
        """Canonical JSON of the PDU as sent over federation (no ``unsigned``)."""
        c = self._canonical
        if c is None:
            c = canonical_json(self._pdu, check=False)
            object.__setattr__(self, "_canonical", c)
        return c

    @property
    def size_bytes(self) -> int:
        return len(self.canonical_bytes)

    def pdu(self) -> dict:
        """A fresh, mutable copy of the federation-format PDU (no ``event_id``)."""
        return json_copy(self._pdu)

    def pdu_with_id(self) -> dict:
        """The PDU with its ``event_id`` added (client format, and for tools)."""
        d = self.pdu()
        d["event_id"] = self.event_id
        return d

    def get(self, key: str, default: Any = None) -> Any:
        """A top-level PDU field by name (read-only)."""
        return self._pdu.get(key, default)

    def content_digest(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes).digest()

    def __repr__(self) -> str:
        sk = "" if self.state_key is None else f" state_key={self.state_key!r}"
        return f"<Event {self.event_id} {self.type}{sk} sender={self.sender}>"

    def __reduce__(self) -> tuple:
        # Pickling (e.g. to worker processes) re-interns on the other side.
        # The PDU travels as its canonical JSON: pickle recurses per nesting
        # level far more than the JSON codec does.
        return (_unpickle_event, (self.canonical_bytes, self.room_version, self.event_id, self._digest))


def _unpickle_event(canonical: bytes, room_version: str, eid: str, digest: bytes) -> Event:
    return Event._intern(json.loads(canonical), room_version, eid, digest)
