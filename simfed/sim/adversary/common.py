"""Helpers the behaviours of this package share beyond :class:`Behaviour`:
building an event of any type on chosen prev_events and state, keeping an
event in the adversary's own copy of the room, and made-up event IDs."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ...protocol import Event, RoomState, auth_events_for
from ..serving import DEPTH_CAP

__all__ = ["event_fields", "fake_event_id", "keep", "newest_prevs"]


def newest_prevs(room: RoomState, limit: int) -> list[str]:
    """The ``limit`` deepest forward extremities (what an honest server cites)."""
    fwd = room.forward_extremities
    return sorted(sorted(fwd, key=lambda e: (-room.graph[e].depth, e))[:limit])


def event_fields(room: RoomState, sender: str, etype: str, content: dict[str, Any], *, ts: int,
                 prevs: list[str], state: dict | None = None, state_key: str | None = None,
                 depth: int | None = None) -> dict[str, Any]:
    """The fields of an event on ``prevs`` whose auth_events are taken from
    ``state`` (default: the state after ``prevs`` as ``room`` resolves it);
    ``depth`` defaults to the honest one (deepest prev + 1)."""
    if state is None:
        state = room.state_after(prevs[0]) if len(prevs) == 1 else room.resolve([room.state_after(p) for p in prevs])
    if depth is None:
        depth = max((room.graph[p].depth for p in prevs if p in room.graph), default=0) + 1
    fields: dict[str, Any] = {
        "room_id": room.graph.room_id, "sender": sender, "type": etype, "content": content,
        "prev_events": sorted(prevs), "auth_events": auth_events_for(etype, state_key, sender, content, state),
        "depth": min(int(depth), DEPTH_CAP), "origin_server_ts": ts,
    }
    if state_key is not None:
        fields["state_key"] = state_key
    return fields


def keep(room: RoomState, ev: Event) -> None:
    """Store ``ev`` in the adversary's own room as its creator would (no
    soft-fail; rejected if its own auth rules say so), so that it can serve
    it when honest servers ask."""
    if ev.event_id not in room.status and not room.graph.missing_parents(ev):
        room.add(ev, soft_fail=False)


def fake_event_id(rng: np.random.Generator) -> str:
    """An event ID (room version 4+ form) of no event anywhere."""
    raw = rng.bytes(32)
    return "$" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
