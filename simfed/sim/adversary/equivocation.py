"""Equivocation: telling different servers different things.

* ``fork``: two different, correctly signed messages of the adversary's
  user on the same prev_events; one goes to each half of the targets. Both
  are valid Matrix events (a fork is legal): honest servers accept both and,
  citing them, pull the other half's version from each other. What it shows
  is that nothing stops it, and how far each version spreads.
* ``same_id``: one event ID, its real content to one half and altered
  content (the content hash no longer matches; the ID, computed over the
  redacted form, stays the same) to the other. Receivers of the altered copy
  keep its redacted form, as Synapse does; the honest servers then hold two
  versions of one ID (content divergence) until the end.

The halves are drawn from the behaviour's own stream at each action. Both
versions of one action are recorded at the same time by the same server,
which is how :mod:`simfed.metrics.security` groups them.
"""

from __future__ import annotations

from ...protocol import Event
from .base import Behaviour, register
from .common import keep

__all__ = ["Equivocate"]


@register
class Equivocate(Behaviour):
    name = "equivocate"

    def _halves(self, dests: list[str]) -> tuple[list[str], list[str]]:
        order = [dests[i] for i in self.rng.permutation(len(dests))]
        half = (len(order) + 1) // 2
        return sorted(order[:half]), sorted(order[half:])

    def act(self) -> None:
        room = self.room()
        dests = self.targets(room) if room is not None else []
        if room is None or not room.forward_extremities or len(dests) < 2:
            return
        user = self.hs.users[0]
        if not self.hs.is_joined(room.graph.room_id, user):
            return
        first, second = self._halves(dests)
        fields = self.message_fields(room, user, f"equivocation {self.actions}: version A")
        ev = self.build(fields)
        if self.cfg.mode == "fork":
            other = self.build({**fields, "content": {"msgtype": "m.text",
                                                      "body": f"equivocation {self.actions}: version B"}})
            keep(room, ev)
            self._send_pair(ev, first, other, second, "fork")
            return
        pdu = ev.pdu()
        pdu["content"] = {"msgtype": "m.text", "body": f"equivocation {self.actions}: altered"}
        altered = Event.from_pdu(pdu, self.hs.config.room_version)
        keep(room, ev)
        self._send_pair(ev, first, altered, second, "same_id")

    def _send_pair(self, a: Event, to_a: list[str], b: Event, to_b: list[str], action: str) -> None:
        self.send(a, to_a)
        self.send(b, to_b)
        self.record(action, a, target=",".join(to_a))
        self.record(action, b, target=",".join(to_b))
