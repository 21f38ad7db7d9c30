"""Profiles: display name changes and the federation profile query.

A display name change is what Matrix makes of it: a new ``m.room.member``
join event carrying the new ``displayname`` in every room of the user (here:
the simulated room). Other servers show the new name once that event is in
their room state; ``profiles`` records each change with its event ID, so the
time until every server shows it is the event's convergence time (see
:func:`simfed.metrics.services.profile_staleness`).

``query_profile`` (``GET /_matrix/federation/v1/query/profile``) is answered
by the user's server from its own view (``displayname`` and ``avatar_url``),
M_NOT_FOUND for a user it does not have. The querying server records the
latency and whether its own room-state view of the name was stale compared
with the answer.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Generator

import numpy as np
import simpy

from ..serving import OVERHEAD_BYTES
from ..transport import M_NOT_FOUND, MatrixError, Response
from .common import Outstanding, exp_ms, record, server_of

if TYPE_CHECKING:
    from ...config.services import ProfilesConfig
    from ..homeserver import Homeserver
    from ..world import World

__all__ = ["Profiles", "displayname_in_state"]

Proc = Generator[simpy.Event, Any, Any]


def displayname_in_state(hs: "Homeserver", room_id: str, user: str) -> str | None:
    """The display name ``hs``'s current state of the room gives ``user`` (None: no member event)."""
    room = hs.rooms.get(room_id)
    if room is None:
        return None
    eid = room.current_get(("m.room.member", user))
    ev = room.events.get(eid) if eid else None
    if ev is None:
        return None
    return ev.content.get("displayname") or user[1:].split(":")[0]


class Profiles:
    """Display name changes and profile queries of every server."""

    def __init__(self, world: "World", cfg: "ProfilesConfig") -> None:
        self.world = world
        self.outstanding = Outstanding()
        self.env = world.env
        self.cfg = cfg
        self.counters: dict[str, int] = defaultdict(int)
        self._n = 0

    def start(self) -> None:
        for name, hs in sorted(self.world.servers.items()):
            if not hs.honest:
                continue
            rng = self.world.rng(f"services/profiles/{name}")
            if self.cfg.changes_per_user_per_hour > 0:
                self.env.process(self._changes(hs, rng))
            if self.cfg.queries_per_server_per_minute > 0:
                self.env.process(self._queries(hs, self.world.rng(f"services/profile_queries/{name}")))

    def profile(self, hs: "Homeserver", user: str) -> dict[str, Any]:
        """``user``'s profile as its own server ``hs`` knows it."""
        return {"displayname": displayname_in_state(hs, self.world.room_id, user) or user[1:].split(":")[0],
                "avatar_url": f"mxc://{hs.name}/{user[1:].split(':')[0]}"}

    def change(self, hs: "Homeserver", user: str) -> str | None:
        """``user`` takes a new display name; returns the member event's ID (None if refused)."""
        rid = self.world.room_id
        if not hs.up or not hs.is_joined(rid, user):
            return None
        self._n += 1
        name = f"{user[1:].split(':')[0]} v{self._n}"
        ev = hs.create_event(rid, user, "m.room.member", {"membership": "join", "displayname": name}, user)
        if ev is None:
            return None
        self.counters["changes"] += 1
        record(self.world, "profile", self.env.now, hs.name, user, "change", name, ev.event_id, float("nan"),
               "ok", None)
        return ev.event_id

    def _changes(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        mean = 3_600_000.0 / (self.cfg.changes_per_user_per_hour * len(hs.users))
        while True:
            yield self.env.timeout(exp_ms(rng, mean))
            self.change(hs, hs.users[int(rng.integers(len(hs.users)))])

    def _queries(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        mean = 60_000.0 / self.cfg.queries_per_server_per_minute
        others = sorted(u for s in self.world.servers.values() if s.name != hs.name for u in s.users)
        while others:
            yield self.env.timeout(exp_ms(rng, mean))
            if hs.up:
                self.env.process(self.query(hs, others[int(rng.integers(len(others)))]))

    def query(self, hs: "Homeserver", user: str) -> Proc:
        """``hs`` asks ``user``'s server for the profile; returns the Response or failure."""
        t0 = self.env.now
        token = self.outstanding.start(lambda: record(
            self.world, "profile", self.env.now, hs.name, user, "query", None, None, self.env.now - t0, "pending",
            None))
        res = yield from hs.request(server_of(user), "query_profile", {"user_id": user}, OVERHEAD_BYTES)
        self.outstanding.done(token)
        latency = self.env.now - t0
        self.counters["queries"] += 1
        if isinstance(res, Response) and res.ok:
            answer = res.body["displayname"]
            mine = displayname_in_state(hs, self.world.room_id, user)
            outcome = "ok" if mine is None or mine == answer else "stale"
            record(self.world, "profile", self.env.now, hs.name, user, "query", answer, None, latency, outcome, None)
        elif isinstance(res, Response):
            err = res.body.get("errcode") if isinstance(res.body, dict) else None
            record(self.world, "profile", self.env.now, hs.name, user, "query", None, None, latency, "error", err)
        else:
            record(self.world, "profile", self.env.now, hs.name, user, "query", None, None, latency, "failed",
                   res.reason)
        return res

    def on_query(self, hs: "Homeserver", origin: str, body: dict) -> Response:
        user = body.get("user_id", "")
        if user not in hs.users:
            raise MatrixError(M_NOT_FOUND, f"{hs.name} has no user {user}", 404)
        return Response(200, self.profile(hs, user), OVERHEAD_BYTES)
