"""Floods: much more than an honest server would send.

* ``valid``: each action, the adversary's users send ``batch`` valid
  messages through the server's own code path (signed, authorised, stored,
  pushed by its federation sender in transactions of at most 50 PDUs).
* ``unknown_prevs``: ``batch`` messages whose prev_events are made-up IDs
  that exist nowhere, claiming a depth just above the room's. Each honest
  receiver asks the adversary for the missing events
  (``/get_missing_events``), gets none, and drops the event: the work this
  costs honest servers (and the delay it adds to their honest events,
  processed by the same room worker) is what it shows.
* ``huge_txn``: ``batch`` valid events created without being pushed, then
  sent to each target in one ``/send`` transaction. Receivers refuse a
  transaction of more than ``homeserver.max_inbound_pdus`` (50) PDUs or
  ``max_inbound_edus`` (100) EDUs whole, with 400, as Synapse does
  (counted as ``txn_too_large``); the events reach them only when
  later events cite them.
"""

from __future__ import annotations

from typing import Any, Generator

import simpy

from ..serving import OVERHEAD_BYTES
from .base import Behaviour, register
from .common import event_fields, fake_event_id

__all__ = ["Flood"]


@register
class Flood(Behaviour):
    name = "flood"

    def act(self) -> Generator[simpy.Event, Any, None] | None:
        room = self.room()
        if room is None or not room.forward_extremities:
            return None
        rid = room.graph.room_id
        users = [u for u in self.hs.users if self.hs.is_joined(rid, u)]
        if not users:
            return None
        kind = self.cfg.kind
        dests = self.targets(room)
        if kind == "unknown_prevs":
            top = max(e.depth for e in room.graph.events.values())
            state = room.current_state()
            for i in range(self.cfg.batch):
                prevs = [fake_event_id(self.rng)]
                fields = event_fields(room, users[i % len(users)], "m.room.message",
                                      {"msgtype": "m.text", "body": f"flood {self.actions}.{i}"},
                                      ts=self.hs.now_ts(), prevs=prevs, state=state, depth=top + 1)
                ev = self.build(fields)
                self.send(ev, dests)
                self.record("unknown_prevs", ev, target=",".join(dests))
            return None
        made = []
        for i in range(self.cfg.batch):
            ev = self.hs.create_event(rid, users[i % len(users)], "m.room.message",
                                      {"msgtype": "m.text", "body": f"flood {self.actions}.{i}"},
                                      push=kind == "valid")
            if ev is not None:
                made.append(ev)
                self.record(kind, ev, target=",".join(dests))
        if kind == "huge_txn" and made:
            for dest in dests:
                self.env.process(self._huge_txn(dest, made))
        return None

    def _huge_txn(self, dest: str, pdus: list) -> Generator[simpy.Event, Any, None]:
        body = {"txn_id": f"{self.hs.name}-flood-{self.index}-{self.actions}", "origin": self.hs.name,
                "origin_server_ts": self.hs.now_ts(), "pdus": list(pdus), "edus": []}
        size = OVERHEAD_BYTES + sum(e.size_bytes for e in pdus)
        res = yield self.world.transport.request(self.hs.name, dest, "transaction", body, size,
                                                 timeout_ms=self.hs.config.request_timeout_ms)
        status = getattr(res, "status", None)
        self.record(f"huge_txn_answer:{status if status is not None else getattr(res, 'reason', 'failed')}",
                    target=dest)
