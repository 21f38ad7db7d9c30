"""The room alias directory: ``#name:server`` lives on ``server``.

- Each server keeps its own aliases: alias -> room ID. The directory query
  (``GET /_matrix/federation/v1/query/directory?room_alias=``) goes to the
  server the alias names, which answers ``{room_id, servers}`` -- the
  servers it believes are in the room, itself first -- or M_NOT_FOUND.
- Aliases are created (by a server in the room, for the simulated room),
  moved (re-pointed to another room: a room ID the simulation does not run,
  ``!elsewhere<n>:<server>``, or back to the simulated room) and deleted
  over time, at room-wide Poisson rates.
- A querying server reuses an answer for ``cache_ttl`` (0: never). A cached
  answer can be stale: the alias was moved or deleted since. Each query is
  recorded with its latency, whether it came from the cache, and its outcome
  against the truth *when the answer is used*: ``ok``, ``stale`` (another
  room, or an answer for an alias that no longer exists), ``not_found``
  (the alias does not exist, answered correctly), ``missing`` (M_NOT_FOUND
  although the alias exists), ``error`` (another error response) or
  ``failed`` (no response: timeout, partition, server down).
- Joining by alias: a server not yet in the room resolves one of the room's
  aliases and joins through a server of the answer (``make_join`` /
  ``send_join``), trying them in order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator

import numpy as np
import simpy

from ..serving import OVERHEAD_BYTES
from ..transport import M_NOT_FOUND, MatrixError, RequestFailed, Response
from ..changes import late_joiners
from .common import Outstanding, exp_ms, per_minute_mean_ms, record, server_of

if TYPE_CHECKING:
    from ...config.services import DirectoryConfig
    from ..homeserver import Homeserver
    from ..world import World

__all__ = ["Directory", "Answer"]

Proc = Generator[simpy.Event, Any, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a directory lookup gave: the room and servers, or an error/failure."""

    outcome: str
    room_id: str | None = None
    servers: tuple[str, ...] = ()
    cached: bool = False
    errcode: str | None = None


class Directory:
    """Aliases at their servers, and the querying servers' caches."""

    def __init__(self, world: "World", cfg: "DirectoryConfig") -> None:
        self.world = world
        #: Servers whose joining is scheduled by [[topology.changes]]: never joined by alias.
        self._late = late_joiners(world.scenario.topology)
        self.outstanding = Outstanding()
        self.env = world.env
        self.cfg = cfg
        #: server -> {alias: room_id}: what each server holds (the truth for its aliases).
        self.aliases: dict[str, dict[str, str]] = defaultdict(dict)
        #: querying server -> {alias: (Answer, expires_at)}
        self.cache: dict[str, dict[str, tuple[Answer, float]]] = defaultdict(dict)
        #: Every alias ever created (deleted ones included), in creation order.
        self.known: list[str] = []
        self._n = 0
        self._elsewhere = 0
        self._joining: set[str] = set()
        self.counters: dict[str, int] = defaultdict(int)

    # -- the truth, and changes --------------------------------------------------

    def resolve_truth(self, alias: str) -> str | None:
        """The room ``alias`` points to now (None: it does not exist)."""
        return self.aliases[server_of(alias)].get(alias)

    def create(self, hs: "Homeserver", room_id: str | None = None) -> str:
        self._n += 1
        alias = f"#a{self._n}:{hs.name}"
        rid = room_id or self.world.room_id
        self.aliases[hs.name][alias] = rid
        self.known.append(alias)
        record(self.world, "directory", self.env.now, hs.name, alias, "create", rid, 0, float("nan"), "ok", False, None)
        return alias

    def move(self, alias: str, room_id: str | None = None) -> str:
        server = server_of(alias)
        if room_id is None:
            cur = self.aliases[server].get(alias)
            if cur == self.world.room_id:
                self._elsewhere += 1
                room_id = f"!elsewhere{self._elsewhere}:{server}"
            else:
                room_id = self.world.room_id
        self.aliases[server][alias] = room_id
        record(self.world, "directory", self.env.now, server, alias, "move", room_id, 0, float("nan"), "ok", False,
               None)
        return room_id

    def delete(self, alias: str) -> None:
        server = server_of(alias)
        self.aliases[server].pop(alias, None)
        record(self.world, "directory", self.env.now, server, alias, "delete", None, 0, float("nan"), "ok", False,
               None)

    # -- processes ------------------------------------------------------------------

    def start(self) -> None:
        rng = self.world.rng("services/directory")
        self.env.process(self._initial(rng))
        c = self.cfg
        for op, rate in (("create", c.creates_per_minute), ("move", c.moves_per_minute),
                         ("delete", c.deletes_per_minute)):
            if rate > 0:
                self.env.process(self._changes(op, rate, self.world.rng(f"services/directory/{op}")))
        for name, hs in sorted(self.world.servers.items()):
            if hs.honest and c.queries_per_server_per_minute > 0:
                self.env.process(self._queries(hs, self.world.rng(f"services/directory/queries/{name}")))

    def _in_room(self) -> list["Homeserver"]:
        rid = self.world.room_id
        return [s for _, s in sorted(self.world.servers.items()) if s.honest and s.up and rid in s.rooms]

    def _initial(self, rng: np.random.Generator) -> Proc:
        """Each server creates its aliases once it is in the room (checked every second)."""
        todo = {n for n, s in self.world.servers.items() if s.honest and self.cfg.aliases_per_server > 0}
        while todo:
            for hs in self._in_room():
                if hs.name in todo:
                    todo.discard(hs.name)
                    for _ in range(self.cfg.aliases_per_server):
                        self.create(hs)
            if todo and self.cfg.join_by_alias and self.known:
                for name in sorted(todo - self._late):
                    hs = self.world.servers[name]
                    if hs.up and self.world.room_id not in hs.rooms and name not in self._joining:
                        self._joining.add(name)
                        self.env.process(self.join_by_alias(hs, rng))
            yield self.env.timeout(1_000.0)

    def _changes(self, op: str, rate: float, rng: np.random.Generator) -> Proc:
        mean = per_minute_mean_ms(rate)
        while True:
            yield self.env.timeout(exp_ms(rng, mean))
            if op == "create":
                servers = self._in_room()
                if servers:
                    self.create(servers[int(rng.integers(len(servers)))])
                continue
            live = [a for a in self.known if self.resolve_truth(a) is not None]
            if live:
                alias = live[int(rng.integers(len(live)))]
                self.move(alias) if op == "move" else self.delete(alias)

    def _queries(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        mean = per_minute_mean_ms(self.cfg.queries_per_server_per_minute)
        while True:
            yield self.env.timeout(exp_ms(rng, mean))
            remote = [a for a in self.known if server_of(a) != hs.name]
            if hs.up and remote:
                self.env.process(self.lookup(hs, remote[int(rng.integers(len(remote)))]))

    # -- lookups -----------------------------------------------------------------------

    def lookup(self, hs: "Homeserver", alias: str) -> Proc:
        """Resolve ``alias`` for ``hs`` (from its cache while fresh); returns an :class:`Answer`."""
        t0 = self.env.now
        hit = self.cache[hs.name].get(alias)
        if hit is not None and hit[1] > t0:
            ans = Answer(hit[0].outcome, hit[0].room_id, hit[0].servers, cached=True)
        else:
            token = self.outstanding.start(lambda: record(
                self.world, "directory", self.env.now, hs.name, alias, "query", None, 0, self.env.now - t0,
                "pending", False, None))
            res = yield from hs.request(server_of(alias), "query_directory", {"room_alias": alias}, OVERHEAD_BYTES)
            self.outstanding.done(token)
            ans = _answer(res)
            if ans.outcome == "ok" and self.cfg.cache_ttl_ms > 0:
                self.cache[hs.name][alias] = (ans, self.env.now + self.cfg.cache_ttl_ms)
        truth = self.resolve_truth(alias)
        outcome = ans.outcome
        if outcome == "ok" and ans.room_id != truth:
            outcome = "stale"
        elif outcome == "not_found" and truth is not None:
            outcome = "missing"
        self.counters[outcome] += 1
        record(self.world, "directory", self.env.now, hs.name, alias, "query", ans.room_id, len(ans.servers),
               self.env.now - t0, outcome, ans.cached, ans.errcode)
        return Answer(outcome, ans.room_id, ans.servers, ans.cached, ans.errcode)

    def join_by_alias(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        """A user of ``hs`` joins the room by one of its aliases; returns success."""
        try:
            rid = self.world.room_id
            aliases = [a for a in self.known if self.resolve_truth(a) == rid and server_of(a) != hs.name]
            if not aliases:
                return False
            ans = yield from self.lookup(hs, aliases[int(rng.integers(len(aliases)))])
            if ans.room_id is None or ans.room_id not in {rid}:
                return False
            for server in ans.servers:
                if server == hs.name or rid in hs.rooms:
                    continue
                ok = yield from hs.join_via(ans.room_id, hs.users[0], server)
                if not ok and hs.has_member(rid):
                    return True  # joined meanwhile by the workload's own join: not this join's doing
                record(self.world, "directory", self.env.now, hs.name, "", "join", ans.room_id, 0, float("nan"),
                       "ok" if ok else "failed", False, None)
                if ok:
                    return True
            return rid in hs.rooms
        finally:
            self._joining.discard(hs.name)

    def on_query(self, hs: "Homeserver", origin: str, body: dict) -> Response:
        alias = body.get("room_alias", "")
        rid = self.aliases[hs.name].get(alias)
        if server_of(alias) != hs.name or rid is None:
            raise MatrixError(M_NOT_FOUND, f"room alias {alias} not found", 404)
        servers = [hs.name]
        room = hs.rooms.get(rid)
        if room is not None:
            servers += sorted(hs.joined_servers(room) - {hs.name})
        return Response(200, {"room_id": rid, "servers": servers}, OVERHEAD_BYTES + 20 * len(servers))


def _answer(res: Response | RequestFailed) -> Answer:
    if isinstance(res, RequestFailed):
        return Answer("failed", errcode=res.reason)
    if res.ok:
        return Answer("ok", res.body["room_id"], tuple(res.body["servers"]))
    err = res.body.get("errcode") if isinstance(res.body, dict) else None
    return Answer("not_found" if err == M_NOT_FOUND else "error", errcode=err)
