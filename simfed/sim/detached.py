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

from typing import Any, Generator

import simpy
from simpy.events import URGENT

__all__ = ["detached"]


class _Driver:
    __slots__ = ("gen",)

    def __init__(self, gen: Generator[simpy.Event, Any, Any]) -> None:
        self.gen = gen

    def resume(self, event: simpy.Event) -> None:
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


def detached(env: simpy.Environment, gen: Generator[simpy.Event, Any, Any]) -> None:
    """Start ``gen`` as ``env.process(gen)`` would, for a process whose end
    nobody waits for (see the module docstring)."""
    start = simpy.Event(env)
    start.callbacks.append(_Driver(gen).resume)  # type: ignore[union-attr]
    start._ok = True
    start._value = None
    env.schedule(start, URGENT)
