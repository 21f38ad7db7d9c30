"""A simulated homeserver: creates, sends, receives, fetches and stores events.

Theory of operation. The protocol decisions (checks, authorisation, state,
extremities) live in :mod:`simfed.protocol`; this module wires them to
simulated time as Synapse does (protocol.md §4-§5):

- Pushed PDUs arrive in ``/send`` transactions. The signature and content
  hash checks run at once (failures are answered per PDU and counted);
  the rest is staged per room and processed serially in the background, so
  the response does not wait for gap filling.
- A pushed event with unknown prev_events triggers ``/get_missing_events``
  to the server that pushed it (limit 10, one try: Synapse's explicit
  timeout disables retries). Answers are checked before use
  (:mod:`simfed.sim.answers`). Pulled events whose own prevs are
  still unknown are bridged with ``/state_ids`` at each missing prev (the
  state events we lack are fetched with ``/event``, or ``/state`` when many
  are missing, and stored as outliers). If the prevs of the pushed event
  stay unknown, it is dropped, as Synapse does (only events deeper than
  the room's ``min_depth`` are gap-filled at all). ``gap_fill_retries > 0``
  (a deviation) retries the gap fill with backoff instead.
- Holes left behind (backward extremities: prevs never fetched because the
  gap was longer than the get_missing_events limit, or history from before
  a join) are filled by ``/backfill``, which Synapse does when a client
  paginates back. Each new hole is announced to the workload
  (``Workload.on_holes``), whose readers decide whether a client paginates
  (``workload.readers``); ``history_backfill_ms > 0`` (a deviation; 0 by
  default) instead has every server backfill about that often.
- Missing auth events are fetched with ``/event_auth``.
- Then checks 4-6 (``RoomState``), persistence, forward extremities and
  current state. Soft-failed and rejected events are stored too.
- Every request is a round trip over the simulated network (latency, loss,
  partitions, bandwidth) with a timeout; errors use Matrix's error bodies.

Work a real server would do (signature checks, auth checks, resolutions) is
counted per server in ``counters`` even where the simulation reuses an
answer computed by content elsewhere.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass
from sys import intern
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generator, Iterable, Mapping

import numpy as np
import simpy

from ..protocol import (
    Event,
    RoomState,
    auth_events_for,
    check_auth,
    check_auth_events_sanity,
)
from ..protocol.acl import ACL_EVENT_TYPE, ServerAcl
from ..protocol.checks import CheckResult
from ..protocol.room import Decision
from .answers import BadAnswer, backfill_events, fetched_events, send_join_problem, state_map_ids
from .defences_answers import check_answer
from .federation import FederationSender
from .detached import detached
from .processing import Cpu
from .serving import DEPTH_CAP, ID_BYTES, OVERHEAD_BYTES, FederationServing, check_request
from .transport import MatrixError, RequestFailed, Response

if TYPE_CHECKING:
    from .world import World

__all__ = ["Homeserver", "HomeserverConfig", "VIA"]

#: How an event reached a server (the ``via`` column of ``deliveries``).
VIA = ("created", "push", "get_missing_events", "state_fetch", "backfill", "send_join", "event", "anti_entropy")


Proc = Generator[simpy.Event, Any, Any]

#: Transactions remembered per origin to answer a retry without reprocessing it.
TXN_MEMORY = 64
#: a transaction's answer for a PDU it took (one read-only object: answers are kept)
_PDU_OK: "Mapping[str, Any]" = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HomeserverConfig:
    """Behaviour constants of a homeserver; defaults are Synapse's.

    Set from the scenario's ``[homeserver]`` section (and ``room_version``,
    ``state_resolution``, ``compat`` from ``[simulation]``); each field's
    Synapse source is documented in :mod:`simfed.config.homeserver`.
    ``dummy_push``, ``gap_fill_retries > 0`` and ``history_backfill_ms > 0``
    are deviations from Synapse, off by default.
    """

    room_version: str = "11"
    algorithm: str = "v2"
    compat: str = "synapse"
    prev_events_max: int = 10
    get_missing_events_limit: int = 10
    request_timeout_ms: float = 60_000.0
    fetch_retries: int = 3
    get_missing_events_retries: int = 0
    state_fetch_ratio: float = 0.1
    backfill_limit: int = 100
    dummy_events: bool = True
    dummy_threshold: int = 10
    dummy_interval_ms: float = 300_000.0
    dummy_push: bool = False
    gap_fill_retries: int = 0
    gap_fill_backoff_ms: float = 2_000.0
    history_backfill_ms: float = 0.0
    max_inbound_pdus: int = 50
    max_inbound_edus: int = 100
    strict_answer_limits: bool = False


class Homeserver(FederationServing):
    """One simulated homeserver with its users, rooms, key and queues.

    The endpoints it answers for other servers are in
    :class:`~simfed.sim.serving.FederationServing`.
    """

    def __init__(
        self,
        world: "World",
        name: str,
        *,
        key: Any,
        rng: np.random.Generator,
        users: Iterable[str],
        config: HomeserverConfig,
        sender: FederationSender,
        honest: bool = True,
        clock_skew_ms: float = 0.0,
    ) -> None:
        self.world = world
        self.env = world.env
        self.name = name
        self.key = key
        self.rng = rng
        self.users = list(users)
        self.config = config
        self.sender = sender
        self.honest = honest
        self.clock_skew_ms = clock_skew_ms
        self.up = True
        self.rooms: dict[str, RoomState] = {}
        self.counters: Counter[str] = Counter()
        #: the server's CPU (``simfed.sim.processing``); None: processing takes no time
        self.cpu: Cpu | None = None
        #: ``[[adversaries]]`` behaviours of this server (``simfed.sim.adversary``)
        self.behaviours: list[Any] = []
        self._epoch = 0
        self._inbox: dict[str, deque[tuple[Event, str, str]]] = {}
        self._busy: set[str] = set()
        self._retries: dict[str, int] = {}
        self._pending: set[str] = set()
        #: per origin, the answers kept for retried transactions, oldest first
        #: (``(txn_id, answer)`` while there is one, then a dict)
        self._answered: dict[str, Any] = {}
        #: per origin, the txn_id of the transaction being processed
        self._active_txns: dict[str, Any] = {}
        #: per (origin, room), the end of the last linearized request queued
        self._linearizer: dict[tuple[str, str], simpy.Event] = {}
        #: each stored event's position in the order this server stored them
        #: (Synapse's stream ordering; persisted, so it survives a crash)
        self._stream = world.stream_order.server()
        self._handlers = {
            "transaction": self._on_transaction,
            "get_missing_events": self._on_get_missing_events,
            "state_ids": self._on_state_ids,
            "state": self._on_state,
            "event": self._on_event,
            "event_auth": self._on_event_auth,
            "backfill": self._on_backfill,
            "make_join": self._on_make_join,
            "send_join": self._on_send_join,
            "extremities": self._on_extremities,
        }
        world.transport.register(name, self._handle)

    # -- time and identity ---------------------------------------------------

    def now_ts(self) -> int:
        """This server's wall clock in ms (simulated time plus its skew)."""
        return int(self.world.epoch_ms + self.env.now + self.clock_skew_ms)

    def _record(self, method: str, *args: Any, **kw: Any) -> None:
        rec = self.world.recorder
        if rec is not None:
            getattr(rec, method)(*args, **kw)

    def _outcome(self, ev: Event, outcome: str, via: str, reason: str | None = None,
                 stage: str = "timeline") -> None:
        """Count and record an outcome; ``stage`` is ``outlier`` for an event
        stored outside the room DAG, ``timeline`` once it is in the DAG."""
        self.counters[outcome] += 1
        if outcome != "dropped":
            self._stream.add(ev.event_id)
        self._record("event_outcome", self.env.now, self.name, ev.event_id, ev.room_id, outcome, via, reason,
                     stage)

    # -- rooms -----------------------------------------------------------------

    def new_room_state(self, room_id: str) -> RoomState:
        c = self.config
        room = RoomState(
            c.room_version, algorithm=c.algorithm, compat=c.compat, room_id=room_id,
            shared=self.world.shared_memo(room_id) if self.honest else None,
        )
        self.rooms[room_id] = room
        return room

    def joined_servers(self, room: RoomState, state: dict | None = None) -> set[str]:
        """Servers with a joined member in ``state`` (default: current state)."""
        return set(self._join_depths(room, state).servers)

    def _join_depths(self, room: RoomState, state: dict | None = None) -> "_JoinDepths":
        """The servers with a joined member in ``state`` (default: current
        state) and the least depth of each one's members' join events
        (read-only: shared by the servers holding the same canonical map)."""
        st = room.current_state() if state is None else state

        def depths(st: dict) -> _JoinDepths:
            out: dict[str, int] = {}
            for (etype, skey), eid in st.items():
                if etype == "m.room.member":
                    ev = room.events.get(eid)
                    if ev is not None and ev.membership == "join":
                        server = intern(skey.partition(":")[2])  # one string per name, not per map
                        out[server] = min(out.get(server, ev.depth), ev.depth)
            return _JoinDepths(tuple(out), tuple(out.values()))

        return room.derived("join_depths", st, depths)  # type: ignore[return-value]

    def longest_in_room(self, room: RoomState) -> list[str]:
        """The other servers joined to the room, longest in the room first
        (Synapse ``get_current_hosts_in_room_ordered``: by the least depth
        of their members' current join events; ties by name)."""
        return [s for s in self._join_depths(room).longest() if s != self.name]

    def has_member(self, room_id: str) -> bool:
        """True if one of this server's users is joined to the room."""
        return room_id in self.rooms and any(self.is_joined(room_id, u) for u in self.users)

    def is_joined(self, room_id: str, user: str) -> bool:
        room = self.rooms.get(room_id)
        if room is None:
            return False
        eid = room.current_get(("m.room.member", user))
        ev = room.events.get(eid) if eid else None
        return ev is not None and ev.membership == "join"

    # -- creating events -------------------------------------------------------

    def create_event(
        self, room_id: str, sender: str, etype: str, content: dict, state_key: str | None = None,
        *, prev_events: list[str] | None = None, push: bool = True,
    ) -> Event | None:
        """Build, sign, authorise, persist and send a new event.

        Returns ``None`` (and counts ``refused``) when the auth rules refuse
        it against the state it would be built on, as a server refuses a
        client request: nothing is sent. ``push=False`` persists it without
        sending it (Synapse's ``proactively_send = False``): other servers
        pull it when a later event cites it.
        """
        room = self.rooms.get(room_id)
        if room is None or not self.up:
            return None
        if etype == ACL_EVENT_TYPE and not ServerAcl.from_content(content).allows(self.name):
            self.counters["refused"] += 1  # Synapse: "Can't create an ACL event that denies the local server"
            return None
        if prev_events is None:
            fwd = room.forward_extremities
            prev_events = sorted(fwd, key=lambda e: (-room.graph[e].depth, e))[: self.config.prev_events_max]
        prevs = sorted(prev_events)
        if len(prevs) == len(room.forward_extremities) and set(prevs) == room.forward_extremities:
            state = room.current_state()
        elif len(prevs) == 1:
            state = room.state_after(prevs[0])
        else:
            state = room.resolve([room.state_after(p) for p in prevs])
        depth = min(max((room.graph[p].depth for p in prevs), default=0) + 1, DEPTH_CAP)
        fields: dict[str, Any] = {
            "room_id": room_id, "sender": sender, "type": etype, "content": content,
            "prev_events": prevs, "auth_events": auth_events_for(etype, state_key, sender, content, state),
            "depth": depth, "origin_server_ts": self.now_ts(),
        }
        if state_key is not None:
            fields["state_key"] = state_key
        ev = Event.create(fields, self.name, self.key, self.config.room_version)
        self.counters["signed"] += 1
        decision = room.decide(ev, soft_fail=False)
        if decision.outcome != "accepted":
            self.counters["refused"] += 1
            return None
        before_servers = self.joined_servers(room)
        room.add(ev, decided=decision, soft_fail=False)
        self._record("event_created", self.env.now, self.name, ev.event_id, room_id, etype,
                     state_key is not None, depth, len(prevs), sender)
        self._outcome(ev, "accepted", "created")
        self._after_persist(room, ev)
        if self.cpu is None:
            if push:
                self.fan_out(room, ev, before_servers)
        else:  # sent once the CPU has done the work of creating it (a crashed sender marks it for catch-up)
            room.current_state()
            job = self.cpu.charge()
            if push:
                job.callbacks.append(lambda _e: self.fan_out(room, ev, before_servers))
        services = getattr(self.world, "services", None)
        if services is not None:
            services.on_local_event(self, ev)
        return ev

    def fan_out(self, room: RoomState, ev: Event, extra: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        """Queue ``ev`` for the servers the fan-out strategy names."""
        targets = self.world.fanout.destinations(self, room, ev, set(extra))
        self._push(ev, targets - set(exclude), "origin")

    def _forward(self, room: RoomState, ev: Event, came_from: str) -> None:
        """Pass on an event first received by push, as the fan-out strategy says."""
        targets = self.world.fanout.forward(self, room, ev, came_from)
        if targets:
            self._push(ev, targets - {came_from, ev.sender.partition(":")[2]}, "forward")

    def _push(self, ev: Event, targets: set[str], role: str) -> None:
        rec = self.world.recorder
        for dest in sorted(targets - {self.name}):
            self.sender.send_pdu(dest, ev, ev.room_id)
            if rec is not None:
                rec.push(self.env.now, self.name, dest, ev.event_id, role, ev.size_bytes)

    def _after_persist(self, room: RoomState, ev: Event) -> None:
        if ev.type == "m.room.member" and ev.state_key is not None and ev.state_key.endswith(":" + self.name):
            self._membership_changed(room)

    def _membership_changed(self, room: RoomState) -> None:
        joined = any(self.is_joined(room.graph.room_id, u) for u in self.users)
        key = (self.name, room.graph.room_id)
        if self.world.server_in_room.get(key) != joined:
            self.world.server_in_room[key] = joined
            self._record("membership", self.env.now, self.name, room.graph.room_id, joined)

    # -- requests ----------------------------------------------------------------

    def request(self, dest: str, kind: str, body: dict, size: int, *, retries: int | None = None) -> Proc:
        """A federation request with "short" retries (``fetch_retries`` unless
        ``retries`` is given); returns a Response or RequestFailed
        (``"bad_answer"``: a 2xx answer that failed :func:`check_answer`, counted, not retried)."""
        c = self.config
        res: Response | RequestFailed = RequestFailed("timeout")
        for attempt in range((c.fetch_retries if retries is None else retries) + 1):
            if attempt:
                yield self.env.timeout(min(500.0 * 2 ** (attempt - 1), 2000.0) * self.rng.uniform(0.8, 1.4))
            if not self.up:
                return RequestFailed("connection")
            res = yield self.world.transport.request(self.name, dest, kind, body, size, timeout_ms=c.request_timeout_ms)
            self.counters[f"request:{kind}"] += 1
            if isinstance(res, Response) and res.ok:
                bad = check_answer(kind, body, res.body, strict_limits=c.strict_answer_limits)
                if bad is not None:
                    self.counters[f"bad_answer_{bad}"] += 1
                    return RequestFailed("bad_answer")
            if isinstance(res, Response) and (res.ok or (400 <= res.status < 500 and res.status != 429)):
                return res
        self.counters[f"request_failed:{kind}"] += 1
        return res

    # -- receiving -----------------------------------------------------------------

    def _handle(self, origin: str, kind: str, body: Any) -> Response | simpy.Event:
        self.sender.on_contact(origin)
        handler = self._handlers.get(kind)
        if handler is None:
            services = getattr(self.world, "services", None)
            served = services.handler(kind) if services is not None else None
            if served is None:
                raise MatrixError("M_UNRECOGNIZED", f"{self.name} serves no {kind}", 404)
            return served(self, origin, body)
        check_request(kind, body)
        for behaviour in self.behaviours:
            if behaviour.active():
                out = behaviour.intercept(origin, kind, body)
                if out is not None:
                    return out
        if kind == "transaction":
            self._admit_transaction(origin, body)
        if self.cpu is not None:
            self.counters["requests_served"] += 1
            return self._serve_on_cpu(kind, handler, origin, body)
        return handler(origin, body)

    def _serve_if_up(self, handler: Any, origin: str, body: Any, epoch: int) -> Response:
        """A request answered on the CPU, unless the server crashed while it waited."""
        if epoch != self._epoch or not self.up:
            raise MatrixError("M_UNKNOWN", f"{self.name} is restarting", 503)
        return handler(origin, body)

    def check_pdu(self, ev: Event) -> CheckResult:
        self.counters["signature_checks"] += 1
        return self.world.check(ev)

    def _on_transaction(self, origin: str, body: dict) -> Response:
        """Receive a transaction; a retry of one already answered (same origin
        and txn_id: its response was lost) gets the same answer and is not
        processed again, as Synapse does."""
        txn_id = body.get("txn_id")
        seen = self._answered.get(origin)
        if txn_id is not None and seen is not None:
            if type(seen) is tuple:
                kept = seen[1] if seen[0] == txn_id else None
            else:
                kept = seen.get(txn_id)
            if kept is not None:
                self.counters["duplicate_transactions"] += 1
                return kept if isinstance(kept, Response) else _all_ok_response(kept)
        res = self._process_transaction(origin, body)
        if txn_id is not None:
            answer = _compact_answer(res)
            if seen is None:
                self._answered[origin] = (txn_id, answer)  # most origins: one answer kept, no dict
            else:
                if type(seen) is tuple:
                    seen = self._answered[origin] = {seen[0]: seen[1]}
                seen[txn_id] = answer
                if len(seen) > TXN_MEMORY:
                    del seen[next(iter(seen))]
        return res

    def _process_transaction(self, origin: str, body: dict) -> Response:
        results: dict[str, dict] = {}
        for ev in body["pdus"]:
            denied = self._acl_denied_pdu(origin, ev)
            if denied is not None:
                results[ev.event_id] = denied
                continue
            res = self.check_pdu(ev)
            if res.status == "rejected":
                results[res.event_id or "?"] = {"error": res.reason}
                self.counters["dropped"] += 1
                self._record("event_outcome", self.env.now, self.name, res.event_id or ev.event_id,
                             ev.room_id, "dropped", "push", res.code.value if res.code else "invalid")
                continue
            results[res.event.event_id] = _PDU_OK
            self._stage(res.event, origin, "push")
        edus = body.get("edus")
        if edus:
            services = getattr(self.world, "services", None)
            if services is not None:
                services.on_edus(self, origin, edus)
        return _transaction_response(results)

    def _stage(self, ev: Event, origin: str, via: str) -> None:
        rid = ev.room_id
        if rid not in self.rooms:
            return
        self._inbox.setdefault(rid, deque()).append((ev, origin, via))
        if rid not in self._busy:
            self._busy.add(rid)
            detached(self.env, self._room_worker(rid, self._epoch))

    def _room_worker(self, room_id: str, epoch: int) -> Proc:
        q = self._inbox[room_id]
        try:
            while q and self.up and epoch == self._epoch:
                ev, origin, via = q.popleft()
                yield from self._process_pushed(room_id, ev, origin, via)
        finally:
            if epoch == self._epoch:
                self._busy.discard(room_id)

    def _process_pushed(self, room_id: str, ev: Event, origin: str, via: str) -> Proc:
        room = self.rooms.get(room_id)
        if room is None or ev.event_id in room.status:
            if room is not None and via == "push":
                self.counters["duplicate_pushes"] += 1
            return
        if room.graph.missing_parents(ev):
            min_depth = self._min_depth(room)
            if min_depth is not None and ev.depth <= min_depth:
                # Synapse fetches prevs only for events deeper than the room's
                # min_depth (then rejects the event as below).
                self._retry_later(room_id, ev, origin, via)
                return
            epoch = self._epoch
            yield from self._get_missing_events(room, ev, origin, min_depth)
            if epoch != self._epoch or ev.event_id in room.status:
                return
            if room.graph.missing_parents(ev):
                self._retry_later(room_id, ev, origin, via)
                return
        yield from self._persist(room, ev, origin, via)

    def _retry_later(self, room_id: str, ev: Event, origin: str, via: str) -> None:
        n = self._retries.get(ev.event_id, 0)
        if n >= self.config.gap_fill_retries:
            self._pending.discard(ev.event_id)
            self._outcome(ev, "dropped", via, "missing_prev_events")
            return
        self._retries[ev.event_id] = n + 1
        self._pending.add(ev.event_id)
        delay = self.config.gap_fill_backoff_ms * 2**n * self.rng.uniform(0.8, 1.4)
        epoch = self._epoch
        servers = sorted(self.joined_servers(self.rooms[room_id]) - {self.name}) or [origin]
        target = origin if n == 0 else servers[int(self.rng.integers(len(servers)))]

        def again(_: simpy.Event) -> None:
            if epoch == self._epoch and self.up:
                self._pending.discard(ev.event_id)
                self._stage(ev, target, via)

        self.env.timeout(delay).callbacks.append(again)

    @staticmethod
    def _min_depth(room: RoomState) -> int | None:
        """Synapse's ``room_depth.min_depth``: the least depth of the events
        in the room DAG that were not rejected (outliers excluded)."""
        depths = [e.depth for e in room.graph.events.values() if e.event_id not in room.rejected]
        return min(depths) if depths else None

    def _get_missing_events(self, room: RoomState, ev: Event, origin: str, min_depth: int | None) -> Proc:
        have = [p for p in ev.prev_events if p in room.graph]
        earliest = sorted(set(room.forward_extremities) | set(have))
        body = {"room_id": ev.room_id, "earliest_events": earliest, "latest_events": [ev.event_id],
                "limit": self.config.get_missing_events_limit, "min_depth": min_depth or 0}
        size = OVERHEAD_BYTES + ID_BYTES * (len(earliest) + 1)
        res = yield from self.request(origin, "get_missing_events", body, size,
                                      retries=self.config.get_missing_events_retries)
        if not isinstance(res, Response) or not res.ok:
            return
        pulled = []
        for e in fetched_events(self, ev.room_id, res.body["events"]):
            chk = self.check_pdu(e)
            if chk.status == "rejected":
                self._record("event_outcome", self.env.now, self.name, e.event_id, e.room_id, "dropped",
                             "get_missing_events", chk.code.value if chk.code else "invalid")
                continue
            pulled.append(chk.event)
        for e in sorted(pulled, key=lambda x: (x.depth, x.event_id)):
            if e.event_id not in room.status and e.event_id != ev.event_id:
                yield from self._process_pulled(room, e, origin, "get_missing_events")

    def _process_pulled(self, room: RoomState, ev: Event, origin: str, via: str, *, backfilled: bool = False) -> Proc:
        missing = room.graph.missing_parents(ev)
        if not missing:
            yield from self._persist(room, ev, origin, via, backfilled=backfilled)
            return
        states = []
        for m in missing:
            st = yield from self._state_after_missing(room, m, origin)
            if st is None:
                self._outcome(ev, "dropped", via, "state_fetch_failed")
                return
            states.append(st)
        states += [room.state_after(p) for p in ev.prev_events if p not in missing]
        before = states[0] if len(states) == 1 else room.resolve(states)
        yield from self._persist(room, ev, origin, via, before=before, backfilled=backfilled)

    def _state_after_missing(self, room: RoomState, event_id: str, origin: str) -> Proc:
        """The state after an event we do not hold, from ``origin``'s /state_ids."""
        body = {"room_id": room.graph.room_id, "event_id": event_id}
        res = yield from self.request(origin, "state_ids", body, OVERHEAD_BYTES + ID_BYTES)
        if not isinstance(res, Response) or not res.ok:
            return None
        ids = list(res.body["pdu_ids"]) + list(res.body["auth_chain_ids"]) + [event_id]
        missing = [i for i in dict.fromkeys(ids) if i not in room.events]
        if missing:
            total = len(res.body["pdu_ids"]) + len(res.body["auth_chain_ids"])
            ok = yield from self._fetch_outliers(room, missing, origin, event_id, total, set(ids))
            if not ok:
                return None
        m = room.events.get(event_id)
        if m is None:
            return None
        # As Synapse: state events that could not be fetched (or are not
        # state) are left out of the state map, with the prev event required.
        state = state_map_ids(self, room.graph.room_id, res.body["pdu_ids"], room.events)
        if m.state_key is not None and event_id not in room.rejected:
            state[room.state_key(m.type, m.state_key)] = event_id
        return room.as_known_state_after(event_id, state)

    def _fetch_outliers(self, room: RoomState, ids: list[str], origin: str, at: str, total: int,
                        named: set[str]) -> Proc:
        """Fetch the missing state and auth events named by ``/state_ids``:
        all with ``/state`` (False if it fails) or one ``/event`` each
        (those that fail are skipped, as Synapse does)."""
        rid = room.graph.room_id
        got: list[Event] = []
        if len(ids) >= self.config.state_fetch_ratio * total:
            res = yield from self.request(origin, "state", {"room_id": rid, "event_id": at}, OVERHEAD_BYTES + ID_BYTES)
            if not isinstance(res, Response) or not res.ok:
                return False
            got = list(res.body["pdus"]) + list(res.body["auth_chain"])
            want = set(ids)
            ev_res = yield from self.request(origin, "event", {"event_id": at}, OVERHEAD_BYTES + ID_BYTES)
            if isinstance(ev_res, Response) and ev_res.ok:
                got.append(ev_res.body["pdu"])
            got = [e for e in fetched_events(self, rid, got, named) if e.event_id in want]
        else:
            calls = [self.env.process(self.request(origin, "event", {"event_id": i}, OVERHEAD_BYTES + ID_BYTES))
                     for i in ids]
            done = yield simpy.AllOf(self.env, calls)
            for i, c in zip(ids, calls):
                r = done[c]
                if isinstance(r, Response) and r.ok:
                    got += fetched_events(self, rid, [r.body["pdu"]], [i])
        self._store_outliers(room, got, "state_fetch")
        return True

    def _store_outliers(self, room: RoomState, events: Iterable[Event], via: str) -> None:
        """Check and store events known only as state/auth events (causal order)."""
        fresh = {e.event_id: e for e in fetched_events(self, room.graph.room_id, events)
                 if e.event_id not in room.events}
        for e in sorted(fresh.values(), key=lambda x: (x.depth, x.event_id)):
            chk = self.check_pdu(e)
            if chk.status == "rejected":
                continue
            e = chk.event
            own = [room.events.get(a) for a in e.auth_events]
            if None in own:
                # Synapse (_auth_and_persist_outliers): an event whose auth
                # events could not be found is dropped, not stored rejected.
                self._outcome(e, "dropped", via, "missing_auth_events", "outlier")
                continue
            self.counters["auth_checks"] += 1
            sane = check_auth_events_sanity(e, own, room.rejected)
            ok = sane.allowed and check_auth(
                e, {(a.type, a.state_key): a for a in own if a is not None},
                self.config.room_version, compat=self.config.compat).allowed
            room.add_outlier(e)
            if not ok:
                room.rejected[e.event_id] = "auth_events"
            self._outcome(e, "accepted" if ok else "rejected", via, None if ok else "auth_events", "outlier")

    def _persist(self, room: RoomState, ev: Event, origin: str, via: str, *, before: dict | None = None,
                 backfilled: bool = False) -> Proc:
        missing_auth = room.missing_auth_events(ev)
        if missing_auth:
            res = yield from self.request(origin, "event_auth", {"room_id": ev.room_id, "event_id": ev.event_id},
                                          OVERHEAD_BYTES + ID_BYTES)
            if isinstance(res, Response) and res.ok:
                self._store_outliers(room, res.body["auth_chain"], "state_fetch")
            if room.missing_auth_events(ev):
                self._outcome(ev, "dropped", via, "missing_auth_events")
                return
        if ev.event_id in room.status:
            return
        if before is None and room.graph.missing_parents(ev):
            return
        fresh = self._fresh_holes(room, ev) if before is not None else []
        if self.cpu is None:
            d = room.add(ev, before=before, backfilled=backfilled)
        else:
            d = yield from self.cpu.run(self._add_if_up, room, ev, before, backfilled, self._epoch)
            if d is None:
                return
        self._retries.pop(ev.event_id, None)
        self._outcome(ev, d.outcome, via, d.code or None)
        self._announce_holes(room, fresh, via)
        if d.outcome != "rejected":
            self._after_persist(room, ev)
            if via == "push":
                self._forward(room, ev, origin)

    @staticmethod
    def _fresh_holes(room: RoomState, ev: Event) -> list[str]:
        """The prevs of ``ev`` that adding it would make new holes."""
        g = room.graph
        return [p for p in ev.prev_events if p not in g and p not in g.backward_extremities]

    def _announce_holes(self, room: RoomState, fresh: list[str], via: str) -> None:
        """Tell the workload (its readers) that the room DAG gained holes."""
        holes = [p for p in fresh if p not in room.graph]
        workload = getattr(self.world, "workload", None)
        if holes and workload is not None:
            workload.on_holes(self, room, holes, via)

    def holes(self, room: RoomState) -> list[str]:
        """The room's holes: backward extremities not in its DAG (a prev
        fetched as an outlier is still one: its ancestry is unknown until it
        joins the DAG), sorted by ID."""
        g = room.graph
        return sorted(e for e in g.backward_extremities if e not in g)

    def backfill_points(self, room: RoomState, among: Iterable[str], limit: int) -> list[str]:
        """Of the holes ``among``, the ``limit`` newest, as Synapse picks the
        extremities of a ``/backfill`` (``maybe_backfill``: the deepest 5 by
        the depth of the events that cite them)."""
        g = room.graph

        def depth(h: str) -> int:
            return max((g[c].depth for c in g.children(h) if c in g), default=0)

        holes = [h for h in among if h not in g and h in g.backward_extremities]
        return sorted(holes, key=lambda h: (-depth(h), h))[:limit]

    def _add_if_up(self, room: RoomState, ev: Event, before: dict | None, backfilled: bool,
                   epoch: int) -> Decision | None:
        """Persisting as a unit of CPU work: skipped if the server crashed (or
        another path stored the event) while it waited; the current state is
        recomputed, as Synapse does when it persists an event (counted as
        work now, computed when read)."""
        if epoch != self._epoch or ev.event_id in room.status:
            return None
        d = room.add(ev, before=before, backfilled=backfilled)
        room.count_current_state()
        return d

    # -- joining a room through a resident server -------------------------------------------

    def join_candidates(self, room_id: str) -> list[str]:
        """Servers to try a join through, from what this server knows: the
        servers joined in its own view of the room (a room it was in), else
        the server in the room ID (what a client passes as ``via``), else any
        other server. Servers it is backing off from come last."""
        room = self.rooms.get(room_id)
        known = sorted(self.joined_servers(room) - {self.name}) if room is not None else []
        if not known:
            creator = room_id.partition(":")[2]
            known = [creator] if creator and creator != self.name else sorted(
                n for n in self.world.servers if n != self.name)
        ready = [s for s in known if self.sender.retry_interval_ms(s) == 0]
        return ready or known

    def join_via(self, room_id: str, user: str, resident: str) -> Proc:
        """make_join / send_join through ``resident``, then backfill. Returns success.

        A server that still has a member joins locally; one that has none
        (never joined, or every user left) joins remotely, keeping what it
        stored of the room before."""
        if self.has_member(room_id):
            return self.create_event(room_id, user, "m.room.member", {"membership": "join"}, user) is not None
        res = yield from self.request(resident, "make_join", {"room_id": room_id, "user_id": user}, OVERHEAD_BYTES)
        if not isinstance(res, Response) or not res.ok or self.has_member(room_id) or not self.up:
            return False
        fields = dict(res.body["event"], origin_server_ts=self.now_ts())
        try:
            ev = Event.create(fields, self.name, self.key, self.config.room_version)
        except ValueError:
            self.counters["bad_answer_shape"] += 1  # a make_join template that is no event
            return False
        self.counters["signed"] += 1
        res = yield from self.request(resident, "send_join", {"room_id": room_id, "event": ev},
                                      OVERHEAD_BYTES + ev.size_bytes)
        if not isinstance(res, Response) or not res.ok or self.has_member(room_id) or not self.up:
            return False
        if send_join_problem(self, room_id, ev, res.body) is not None:
            return False
        room = self.rooms.get(room_id) or self.new_room_state(room_id)
        self._store_outliers(room, list(res.body["auth_chain"]) + list(res.body["state"]), "send_join")
        before = {(e.type, e.state_key): e.event_id for e in res.body["state"] if e.event_id in room.events}
        fresh = self._fresh_holes(room, ev)
        self._record("event_created", self.env.now, self.name, ev.event_id, room_id, ev.type, True,
                     ev.depth, len(ev.prev_events), user)
        d = room.decide(ev, before=before, soft_fail=False)
        if d.outcome != "accepted":
            # Synapse (process_remote_join): a join that the state it was
            # given does not allow is refused, not persisted.
            self._outcome(ev, "dropped", "send_join", d.code or "rejected")
            return False
        d = room.add(ev, before=before, soft_fail=False, decided=d)
        self._outcome(ev, d.outcome, "created")
        self._after_persist(room, ev)
        self._announce_holes(room, fresh, "send_join")
        self.env.process(self._backfill(room, resident, list(ev.prev_events)))
        return d.outcome == "accepted"

    def anti_entropy_loop(self, epoch: int) -> Proc:
        """Under a strategy with anti-entropy: every period, ask one random
        peer in each room for its forward extremities and pull the ones we
        lack (the normal pipeline then fetches their missing ancestors)."""
        idle_ms = 5_000.0
        rng = self.world.fanout_rng(f"anti_entropy/{self.name}")
        while self.up and epoch == self._epoch:
            period = self.world.fanout.anti_entropy_ms
            yield self.env.timeout(period * rng.uniform(0.8, 1.2) if period > 0 else idle_ms)
            if not self.up or epoch != self._epoch or period <= 0:
                continue
            for rid, room in sorted(self.rooms.items()):
                if not self.has_member(rid):
                    continue
                peers = sorted(s for s in self.joined_servers(room) - {self.name} if self.sender.retry_interval_ms(s) == 0)
                if peers:
                    yield from self._anti_entropy(room, peers[int(rng.integers(len(peers)))])

    def _anti_entropy(self, room: RoomState, peer: str) -> Proc:
        rid = room.graph.room_id
        res = yield from self.request(peer, "extremities", {"room_id": rid}, OVERHEAD_BYTES)
        self.counters["anti_entropy_rounds"] += 1
        if not isinstance(res, Response) or not res.ok:
            return
        unknown = [e for e in res.body["event_ids"] if e not in room.status][:20]
        for eid in unknown:
            got = yield from self.request(peer, "event", {"event_id": eid}, OVERHEAD_BYTES + ID_BYTES)
            if isinstance(got, Response) and got.ok and fetched_events(self, rid, [got.body["pdu"]], [eid]):
                chk = self.check_pdu(got.body["pdu"])
                if chk.status != "rejected":
                    self.counters["anti_entropy_pulls"] += 1
                    self._stage(chk.event, peer, "anti_entropy")

    def history_backfill_loop(self, epoch: int) -> Proc:
        """Readers paginating back: backfill from backward extremities."""
        interval = self.config.history_backfill_ms
        while interval > 0 and self.up and epoch == self._epoch:
            yield self.env.timeout(interval * self.rng.uniform(0.8, 1.2))
            if not self.up or epoch != self._epoch:
                return
            for rid, room in sorted(self.rooms.items()):
                holes = self.holes(room)
                if holes:
                    yield from self.backfill_holes(room, holes[:20])

    def backfill_holes(self, room: RoomState, holes: list[str]) -> Proc:
        """``/backfill`` from ``holes``, asking the other servers joined to the
        room one after another, longest in the room first, until one answers
        (Synapse ``_maybe_backfill_inner`` ``try_backfill``; an answer ends
        it even when it holds none of the holes and returns nothing). The
        number of events added to the DAG, None if no server answered."""
        for peer in self.longest_in_room(room):
            if not self.up:
                return None
            added = yield from self._backfill(room, peer, holes)
            if added is not None:
                return added
        return None

    def _backfill(self, room: RoomState, server: str, from_ids: list[str]) -> Proc:
        """One ``/backfill`` from ``server``: the number of events it added to
        the room DAG, None if the server did not answer."""
        body = {"room_id": room.graph.room_id, "v": from_ids, "limit": self.config.backfill_limit}
        res = yield from self.request(server, "backfill", body, OVERHEAD_BYTES + ID_BYTES * len(from_ids))
        if not isinstance(res, Response) or not res.ok:
            return None
        try:
            pdus = backfill_events(self, room.graph.room_id, res.body["pdus"])
        except BadAnswer:
            return None
        events = []
        for e in pdus:
            chk = self.check_pdu(e)
            if chk.status != "rejected":
                events.append(chk.event)
        added = 0
        for e in sorted(events, key=lambda x: (x.depth, x.event_id)):
            if e.event_id not in room.status:
                yield from self._process_pulled(room, e, server, "backfill", backfilled=True)
                added += e.event_id in room.graph
        return added

    # -- catch-up, dummy events, faults -------------------------------------------------------

    def catchup_events(self, destination: str, room_ids: Iterable[str]) -> list[tuple[str, list[Event]]]:
        """What Synapse sends a destination in catch-up, per room
        (``per_destination_queue.py`` ``_catch_up_transmission_loop``): the
        newest PDU we failed to send there if it is still one of the room's
        newest forward extremities (``prev_events_max``); else those
        extremities stored since the last PDU the destination accepted, or
        that PDU itself if none was. Nothing if no PDU ever reached the
        destination (Synapse cannot tell what it missed)."""
        last_sent, newest = self.sender.catchup_hints(destination)
        if last_sent is None:
            return []
        floor = self._stream.get(last_sent.event_id, -1)
        out = []
        for rid in room_ids:
            room = self.rooms.get(rid)
            pdu = newest.get(rid)
            if room is None or pdu is None:
                continue
            fwd = sorted(room.forward_extremities, key=lambda e: (-room.graph[e].depth, e))[: self.config.prev_events_max]
            if pdu.event_id in fwd:
                out.append((rid, [pdu]))
                continue
            fresh = [room.graph[e] for e in sorted(fwd) if self._stream.get(e, -1) >= floor]
            out.append((rid, fresh or [pdu]))
        return out

    def dummy_event_loop(self, epoch: int) -> Proc:
        """Every interval, create a dummy event where forward extremities pile
        up; like Synapse's, it is not pushed (``proactively_send = False``):
        it merges this server's extremities and reaches others as a
        prev_event of its later events."""
        while self.up and epoch == self._epoch:
            yield self.env.timeout(self.config.dummy_interval_ms)
            if not self.up or epoch != self._epoch:
                return
            for rid, room in sorted(self.rooms.items()):
                if len(room.forward_extremities) > self.config.dummy_threshold:
                    user = next((u for u in self.users if self.is_joined(rid, u)), None)
                    if user is not None:
                        self.counters["dummy_events"] += 1
                        self.create_event(rid, user, "org.matrix.dummy_event", {}, push=self.config.dummy_push)

    def backlog(self, room_id: str) -> int:
        """Events this server knows it is missing in the room."""
        room = self.rooms.get(room_id)
        if room is None:
            return 0
        return len(self.holes(room)) + len(self._pending)

    def crash(self) -> None:
        """Down: in-memory queues and in-flight work are lost; storage is kept."""
        self.up = False
        self._epoch += 1
        self._inbox.clear()
        self._busy.clear()
        self._pending.clear()
        self._retries.clear()
        self.sender.crash()
        self.world.network.set_up(self.name, False)

    def restart(self) -> None:
        self.up = True
        self._epoch += 1
        self.world.network.set_up(self.name, True)
        self.sender.restart()
        self.start_loops()

    def start_loops(self) -> None:
        """The background loops of a running server."""
        if self.config.dummy_events:
            self.env.process(self.dummy_event_loop(self._epoch))
        if self.config.history_backfill_ms > 0:
            self.env.process(self.history_backfill_loop(self._epoch))
        if self.world.anti_entropy_possible:
            self.env.process(self.anti_entropy_loop(self._epoch))


class _JoinDepths:
    """The servers joined in one state map, in the map's order, and the
    least depth of each one's members' join events: two tuples (a dict of
    one entry per server cost 2-3 times as much, and one is kept per
    distinct state map read)."""

    __slots__ = ("servers", "depths", "_longest")

    def __init__(self, servers: tuple[str, ...], depths: tuple[int, ...]) -> None:
        self.servers = servers
        self.depths = depths
        self._longest: tuple[str, ...] | None = None

    def longest(self) -> tuple[str, ...]:
        """The servers by (least join depth, name), made when first asked."""
        if self._longest is None:
            d = dict(zip(self.servers, self.depths))
            self._longest = tuple(sorted(self.servers, key=lambda s: (d[s], s)))
        return self._longest


def _transaction_response(results: dict[str, dict]) -> Response:
    """The answer to a ``/send``: a result per PDU."""
    return Response(200, {"pdus": results}, 64 + 60 * len(results))


def _all_ok_response(event_ids: "tuple[str, ...] | str") -> Response:
    if type(event_ids) is str:
        event_ids = (event_ids,)
    return _transaction_response({e: _PDU_OK for e in event_ids})


def _compact_answer(res: Response) -> "Response | tuple[str, ...] | str":
    """What a server keeps of a transaction's answer for a retry of it: the
    PDUs' IDs when every one was accepted (most answers; rebuilt equal on a
    retry), the ID itself when there is one (most transactions: no tuple),
    else the answer itself."""
    results = res.body["pdus"]
    if res.status == 200 and all(r is _PDU_OK for r in results.values()):
        if len(results) == 1:
            for eid in results:
                if type(eid) is str:
                    return eid
        return tuple(results)
    return res


def state_digest(state: dict) -> str:
    """A short, order-independent hash of a state map."""
    text = "".join([f"{etype}\x00{skey}\x00{eid}\x01" for (etype, skey), eid in sorted(state.items())])
    return hashlib.sha1(text.encode()).hexdigest()[:16]
