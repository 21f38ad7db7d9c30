"""Lying about history: claimed times and depths, and forks from the past.

* ``backdate``: the adversary's user sends messages whose
  ``origin_server_ts`` is shifted by ``ts_offset`` and whose depth is 1
  (``low``), far above the room (``high``) or the right one (``honest``).
  Neither field is checked by receivers (Synapse only bounds depth), so the
  events are accepted; what changes is what depends on them: the depth
  honest servers give their next events, and any ordering by timestamp
  (v2's tie-break between equally powerful senders).
* ``state_reset``: a once-trusted user tries to undo its demotion and ban.
  At ``start`` the room's creator (an honest admin) raises the adversary's
  first user to ``power``; at ``ban_at`` it demotes (level 0) and bans that
  user. While the user still holds its power the adversary remembers its
  forward extremities (the fork point). Once it sees the ban, it grows a
  secret fork from that point, every event correctly signed and citing the
  stale auth events of the fork point: the banned user re-asserts its
  membership (a ``join``) and sets the topic, with a depth above the room
  (``depth = "high"``) or the honest one. ``merge_after`` later it pushes
  the fork, then a message of its second user (not banned) whose
  prev_events are the fork's tip and the room's extremities, so that honest
  servers must resolve the two. Under v2 and v1 the ban holds (the fork's
  events fail auth against the resolved state or are soft-failed); under
  ``naive`` (no authorisation in resolution) the deeper fork wins and the
  banned user is a member again. Its fork events count as illegitimate.
"""

from __future__ import annotations

from typing import Any

from ...protocol import Event, RoomState
from .base import Behaviour, register
from .common import event_fields, keep, newest_prevs

__all__ = ["Backdate", "StateReset"]

#: How far above the room's deepest event a "high" depth is claimed.
HIGH_DEPTH_MARGIN = 1_000_000


def _max_depth(room: RoomState) -> int:
    return max((e.depth for e in room.graph.events.values()), default=0)


@register
class Backdate(Behaviour):
    name = "backdate"

    def act(self) -> None:
        room = self.room()
        user = self.hs.users[0]
        if room is None or not room.forward_extremities or not self.hs.is_joined(room.graph.room_id, user):
            return
        prevs = newest_prevs(room, self.hs.config.prev_events_max)
        depth = {"low": 1, "high": _max_depth(room) + HIGH_DEPTH_MARGIN, "honest": None}[self.cfg.depth]
        fields = event_fields(room, user, "m.room.message",
                              {"msgtype": "m.text", "body": f"backdated {self.actions}"},
                              ts=self.hs.now_ts() + int(self.cfg.ts_offset_ms), prevs=prevs,
                              state=room.current_state(), depth=depth)
        ev = self.build(fields)
        keep(room, ev)
        dests = self.targets(room)
        self.send(ev, dests)
        self.record("send", ev, target=",".join(dests))


@register
class StateReset(Behaviour):
    name = "state_reset"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.user = self.hs.users[0]
        self.fork_point: list[str] = []
        self.fork_state: dict | None = None
        self.fork: list[Event] = []
        self.merged = False
        self.fork_started: float | None = None

    def start(self) -> None:
        super().start()
        self.world.env.process(self._script())

    # -- the honest admin's part ---------------------------------------------------

    def _admin(self) -> tuple[Any, str]:
        wl = self.world.workload
        return wl.creator_hs, wl.creator

    def _set_level(self, level: int) -> None:
        hs, admin = self._admin()
        room = hs.rooms.get(self.world.room_id)
        if room is None:
            return
        state = room.current_state()
        pl_id = state.get(("m.room.power_levels", ""))
        content = dict(room.events[pl_id].content) if pl_id else {}
        content["users"] = {**content.get("users", {}), self.user: level}
        hs.create_event(self.world.room_id, admin, "m.room.power_levels", content, "")

    def _script(self) -> Any:
        env = self.env
        yield env.timeout(max(0.0, self.cfg.start_ms - env.now))
        self._set_level(self.cfg.power)
        self.record("admin_promote", target=self._admin()[0].name)
        yield env.timeout(max(0.0, self.cfg.ban_at_ms - env.now))
        self._set_level(0)
        hs, admin = self._admin()
        hs.create_event(self.world.room_id, admin, "m.room.member", {"membership": "ban"}, self.user)
        self.record("admin_ban", target=hs.name)

    # -- the adversary's part ------------------------------------------------------

    def _power(self, room: RoomState) -> int:
        state = room.current_state()
        pl_id = state.get(("m.room.power_levels", ""))
        users = room.events[pl_id].content.get("users", {}) if pl_id else {}
        level = users.get(self.user, 0)
        return level if isinstance(level, int) else 0

    def act(self) -> None:
        room = self.room()
        if room is None or not room.forward_extremities or self.merged:
            return
        rid = room.graph.room_id
        if self.hs.is_joined(rid, self.user) and self._power(room) >= self.cfg.power:
            self.fork_point = newest_prevs(room, self.hs.config.prev_events_max)
            self.fork_state = dict(room.current_state())
            return
        banned = room.events.get(room.current_state().get(("m.room.member", self.user), ""))
        if self.fork_state is None or banned is None or banned.membership != "ban":
            return
        if self.fork_started is None:
            self.fork_started = self.env.now
        if self.env.now - self.fork_started >= self.cfg.merge_after_ms:
            self._merge(room)
            return
        self._grow(room)

    def _grow(self, room: RoomState) -> None:
        prevs = [self.fork[-1].event_id] if self.fork else self.fork_point
        state = dict(self.fork_state or {})
        n = len(self.fork)
        high = self.cfg.depth == "high"
        depth = _max_depth(room) + HIGH_DEPTH_MARGIN + n if high else None
        if n == 0:
            etype, skey, content = "m.room.member", self.user, {"membership": "join", "displayname": "back again"}
        else:
            etype, skey, content = "m.room.topic", "", {"topic": f"reset {n} by a banned user"}
        if depth is None:
            depth = max(self._depth_of(room, p) for p in prevs) + 1
        fields = event_fields(room, self.user, etype, content, ts=self.hs.now_ts(), prevs=prevs, state=state,
                              state_key=skey, depth=depth)
        ev = self.build(fields)
        self.fork.append(ev)
        self.fork_state = {**state, (etype, skey): ev.event_id}
        self.record("fork", ev, illegitimate=True)

    def _depth_of(self, room: RoomState, eid: str) -> int:
        known = room.graph.events.get(eid)
        if known is not None:
            return known.depth
        return next(e.depth for e in self.fork if e.event_id == eid)

    def _merge(self, room: RoomState) -> None:
        self.merged = True
        if not self.fork:
            return
        dests = self.targets(room)
        for ev in self.fork:
            keep(room, ev)
            self.send(ev, dests)
            self.record("merge_fork", ev, target=",".join(dests), illegitimate=True)
        helper = next((u for u in self.hs.users if u != self.user and self.hs.is_joined(room.graph.room_id, u)), None)
        if helper is None:
            return
        prevs = sorted({self.fork[-1].event_id, *newest_prevs(room, self.hs.config.prev_events_max - 1)})
        depth = max(self._depth_of(room, p) for p in prevs) + 1
        fields = event_fields(room, helper, "m.room.message", {"msgtype": "m.text", "body": "merge"},
                              ts=self.hs.now_ts(), prevs=prevs, state=room.current_state(), depth=depth)
        ev = self.build(fields)
        keep(room, ev)
        self.send(ev, dests)
        self.record("merge", ev, target=",".join(dests))
