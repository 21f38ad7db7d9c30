"""The redaction algorithm: what survives when an event's content is stripped."""

from __future__ import annotations

from typing import Any

from .roomversions import RoomVersion, get_room_version

__all__ = ["redact"]

_TOP_LEVEL_COMMON = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
})
# v1-v10 also keep these legacy top-level keys.
_TOP_LEVEL_OLD = _TOP_LEVEL_COMMON | {"prev_state", "origin", "membership"}

_PL_OLD = ("ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default")
_PL_V11 = _PL_OLD + ("invite",)


def _kept_content(etype: str, content: dict, rv: RoomVersion) -> dict:
    if etype == "m.room.member":
        out = {k: content[k] for k in ("membership", "join_authorised_via_users_server") if k in content}
        tpi = content.get("third_party_invite")
        if rv.v11_redaction and isinstance(tpi, dict):
            # As the reference homeserver does: an object keeps only ``signed``
            # (possibly nothing); any other value is dropped.
            out["third_party_invite"] = {"signed": tpi["signed"]} if "signed" in tpi else {}
        return out
    if etype == "m.room.create":
        if rv.v11_redaction:
            return dict(content)
        return {"creator": content["creator"]} if "creator" in content else {}
    if etype == "m.room.join_rules":
        return {k: content[k] for k in ("join_rule", "allow") if k in content}
    if etype == "m.room.power_levels":
        keys = _PL_V11 if rv.v11_redaction else _PL_OLD
        return {k: content[k] for k in keys if k in content}
    if etype == "m.room.history_visibility":
        return {k: content[k] for k in ("history_visibility",) if k in content}
    if etype == "m.room.redaction" and rv.v11_redaction:
        return {k: content[k] for k in ("redacts",) if k in content}
    return {}


def redact(pdu: dict, room_version: str | RoomVersion = "11") -> dict:
    """Return the redacted copy of ``pdu`` under ``room_version``'s rules.

    Drops every top-level key the version does not keep (``unsigned``
    included) and every content key not listed for the event's type.
    """
    rv = get_room_version(room_version)
    keep = _TOP_LEVEL_COMMON if rv.v11_redaction else _TOP_LEVEL_OLD
    out: dict[str, Any] = {k: v for k, v in pdu.items() if k in keep}
    content = pdu.get("content")
    out["content"] = _kept_content(pdu.get("type", ""), content, rv) if isinstance(content, dict) else {}
    return out
