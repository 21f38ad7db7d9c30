"""Key compromise: from ``start`` the adversary holds ``victim``'s signing
key and sends events as the victim's users, signed with that key. They
verify: an honest server cannot tell them from the victim's own, so they
are accepted wherever the auth rules allow them (a message by a joined
user; with ``kind = "leave"``, the victim's users leaving the room, a state
change). This is what it shows: the limit of signatures. The victim itself
is never sent them (it would see events it never made). Every such event is
recorded as illegitimate, so the security measures count what got in.
"""

from __future__ import annotations

from .base import Behaviour, register
from .common import event_fields, keep, newest_prevs

__all__ = ["KeyCompromise"]


@register
class KeyCompromise(Behaviour):
    name = "key_compromise"

    def act(self) -> None:
        room = self.room()
        if room is None or not room.forward_extremities:
            return
        victim = self.world.servers[self.cfg.victim]
        state = room.current_state()
        joined = [u for u in victim.users
                  if (m := room.events.get(state.get(("m.room.member", u), ""))) is not None and m.membership == "join"]
        if not joined:
            return
        user = joined[int(self.rng.integers(len(joined)))]
        prevs = newest_prevs(room, self.hs.config.prev_events_max)
        if self.cfg.kind == "leave":
            fields = event_fields(room, user, "m.room.member", {"membership": "leave"}, ts=self.hs.now_ts(),
                                  prevs=prevs, state=state, state_key=user)
        else:
            fields = event_fields(room, user, "m.room.message",
                                  {"msgtype": "m.text", "body": f"not really from {user} ({self.actions})"},
                                  ts=self.hs.now_ts(), prevs=prevs, state=state)
        ev = self.build(fields, origin=victim.name, key=victim.key)
        keep(room, ev)
        dests = [d for d in self.targets(room) if d != victim.name]
        self.send(ev, dests)
        self.record(self.cfg.kind, ev, target=",".join(dests), illegitimate=True)
