"""Withholding: push children, never give out their parents.

Each action creates ``hidden`` ordinary messages (correctly signed, stored
by the adversary, never pushed: ``create_event(push=False)``), then one
child citing the last of them, pushed to the targets. Every request whose
answer would reveal a hidden event -- ``/event`` or ``/event_auth`` of one,
``/state_ids`` or ``/state`` at one, ``/get_missing_events`` or
``/backfill`` whose answer would contain one -- is answered with silence
(``answer = "silence"``: the requester waits for its request timeout, and
retries as its client does) or ``404 M_NOT_FOUND`` (``"not_found"``).
Other requests are answered honestly.

Honest servers must drop the child (Synapse: "Your server isn't divulging
details about prev_events referenced in this event"), and so every later
event of the adversary that descends from it. What it costs them: each
pushed child holds up the receiving room worker (Synapse processes a
room's incoming events one at a time) for as long as the
``/get_missing_events`` to the adversary takes, so honest events queued
behind it are delayed, or lost if the run ends first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import simpy

from ...protocol import Event
from ..transport import M_NOT_FOUND, MatrixError
from .base import Behaviour, register

if TYPE_CHECKING:
    from ..transport import Response

__all__ = ["REVEALING", "Withhold", "push_over_gap"]

#: Requests whose answer can give out an event (the others are answered honestly).
REVEALING = ("get_missing_events", "event", "state_ids", "state", "backfill", "event_auth")

#: Where each revealing answer lists its events.
_ANSWER_KEY = {"get_missing_events": "events", "backfill": "pdus"}


def push_over_gap(b: Behaviour, n: int) -> list[Event]:
    """Create ``n`` messages without pushing them, then a child citing the
    last, pushed to ``b``'s targets (so they must ask ``b`` for the gap).
    Returns the unpushed messages."""
    room = b.room()
    rid = b.world.room_id
    user = next((u for u in b.hs.users if b.hs.is_joined(rid, u)), None)
    if room is None or user is None:
        return []
    kept: list[Event] = []
    for i in range(n):
        ev = b.hs.create_event(rid, user, "m.room.message",
                               {"msgtype": "m.text", "body": f"kept back {b.actions}.{i}"}, push=False)
        if ev is None:
            return kept
        kept.append(ev)
        b.record("hide", ev)
    child = b.hs.create_event(rid, user, "m.room.message", {"msgtype": "m.text", "body": f"child {b.actions}"},
                              push=False)
    if child is not None:
        dests = b.targets(room)
        b.send(child, dests)
        b.record("push_child", child, target=",".join(dests))
    return kept


@register
class Withhold(Behaviour):
    name = "withhold"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        #: IDs of the events it keeps back
        self.hidden: set[str] = set()

    def act(self) -> None:
        self.hidden.update(e.event_id for e in push_over_gap(self, self.cfg.hidden))

    def reveals(self, origin: str, kind: str, body: dict) -> str | None:
        """The hidden event the answer to this request would give out, if any."""
        if kind in ("event", "state_ids", "state", "event_auth"):
            eid = body["event_id"]
            return eid if eid in self.hidden else None
        key = _ANSWER_KEY.get(kind)
        if key is None:
            return None
        try:
            res = self.hs._handlers[kind](origin, body)
        except MatrixError:
            return None
        events: list[Event] = res.body[key]
        return next((e.event_id for e in events if e.event_id in self.hidden), None)

    def intercept(self, origin: str, kind: str, body: Any) -> "Response | simpy.Event | None":
        if kind not in REVEALING or not self.hidden:
            return None
        eid = self.reveals(origin, kind, body)
        if eid is None:
            return None
        room = self.room()
        ev = room.events.get(eid) if room is not None else None
        self.record(f"{self.cfg.answer}:{kind}", ev, target=origin)
        if self.cfg.answer == "not_found":
            raise MatrixError(M_NOT_FOUND, f"{self.hs.name} does not hold {eid}", 404)
        return self.env.event()
