"""Lying: false answers to the requests other servers make of it.

Each action makes others ask: ``gap`` events are created without being
pushed, then a child citing them is pushed to the targets, which fetch the
gap with ``/get_missing_events`` and, past its limit, the state at the
gap's edge with ``/state_ids`` (and ``/state`` or ``/event``). In every
request of ``endpoints`` the adversary answers with one of ``lies``, in
turn (only those that apply to the endpoint):

==================  ============================================================
endpoint            lies
==================  ============================================================
state_ids           ``stale`` (the state as the room was set up, just after
                    its first join rules: initial power levels, no later
                    members or bans),
                    ``fabricated`` (the power levels named by an ID that exists
                    nowhere, plus one more such ID), ``wrong_room`` (the power
                    levels of another room), ``not_state`` (a message named as
                    the power levels)
state               ``stale``, ``forged`` (a power levels event giving its own
                    user 100, correctly signed, that the auth rules reject, and
                    a copy of it with a broken signature), ``wrong_room``
send_join           ``stale``, ``forged`` (as for state), ``no_create`` (the
                    state without the create event); the honest state events
                    left out go in the auth chain, so only the state is false
get_missing_events  ``unrelated`` (the room's first events), ``forged`` (events
                    with broken signatures), ``wrong_room``, ``too_many`` (every
                    event it holds, up to 20 times the limit asked)
==================  ============================================================

Events it made up (in another room, or forged) are also served by
``/event``, so that a requester that names them can fetch them. Every lie
is recorded in the ``adversary`` table as ``<endpoint>:<lie>``.
"""

from __future__ import annotations

from typing import Any

import simpy

from ...protocol import Event, RoomState
from ..serving import ID_BYTES, OVERHEAD_BYTES
from ..transport import MatrixError, Response
from .base import Behaviour, register
from .forging import forged_event
from .withholding import push_over_gap

__all__ = ["LIES", "Lie"]

#: The lies each endpoint can tell.
LIES: dict[str, tuple[str, ...]] = {
    "state_ids": ("stale", "fabricated", "wrong_room", "not_state"),
    "state": ("stale", "forged", "wrong_room"),
    "send_join": ("stale", "forged", "no_create"),
    "get_missing_events": ("unrelated", "forged", "wrong_room", "too_many"),
}

_PL = ("m.room.power_levels", "")


def _key(e: Event) -> tuple[str, str | None]:
    return (e.type, e.state_key)


def _size(events: list[Event]) -> int:
    return OVERHEAD_BYTES + sum(e.size_bytes for e in events)


@register
class Lie(Behaviour):
    name = "lie"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._told: dict[str, int] = {}
        #: events it made up, served by /event
        self.made_up: dict[str, Event] = {}
        self._elsewhere_events: list[Event] = []

    def act(self) -> None:
        push_over_gap(self, self.cfg.gap)

    # -- what to tell ------------------------------------------------------------

    def _next_lie(self, endpoint: str) -> str | None:
        kinds = [k for k in LIES[endpoint] if k in self.cfg.lies]
        if not kinds:
            return None
        n = self._told.get(endpoint, 0)
        self._told[endpoint] = n + 1
        return kinds[n % len(kinds)]

    def _stale_state(self, room: RoomState) -> dict:
        """The state as the room was set up: just after its first join rules
        (its first power levels if it has none)."""
        for etype in ("m.room.join_rules", "m.room.power_levels"):
            firsts = [e for e in room.graph.events.values() if e.type == etype]
            if firsts:
                return room.state_after(min(firsts, key=lambda e: (e.depth, e.event_id)).event_id)
        return room.current_state()

    def _elsewhere(self) -> list[Event]:
        """A create and a power levels event of another room, correctly signed."""
        if not self._elsewhere_events:
            rid = f"!elsewhere{self.index}:{self.hs.name}"
            user = self.hs.users[0]
            ts = self.hs.now_ts()
            create = self.build({"room_id": rid, "sender": user, "type": "m.room.create", "state_key": "",
                                 "content": {"room_version": self.hs.config.room_version}, "prev_events": [],
                                 "auth_events": [], "depth": 1, "origin_server_ts": ts})
            pl = self.build({"room_id": rid, "sender": user, "type": "m.room.power_levels", "state_key": "",
                             "content": {"users": {user: 100}}, "prev_events": [create.event_id],
                             "auth_events": [create.event_id], "depth": 2, "origin_server_ts": ts})
            self.made_up.update({create.event_id: create, pl.event_id: pl})
            self._elsewhere_events = [create, pl]
        return self._elsewhere_events

    def _forged_pl(self, room: RoomState) -> list[Event]:
        """Its own user at power 100 (signed, unauthorised) and a copy with a broken signature."""
        unauthorised = forged_event(self.hs, room, "unauthorised", victim=None, n=self.actions)
        pdu = unauthorised.pdu()
        pdu["origin_server_ts"] += 1
        broken = Event.from_pdu(pdu, self.hs.config.room_version)
        for e in (unauthorised, broken):
            self.made_up[e.event_id] = e
        return [unauthorised, broken]

    def _fabricated_id(self) -> str:
        return "$" + "".join(self.rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
                                             43))

    # -- answering ----------------------------------------------------------------

    def intercept(self, origin: str, kind: str, body: Any) -> "Response | simpy.Event | None":
        if kind == "event" and body["event_id"] in self.made_up:
            e = self.made_up[body["event_id"]]
            return Response(200, {"pdu": e}, _size([e]))
        if kind not in self.cfg.endpoints:
            return None
        room = self.room()
        if room is None or body.get("room_id") != self.world.room_id:
            return None
        try:
            honest = self.hs._handlers[kind](origin, body)
        except MatrixError:
            return None
        lie = self._next_lie(kind)
        if lie is None:
            return None
        out, shown = getattr(self, f"_{kind}")(room, honest.body, body, lie)
        self.record(f"{kind}:{lie}", shown, target=origin, illegitimate=lie in ("forged", "wrong_room"))
        return out

    def _state_ids(self, room: RoomState, honest: dict, body: dict, lie: str) -> tuple[Response, Event | None]:
        state = {_key(room.events[i]): i for i in honest["pdu_ids"] if i in room.events}
        shown = None
        if lie == "stale":
            state = self._stale_state(room)
        elif lie == "fabricated":
            state[_PL] = self._fabricated_id()
            state[("m.room.topic", "")] = self._fabricated_id()
        elif lie == "wrong_room":
            shown = self._elsewhere()[-1]
            state[_PL] = shown.event_id
        elif lie == "not_state":
            msg = next((e for e in sorted(room.graph.events.values(), key=lambda x: (x.depth, x.event_id))
                        if e.state_key is None), None)
            if msg is not None:
                state[_PL] = msg.event_id
        ids = sorted(state.values())
        chain = sorted(room.graph.auth_chains.union_chain([i for i in ids if i in room.graph]) - set(ids))
        size = OVERHEAD_BYTES + ID_BYTES * (len(ids) + len(chain))
        return Response(200, {"pdu_ids": ids, "auth_chain_ids": chain}, size), shown

    def _state(self, room: RoomState, honest: dict, body: dict, lie: str) -> tuple[Response, Event | None]:
        pdus: list[Event] = list(honest["pdus"])
        auth: list[Event] = list(honest["auth_chain"])
        shown = None
        if lie == "stale":
            pdus = [room.events[i] for i in sorted(self._stale_state(room).values())]
        elif lie == "forged":
            forged = self._forged_pl(room)
            pdus = [e for e in pdus if _key(e) != _PL] + forged
            shown = forged[0]
        elif lie == "wrong_room":
            other = self._elsewhere()
            pdus, shown = pdus + other, other[-1]
        return Response(200, {"pdus": pdus, "auth_chain": auth}, _size(pdus + auth)), shown

    def _send_join(self, room: RoomState, honest: dict, body: dict, lie: str) -> tuple[Response, Event | None]:
        state: list[Event] = list(honest["state"])
        shown = None
        if lie == "stale":
            state = [room.events[i] for i in sorted(self._stale_state(room).values())]
        elif lie == "forged":
            forged = self._forged_pl(room)
            state = [e for e in state if _key(e) != _PL] + forged[:1]
            shown = forged[0]
        elif lie == "no_create":
            state = [e for e in state if e.type != "m.room.create"]
        # The honest state events it left out go in the auth chain, so that
        # the joiner can still check every event (only the state is false).
        kept = {e.event_id for e in state}
        auth = list(honest["auth_chain"]) + [e for e in honest["state"] if e.event_id not in kept]
        out = dict(honest, state=state, auth_chain=auth)
        return Response(200, out, _size(state + auth)), shown

    def _get_missing_events(self, room: RoomState, honest: dict, body: dict, lie: str
                            ) -> tuple[Response, Event | None]:
        limit = int(body.get("limit", 10))
        by_depth = sorted(room.graph.events.values(), key=lambda e: (e.depth, e.event_id))
        shown = None
        if lie == "unrelated":
            events = by_depth[:limit]
        elif lie == "forged":
            events = []
            for i in range(limit):
                ev = self.build(self.message_fields(room, self.hs.users[0], f"forged {self.actions}.{i}"))
                pdu = ev.pdu()
                pdu["origin_server_ts"] += 1
                events.append(Event.from_pdu(pdu, self.hs.config.room_version))
            shown = events[0]
        elif lie == "wrong_room":
            events = self._elsewhere()
            shown = events[-1]
        else:  # too_many
            events = by_depth[-20 * limit:]
        return Response(200, {"events": events}, _size(events)), shown
