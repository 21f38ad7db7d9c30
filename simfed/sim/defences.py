"""Synapse's inbound federation rate limiter, in simulated time.

Modelled on ``synapse/util/ratelimitutils.py`` (``FederationRateLimiter``,
``_PerHostRatelimiter``) with the ``rc_federation`` defaults of
``synapse/config/ratelimiting.py``. One limiter per (destination, origin):

- a request arriving when more than ``reject_limit`` requests of that origin
  wait (asleep or queued) is refused at once with 429 ``M_LIMIT_EXCEEDED``
  and ``retry_after_ms = window_ms / sleep_limit`` (refused requests are
  not counted in the window);
- otherwise its arrival time is counted; if more than ``sleep_limit``
  counted requests arrived in the last ``window_ms``, it first sleeps
  ``sleep_delay_ms``;
- then it waits for one of ``concurrent`` processing slots (FIFO);
- when it finishes (answered, or found abandoned by its requester),
  the oldest queued request of that origin gets the slot. As Synapse's
  ``_on_exit`` (which runs for refused requests too), a refusal also
  starts the oldest queued request.

A request whose requester gave up (timed out) while it slept or queued is
not processed when its turn comes (Synapse: ``request._disconnected``).
``/send`` is exempt (Synapse's ``FederationSendServlet.RATELIMIT = False``:
transactions are limited by processing one per origin at a time instead).

Counters per destination (through ``on_count``): ``rate_limited`` (refused),
``rate_limit_slept``, ``rate_limit_queued``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import simpy

__all__ = [
    "DEFENCE_COUNTERS",
    "FederationRateLimiter",
    "RateLimitSettings",
    "defence_totals",
]

#: Counters of the defences, totalled over servers in ``summary.json`` ``defences``.
DEFENCE_COUNTERS = (
    "rate_limited",
    "rate_limit_slept",
    "rate_limit_queued",
    "acl_denied",
    "acl_refused_requests",
    "txn_concurrent_refused",
    "txn_too_large",
    "linearizer_waits",
)


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Synapse's ``rc_federation`` (defaults: Synapse's)."""

    window_ms: float = 1000.0
    sleep_limit: int = 10
    sleep_delay_ms: float = 500.0
    reject_limit: int = 50
    concurrent: int = 3
    exempt_kinds: frozenset[str] = frozenset({"transaction"})

    def __post_init__(self) -> None:
        if not self.window_ms > 0 or self.sleep_limit < 1 or self.sleep_delay_ms < 0 \
                or self.reject_limit < 0 or self.concurrent < 1:
            raise ValueError(
                "RateLimitSettings needs window_ms > 0, sleep_limit >= 1, sleep_delay_ms >= 0, "
                f"reject_limit >= 0, concurrent >= 1; got {self!r}")
        object.__setattr__(self, "exempt_kinds", frozenset(self.exempt_kinds))

    @property
    def retry_after_ms(self) -> int:
        """The ``retry_after_ms`` of a refusal (Synapse: ``window_size / sleep_limit``)."""
        return int(self.window_ms / self.sleep_limit)


@dataclass(slots=True)
class _PerOrigin:
    times: deque[float] = field(default_factory=deque)
    sleeping: int = 0
    ready: deque[simpy.Event] = field(default_factory=deque)
    processing: int = 0


class FederationRateLimiter:
    """Per-origin limits on the requests each of ``destinations`` answers."""

    def __init__(
        self,
        env: simpy.Environment,
        settings: RateLimitSettings,
        destinations: Iterable[str] | None = None,
        *,
        on_count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.env = env
        self.settings = settings
        self._destinations = None if destinations is None else frozenset(destinations)
        self._on_count = on_count
        self._hosts: dict[tuple[str, str], _PerOrigin] = {}

    def applies(self, dst: str, kind: str) -> bool:
        """True if requests of ``kind`` to ``dst`` go through the limiter."""
        if kind in self.settings.exempt_kinds:
            return False
        return self._destinations is None or dst in self._destinations

    def _count(self, dst: str, what: str) -> None:
        if self._on_count is not None:
            self._on_count(dst, what)

    def enter(self, dst: str, origin: str) -> simpy.Event | None:
        """Admit a request: None if refused (429), else an event that fires
        when it may be processed. Every admitted request must ``exit``."""
        s = self.settings
        h = self._hosts.get((dst, origin))
        if h is None:
            h = self._hosts[(dst, origin)] = _PerOrigin()
        now = self.env.now
        while h.times and now - h.times[0] >= s.window_ms:
            h.times.popleft()
        if len(h.ready) + h.sleeping > s.reject_limit:
            self._count(dst, "rate_limited")
            self._start_next(h)
            return None
        h.times.append(now)
        go = self.env.event()
        if len(h.times) > s.sleep_limit:
            self._count(dst, "rate_limit_slept")
            h.sleeping += 1

            def woke(_e: Any) -> None:
                h.sleeping -= 1
                self._queue(dst, h, go)

            self.env.timeout(s.sleep_delay_ms).callbacks.append(woke)
        else:
            self._queue(dst, h, go)
        return go

    def _queue(self, dst: str, h: _PerOrigin, go: simpy.Event) -> None:
        if h.processing >= self.settings.concurrent:
            self._count(dst, "rate_limit_queued")
            h.ready.append(go)
        else:
            h.processing += 1
            go.succeed()

    def _start_next(self, h: _PerOrigin) -> None:
        if h.ready:
            h.processing += 1
            h.ready.popleft().succeed()

    def exit(self, dst: str, origin: str) -> None:
        """A request admitted by ``enter`` finished: free its slot."""
        h = self._hosts[(dst, origin)]
        h.processing -= 1
        self._start_next(h)


def defence_totals(counters: Mapping[str, Mapping[str, int]], servers: Iterable[str]) -> dict[str, int]:
    """Defence counters (``DEFENCE_COUNTERS`` and every ``bad_answer_*``)
    summed over ``servers``: what their defences refused or delayed."""
    out = dict.fromkeys(DEFENCE_COUNTERS, 0)
    for name in servers:
        for key, n in counters.get(name, {}).items():
            if key in out or key.startswith("bad_answer_"):
                out[key] = out.get(key, 0) + int(n)
    return dict(sorted(out.items()))
