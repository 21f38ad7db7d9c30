"""``RoomGraph``: the DAG of one room as one server holds it."""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator, Sequence

from .authchain import AuthChainIndex, auth_chain_difference
from .events import Event

__all__ = ["MissingParentsError", "RoomGraph"]


class MissingParentsError(ValueError):
    """An event was added before all of its ``prev_events``."""

    def __init__(self, event_id: str, missing: Sequence[str]) -> None:
        self.event_id = event_id
        self.missing = tuple(missing)
        super().__init__(f"{event_id} has {len(missing)} missing parent(s): {', '.join(missing)}")


def _kids(entry: "str | tuple[str, ...] | None") -> tuple[str, ...]:
    """A ``RoomGraph._children`` entry as a tuple."""
    if entry is None:
        return ()
    return (entry,) if type(entry) is str else entry


class RoomGraph:
    """The prev_events DAG of one room, plus the outliers known for it.

    - DAG members are added once all their parents are present (``add``).
    - Outliers (events known only as auth or state events) are stored with
      ``add_outlier``; they are not DAG members until added with ``add``.
    - ``depth`` is the graph height (create = 1), computed here, independent
      of the advisory ``depth`` field events carry.

    Every walk is iterative and linear in what it visits, so graphs of
    100,000+ events are fine.
    """

    def __init__(self, room_id: str | None = None) -> None:
        self.room_id = room_id
        self._events: dict[str, Event] = {}
        self._outliers: dict[str, Event] = {}
        #: DAG members and outliers by ID in one plain dict (read-only by
        #: convention): lookups at C speed for state resolution's hot loops
        self.held: dict[str, Event] = {}
        #: a DAG member or an outlier by ID (``held.get``)
        self.get = self.held.get
        #: children by parent: the child's ID itself when there is one (most
        #: events: no container at all, and there is one per (server,
        #: event)), a tuple of them when there are more (see :func:`_kids`)
        self._children: dict[str, str | tuple[str, ...]] = {}
        self._depth: dict[str, int] = {}
        self._extremities: set[str] = set()
        self._topo: list[str] | None = None
        #: prev_events referenced by DAG members but not held (gaps).
        self.backward_extremities: set[str] = set()
        self.auth_chains = AuthChainIndex(self.get)

    # -- membership ---------------------------------------------------------

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[str]:
        return iter(self._events)

    def __getitem__(self, event_id: str) -> Event:
        ev = self.get(event_id)
        if ev is None:
            raise KeyError(event_id)
        return ev

    def is_outlier(self, event_id: str) -> bool:
        return event_id in self._outliers

    @property
    def events(self) -> dict[str, Event]:
        """DAG members by ID (read-only by convention)."""
        return self._events

    @property
    def outliers(self) -> dict[str, Event]:
        return self._outliers

    # -- mutation -----------------------------------------------------------

    def missing_parents(self, event: Event) -> list[str]:
        """The event's prev_events that are not DAG members here."""
        evs = self._events
        return [p for p in event.prev_events if p not in evs]

    def add(self, event: Event, *, allow_missing: bool = False) -> bool:
        """Add a DAG member; False if it was already one.

        Raises :class:`MissingParentsError` if a parent is missing (unless
        ``allow_missing``: the missing parents become backward extremities,
        as after a state fetch or a join), and ``ValueError`` for an event of
        another room.
        """
        eid = event.event_id
        if eid in self._events:
            return False
        if self.room_id is None:
            self.room_id = event.room_id
        elif event.room_id != self.room_id:
            raise ValueError(f"{eid} belongs to {event.room_id}, not {self.room_id}")
        missing = self.missing_parents(event)
        if missing and not allow_missing:
            raise MissingParentsError(eid, missing)
        depth = 0
        children = self._children
        ext = self._extremities
        for p in missing:
            self.backward_extremities.add(p)
        self.backward_extremities.discard(eid)
        for p in event.prev_events:
            d = self._depth.get(p, 0)
            if d > depth:
                depth = d
            c = children.get(p)
            children[p] = eid if c is None else ((c, eid) if type(c) is str else c + (eid,))
            ext.discard(p)
        self._events[eid] = event
        self._outliers.pop(eid, None)
        self.held[eid] = event
        self._depth[eid] = depth + 1
        ext.add(eid)
        self._topo = None
        return True

    def add_outlier(self, event: Event) -> bool:
        """Store an event known only as an auth/state event."""
        eid = event.event_id
        if eid in self._events or eid in self._outliers:
            return False
        self._outliers[eid] = event
        self.held[eid] = event
        return True

    # -- queries ------------------------------------------------------------

    @property
    def forward_extremities(self) -> frozenset[str]:
        """DAG members that no DAG member lists as a parent."""
        return frozenset(self._extremities)

    def depth(self, event_id: str) -> int:
        """Graph height of a DAG member: 1 + the deepest parent (roots: 1)."""
        return self._depth[event_id]

    def children(self, event_id: str) -> tuple[str, ...]:
        return _kids(self._children.get(event_id))

    def ancestors(self, event_ids: str | Iterable[str]) -> set[str]:
        """Every DAG member reachable through prev_events (the starts excluded)."""
        starts = [event_ids] if isinstance(event_ids, str) else list(event_ids)
        seen: set[str] = set()
        queue = deque()
        for s in starts:
            ev = self._events.get(s)
            if ev is not None:
                queue.extend(ev.prev_events)
        evs = self._events
        while queue:
            eid = queue.popleft()
            if eid in seen:
                continue
            ev = evs.get(eid)
            if ev is None:
                continue
            seen.add(eid)
            queue.extend(p for p in ev.prev_events if p not in seen)
        return seen

    def descendants(self, event_ids: str | Iterable[str]) -> set[str]:
        """Every DAG member that has one of the starts as an ancestor."""
        starts = [event_ids] if isinstance(event_ids, str) else list(event_ids)
        seen: set[str] = set()
        queue = deque()
        children = self._children
        for s in starts:
            queue.extend(_kids(children.get(s)))
        while queue:
            eid = queue.popleft()
            if eid in seen:
                continue
            seen.add(eid)
            queue.extend(c for c in _kids(children.get(eid)) if c not in seen)
        return seen

    def topological_order(self) -> list[str]:
        """Parents before children; ties by (height, event ID), so the order
        depends only on the DAG, not on the order events were added."""
        if self._topo is None:
            d = self._depth
            self._topo = sorted(self._events, key=lambda e: (d[e], e))
        return list(self._topo)

    def auth_chain(self, event_id: str) -> frozenset[str]:
        """Everything reachable from the event through auth_events (itself excluded)."""
        return self.auth_chains.chain(event_id)

    def auth_chain_difference(
        self, state_sets: Sequence[Iterable[str]], *, include_state_events: bool = False
    ) -> set[str]:
        """See :func:`simfed.protocol.authchain.auth_chain_difference`."""
        return auth_chain_difference(state_sets, self.auth_chains, include_state_events=include_state_events)
