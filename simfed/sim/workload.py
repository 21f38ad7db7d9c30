"""The workload: a room, its members joining over time, messages, state
changes and profile changes, driven by Poisson processes.

Every action is a client request to the user's own server, which refuses it
when the auth rules do not allow it on its current state (counted as
``refused``): concurrent views make such refusals part of the workload.

Random streams (common random numbers): each user's messages and profile
changes come from a Poisson process with a stream of its own
(``workload/user/<user>/messages``, ``.../profile``), each server's join
time and join retries from ``workload/joins/<server>`` (and ``.../retry``),
and the room-wide state changes from the stream passed in (``workload``).
So the times and senders of a user's messages do not depend on the network
(its loss level, latencies) or on how many other users there are; whether
a message is sent still does (its user must be joined and its server up).

The users' clients also read: ``workload.readers`` (default ``"on_gap"``)
has a client page back through a timeline gap of its server, which makes
the server backfill, as Synapse does only on a client's request (see
:mod:`simfed.sim.readers`; their delays come from
``workload/readers/<server>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

import numpy as np
import simpy

from ..protocol.auth import CREATE_KEY, PL_KEY, get_user_level
from ..protocol.roomversions import get_room_version
from .changes import late_joiners
from .readers import Readers

if TYPE_CHECKING:
    from ..protocol import RoomState
    from .homeserver import Homeserver
    from .world import World

__all__ = ["Workload", "initial_power_levels"]

ACTIONS = ("topic", "name", "power_levels", "join", "leave", "invite", "kick", "ban")


def initial_power_levels(creator: str) -> dict[str, Any]:
    """Synapse's new-room levels, with topics open to every member."""
    return {
        "users": {creator: 100}, "users_default": 0, "events_default": 0, "state_default": 50,
        "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                   "m.room.topic": 0, "m.room.canonical_alias": 50, "m.room.avatar": 50},
    }


class Workload:
    """Drives the users of every server in one room."""

    def __init__(self, world: "World", rng: np.random.Generator) -> None:
        self.world = world
        self.env = world.env
        self.rng = rng
        sc = world.scenario
        self.start_ms = sc.workload.start_ms
        self.stop_ms = sc.workload_stop_ms
        self.cfg = sc.workload
        self.counter = 0
        #: ``servers.malicious``: their users' messages are replaced by forgeries
        #: (``[[adversaries]]`` servers' users send their messages as usual)
        self.forgers = frozenset(sc.servers.malicious)
        self.late = late_joiners(sc.topology)
        creator_hs = next(s for s in world.honest_servers() if s not in self.late)
        self.creator_hs: "Homeserver" = world.servers[creator_hs]
        self.creator = self.creator_hs.users[0]
        self.room_id = f"!room0:{creator_hs}"
        self.readers = Readers(world, self.room_id, mode=self.cfg.readers, delay_ms=self.cfg.reader_delay_ms,
                               pages=self.cfg.reader_pages, active=self._active)

    # -- helpers -----------------------------------------------------------------

    def _pick(self, seq: list, rng: np.random.Generator | None = None) -> Any:
        return seq[int((rng or self.rng).integers(len(seq)))] if seq else None

    def _active(self) -> bool:
        return self.start_ms <= self.env.now < self.stop_ms

    def _joined_users(self) -> list[tuple["Homeserver", str]]:
        out = []
        for hs in self.world.servers.values():
            if hs.up and self.room_id in hs.rooms:
                out += [(hs, u) for u in hs.users if hs.is_joined(self.room_id, u)]
        return out

    def _level(self, hs: "Homeserver", user: str) -> int:
        room = hs.rooms[self.room_id]
        st = room.current_state()
        auth = {k: room.events[st[k]] for k in (PL_KEY, CREATE_KEY) if k in st}
        return get_user_level(user, auth, get_room_version(hs.config.room_version))

    def on_holes(self, hs: "Homeserver", room: "RoomState", holes: list[str], via: str) -> None:
        """The homeserver's hook: its room DAG gained ``holes``; its readers decide."""
        self.readers.on_holes(hs, room, holes, via)

    # -- set-up ------------------------------------------------------------------

    def create_room(self) -> None:
        hs, c, rid = self.creator_hs, self.creator, self.room_id
        hs.new_room_state(rid)
        rv = hs.config.room_version
        hs.create_event(rid, c, "m.room.create", {"room_version": rv, **({"creator": c} if rv == "10" else {})}, "")
        hs.create_event(rid, c, "m.room.member", {"membership": "join"}, c)
        hs.create_event(rid, c, "m.room.power_levels", initial_power_levels(c), "")
        hs.create_event(rid, c, "m.room.join_rules", {"join_rule": "public"}, "")
        hs.create_event(rid, c, "m.room.history_visibility", {"history_visibility": "shared"}, "")
        for u in hs.users[1:]:
            hs.create_event(rid, u, "m.room.member", {"membership": "join"}, u)

    def start(self) -> None:
        self.env.process(self._bootstrap())

    def _bootstrap(self) -> Generator[simpy.Event, Any, None]:
        self.create_room()
        others = [s for s in self.world.servers.values() if s is not self.creator_hs and s.name not in self.late]
        spread = self.cfg.join_spread_ms
        for hs in others:
            t = float(self.world.rng(f"workload/joins/{hs.name}").uniform(1.0, max(spread, 1.0) + 1.0))
            self.env.process(self._join_server(hs, t))
        for hs in self.world.servers.values():
            for user in hs.users:
                self.env.process(self._messages(hs, user))
                if self.cfg.profile_changes_per_user_per_hour > 0:
                    self.env.process(self._profile_changes(hs, user))
        self.env.process(self._state_changes())
        yield self.env.timeout(0)

    def join_at(self, hs: "Homeserver", at: float) -> None:
        """Join ``hs``'s users to the room from time ``at`` (a scheduled change)."""
        self.env.process(self._join_server(hs, at, until=self.world.scenario.simulation.duration_ms))

    def _join_server(self, hs: "Homeserver", at: float, until: float | None = None) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(max(0.0, at - self.env.now))
        rng = self.world.rng(f"workload/joins/{hs.name}/retry")
        delay = 5_000.0
        until = self.stop_ms if until is None else until
        while not hs.has_member(self.room_id) and self.env.now < until:
            residents = hs.join_candidates(self.room_id)
            if hs.up and residents:
                ok = yield from hs.join_via(self.room_id, hs.users[0], self._pick(sorted(residents), rng))
                if ok:
                    break
            yield self.env.timeout(delay * float(rng.uniform(0.8, 1.4)))
            delay = min(delay * 2, 120_000.0)
        if hs.has_member(self.room_id):
            for u in hs.users[1:]:
                if not hs.is_joined(self.room_id, u):
                    hs.create_event(self.room_id, u, "m.room.member", {"membership": "join"}, u)

    # -- processes -------------------------------------------------------------------

    def _poisson(self, per_minute: float, rng: np.random.Generator | None = None) -> Generator[simpy.Event, Any, bool]:
        yield self.env.timeout(float((rng or self.rng).exponential(60_000.0 / per_minute)))
        return self.env.now < self.stop_ms

    def _messages(self, hs: "Homeserver", user: str) -> Generator[simpy.Event, Any, None]:
        rate = self.cfg.messages_per_user_per_minute
        if rate <= 0:
            return
        rng = self.world.rng(f"workload/user/{user}/messages")
        while (yield from self._poisson(rate, rng)):
            if not self._active() or not hs.up or not hs.is_joined(self.room_id, user):
                continue
            self.counter += 1
            if hs.name not in self.forgers:
                hs.create_event(self.room_id, user, "m.room.message",
                                {"msgtype": "m.text", "body": f"message {self.counter} from {user}"})
            else:
                self.world.forge(hs, self.room_id, self.counter)

    def _state_changes(self) -> Generator[simpy.Event, Any, None]:
        rate = self.cfg.state_changes_per_minute
        if rate <= 0:
            return
        mix = self.cfg.state_change_mix
        weights = np.array([getattr(mix, a) for a in ACTIONS], dtype=float)
        if weights.sum() <= 0:
            return
        weights /= weights.sum()
        while (yield from self._poisson(rate)):
            if self._active():
                action = ACTIONS[int(self.rng.choice(len(ACTIONS), p=weights))]
                getattr(self, f"_do_{action}")()

    def _profile_changes(self, hs: "Homeserver", user: str) -> Generator[simpy.Event, Any, None]:
        rate = self.cfg.profile_changes_per_user_per_hour / 60.0
        rng = self.world.rng(f"workload/user/{user}/profile")
        while (yield from self._poisson(rate, rng)):
            if not self._active() or not hs.honest or not hs.up or not hs.is_joined(self.room_id, user):
                continue
            self.counter += 1
            hs.create_event(self.room_id, user, "m.room.member",
                            {"membership": "join", "displayname": f"{user[1:].split(':')[0]} #{self.counter}"}, user)

    # -- state change actions ----------------------------------------------------------

    def _honest_joined(self) -> list[tuple["Homeserver", str]]:
        return [p for p in self._joined_users() if p[0].honest]

    def _do_topic(self) -> None:
        pair = self._pick(self._honest_joined())
        if pair:
            self.counter += 1
            pair[0].create_event(self.room_id, pair[1], "m.room.topic", {"topic": f"topic {self.counter}"}, "")

    def _do_name(self) -> None:
        cands = [p for p in self._honest_joined() if self._level(*p) >= 50] or self._honest_joined()
        pair = self._pick(cands)
        if pair:
            self.counter += 1
            pair[0].create_event(self.room_id, pair[1], "m.room.name", {"name": f"room {self.counter}"}, "")

    def _do_power_levels(self) -> None:
        joined = self._honest_joined()
        admins = [p for p in joined if self._level(*p) >= 100] or joined
        pair = self._pick(admins)
        if not pair:
            return
        hs, admin = pair
        room = hs.rooms[self.room_id]
        pl_id = room.current_state().get(PL_KEY)
        content = dict(room.events[pl_id].content) if pl_id else initial_power_levels(self.creator)
        users = dict(content.get("users", {}))
        target = self._pick([u for _, u in joined if u != admin])
        if target is None:
            return
        users[target] = int(self._pick([0, 50, 75, 100]))
        content["users"] = users
        hs.create_event(self.room_id, admin, "m.room.power_levels", content, "")

    def _not_joined(self, hs: "Homeserver") -> list[str]:
        return [u for u in hs.users if not hs.is_joined(self.room_id, u)]

    def _do_join(self) -> None:
        cands = [(hs, u) for hs in self.world.servers.values() if hs.up and hs.honest and self.room_id in hs.rooms
                 for u in self._not_joined(hs)]
        pair = self._pick(cands)
        if pair:
            pair[0].create_event(self.room_id, pair[1], "m.room.member", {"membership": "join"}, pair[1])

    def _do_leave(self) -> None:
        pair = self._pick([p for p in self._honest_joined() if p[1] != self.creator])
        if pair:
            pair[0].create_event(self.room_id, pair[1], "m.room.member", {"membership": "leave"}, pair[1])

    def _do_invite(self) -> None:
        pair = self._pick(self._honest_joined())
        if not pair:
            return
        targets = [u for hs in self.world.servers.values() if self.room_id in hs.rooms for u in self._not_joined(hs)]
        target = self._pick(targets)
        if target:
            pair[0].create_event(self.room_id, pair[1], "m.room.member", {"membership": "invite"}, target)

    def _moderate(self, membership: str) -> None:
        joined = self._honest_joined()
        mods = [p for p in joined if self._level(*p) >= 50]
        pair = self._pick(mods)
        if not pair:
            return
        hs, mod = pair
        target = self._pick([u for _, u in joined if u != mod and u != self.creator])
        if target:
            hs.create_event(self.room_id, mod, "m.room.member", {"membership": membership}, target)

    def _do_kick(self) -> None:
        self._moderate("leave")

    def _do_ban(self) -> None:
        self._moderate("ban")
