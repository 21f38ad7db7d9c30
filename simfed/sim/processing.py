"""Processing costs: each homeserver's CPU and what its work costs in simulated time.

Without this model, signature checks, authorisation, state resolution and
persistence take no simulated time, so convergence is a network-only lower
bound. With it, every server has a CPU (:class:`Cores`, scheduled as a
SimPy ``Resource`` with ``servers.cpu_cores`` slots; Synapse's main process
is one Python process holding the GIL, hence 1 by default) and the work it
does is charged from the counters the code already keeps:

==========================  ====================================  =====================
unit of work                counted where                         cost
==========================  ====================================  =====================
``signature_checks``        ``Homeserver.check_pdu``              verify + content hash
``signed``                  ``Homeserver.create_event``, joins    ``sign_ms``
``auth_checks``             ``RoomState`` and outlier checks      ``auth_check_ms``
``resolutions``             ``RoomState`` (also shared answers)   ``resolution_ms``
``conflicted_events``       ``RoomState`` (per resolution)        ``resolution_per_conflicted_ms``
``db_writes``               events newly held (DAG or outlier)    ``db_write_ms``
``requests_served``         every federation request answered     ``request_ms``
==========================  ====================================  =====================

How time is charged (:class:`Cpu`): a unit of pipeline work (answering a
request, persisting a received event, creating an event) waits for a free
core, runs (the protocol code itself takes no simulated time), then holds the
core for the cost of every unit of work done since the CPU last charged;
what the server does afterwards (recording the outcome, forwarding, fanning
out, answering) happens when the hold ends. Work done outside these units
(e.g. checking the events a ``/get_missing_events`` response carried) is
charged with the next unit, so no work goes unpaid. Effects on the room
(its DAG and state) are applied at the start of the hold: an event's
processing is atomic, a crash during its hold does not undo it.

The defaults (:data:`CALIBRATED`) are constants measured once with
``benchmarks/calibrate_processing.py`` (Synapse's own code in the oracle
venv; figures, date and machine in ``benchmarks/README.md``); they are never
measured at run time, so runs stay deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from heapq import heappush
from typing import TYPE_CHECKING, Any, Callable, Generator, Mapping

import simpy
from simpy.events import NORMAL, URGENT

if TYPE_CHECKING:
    from .homeserver import Homeserver

__all__ = ["CALIBRATED", "WORK", "CostTable", "Cores", "Cpu", "cost_table", "work_done"]

#: The units of work a server's counters record, in the order of :func:`work_done`.
WORK = ("signature_checks", "signed", "auth_checks", "resolutions", "conflicted_events", "db_writes",
        "requests_served")


@dataclass(frozen=True, slots=True)
class CostTable:
    """Milliseconds of CPU per unit of work (see the module docstring)."""

    signature_verify_ms: float
    """Synapse's signature check of one received PDU (redaction, canonical JSON, ed25519 verify)."""
    content_hash_ms: float
    """Synapse's content hash check of one received PDU (canonical JSON, SHA-256)."""
    sign_ms: float
    """Hashing and signing one new event (Synapse's ``add_hashes_and_signatures``)."""
    auth_check_ms: float
    """One run of the auth rules on one event (Synapse's ``event_auth`` checks)."""
    resolution_ms: float
    """Fixed cost of one state resolution (the fit's intercept)."""
    resolution_per_conflicted_ms: float
    """Cost of one resolution per conflicted state event (the fit's slope)."""
    db_write_ms: float
    """Persisting one event (an assumption; see ``benchmarks/calibrate_processing.py``)."""
    request_ms: float
    """Answering one federation request besides its events (the X-Matrix signature check)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or v != v:
                raise ValueError(f"CostTable.{f.name} = {v!r}: expected a number of ms >= 0")

    def unit_costs(self) -> tuple[float, ...]:
        """Milliseconds per unit of work, in the order of :data:`WORK`."""
        return (self.signature_verify_ms + self.content_hash_ms, self.sign_ms, self.auth_check_ms,
                self.resolution_ms, self.resolution_per_conflicted_ms, self.db_write_ms, self.request_ms)

    def cost_ms(self, delta: Mapping[str, float]) -> float:
        """CPU milliseconds for the work in ``delta`` (unit of work -> count, see :data:`WORK`)."""
        unknown = set(delta) - set(WORK)
        if unknown:
            raise ValueError(f"unknown unit(s) of work {sorted(unknown)} (expected some of {', '.join(WORK)})")
        g = delta.get
        return (
            g("signature_checks", 0) * (self.signature_verify_ms + self.content_hash_ms)
            + g("signed", 0) * self.sign_ms
            + g("auth_checks", 0) * self.auth_check_ms
            + g("resolutions", 0) * self.resolution_ms
            + g("conflicted_events", 0) * self.resolution_per_conflicted_ms
            + g("db_writes", 0) * self.db_write_ms
            + g("requests_served", 0) * self.request_ms
        )


#: Constants printed by ``python benchmarks/calibrate_processing.py`` (see benchmarks/README.md).
CALIBRATED = CostTable(
    signature_verify_ms=0.207,
    content_hash_ms=0.03025,
    sign_ms=0.1409,
    auth_check_ms=0.307,
    resolution_ms=0.0,
    resolution_per_conflicted_ms=0.1381,
    db_write_ms=2.0,
    request_ms=0.207,
)


def cost_table(processing: Any) -> CostTable | None:
    """The cost table a ``servers.processing`` setting names: ``"none"`` (or
    a table with ``preset = "none"``) -> ``None`` (no processing time);
    ``"calibrated"`` -> :data:`CALIBRATED`; a table (mapping or
    :class:`~simfed.config.ProcessingCosts`) -> :data:`CALIBRATED` with the
    costs it sets (``None`` keeps the calibrated value)."""
    if isinstance(processing, str):
        processing = {"preset": processing}
    items = dict(processing.items() if isinstance(processing, Mapping) else vars(processing).items())
    preset = items.pop("preset", "calibrated")
    if preset not in ("none", "calibrated"):
        raise ValueError(f"servers.processing = {preset!r}: expected 'none', 'calibrated' or a table of costs")
    if preset == "none":
        return None
    known = {f.name for f in fields(CostTable)}
    over = {}
    for k, v in items.items():
        if k not in known:
            raise ValueError(f"servers.processing.{k}: unknown cost (expected one of {', '.join(sorted(known))})")
        if v is not None:
            over[k] = float(v)
    return replace(CALIBRATED, **over)


def work_done(hs: "Homeserver") -> tuple[int, ...]:
    """The work ``hs`` has done so far, one count per unit in :data:`WORK`."""
    c = hs.counters
    auth = resolutions = conflicted = held = 0
    for room in hs.rooms.values():
        auth += room.auth_checks
        resolutions += room.resolutions
        conflicted += room.conflicted_events
        held += len(room.events)
    return (c["signature_checks"], c["signed"], auth + c["auth_checks"], resolutions, conflicted, held,
            c["requests_served"])


Proc = Generator[simpy.Event, Any, Any]


class Cores:
    """A server's cores: exactly the scheduling of ``simpy.Resource`` as
    ``Cpu.run`` uses it (request, hold, release), with less machinery.

    A request is an event that succeeds (is scheduled) when a core is free,
    in request order; a release frees the core at once and lets the oldest
    waiting request in when its release event is processed, as SimPy does.
    With one core and nobody waiting that release event could do nothing
    (every later request is let in at once, and its holder runs after the
    release event), so it is not scheduled: an event with no effect left out
    of the queue changes the order of no other event.
    """

    __slots__ = ("env", "capacity", "users", "waiting")

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        self.env = env
        self.capacity = capacity
        self.users: list[simpy.Event] = []
        self.waiting: list[simpy.Event] = []

    @property
    def count(self) -> int:
        """Cores in use."""
        return len(self.users)

    def request(self) -> simpy.Event:
        """An event that succeeds when a core is this request's."""
        req = simpy.Event(self.env)
        if not self.waiting and len(self.users) < self.capacity:
            self.users.append(req)
            req.succeed()
        else:
            self.waiting.append(req)
            self._admit(None)
        return req

    def _admit(self, _event: Any) -> None:
        # SimPy's Resource looks at the oldest waiting request only
        if self.waiting and len(self.users) < self.capacity:
            req = self.waiting.pop(0)
            self.users.append(req)
            req.succeed()

    def release(self, req: simpy.Event) -> None:
        """Give back (or stop waiting for) the core of ``req``."""
        if not req.triggered:
            self.waiting.remove(req)
        try:
            self.users.remove(req)
        except ValueError:
            pass
        if self.capacity == 1 and not self.waiting:
            return
        done = simpy.Event(self.env)
        done.callbacks.append(self._admit)  # type: ignore[union-attr]
        done.succeed()


class Cpu:
    """A server's cores; charges the work done since its last charge.

    ``work`` returns the server's cumulative work (as :func:`work_done`);
    ``busy_ms`` accumulates the CPU time charged.
    """

    def __init__(self, env: simpy.Environment, cores: int, costs: CostTable,
                 work: Callable[[], tuple[int, ...]]) -> None:
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise ValueError(f"servers.cpu_cores = {cores!r}: expected an integer >= 1")
        self.env = env
        self.costs = costs
        self.cores = Cores(env, cores)
        self._work = work
        self._charged = work()
        self._unit_ms = costs.unit_costs()
        self.busy_ms = 0.0

    def _bill(self) -> float:
        now = self._work()
        before = self._charged
        if now == before:
            return 0.0
        self._charged = now
        cost = 0.0
        for n, b, ms in zip(now, before, self._unit_ms):
            if n != b:
                cost += (n - b) * ms
        return cost

    def run(self, fn: Callable[..., Any], *args: Any) -> Proc:
        """Wait for a core, call ``fn(*args)``, hold the core for the cost of
        the work done since the last charge; returns what ``fn`` returned
        (an exception from ``fn`` is raised after the hold)."""
        cores = self.cores
        req = cores.request()
        try:
            yield req
            value = error = None
            try:
                value = fn(*args)
            except Exception as exc:  # re-raised once the work is paid for
                error = exc
            cost = self._bill()
            if cost > 0:
                self.busy_ms += cost
                yield self.env.timeout(cost)
        except GeneratorExit:  # a process dropped unfinished keeps its core, as with SimPy's Resource
            if not req.triggered:
                cores.waiting.remove(req)
            raise
        except BaseException:
            cores.release(req)
            raise
        cores.release(req)
        if error is not None:
            raise error
        return value

    def start(self, fn: Callable[..., Any], *args: Any) -> simpy.Event:
        """``env.process(self.run(fn, *args))`` without a generator: an event
        with ``run``'s outcome, reached through exactly the same scheduled
        events (a start at URGENT priority, the core, the hold, the end), so
        the run's order of events is unchanged."""
        return _Job(self, fn, args).done

    def charge(self) -> simpy.Event:
        """An event that charges the work done so far on a core (for work
        done synchronously, e.g. creating an event); callbacks on it run
        when the charge ends."""
        return self.start(_nothing)


class _Job:
    """One ``Cpu.start``: the steps of ``Cpu.run`` chained by callbacks.

    The job is itself the entry of its start and of its hold in SimPy's
    queue (at the time, priority and event id that ``env.schedule`` and
    ``env.timeout`` would give them): the environment's step reads an
    event's ``callbacks`` and ``_ok`` only."""

    __slots__ = ("callbacks", "_ok", "cpu", "fn", "args", "req", "value", "error", "done")

    def __init__(self, cpu: Cpu, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.cpu = cpu
        self.fn = fn
        self.args = args
        self.value: Any = None
        self.error: BaseException | None = None
        self._ok = True
        env = cpu.env
        self.done = simpy.Event(env)
        # what env.process schedules first (SimPy's Initialize)
        self.callbacks: tuple[Callable[[_Job], None], ...] | None = _BEGIN
        heappush(env._queue, (env._now, URGENT, next(env._eid), self))  # type: ignore[attr-defined]

    def _begin(self) -> None:
        self.req = self.cpu.cores.request()
        self.req.callbacks.append(self._work)  # type: ignore[union-attr]

    def _work(self, _event: simpy.Event) -> None:
        cpu = self.cpu
        try:
            self.value = self.fn(*self.args)
        except Exception as exc:  # failed once the work is paid for
            self.error = exc
        cost = cpu._bill()
        if cost > 0:
            cpu.busy_ms += cost
            env = cpu.env
            self.callbacks = _END  # the hold: env.timeout(cost)
            heappush(env._queue, (env._now + cost, NORMAL, next(env._eid), self))  # type: ignore[attr-defined]
        else:
            self._end()

    def _end(self) -> None:
        self.cpu.cores.release(self.req)
        if self.error is not None:
            self.done.fail(self.error)
        else:
            self.done.succeed(self.value)


_BEGIN = (_Job._begin,)
_END = (_Job._end,)


def _nothing() -> None:
    return None
