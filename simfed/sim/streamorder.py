"""Each server's stream ordering (the order it stored events in, as
Synapse's ``stream_ordering``), laid out by event.

A server numbers the events it stores 0, 1, 2, ... and reads the numbers
back only to compare them (catch-up: what it stored since the last PDU a
destination accepted). One dict per server of one entry per stored event
cost about 25 bytes per (server, event) plus, past 256, an int object per
number; here each event has one ``array('i')`` of every server's number for
it (-1: not stored there), indexed by the server's place: 4 bytes per
(server, event). A server's numbers are its own; only the storage is shared.
"""

from __future__ import annotations

from array import array

__all__ = ["ServerStream", "StreamOrder"]


class StreamOrder:
    """The stream numbers of every server of a run, by event."""

    __slots__ = ("_by_event", "_servers")

    def __init__(self) -> None:
        self._by_event: dict[str, array] = {}
        self._servers = 0

    def server(self) -> "ServerStream":
        """The numbering of one more server (it takes the next place)."""
        place = self._servers
        self._servers += 1
        return ServerStream(self, place)


class ServerStream:
    """One server's stream numbers: ``add`` numbers an event the first
    time, ``get`` reads a number back (a dict's ``setdefault``/``get``)."""

    __slots__ = ("_order", "_by_event", "_place", "_next")

    def __init__(self, order: StreamOrder, place: int) -> None:
        self._order = order
        self._by_event = order._by_event
        self._place = place
        self._next = 0

    def add(self, event_id: str) -> None:
        """Give ``event_id`` the next number unless it has one."""
        by_event = self._by_event
        row = by_event.get(event_id)
        place = self._place
        if row is None:
            row = by_event[event_id] = array("i", [-1]) * max(self._order._servers, place + 1)
        elif place >= len(row):
            row.extend(array("i", [-1]) * (place + 1 - len(row)))
        elif row[place] >= 0:
            return
        row[place] = self._next
        self._next += 1

    def get(self, event_id: str, default: int = -1) -> int:
        """The event's number, or ``default`` if this server has not stored it."""
        row = self._by_event.get(event_id)
        if row is None or self._place >= len(row):
            return default
        n = row[self._place]
        return default if n < 0 else n

    def __len__(self) -> int:
        return self._next
