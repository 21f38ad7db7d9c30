"""Readers: the clients of the workload's users paging back through gaps.

Synapse backfills a room only when a client asks for history (``/messages``
-> ``maybe_backfill`` in ``handlers/pagination.py`` and
``handlers/federation.py``). A client that has the room open learns of a gap
from a ``limited`` sync (the server's timeline jumped: events are missing
between what it showed and what is new) and its timeline view paginates back
to fill the screen. So with ``workload.readers = "on_gap"`` (the default):

- The homeserver announces every new hole of a room DAG
  (:meth:`Workload.on_holes`): a backward extremity it does not hold, left
  after bridging a gap with a state fetch or after a join.
- If the server is up and honest, the workload is active (``[start, stop)``)
  and one of the server's users is joined to the room, that user's client
  reads (and, once started, finishes its gap even if the workload stops
  meanwhile: the client fills the view it opened): after
  ``workload.reader_delay`` x U(0.5, 1.5) (sync return plus the client's
  ``/messages`` round trip; a stream per server, ``workload/readers/<server>``)
  the server backfills from the gap, exactly as the server-side path does (:meth:`Homeserver.backfill_holes`: the room's
  other servers one after another, ``homeserver.backfill_limit`` events).
- As Synapse, one ``/backfill`` names at most the 5 newest holes
  (:data:`BACKFILL_POINTS`). The reader pages again, after the same delay,
  while holes of its gap remain (the gap's own holes and those its pages
  uncovered further back), at most ``workload.reader_pages`` pages per gap.
  A new gap while it reads adds its holes and restores the page budget.
- Holes uncovered by a backfill are not a new gap (no limited sync reports
  them): only a reader already paging reaches them. Nor is the history
  before a join: the join backfills it once (:meth:`Homeserver.join_via`),
  the joining client's first page.

Every page is recorded (``reader_pages`` table) with what it asked and what
it added to the DAG. ``"none"`` turns readers off: gaps then stay open unless
``homeserver.history_backfill`` (a server-side deviation) fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generator

import numpy as np
import simpy

if TYPE_CHECKING:
    from ..protocol import RoomState
    from .homeserver import Homeserver
    from .world import World

__all__ = ["BACKFILL_POINTS", "NOT_GAPS", "Readers"]

#: Backward extremities named in one ``/backfill`` (Synapse
#: ``_maybe_backfill_inner``: at most 5, the deepest first).
BACKFILL_POINTS = 5
#: Holes that are not gaps a reader pages through: those a backfill
#: uncovered (history behind it) and the history before a join (the join
#: itself backfills once from the resident server, as the joining client's
#: first page would).
NOT_GAPS = ("backfill", "send_join")


@dataclass(slots=True)
class _Reader:
    """One server's reading client: the holes of its gap and its page budget."""

    pending: set[str] = field(default_factory=set)
    pages_left: int = 0
    gaps: int = 0
    pages: int = 0
    running: bool = False


class Readers:
    """The readers of one room, one per server (see the module docstring)."""

    def __init__(self, world: "World", room_id: str, *, mode: str, delay_ms: float, pages: int,
                 active: Callable[[], bool]) -> None:
        self.world = world
        self.env = world.env
        self.room_id = room_id
        self.mode = mode
        self.delay_ms = delay_ms
        self.pages = pages
        self._active = active
        self._readers: dict[str, _Reader] = {}
        self._streams: dict[str, np.random.Generator] = {}

    def reading(self, hs: "Homeserver", *, started: bool = False) -> bool:
        """True if a client of ``hs`` has the room open: the server is up and
        honest, one of its users joined and, to start reading a gap, the
        workload active (a reader already paging finishes its gap)."""
        return (hs.up and hs.honest and (started or self._active())
                and any(hs.is_joined(self.room_id, u) for u in hs.users))

    def on_holes(self, hs: "Homeserver", room: "RoomState", holes: list[str], via: str) -> None:
        """``hs``'s room DAG gained ``holes`` (reached it ``via``)."""
        if self.mode == "none" or room.graph.room_id != self.room_id or via in NOT_GAPS:
            return
        if not self.reading(hs):
            return
        r = self._readers.setdefault(hs.name, _Reader())
        r.pending.update(holes)
        r.pages_left = self.pages
        r.gaps += 1
        if not r.running:
            r.running = True
            self.env.process(self._read(hs, room, r))

    def _read(self, hs: "Homeserver", room: "RoomState", r: _Reader) -> Generator[simpy.Event, Any, None]:
        rng = self._rng(hs.name)
        try:
            while r.pages_left > 0:
                yield self.env.timeout(self.delay_ms * float(rng.uniform(0.5, 1.5)))
                points = hs.backfill_points(room, r.pending, BACKFILL_POINTS)
                if not points or not self.reading(hs, started=True):
                    break
                r.pages_left -= 1
                r.pages += 1
                before = set(hs.holes(room))
                t0 = self.env.now
                added = yield from hs.backfill_holes(room, points)
                hs.counters["reader_pages"] += 1
                rec = self.world.recorder
                if rec is not None:
                    rec.reader_page(t0, self.env.now, hs.name, self.room_id, r.gaps, r.pages, len(points),
                                    added or 0, added is not None)
                after = set(hs.holes(room))
                r.pending = {h for h in r.pending | (after - before) if h in after}
        finally:
            r.running = False
            r.pending.clear()

    def _rng(self, server: str) -> np.random.Generator:
        rng = self._streams.get(server)
        if rng is None:
            rng = self._streams[server] = self.world.rng(f"workload/readers/{server}")
        return rng
