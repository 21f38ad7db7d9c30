"""Fan-out strategies: which servers a homeserver sends a new event to.

A strategy is any object with ``destinations(homeserver, room, event,
extra) -> set[str]``. ``full_mesh`` is what Matrix does: every server with a
joined member, plus the servers that had one just before the event (so a
kicked or leaving server still hears of it) and, for membership events, the
target's server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..protocol import Event, RoomState

if TYPE_CHECKING:
    from .homeserver import Homeserver

__all__ = ["FanOut", "FullMesh", "make_fanout"]


class FanOut(Protocol):
    name: str

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]: ...


class FullMesh:
    """Every server in the room, directly (Matrix today)."""

    name = "full_mesh"

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]:
        out = hs.joined_servers(room) | extra
        if event.type == "m.room.member" and event.state_key:
            out.add(event.state_key.partition(":")[2])
        return out


_STRATEGIES = {"full_mesh": FullMesh}


def make_fanout(name: str) -> FanOut:
    try:
        return _STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"fan-out strategy {name!r} is unknown; choose one of {sorted(_STRATEGIES)}") from None
