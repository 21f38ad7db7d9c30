"""``RoomGraph``: the DAG of one room as one server holds it."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
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
    """A ``RoomGraph._hole_children`` entry as a tuple."""
    if entry is None:
        return ()
    return (entry,) if type(entry) is str else entry


class _Members(Mapping):
    """The DAG members of a graph that also holds outliers: its ``held``
    dict without them, as a read-only view (no dict of its own)."""

    __slots__ = ("_held", "_outliers")

    def __init__(self, held: dict[str, Event], outliers: dict[str, Event]) -> None:
        self._held = held
        self._outliers = outliers

    def __getitem__(self, event_id: str) -> Event:
        if event_id in self._outliers:
            raise KeyError(event_id)
        return self._held[event_id]

    def get(self, event_id: str, default: "Event | None" = None) -> "Event | None":
        ev = self._held.get(event_id)
        return default if ev is None or event_id in self._outliers else ev

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._held and event_id not in self._outliers

    def __iter__(self) -> Iterator[str]:
        outliers = self._outliers
        return (e for e in self._held if e not in outliers)

    def __len__(self) -> int:
        return len(self._held) - len(self._outliers)

    def values(self) -> list[Event]:  # type: ignore[override]
        """The DAG members, as a list (one pass over ``held``, in C)."""
        outliers = self._outliers
        return [v for k, v in self._held.items() if k not in outliers]

    def items(self) -> list[tuple[str, Event]]:  # type: ignore[override]
        """The DAG members' (ID, event) pairs, as a list."""
        outliers = self._outliers
        return [(k, v) for k, v in self._held.items() if k not in outliers]


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
        #: outliers by ID (DAG members are the other events of ``held``:
        #: a server keeps no second dict of one entry per event)
        self._outliers: dict[str, Event] = {}
        #: DAG members and outliers by ID in one plain dict (read-only by
        #: convention): lookups at C speed for state resolution's hot loops
        self.held: dict[str, Event] = {}
        #: a DAG member or an outlier by ID (``held.get``)
        self.get = self.held.get
        #: children of the prev_events that are not DAG members (the holes
        #: readers backfill): the child's ID itself when there is one, a
        #: tuple of them when there are more (see :func:`_kids`); the
        #: children of DAG members are found from their prev_events when
        #: asked (:meth:`_child_map`), as is the depth (:meth:`_depths`)
        self._hole_children: dict[str, str | tuple[str, ...]] = {}
        self._extremities: set[str] = set()
        self._topo: list[str] | None = None
        self._depth_cache: dict[str, int] | None = None
        self._child_cache: dict[str, tuple[str, ...]] | None = None
        #: prev_events referenced by DAG members but not held (gaps).
        self.backward_extremities: set[str] = set()
        self.auth_chains = AuthChainIndex(self.get)

    # -- membership ---------------------------------------------------------

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.held and event_id not in self._outliers

    def __len__(self) -> int:
        return len(self.held) - len(self._outliers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.events)

    def __getitem__(self, event_id: str) -> Event:
        ev = self.get(event_id)
        if ev is None:
            raise KeyError(event_id)
        return ev

    def is_outlier(self, event_id: str) -> bool:
        return event_id in self._outliers

    @property
    def events(self) -> Mapping[str, Event]:
        """DAG members by ID (read-only: ``held`` itself while there are no
        outliers, else a view of it without them)."""
        return _Members(self.held, self._outliers) if self._outliers else self.held

    @property
    def outliers(self) -> dict[str, Event]:
        return self._outliers

    # -- mutation -----------------------------------------------------------

    def missing_parents(self, event: Event) -> list[str]:
        """The event's prev_events that are not DAG members here."""
        held, outliers = self.held, self._outliers
        if not outliers:
            return [p for p in event.prev_events if p not in held]
        return [p for p in event.prev_events if p not in held or p in outliers]

    def add(self, event: Event, *, allow_missing: bool = False) -> bool:
        """Add a DAG member; False if it was already one.

        Raises :class:`MissingParentsError` if a parent is missing (unless
        ``allow_missing``: the missing parents become backward extremities,
        as after a state fetch or a join), and ``ValueError`` for an event of
        another room.
        """
        eid = event.event_id
        held, outliers = self.held, self._outliers
        if eid in held and eid not in outliers:
            return False
        if self.room_id is None:
            self.room_id = event.room_id
        elif event.room_id != self.room_id:
            raise ValueError(f"{eid} belongs to {event.room_id}, not {self.room_id}")
        missing = self.missing_parents(event)
        if missing and not allow_missing:
            raise MissingParentsError(eid, missing)
        holes = self._hole_children
        ext = self._extremities
        for p in missing:
            self.backward_extremities.add(p)
            c = holes.get(p)
            holes[p] = eid if c is None else ((c, eid) if type(c) is str else c + (eid,))
        self.backward_extremities.discard(eid)
        for p in event.prev_events:
            ext.discard(p)
        if holes:
            holes.pop(eid, None)  # a DAG member now: its children are found from prev_events
        if outliers and outliers.pop(eid, None) is not None and not outliers:
            self._outliers = {}  # an emptied dict keeps its table (one per server)
        held[eid] = event
        ext.add(eid)
        self._topo = self._depth_cache = self._child_cache = None
        return True

    def add_outlier(self, event: Event) -> bool:
        """Store an event known only as an auth/state event."""
        eid = event.event_id
        if eid in self.held:
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
        """Graph height of a DAG member: 1 + the deepest parent that is a DAG
        member (roots and events whose parents are all missing: 1)."""
        return self._depths()[event_id]

    def _depths(self) -> dict[str, int]:
        """:meth:`depth` of every DAG member (kept until the next ``add``)."""
        if self._depth_cache is None:
            members = self.events
            d: dict[str, int] = {}
            for start in members:
                if start in d:
                    continue
                path = {start}  # the walk's current chain (a guard against cycles)
                stack = [(start, iter(members[start].prev_events))]
                while stack:
                    e, it = stack[-1]
                    for p in it:
                        if p not in d and p not in path and p in members:
                            path.add(p)
                            stack.append((p, iter(members[p].prev_events)))
                            break
                    else:
                        stack.pop()
                        path.discard(e)
                        d[e] = 1 + max((d[p] for p in members[e].prev_events if p in d), default=0)
            self._depth_cache = d
        return self._depth_cache

    def _child_map(self) -> dict[str, tuple[str, ...]]:
        """Children by parent over every DAG member (kept until the next ``add``)."""
        if self._child_cache is None:
            out: dict[str, list[str]] = {}
            for eid, ev in self.events.items():
                for p in ev.prev_events:
                    out.setdefault(p, []).append(eid)
            self._child_cache = {p: tuple(c) for p, c in out.items()}
        return self._child_cache

    def children(self, event_id: str) -> tuple[str, ...]:
        """The DAG members that list ``event_id`` among their prev_events."""
        if event_id not in self:
            return _kids(self._hole_children.get(event_id))
        return self._child_map().get(event_id, ())

    def ancestors(self, event_ids: str | Iterable[str]) -> set[str]:
        """Every DAG member reachable through prev_events (the starts excluded)."""
        starts = [event_ids] if isinstance(event_ids, str) else list(event_ids)
        seen: set[str] = set()
        queue = deque()
        evs = self.events
        for s in starts:
            ev = evs.get(s)
            if ev is not None:
                queue.extend(ev.prev_events)
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
        for s in starts:
            queue.extend(self.children(s))
        children = self._child_map()
        while queue:
            eid = queue.popleft()
            if eid in seen:
                continue
            seen.add(eid)
            queue.extend(c for c in children.get(eid, ()) if c not in seen)
        return seen

    def topological_order(self) -> list[str]:
        """Parents before children; ties by (height, event ID), so the order
        depends only on the DAG, not on the order events were added."""
        if self._topo is None:
            d = self._depths()
            self._topo = sorted(d, key=lambda e: (d[e], e))
        return list(self._topo)

    def auth_chain(self, event_id: str) -> frozenset[str]:
        """Everything reachable from the event through auth_events (itself excluded)."""
        return self.auth_chains.chain(event_id)

    def auth_chain_difference(
        self, state_sets: Sequence[Iterable[str]], *, include_state_events: bool = False
    ) -> set[str]:
        """See :func:`simfed.protocol.authchain.auth_chain_difference`."""
        return auth_chain_difference(state_sets, self.auth_chains, include_state_events=include_state_events)
