"""The federation sender: Synapse's per-destination transaction queue.

One ``FederationSender`` per homeserver. ``send_pdu``/``send_edu`` queue data
for a destination; a transmission loop per destination (a SimPy process that
runs only while there is data and exits when the queue is empty) sends at
most one transaction at a time, of at most 50 PDUs and 100 EDUs, as a
``"transaction"`` request through the ``Transport``. The receiving homeserver
answers it with the handler it registered on the transport (the Matrix body
is ``{"txn_id", "origin", "origin_server_ts", "pdus", "edus"}``; the PDUs and
EDUs are the payload objects handed to ``send_pdu``/``send_edu``; answer
``Response(200, {"pdus": {...}}, size)``).

What follows Synapse (``federation/sender/per_destination_queue.py``,
``http/matrixfederationclient.py``, ``util/retryutils.py``; protocol.md §5.2):

- PDUs leave the queue only when their transaction gets a 200. EDUs are
  best effort: they leave the queue when put in a transaction (retried with
  it inside one attempt, lost if the attempt fails). An EDU sent with a
  ``key`` replaces a queued, unsent EDU with the same key (typing).
- One attempt retries the same transaction ("long" mode): up to
  ``max_retries`` retries after a timeout, a connection failure, a 5xx or a
  429, waiting ``min(4**k s, 60 s) * U(0.8, 1.4)`` before retry k. A 429's
  ``retry_after_ms`` is ignored, as Synapse's client ignores it
  (``matrixfederationclient.py`` retries a 429 as a 5xx).
- When the attempt finally fails with a timeout, connection failure, 5xx,
  401 or 429, the destination's backoff grows: first ``10 min``, then
  ``interval * 2 * U(0.8, 1.4)``, capped at 7 days; a 200 resets it. Other
  4xx leave it unchanged. The loop does not sleep through a backoff: it exits,
  and is woken by new data, by ``on_contact`` (any request from that
  destination: backoff reset) or by the catch-up sweep (every minute, wakes
  stalled destinations whose backoff has ended, 5 s apart).
- Catch-up: with ``catchup_after_any_failure`` (Synapse >= 1.21), a failed
  attempt throws the PDU queue away and puts the destination in catch-up;
  otherwise that happens only once the backoff exceeds
  ``catchup_threshold_ms`` (1 h). Above that threshold, queued EDUs are
  discarded too. In catch-up, new PDUs are not queued (their room is only
  marked); when the destination is next tried, the sender calls
  ``catchup_provider(destination, room_ids)`` for the rooms with undelivered
  PDUs, which returns ``[(room_id, [pdu, ...]), ...]`` (the homeserver's
  newest events in each room; it may ask ``catchup_hints`` for the last PDU
  the destination accepted and the newest queued per room), and sends
  those, up to 50 PDUs per transaction, then resumes normal sending.
- ``crash()`` loses every in-memory queue and abandons in-flight work. What
  Synapse keeps in its database survives: per destination, the rooms with
  undelivered PDUs and the backoff. ``restart()`` puts every destination with
  such rooms in catch-up and sweeps them 15 s later.

Sizes: a PDU's or EDU's size on the wire is the ``size_bytes`` argument if
given, else its ``size_bytes`` attribute (EDUs fall back to
``config.edu_size_bytes``); a transaction's is the sum plus
``config.txn_overhead_bytes``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Generator, Mapping, Protocol, Sequence

import numpy as np
import simpy

from .detached import detached
from .transport import RequestFailed, Response, Transport

__all__ = [
    "TXN_KIND",
    "FederationConfig",
    "FederationSender",
    "CatchupProvider",
    "SenderObserver",
]

#: The request kind of ``PUT /send/{txnId}``.
TXN_KIND = "transaction"

CatchupProvider = Callable[[str, Sequence[str]], Sequence[tuple[str, Sequence[Any]]]]


class SenderObserver(Protocol):
    """Receives the sender's decisions (transactions, backoff, catch-up)."""

    def sender_event(self, t: float, origin: str, destination: str, what: str, info: Mapping[str, Any]) -> None:
        """``what``: txn_ok, txn_failed, backoff, catchup_start, catchup_done, crash."""
        ...


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """Every constant of the sender; defaults are Synapse's (>= 1.90)."""

    max_pdus_per_txn: int = 50
    max_edus_per_txn: int = 100
    request_timeout_ms: float = 60_000.0
    max_retries: int = 10
    retry_base_s: float = 4.0
    retry_cap_ms: float = 60_000.0
    retry_jitter: tuple[float, float] = (0.8, 1.4)
    backoff_initial_ms: float = 10 * 60_000.0
    backoff_multiplier: float = 2.0
    backoff_jitter: tuple[float, float] = (0.8, 1.4)
    backoff_max_ms: float | None = 7 * 24 * 3_600_000.0
    catchup_threshold_ms: float = 3_600_000.0
    catchup_after_any_failure: bool = True
    catchup_sweep_ms: float = 60_000.0
    catchup_wake_spacing_ms: float = 5_000.0
    catchup_startup_delay_ms: float = 15_000.0
    txn_overhead_bytes: int = 250
    edu_size_bytes: int = 200

    def __post_init__(self) -> None:
        if self.max_pdus_per_txn < 1 or self.max_edus_per_txn < 0 or self.max_retries < 0:
            raise ValueError("FederationConfig: max_pdus_per_txn >= 1, max_edus_per_txn >= 0, max_retries >= 0")
        for name in ("retry_jitter", "backoff_jitter"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"FederationConfig.{name} must be (low, high) with 0 < low <= high")

    @classmethod
    def pre_1_90(cls, **overrides: Any) -> FederationConfig:
        """Synapse before 1.90: backoff multiplier 5 and no cap."""
        return cls(**{"backoff_multiplier": 5.0, "backoff_max_ms": None, **overrides})

    def retry_delay_ms(self, k: int, u: float) -> float:
        """Wait before retry ``k`` (1-based) given a U(0, 1) draw ``u``."""
        lo, hi = self.retry_jitter
        return min(self.retry_base_s**k * 1000.0, self.retry_cap_ms) * (lo + (hi - lo) * u)

    def next_backoff_ms(self, interval_ms: float, u: float) -> float:
        """The backoff after one more failure, given the current one and a U(0, 1) draw."""
        if interval_ms <= 0:
            return self.backoff_initial_ms
        lo, hi = self.backoff_jitter
        nxt = interval_ms * self.backoff_multiplier * (lo + (hi - lo) * u)
        return nxt if self.backoff_max_ms is None else min(nxt, self.backoff_max_ms)


def _retryable(res: Response | RequestFailed) -> bool:
    return isinstance(res, RequestFailed) or res.status >= 500 or res.status == 429


def _bumps_backoff(res: Response | RequestFailed) -> bool:
    return isinstance(res, RequestFailed) or res.status >= 500 or res.status in (401, 429)


#: nothing undelivered (read-only: a destination gets a dict of its own for
#: its first undelivered room; an emptied dict kept 64-184 bytes per link)
_NOTHING: MappingProxyType[str, int] = MappingProxyType({})


@dataclass(slots=True)
class _Persisted:
    """What the homeserver's database keeps per destination (survives crash)."""

    #: per room with undelivered PDUs, the generation of the newest
    dirty: "dict[str, int] | MappingProxyType[str, int]" = field(default_factory=lambda: _NOTHING)
    #: per room, the newest PDU queued for the destination: ``(room_id,
    #: pdu)`` while there is one room (no dict per link), else a dict
    newest: "tuple[str, Any] | dict[str, Any] | None" = None
    #: the last PDU of the last transaction the destination accepted
    last_sent: Any = None
    retry_interval_ms: float = 0.0
    retry_until: float = 0.0
    failed_attempts: int = 0


#: no EDUs queued (read-only: a queue gets a dict of its own for its first EDU)
_NO_EDUS: MappingProxyType[Any, tuple[Any, int]] = MappingProxyType({})


@dataclass(slots=True)
class _Queue:
    """In-memory state per destination (lost on crash)."""

    #: the PDUs waiting, oldest first: an empty tuple while there are none
    #: (an empty deque is ~600 bytes, and a server has a queue per server)
    pdus: "deque[tuple[Any, str, int, int]] | tuple[()]" = ()
    #: the EDUs waiting by key: the shared empty mapping while there are none
    edus: "dict[Any, tuple[Any, int]] | MappingProxyType[Any, tuple[Any, int]]" = field(
        default_factory=lambda: _NO_EDUS)
    running: bool = False
    catching_up: bool = False


class FederationSender:
    """Per-destination transaction queues of one homeserver (``origin``)."""

    def __init__(
        self,
        env: simpy.Environment,
        origin: str,
        transport: Transport,
        rng: np.random.Generator,
        config: FederationConfig | None = None,
        *,
        catchup_provider: CatchupProvider | None = None,
        observer: SenderObserver | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.env = env
        self.origin = origin
        self.transport = transport
        self.config = config if config is not None else FederationConfig()
        self._rng = rng
        self._provider = catchup_provider
        self._observer = observer
        self._clock = clock if clock is not None else (lambda: env.now)
        self._queues: dict[str, _Queue] = {}
        self._persisted: dict[str, _Persisted] = {}
        self._epoch = 0
        self._crashed = False
        self._sweeping = False
        self._txn_counter = 0
        self._gen = 0
        self._edu_counter = 0

    # ----- public API -------------------------------------------------

    def send_pdu(self, destination: str, pdu: Any, room_id: str, *, size_bytes: int | None = None) -> None:
        """Queue a PDU of ``room_id`` for ``destination`` and wake its loop."""
        size = _size_of(pdu, size_bytes, None)
        self._gen += 1
        p = self._persist(destination)
        dirty = p.dirty
        if dirty is _NOTHING:
            dirty = p.dirty = {}
        dirty.pop(room_id, None)  # type: ignore[union-attr]
        dirty[room_id] = self._gen  # type: ignore[index]
        newest = p.newest
        if newest is None or (type(newest) is tuple and newest[0] == room_id):
            p.newest = (room_id, pdu)
        else:
            if type(newest) is tuple:
                newest = p.newest = {newest[0]: newest[1]}
            newest[room_id] = pdu  # type: ignore[index]
        if self._crashed:
            return
        q = self._queue(destination)
        # While catching up, catch-up sends what is newest; but a destination
        # never reached has nothing to catch up from, so its PDUs are queued
        # (Synapse's send_pdu: queue unless catching up with a known last
        # successful stream ordering).
        if not q.catching_up or p.last_sent is None:
            if not q.pdus:
                q.pdus = deque()
            q.pdus.append((pdu, room_id, size, self._gen))
        self._wake(destination)

    def send_edu(self, destination: str, edu: Any, *, key: Any = None, size_bytes: int | None = None) -> None:
        """Queue an EDU; one with the same ``key`` replaces an unsent older one.

        ``edu`` may be a callable: it is called when its transaction is built
        and what it returns is sent, so fields that depend on the sending time
        (presence's ``last_active_ago``) are filled in then, as Synapse does."""
        if self._crashed:
            return
        size = _size_of(edu, size_bytes, self.config.edu_size_bytes)
        if key is None:
            self._edu_counter += 1
            key = ("#", self._edu_counter)
        q = self._queue(destination)
        if q.edus is _NO_EDUS:
            q.edus = {}
        q.edus[key] = (edu, size)  # type: ignore[index]
        self._wake(destination)

    def on_contact(self, destination: str) -> None:
        """The destination contacted us: reset its backoff and wake its queue."""
        p = self._persisted.get(destination)
        if p is not None and p.retry_interval_ms:
            p.retry_interval_ms = 0.0
            p.retry_until = 0.0
            self._emit(destination, "backoff", {"interval_ms": 0.0, "reason": "contact"})
        if not self._crashed and destination in self._queues:
            self._wake(destination)

    def crash(self) -> None:
        """Lose every in-memory queue and abandon in-flight transactions."""
        self._epoch += 1
        self._crashed = True
        self._sweeping = False
        self._queues = {}
        self._emit("", "crash", {})

    def restart(self) -> None:
        """Come back after ``crash``: destinations with undelivered PDUs enter catch-up."""
        if not self._crashed:
            return
        self._crashed = False
        for destination, p in self._persisted.items():
            if p.dirty:
                self._queue(destination).catching_up = True
        if any(q.catching_up for q in self._queues.values()):
            self._start_sweep(self.config.catchup_startup_delay_ms)

    def catchup_hints(self, destination: str) -> tuple[Any, dict[str, Any]]:
        """What a catch-up provider may use: the last PDU the destination
        accepted (None if none ever was) and, per room, the newest PDU queued
        for it (Synapse keeps both in its database)."""
        p = self._persisted.get(destination)
        if p is None:
            return None, {}
        newest = p.newest
        if newest is None:
            return p.last_sent, {}
        return p.last_sent, {newest[0]: newest[1]} if type(newest) is tuple else dict(newest)

    def is_backing_off(self, destination: str) -> bool:
        """True while the destination's backoff has not ended."""
        p = self._persisted.get(destination)
        return p is not None and self.env.now < p.retry_until

    def edu_queued(self, destination: str, key: Any) -> bool:
        """True while the EDU queued under ``key`` waits (not yet put in a transaction)."""
        q = self._queues.get(destination)
        return q is not None and key in q.edus

    def failed_attempts(self, destination: str) -> int:
        """Transaction attempts to the destination that failed since its last success."""
        p = self._persisted.get(destination)
        return p.failed_attempts if p is not None else 0

    def retry_interval_ms(self, destination: str) -> float:
        """The destination's current backoff interval (0 when healthy)."""
        p = self._persisted.get(destination)
        return p.retry_interval_ms if p is not None else 0.0

    def is_catching_up(self, destination: str) -> bool:
        """True while the destination is in catch-up mode."""
        q = self._queues.get(destination)
        return q is not None and q.catching_up

    def pending_pdus(self, destination: str) -> int:
        """Number of PDUs queued (including any in flight) for the destination."""
        q = self._queues.get(destination)
        return len(q.pdus) if q is not None else 0

    def pending_edus(self, destination: str) -> int:
        """Number of EDUs queued (not yet put in a transaction) for the destination."""
        q = self._queues.get(destination)
        return len(q.edus) if q is not None else 0

    def undelivered_rooms(self, destination: str) -> tuple[str, ...]:
        """Rooms with PDUs not yet acknowledged by the destination (persisted)."""
        p = self._persisted.get(destination)
        return tuple(p.dirty) if p is not None else ()

    def is_sending(self, destination: str) -> bool:
        """True while the destination's transmission loop runs."""
        q = self._queues.get(destination)
        return q is not None and q.running

    # ----- internals ---------------------------------------------------

    def _queue(self, destination: str) -> _Queue:
        q = self._queues.get(destination)
        if q is None:
            q = self._queues[destination] = _Queue()
        return q

    def _persist(self, destination: str) -> _Persisted:
        p = self._persisted.get(destination)
        if p is None:
            p = self._persisted[destination] = _Persisted()
        return p

    def _emit(self, destination: str, what: str, info: Mapping[str, Any]) -> None:
        if self._observer is not None:
            self._observer.sender_event(self.env.now, self.origin, destination, what, info)

    def _wake(self, destination: str) -> None:
        q = self._queue(destination)
        if q.running:
            return
        if not (q.pdus or q.edus or q.catching_up):
            return
        if self.is_backing_off(destination):
            self._not_retrying(destination)
            return
        q.running = True
        detached(self.env, self._loop(destination, q, self._epoch))

    def _not_retrying(self, destination: str) -> None:
        """A send was due while backing off (Synapse's NotRetryingDestination)."""
        q = self._queue(destination)
        p = self._persist(destination)
        over = p.retry_interval_ms > self.config.catchup_threshold_ms
        if over:
            q.edus = _NO_EDUS
        if over or self.config.catchup_after_any_failure:
            self._start_catching_up(destination, q)
        self._start_sweep(self.config.catchup_sweep_ms)

    def _start_catching_up(self, destination: str, q: _Queue) -> None:
        q.pdus = ()
        if not q.catching_up:
            q.catching_up = True
            self._emit(destination, "catchup_start", {})

    def _start_sweep(self, first_delay_ms: float) -> None:
        if not self._sweeping:
            self._sweeping = True
            detached(self.env, self._sweep(first_delay_ms, self._epoch))

    def _stalled(self, q: _Queue) -> bool:
        return not q.running and bool(q.pdus or q.edus or q.catching_up)

    def _sweep(self, delay_ms: float, epoch: int) -> Generator[simpy.Event, Any, None]:
        """Wake stalled destinations whose backoff has ended, while any are stalled."""
        while True:
            yield self.env.timeout(delay_ms)
            delay_ms = self.config.catchup_sweep_ms
            if epoch != self._epoch:
                return
            stalled = [d for d, q in self._queues.items() if self._stalled(q)]
            if not stalled:
                self._sweeping = False
                return
            for destination in stalled:
                q = self._queues[destination]
                if not self._stalled(q) or self.is_backing_off(destination):
                    continue
                self._wake(destination)
                yield self.env.timeout(self.config.catchup_wake_spacing_ms)
                if epoch != self._epoch:
                    return

    def _loop(self, destination: str, q: _Queue, epoch: int) -> Generator[simpy.Event, Any, None]:
        """The transmission loop: runs while there is data, one transaction at a time."""
        cfg = self.config
        try:
            while True:
                if self.is_backing_off(destination):
                    self._not_retrying(destination)
                    return
                if q.catching_up:
                    done = yield from self._catch_up(destination, q, epoch)
                    if not done:
                        return
                    continue
                if not q.pdus and not q.edus:
                    return
                n = min(len(q.pdus), cfg.max_pdus_per_txn)
                if n == 1:
                    batch = [q.pdus[0]]
                    pdus, pdu_bytes = [batch[0][0]], batch[0][2]
                else:
                    batch = [q.pdus[i] for i in range(n)]
                    pdus, pdu_bytes = [b[0] for b in batch], sum(b[2] for b in batch)
                edus = self._pop_edus(q) if q.edus else []
                ok = yield from self._attempt(destination, q, pdus, edus, pdu_bytes, epoch)
                if not ok:
                    return
                p = self._persist(destination)
                dirty = p.dirty
                for _pdu, room_id, _size, gen in batch:
                    q.pdus.popleft()
                    if dirty.get(room_id) == gen:
                        del dirty[room_id]  # type: ignore[attr-defined]
                if not dirty:
                    p.dirty = _NOTHING  # an emptied dict keeps its table
                if not q.pdus:
                    q.pdus = ()
        finally:
            q.running = False

    def _pop_edus(self, q: _Queue) -> list[tuple[Any, int]]:
        n = min(len(q.edus), self.config.max_edus_per_txn)
        keys = [k for _, k in zip(range(n), q.edus)]
        edus = q.edus
        out = [edus.pop(k) for k in keys]  # type: ignore[union-attr]
        if not edus:
            q.edus = _NO_EDUS
        return out

    def _catch_up(self, destination: str, q: _Queue, epoch: int) -> Generator[simpy.Event, Any, bool]:
        """Send the provider's newest PDUs per undelivered room; True when caught up."""
        p = self._persist(destination)
        cap = self.config.max_pdus_per_txn
        while True:
            if not p.dirty or self._provider is None:
                p.dirty = _NOTHING
                q.catching_up = False
                self._emit(destination, "catchup_done", {})
                return True
            snapshot = dict(p.dirty)
            entries: list[tuple[Any, str, int]] = []
            last_index: dict[str, int] = {}
            for room_id, pdus in self._provider(destination, tuple(snapshot)):
                for pdu in pdus:
                    entries.append((pdu, room_id, _size_of(pdu, None, None)))
                last_index[room_id] = len(entries) - 1
            for room_id in snapshot:
                if last_index.get(room_id, -1) < 0 and p.dirty.get(room_id) == snapshot[room_id]:
                    del p.dirty[room_id]
            for start in range(0, len(entries), cap):
                chunk = entries[start:start + cap]
                ok = yield from self._attempt(destination, q, [e[0] for e in chunk], [],
                                              sum(e[2] for e in chunk), epoch, catchup=True)
                if not ok:
                    return False
                end = start + len(chunk)
                for room_id, idx in last_index.items():
                    if start <= idx < end and room_id in snapshot and p.dirty.get(room_id) == snapshot[room_id]:
                        del p.dirty[room_id]

    def _attempt(
        self,
        destination: str,
        q: _Queue,
        pdus: list[Any],
        edus: list[tuple[Any, int]],
        pdu_bytes: int,
        epoch: int,
        *,
        catchup: bool = False,
    ) -> Generator[simpy.Event, Any, bool]:
        """One attempt at one transaction with long-mode retries; True on 200.

        After a crash (epoch changed) it returns False without touching state.
        """
        cfg = self.config
        env = self.env
        self._txn_counter += 1
        txn_id = f"{self.origin}-{self._txn_counter}"
        body = {
            "txn_id": txn_id,
            "origin": self.origin,
            "origin_server_ts": int(self._clock()),
            "pdus": pdus,
            "edus": [e[0]() if callable(e[0]) else e[0] for e in edus],
        }
        size = cfg.txn_overhead_bytes + pdu_bytes + sum(e[1] for e in edus)
        res: Response | RequestFailed = _NOT_SENT
        for k in range(cfg.max_retries + 1):
            if k:
                yield env.timeout(cfg.retry_delay_ms(k, self._rng.random()))
                if epoch != self._epoch:
                    return False
            res = yield self.transport.request(
                self.origin, destination, TXN_KIND, body, size, timeout_ms=cfg.request_timeout_ms
            )
            if epoch != self._epoch:
                return False
            if isinstance(res, Response) and res.status == 200:
                p = self._persist(destination)
                p.retry_interval_ms = 0.0
                p.retry_until = 0.0
                p.failed_attempts = 0
                if pdus:
                    p.last_sent = pdus[-1]
                if self._observer is not None:
                    self._emit(destination, "txn_ok", {"txn_id": txn_id, "pdus": len(pdus), "edus": len(edus),
                                                       "tries": k + 1, "catchup": catchup})
                return True
            self._persist(destination).failed_attempts += 1
            if not _retryable(res):
                break
        reason = res.reason if isinstance(res, RequestFailed) else res.status
        self._emit(destination, "txn_failed", {"txn_id": txn_id, "pdus": len(pdus), "edus": len(edus),
                                               "reason": reason, "catchup": catchup})
        p = self._persist(destination)
        if _bumps_backoff(res):
            p.retry_interval_ms = cfg.next_backoff_ms(p.retry_interval_ms, self._rng.random())
            p.retry_until = env.now + p.retry_interval_ms
            self._emit(destination, "backoff", {"interval_ms": p.retry_interval_ms, "reason": reason})
        over = p.retry_interval_ms > cfg.catchup_threshold_ms
        if over:
            q.edus = _NO_EDUS
        if cfg.catchup_after_any_failure or over:
            self._start_catching_up(destination, q)
        self._start_sweep(cfg.catchup_sweep_ms)
        return False


#: what an attempt that sent nothing got (its loop runs at least once)
_NOT_SENT = RequestFailed("connection")


def _size_of(item: Any, size_bytes: int | None, default: int | None) -> int:
    if size_bytes is not None:
        return int(size_bytes)
    size = getattr(item, "size_bytes", default)
    if size is None:
        raise TypeError(
            f"cannot tell the size of {type(item).__name__}: pass size_bytes= or give it a size_bytes attribute"
        )
    return int(size)
