"""What every adversary behaviour shares: when it acts, whom it targets,
how it builds and sends events, and how it records what it did.

A behaviour is attached to one (dishonest) homeserver. It can act on its
own (``act``, called about ``rate`` times a minute while it is active and
its server is up) and it can answer requests in place of its server
(``intercept``: return a response, a SimPy event that never fires for
silence, or ``None`` to let the server answer as usual).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generator

import numpy as np
import simpy

from ...protocol import Event, RoomState, auth_events_for

if TYPE_CHECKING:
    from ..homeserver import Homeserver
    from ..transport import Response
    from ..world import World

__all__ = ["Behaviour", "BEHAVIOURS", "register"]

#: behaviour name -> class; filled by :func:`register`.
BEHAVIOURS: dict[str, type["Behaviour"]] = {}


def register(cls: type["Behaviour"]) -> type["Behaviour"]:
    """Class decorator: make ``cls`` the behaviour named ``cls.name``."""
    BEHAVIOURS[cls.name] = cls
    return cls


class Behaviour:
    """One ``[[adversaries]]`` entry at work on its server."""

    name: ClassVar[str] = ""

    def __init__(self, world: "World", hs: "Homeserver", cfg: Any, index: int) -> None:
        self.world = world
        self.hs = hs
        self.env: simpy.Environment = world.env
        self.cfg = cfg
        self.index = index
        #: this entry's own random stream (adding an adversary changes no other draw)
        self.rng: np.random.Generator = world.rng(f"adversary/{index}/{hs.name}/{self.name}")
        self.actions = 0

    # -- time ---------------------------------------------------------------------

    @property
    def end_ms(self) -> float:
        end = self.cfg.end_ms
        return self.world.scenario.simulation.duration_ms if end is None else end

    def active(self) -> bool:
        """Whether the behaviour is on now (and its server is up)."""
        return self.hs.up and self.cfg.start_ms <= self.env.now < self.end_ms

    def start(self) -> None:
        """Schedule the actions (a Poisson process of ``rate`` a minute from ``start`` to ``end``)."""
        self.env.process(self._loop())

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        if self.env.now < self.cfg.start_ms:
            yield self.env.timeout(self.cfg.start_ms - self.env.now)
        mean_gap = 60_000.0 / self.cfg.rate
        while True:
            yield self.env.timeout(float(self.rng.exponential(mean_gap)))
            if self.env.now >= self.end_ms:
                return
            if not self.active() or self.room() is None:
                continue
            self.actions += 1
            out = self.act()
            if isinstance(out, Generator):
                yield from out

    # -- what a behaviour does (override) -----------------------------------------

    def act(self) -> Generator[simpy.Event, Any, None] | None:
        """One action; may be a SimPy process body (a generator)."""
        return None

    def intercept(self, origin: str, kind: str, body: Any) -> "Response | simpy.Event | None":
        """Answer a request in place of the server, or ``None`` to let it answer."""
        return None

    # -- helpers ------------------------------------------------------------------

    def room(self) -> RoomState | None:
        """The adversary's copy of the simulated room, if it is in it."""
        return self.hs.rooms.get(self.world.room_id)

    def targets(self, room: RoomState) -> list[str]:
        """``targets``, or every other server of the room, sorted."""
        if self.cfg.targets:
            return sorted(set(self.cfg.targets) - {self.hs.name})
        return sorted(self.hs.joined_servers(room) - {self.hs.name})

    def victims(self) -> list[str]:
        """Honest servers other than this one, sorted (whom a forgery can claim to be)."""
        return sorted(s for s in self.world.honest_servers() if s != self.hs.name)

    def build(self, fields: dict[str, Any], *, origin: str | None = None, key: Any = None) -> Event:
        """Sign ``fields`` as ``origin`` (default: this server) with ``key``
        (default: this server's key)."""
        hs = self.hs
        return Event.create(fields, origin or hs.name, key if key is not None else hs.key, hs.config.room_version)

    def message_fields(self, room: RoomState, sender: str, body: str, *,
                       prevs: list[str] | None = None) -> dict[str, Any]:
        """The fields of an ``m.room.message`` on ``prevs`` (default: the newest extremities)."""
        state = room.current_state()
        if prevs is None:
            fwd = room.forward_extremities
            prevs = sorted(fwd, key=lambda e: (-room.graph[e].depth, e))[: self.hs.config.prev_events_max]
        prevs = sorted(prevs)
        content = {"msgtype": "m.text", "body": body}
        return {
            "room_id": room.graph.room_id, "sender": sender, "type": "m.room.message", "content": content,
            "prev_events": prevs, "auth_events": auth_events_for("m.room.message", None, sender, content, state),
            "depth": max((room.graph[p].depth for p in prevs if p in room.graph), default=0) + 1,
            "origin_server_ts": self.hs.now_ts(),
        }

    def send(self, ev: Event, dests: list[str]) -> None:
        """Queue ``ev`` for each of ``dests`` on the server's federation sender."""
        for dest in dests:
            self.hs.sender.send_pdu(dest, ev, ev.room_id)

    def record(self, action: str, ev: Event | None = None, *, target: str = "",
               illegitimate: bool = False) -> None:
        """Note an action in the ``adversary`` table and the server's counters."""
        self.hs.counters[f"adversary:{self.name}:{action}"] += 1
        rec = self.world.recorder
        if rec is not None:
            rec.adversary_action(self.env.now, self.hs.name, self.name, action,
                                 ev.event_id if ev is not None else "", target, illegitimate)
