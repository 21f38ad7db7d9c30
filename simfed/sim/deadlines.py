"""Request timeouts without a scheduled event for every request.

A federation request's timeout (60 s) almost never fires: its answer comes
within a second. As ``env.timeout(timeout_ms)`` each one still costs an
event in SimPy's queue for a minute (a queue thousands of entries longer,
which every other event's push and pop pays for) and a step to pop it.

:class:`Deadlines` keeps the timeouts of one length in a FIFO instead and
puts only its oldest pending one in SimPy's queue. Exactly as SimPy would:
each timeout takes its place in the queue (time, priority, event id) when
the request is made -- the id is drawn from the environment's counter then,
as ``env.timeout`` would draw it -- so the callbacks that do run run at the
same point of the same order, and the ids of all other events are
unchanged. A timeout whose request was answered before its turn is skipped;
it would have done nothing.
"""

from __future__ import annotations

from collections import deque
from heapq import heappush
from typing import Any, Protocol

import simpy
from simpy.events import NORMAL

__all__ = ["Deadlines", "Timed"]


class Timed(Protocol):
    """What has a deadline: ``expire`` is called at it unless ``pending()`` is false by then."""

    def pending(self) -> bool: ...

    def expire(self, event: Any) -> None: ...


class Deadlines:
    """Timeouts of one length: ``add(item)`` calls ``item.expire(None)`` at
    ``now + delay_ms`` if ``item.pending()`` then."""

    __slots__ = ("env", "delay_ms", "_pending", "_armed")

    def __init__(self, env: simpy.Environment, delay_ms: float) -> None:
        if delay_ms < 0:
            raise ValueError(f"Negative delay {delay_ms}")
        self.env = env
        self.delay_ms = delay_ms
        # (time, event id, item), in the order added: times and ids ascend
        self._pending: deque[tuple[float, int, Timed]] = deque()
        self._armed = False

    def add(self, item: Timed) -> None:
        """A timeout from now (it takes the event id ``env.timeout`` would)."""
        env = self.env
        entry = (env._now + self.delay_ms, next(env._eid), item)  # type: ignore[attr-defined]
        self._pending.append(entry)
        if not self._armed:
            self._arm(entry[0], entry[1])

    def _arm(self, t: float, eid: int) -> None:
        """Put the event of the timeout (t, eid) into SimPy's queue."""
        ev = simpy.Event(self.env)
        ev._ok = True
        ev._value = None
        ev.callbacks.append(self._fire)  # type: ignore[union-attr]
        heappush(self.env._queue, (t, NORMAL, eid, ev))  # type: ignore[attr-defined]
        self._armed = True

    def _fire(self, _event: simpy.Event) -> None:
        pending = self._pending
        item = pending.popleft()[2]
        if item.pending():
            item.expire(None)
        while pending and not pending[0][2].pending():
            pending.popleft()
        if pending:
            self._arm(pending[0][0], pending[0][1])
        else:
            self._armed = False
