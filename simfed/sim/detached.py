"""Run a generator as a SimPy process that nobody waits for, one event cheaper.

``env.process(gen)`` schedules a start event (URGENT), resumes the generator
on every event it yields, and when the generator returns schedules the
process itself as an event. When nothing waits for that process (no
callbacks, no ``yield``), that last event does nothing, and leaving it out of
the queue changes the order of no other event. ``detached(env, gen)`` drives
the generator exactly as SimPy does, without the process object and its end
event. Differences, both outside what a run records: ``env.active_process``
is None while the generator runs, and an exception escaping the generator
ends the run at once rather than when the failed process would have been
processed (in both cases nothing handles it and the run stops with it).
"""

from __future__ import annotations

from heapq import heappush
from typing import Any, Generator

import simpy
from simpy.events import URGENT

__all__ = ["detached"]


class _Driver:
    """Drives one generator; it is also the generator's start entry in
    SimPy's queue (the environment's step reads an event's ``callbacks``
    and ``_ok`` only; ``resume`` reads ``_value`` too)."""

    __slots__ = ("gen", "callbacks", "_ok", "_value")

    def __init__(self, gen: Generator[simpy.Event, Any, Any]) -> None:
        self.gen = gen
        self.callbacks: tuple[Any, ...] | None = _START
        self._ok = True
        self._value = None

    def resume(self, event: Any) -> None:
        # SimPy's Process._resume, without ending in an event of its own
        gen = self.gen
        while True:
            try:
                if event._ok:
                    event = gen.send(event._value)
                else:
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    event = gen.throw(exc)
            except StopIteration:
                return
            if event.callbacks is not None:
                event.callbacks.append(self.resume)
                return

    def start(self) -> None:
        self.resume(self)


_START = (_Driver.start,)


def detached(env: simpy.Environment, gen: Generator[simpy.Event, Any, Any]) -> None:
    """Start ``gen`` as ``env.process(gen)`` would, for a process whose end
    nobody waits for (see the module docstring): its start is an URGENT
    entry now, where ``env.schedule`` would put SimPy's Initialize event."""
    heappush(env._queue, (env._now, URGENT, next(env._eid), _Driver(gen)))  # type: ignore[attr-defined]
