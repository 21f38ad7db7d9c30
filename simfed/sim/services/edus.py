"""Typing notifications (m.typing) and read receipts (m.receipt).

Typing (Synapse ``handlers/typing.py``): a joined user starts typing
(``typing: true`` to every other server in the room), types for a while,
and stops (``typing: false``). Typing longer than ``timeout`` is refreshed
with another ``true``. EDUs are keyed per (room, user) in the federation
sender: a newer one replaces an unsent older one, so a start and a stop
within one transaction interval leave as one EDU. Receivers accept a
notification only for a user of the sending server who is in the room (in
the receiver's view), and forget a remote typist after ``remote_expiry``
(60 s) without a refresh.

Receipts: a joined user reads the room (an ``m.read`` receipt for the
newest event its server holds). Receipts are batched per room and
destination: one m.receipt EDU per (destination, room) collects the users'
receipts while it waits in the sender's queue (a newer receipt of the same
user replaces the older one). Receivers update only the listed entries, and
only for users of the sending server.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator

import numpy as np
import simpy

from .common import JoinedServers, edu_queued, exp_ms, per_minute_mean_ms, queue_edu, server_of

if TYPE_CHECKING:
    from ...config.services import ReceiptsConfig, TypingConfig
    from ..homeserver import Homeserver
    from ..world import World

__all__ = ["Typing", "Receipts"]

Proc = Generator[simpy.Event, Any, Any]


class Typing:
    """m.typing EDUs of every user in the simulated room."""

    def __init__(self, world: "World", cfg: "TypingConfig") -> None:
        self.world = world
        self.env = world.env
        self.cfg = cfg
        #: (server, room_id) -> {user: expiry time} (remote typists as that server sees them)
        self.typing: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self._joined = JoinedServers()
        self.counters: dict[str, int] = defaultdict(int)

    def start(self) -> None:
        for hs in self.world.servers.values():
            if hs.honest:
                for u in hs.users:
                    self.env.process(self._client(hs, u, self.world.rng(f"services/typing/{u}")))

    def notify(self, hs: "Homeserver", room_id: str, user: str, typing: bool) -> int:
        """Send ``user``'s typing state to every other server in the room; returns how many."""
        edu = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user, "typing": typing}}
        dests = sorted(self._joined(hs, room_id) - {hs.name})
        for dest in dests:
            queue_edu(hs, dest, edu, ("m.typing", room_id, user))
        self.counters["notifications"] += 1
        self.counters["edus_queued"] += len(dests)
        return len(dests)

    def _client(self, hs: "Homeserver", user: str, rng: np.random.Generator) -> Proc:
        c = self.cfg
        mean = per_minute_mean_ms(c.starts_per_user_per_minute)
        rid = self.world.room_id
        while mean < float("inf"):
            yield self.env.timeout(exp_ms(rng, mean))
            if not hs.up or not hs.is_joined(rid, user):
                continue
            end = self.env.now + exp_ms(rng, c.typing_ms)
            self.notify(hs, rid, user, True)
            while end - self.env.now > c.timeout_ms:
                yield self.env.timeout(c.timeout_ms)
                if hs.up:
                    self.notify(hs, rid, user, True)
            yield self.env.timeout(max(0.0, end - self.env.now))
            if hs.up:
                self.notify(hs, rid, user, False)

    def on_edu(self, hs: "Homeserver", origin: str, content: dict) -> None:
        rid, user = content.get("room_id", ""), content.get("user_id", "")
        if server_of(user) != origin or not hs.is_joined(rid, user):
            self.counters["refused"] += 1
            return
        typists = self.typing[(hs.name, rid)]
        if content.get("typing"):
            typists[user] = self.env.now + self.cfg.remote_expiry_ms
        else:
            typists.pop(user, None)

    def typists(self, server: str, room_id: str) -> list[str]:
        """Users ``server`` shows as typing in the room now (expired ones left out)."""
        now = self.env.now
        return sorted(u for u, exp in self.typing[(server, room_id)].items() if exp > now)


@dataclass(slots=True)
class _OpenReceipt:
    key: Any
    edu: dict


class Receipts:
    """m.receipt EDUs: read receipts, batched per (destination, room)."""

    def __init__(self, world: "World", cfg: "ReceiptsConfig") -> None:
        self.world = world
        self.env = world.env
        self.cfg = cfg
        #: (server, room_id) -> {user: event_id}: the receipts each server knows.
        self.receipts: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        self._joined = JoinedServers()
        self._open: dict[tuple[str, str, str], _OpenReceipt] = {}
        self._seq = 0
        self.counters: dict[str, int] = defaultdict(int)

    def start(self) -> None:
        for hs in self.world.servers.values():
            if hs.honest:
                for u in hs.users:
                    self.env.process(self._reader(hs, u, self.world.rng(f"services/receipts/{u}")))

    def read(self, hs: "Homeserver", room_id: str, user: str) -> str | None:
        """``user`` reads the room up to the newest event ``hs`` holds; returns its ID."""
        room = hs.rooms.get(room_id)
        if room is None or not room.forward_extremities:
            return None
        eid = max(room.forward_extremities, key=lambda e: (room.graph[e].depth, e))
        self.receipts[(hs.name, room_id)][user] = eid
        entry = {"event_ids": [eid], "data": {"ts": hs.now_ts()}}
        self.counters["receipts"] += 1
        for dest in sorted(self._joined(hs, room_id) - {hs.name}):
            o = self._open.get((hs.name, dest, room_id))
            if o is None or not edu_queued(hs.sender, dest, o.key):
                self._seq += 1
                o = _OpenReceipt(("m.receipt", room_id, self._seq),
                                 {"edu_type": "m.receipt", "content": {room_id: {"m.read": {}}}})
                self._open[(hs.name, dest, room_id)] = o
            o.edu["content"][room_id]["m.read"][user] = entry
            queue_edu(hs, dest, o.edu, o.key)
            self.counters["entries_queued"] += 1
        return eid

    def _reader(self, hs: "Homeserver", user: str, rng: np.random.Generator) -> Proc:
        mean = per_minute_mean_ms(self.cfg.reads_per_user_per_minute)
        rid = self.world.room_id
        while mean < float("inf"):
            yield self.env.timeout(exp_ms(rng, mean))
            if hs.up and hs.is_joined(rid, user):
                self.read(hs, rid, user)

    def on_edu(self, hs: "Homeserver", origin: str, content: dict) -> None:
        for rid, by_type in content.items():
            for user, r in by_type.get("m.read", {}).items():
                if server_of(user) != origin or not r.get("event_ids"):
                    self.counters["refused"] += 1
                    continue
                self.receipts[(hs.name, rid)][user] = r["event_ids"][0]
