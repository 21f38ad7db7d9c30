"""The federation endpoints a simulated homeserver answers (protocol.md §5.3).

``/get_missing_events``, ``/state_ids``, ``/state``, ``/event``,
``/event_auth``, ``/backfill``, ``/make_join``, ``/send_join`` and the
anti-entropy exchange of forward extremities, each a
handler ``(origin, body) -> Response`` that raises :class:`MatrixError` with
Matrix's standard error body when it fails (M_NOT_FOUND for an unknown room
or event, M_FORBIDDEN for a server not in the room). Mixed into
:class:`~simfed.sim.homeserver.Homeserver`, which supplies ``rooms``,
``config``, ``joined_servers``, ``check_pdu``, ``fan_out`` and ``_outcome``.

:func:`check_request` checks a request body's fields before any handler
reads it, so a malformed request from a hostile peer fails that request
with ``400 M_BAD_JSON`` naming the field (as Synapse answers a body it
cannot parse), never the run.

Server ACLs (``m.room.server_acl`` in the room's current state, see
:mod:`simfed.protocol.acl`) are enforced as Synapse's ``federation_server.py``
``check_server_matches_acl``: every request about a room from a denied origin
(all of the above but ``/event``) is refused with ``403 M_FORBIDDEN``
(counted ``acl_refused_requests``), and the PDUs of a ``/send`` from a denied
origin are dropped unchecked (``acl_denied``). The origin is the server that
sent the request, not the event's sender.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from typing import Any, Iterable

import simpy

from ..protocol import Event, RoomState, auth_events_for
from ..protocol.acl import ACL_EVENT_TYPE, ServerAcl
from .transport import M_BAD_JSON, M_FORBIDDEN, M_NOT_FOUND, M_UNKNOWN, MatrixError, Response

__all__ = ["FederationServing", "OVERHEAD_BYTES", "REQUEST_FIELDS", "check_request", "room_acl"]

#: Requests Synapse serves one at a time per (origin, room): its
#: ``_server_linearizer`` in ``federation_server.py``.
LINEARIZED_KINDS = frozenset({"get_missing_events", "state", "event_auth", "backfill"})

#: Bytes of a request or response besides the events it carries.
OVERHEAD_BYTES = 300
ID_BYTES = 48
DEPTH_CAP = 2**53 - 1


def _is_ids(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_int(v: Any) -> bool:
    return type(v) is int


_SHAPES: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", _is_int),
    "ids": ("a list of strings", _is_ids),
    "event": ("an event", lambda v: isinstance(v, Event)),
    "events": ("a list of events", lambda v: isinstance(v, list) and all(isinstance(x, Event) for x in v)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "txn_id": ("a string or integer", lambda v: isinstance(v, (str, int))),
}

#: Per request kind: field -> (shape, required). Kinds not listed are not checked.
REQUEST_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "transaction": {"pdus": ("events", True), "edus": ("list", False), "txn_id": ("txn_id", False)},
    "get_missing_events": {"room_id": ("str", True), "latest_events": ("ids", True),
                           "earliest_events": ("ids", False), "limit": ("int", False)},
    "extremities": {"room_id": ("str", True)},
    "state_ids": {"room_id": ("str", True), "event_id": ("str", True)},
    "state": {"room_id": ("str", True), "event_id": ("str", True)},
    "event": {"event_id": ("str", True)},
    "event_auth": {"room_id": ("str", True), "event_id": ("str", True)},
    "backfill": {"room_id": ("str", True), "v": ("ids", True), "limit": ("int", False)},
    "make_join": {"room_id": ("str", True), "user_id": ("str", True)},
    "send_join": {"room_id": ("str", True), "event": ("event", True)},
}


def check_request(kind: str, body: Any) -> None:
    """Raise ``MatrixError(M_BAD_JSON, 400)`` naming the first missing or mistyped field."""
    fields = REQUEST_FIELDS.get(kind)
    if fields is None:
        return
    if not isinstance(body, dict):
        raise MatrixError(M_BAD_JSON, f"{kind}: the body must be an object", 400)
    for name, (shape, required) in fields.items():
        if name not in body:
            if required:
                raise MatrixError(M_BAD_JSON, f"{kind}: missing field {name!r}", 400)
            continue
        what, ok = _SHAPES[shape]
        if not ok(body[name]):
            raise MatrixError(M_BAD_JSON, f"{kind}: {name} must be {what}", 400)


@lru_cache(maxsize=256)
def _acl_of(ev: Event) -> ServerAcl:
    return ServerAcl.from_content(ev.content)


def room_acl(room: RoomState) -> ServerAcl | None:
    """The server ACL of the room's current state (None: no ACL, all allowed)."""
    eid = room.current_get((ACL_EVENT_TYPE, ""))
    ev = room.events.get(eid) if eid is not None else None
    return None if ev is None else _acl_of(ev)


class FederationServing:
    """Request handlers of a homeserver (a mixin of ``Homeserver``)."""

    name: str
    rooms: dict[str, RoomState]

    def acl_allows(self, room: RoomState, server: str) -> bool:
        """True if the room's server ACL (current state) lets ``server`` in."""
        acl = room_acl(room)
        return acl is None or acl.allows(server)

    def _acl_denied_pdu(self, origin: str, ev: Event) -> dict | None:
        """The per-PDU error of a ``/send`` PDU from an origin the room's ACL
        denies (it is dropped unchecked), else None."""
        room = self.rooms.get(ev.room_id)
        if room is None or self.acl_allows(room, origin):
            return None
        self.counters["acl_denied"] += 1
        self._record("event_outcome", self.env.now, self.name, ev.event_id, ev.room_id, "dropped", "push",
                     "server_acl")
        return {"errcode": M_FORBIDDEN, "error": "Server is banned from room"}

    def _admit_transaction(self, origin: str, body: dict) -> None:
        """Synapse's checks before a ``/send`` is processed: at most
        ``homeserver.max_inbound_pdus`` (50) PDUs and ``max_inbound_edus``
        (100) EDUs (else 400, counted ``txn_too_large``), and one
        transaction per origin at a time (another txn_id while one is being
        processed: 429 ``M_UNKNOWN``, counted ``txn_concurrent_refused``;
        the sender retries it as any 429)."""
        c = self.config
        if len(body["pdus"]) > c.max_inbound_pdus or len(body.get("edus") or ()) > c.max_inbound_edus:
            self.counters["txn_too_large"] += 1
            raise MatrixError(M_BAD_JSON, "Transaction PDU or EDU count too large", 400)
        if origin in self._active_txns and self._active_txns[origin] != body.get("txn_id"):
            self.counters["txn_concurrent_refused"] += 1
            raise MatrixError(M_UNKNOWN, "Too many concurrent transactions", 429)

    def _track_transaction(self, origin: str, body: dict, processing: simpy.Event) -> None:
        """Mark the origin busy with this transaction until ``processing`` ends."""
        self._active_txns[origin] = body.get("txn_id")
        processing.callbacks.append(lambda _e: self._active_txns.pop(origin, None))

    def _serve_on_cpu(self, kind: str, handler: Any, origin: str, body: dict) -> simpy.Event:
        """Answer on the CPU (``cpu.start``): linearized per (origin, room) for
        ``LINEARIZED_KINDS``; a transaction marks its origin busy until done."""
        def serve() -> simpy.Event:
            return self.cpu.start(self._serve_if_up, handler, origin, body, self._epoch)

        out = self._linearized((origin, body["room_id"]), serve) if kind in LINEARIZED_KINDS else serve()
        if kind == "transaction":
            self._track_transaction(origin, body, out)
        return out

    def _linearized(self, key: tuple[str, str], serve: Any) -> simpy.Event:
        """Serve once the previous request with the same (origin, room) key
        has been answered; ``serve()`` starts serving and returns its event.
        Returns an event with the same outcome (chained by callbacks: a
        process yielding a failed one would rebuild its ``MatrixError``).
        A peer hammering one room waits for its own requests, not others'."""
        prev = self._linearizer.get(key)
        done = self.env.event()
        self._linearizer[key] = done
        out = self.env.event()

        def finish(ev: simpy.Event) -> None:
            done.succeed()
            if self._linearizer.get(key) is done:
                del self._linearizer[key]
            if ev.ok:
                out.succeed(ev.value)
            else:
                ev.defused = True
                out.fail(ev.value)

        def start(_e: Any = None) -> None:
            serve().callbacks.append(finish)

        if prev is not None and not prev.triggered:
            self.counters["linearizer_waits"] += 1
            prev.callbacks.append(start)
        else:
            start()
        return out

    def _room_for(self, origin: str, room_id: str, *, check_member: bool = True) -> RoomState:
        room = self.rooms.get(room_id)
        if room is None:
            raise MatrixError(M_NOT_FOUND, f"{self.name} is not in room {room_id}", 404)
        if not self.acl_allows(room, origin):
            self.counters["acl_refused_requests"] += 1
            raise MatrixError(M_FORBIDDEN, "Server is banned from room", 403)
        if check_member and origin not in self.joined_servers(room) and not self._was_member(room, origin):
            raise MatrixError(M_FORBIDDEN, f"{origin} is not in room {room_id}", 403)
        return room

    def _was_member(self, room: RoomState, server: str) -> bool:
        """A server that ever had a member here may still fetch (gap filling after leaving)."""
        return any(k[0] == "m.room.member" and k[1].endswith(":" + server) for k in room.current_state())

    def _events_response(self, key: str, events: list[Event], **extra: Any) -> Response:
        return Response(200, {key: events, **extra}, OVERHEAD_BYTES + sum(e.size_bytes for e in events))

    def _on_get_missing_events(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"])
        earliest = set(body.get("earliest_events", ()))
        limit = min(int(body.get("limit", 10)), 20)
        out: list[Event] = []
        seen: set[str] = set()
        queue: deque[str] = deque()
        for latest in body["latest_events"]:
            e = room.graph.events.get(latest)
            if e is not None:
                queue.extend(e.prev_events)
        while queue and len(out) < limit:
            eid = queue.popleft()
            if eid in seen or eid in earliest:
                continue
            seen.add(eid)
            e = room.graph.events.get(eid)
            if e is None:
                continue
            out.append(e)
            queue.extend(e.prev_events)
        out.sort(key=lambda x: (x.depth, x.event_id))
        return self._events_response("events", out)

    def _on_extremities(self, origin: str, body: dict) -> Response:
        """Anti-entropy (not a Matrix endpoint): our forward extremities in the room."""
        room = self._room_for(origin, body["room_id"])
        ids = sorted(room.forward_extremities)
        return Response(200, {"event_ids": ids}, OVERHEAD_BYTES + ID_BYTES * len(ids))

    def _state_and_chain(self, room: RoomState, event_id: str) -> tuple[list[str], list[str]]:
        before = room.stored_state_before(event_id)
        if before is None or event_id not in room.graph:
            raise MatrixError(M_NOT_FOUND, f"{self.name} has no state at {event_id}", 404)
        state_ids = sorted(before.values())
        chain = room.graph.auth_chains.union_chain(state_ids)
        return state_ids, sorted(chain - set(state_ids))

    def _on_state_ids(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"])
        ids, chain = self._state_and_chain(room, body["event_id"])
        return Response(200, {"pdu_ids": ids, "auth_chain_ids": chain}, OVERHEAD_BYTES + ID_BYTES * (len(ids) + len(chain)))

    def _held(self, room: RoomState, ids: Iterable[str]) -> list[Event]:
        return [e for e in (room.events.get(i) for i in ids) if e is not None]

    def _on_state(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"])
        ids, chain = self._state_and_chain(room, body["event_id"])
        pdus, auth = self._held(room, ids), self._held(room, chain)
        return Response(200, {"pdus": pdus, "auth_chain": auth},
                        OVERHEAD_BYTES + sum(e.size_bytes for e in pdus) + sum(e.size_bytes for e in auth))

    def _on_event(self, origin: str, body: dict) -> Response:
        eid = body["event_id"]
        for room in self.rooms.values():
            e = room.events.get(eid)
            if e is not None:
                return Response(200, {"pdu": e}, OVERHEAD_BYTES + e.size_bytes)
        raise MatrixError(M_NOT_FOUND, f"{self.name} does not hold {eid}", 404)

    def _on_event_auth(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"])
        ev = room.events.get(body["event_id"])
        if ev is None:
            raise MatrixError(M_NOT_FOUND, f"{self.name} does not hold {body['event_id']}", 404)
        chain = self._held(room, room.graph.auth_chain(ev.event_id))
        return self._events_response("auth_chain", chain)

    def _on_backfill(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"])
        limit = min(int(body.get("limit", 100)), 100)
        heap = [room.graph.events[v] for v in body["v"] if v in room.graph]
        out: dict[str, Event] = {}
        while heap and len(out) < limit:
            heap.sort(key=lambda x: (x.depth, x.event_id))
            e = heap.pop()
            if e.event_id in out:
                continue
            out[e.event_id] = e
            heap.extend(p for p in (room.graph.events.get(x) for x in e.prev_events) if p is not None)
        return Response(200, {"origin": self.name, "pdus": list(out.values())},
                        OVERHEAD_BYTES + sum(e.size_bytes for e in out.values()))

    def _on_make_join(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"], check_member=False)
        user = body["user_id"]
        fwd = sorted(room.forward_extremities, key=lambda e: (-room.graph[e].depth, e))[: self.config.prev_events_max]
        prevs = sorted(fwd)
        state = room.current_state() if set(prevs) == room.forward_extremities else room.resolve(
            [room.state_after(p) for p in prevs])
        content = {"membership": "join"}
        template = {
            "room_id": room.graph.room_id, "sender": user, "type": "m.room.member", "state_key": user,
            "content": content, "prev_events": prevs,
            "auth_events": auth_events_for("m.room.member", user, user, content, state),
            "depth": min(max(room.graph[p].depth for p in prevs) + 1, DEPTH_CAP),
        }
        return Response(200, {"event": template, "room_version": self.config.room_version}, OVERHEAD_BYTES * 2)

    def _tie_extremities_after_join(self, room: RoomState) -> None:
        """Synapse (``federation_server.py`` ``on_send_join``): more than one
        forward extremity after a join means an event was created during the
        make_join/send_join handshake, which the joiner would miss until a
        later event cites it; a pushed dummy event citing them all lets it
        pull that event."""
        if len(room.forward_extremities) <= 1:
            return
        rid = room.graph.room_id
        for user in self.users:
            if self.is_joined(rid, user) and self.create_event(rid, user, "org.matrix.dummy_event", {}) is not None:
                self.counters["dummy_events_after_join"] += 1
                return

    def _on_send_join(self, origin: str, body: dict) -> Response:
        room = self._room_for(origin, body["room_id"], check_member=False)
        ev = body["event"]
        chk = self.check_pdu(ev)
        if chk.status == "rejected":
            raise MatrixError("M_BAD_JSON", f"join event refused: {chk.reason}", 400)
        ev = chk.event
        if room.graph.missing_parents(ev) or room.missing_auth_events(ev):
            raise MatrixError(M_FORBIDDEN, "join event cites events we do not hold", 403)
        before_servers = self.joined_servers(room)
        d = room.add(ev, soft_fail=False)
        self._outcome(ev, d.outcome, "send_join", d.code or None)
        if d.outcome == "rejected":
            raise MatrixError(M_FORBIDDEN, f"join not allowed: {d.reason}", 403)
        self.fan_out(room, ev, before_servers, exclude=[origin])
        self._tie_extremities_after_join(room)
        before = room.stored_state_before(ev.event_id) or {}
        ids = sorted(before.values())
        state = self._held(room, ids)
        chain = self._held(room, sorted(room.graph.auth_chains.union_chain(ids + [ev.event_id]) - set(ids)))
        return Response(200, {"state": state, "auth_chain": chain, "event": ev},
                        OVERHEAD_BYTES + sum(e.size_bytes for e in state) + sum(e.size_bytes for e in chain))

