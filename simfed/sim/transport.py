"""Request/response over the simulated network, with Matrix error bodies.

``Transport.request`` sends a request message to the destination's registered
handler and returns a SimPy event that a process yields. Its value is always
either a ``Response`` (any status; errors carry a standard Matrix error body)
or a ``RequestFailed`` (``"timeout"``: no response within ``timeout_ms``,
which covers loss, partitions and a destination that is down;
``"connection"``: the requesting server itself is down, or TCP gave up on
the request or its response before the timeout). Both the request and
the response cross the network, so each suffers bandwidth, latency, loss and
partitions; the response's kind is the request's kind + ``"_response"`` and
it travels on the request's connection. A request that times out closes its
connection (as Synapse's client aborts it), so the next one opens a new one.

Handlers are plain functions ``handler(origin, kind, body) -> Response``. A
handler that needs simulated time (e.g. it fetches missing events before
answering ``/send``, as Synapse does) may instead return a SimPy event (for
instance ``env.process(...)``) whose value is the ``Response``; the response
leaves when that event fires. Raising ``MatrixError`` (directly, or inside
that event) answers with the error's status and body; any other exception is
a bug and propagates.

Inbound limits, checked when a request reaches its destination: a
``RateLimit`` (an optional hard cap on requests per window) and Synapse's
federation rate limiter (``limiter``, see :mod:`simfed.sim.defences`: per
origin, sleep beyond ``sleep_limit`` requests a window, refuse with 429
beyond ``reject_limit`` waiting, at most ``concurrent`` processed at once).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import simpy

from simfed.errors import SimfedError

from .deadlines import Deadlines
from .network import Network

if TYPE_CHECKING:
    from .defences import FederationRateLimiter

__all__ = [
    "M_BAD_JSON",
    "M_FORBIDDEN",
    "M_LIMIT_EXCEEDED",
    "M_NOT_FOUND",
    "M_TOO_LARGE",
    "M_UNAUTHORIZED",
    "M_UNKNOWN",
    "M_UNRECOGNIZED",
    "ERROR_SIZE_BYTES",
    "MatrixError",
    "RateLimit",
    "RequestFailed",
    "Response",
    "Transport",
    "Handler",
]

M_NOT_FOUND = "M_NOT_FOUND"
M_FORBIDDEN = "M_FORBIDDEN"
M_LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
M_UNKNOWN = "M_UNKNOWN"
M_BAD_JSON = "M_BAD_JSON"
M_TOO_LARGE = "M_TOO_LARGE"
M_UNAUTHORIZED = "M_UNAUTHORIZED"
M_UNRECOGNIZED = "M_UNRECOGNIZED"

#: The usual HTTP status for each errcode (M_UNKNOWN: whatever the server says).
DEFAULT_STATUS = {
    M_NOT_FOUND: 404,
    M_FORBIDDEN: 403,
    M_LIMIT_EXCEEDED: 429,
    M_UNKNOWN: 500,
    M_BAD_JSON: 400,
    M_TOO_LARGE: 413,
    M_UNAUTHORIZED: 401,
    M_UNRECOGNIZED: 404,
}

#: Bytes on the wire of an error response (headers + small JSON body).
ERROR_SIZE_BYTES = 200


class MatrixError(SimfedError):
    """An error response: ``errcode``, human ``error`` text, HTTP status.

    ``http_status`` defaults to the errcode's usual status (M_UNKNOWN: 500).
    """

    def __init__(
        self,
        errcode: str,
        error: str,
        http_status: int | None = None,
        *,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(f"{http_status or DEFAULT_STATUS.get(errcode, 500)} {errcode}: {error}")
        self.errcode = errcode
        self.error = error
        self.http_status = http_status if http_status is not None else DEFAULT_STATUS.get(errcode, 500)
        self.retry_after_ms = retry_after_ms

    def body(self) -> dict[str, Any]:
        """The standard error body ``{"errcode", "error", "retry_after_ms"?}``."""
        out: dict[str, Any] = {"errcode": self.errcode, "error": self.error}
        if self.retry_after_ms is not None:
            out["retry_after_ms"] = self.retry_after_ms
        return out

    def response(self, size_bytes: int = ERROR_SIZE_BYTES) -> Response:
        """This error as a ``Response``."""
        return Response(self.http_status, self.body(), size_bytes)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP-like response: status, body, and its size on the wire."""

    status: int
    body: Any
    size_bytes: int = 0

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """No response: ``reason`` is ``"timeout"`` or ``"connection"``."""

    reason: str
    ok = False


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A sliding-window hard cap on requests a destination accepts (not
    Synapse's limiter, which is :class:`~simfed.sim.defences.FederationRateLimiter`).

    Beyond ``max_requests`` requests in the last ``window_ms`` (counted per
    origin when ``per_origin``, else over all origins), the destination
    answers 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` = time until the
    oldest counted request leaves the window; refused requests are not
    counted. Kinds in ``exempt_kinds`` are never limited (Synapse exempts
    ``/send`` from its federation rate limiter).
    """

    max_requests: int
    window_ms: float = 1000.0
    per_origin: bool = True
    exempt_kinds: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_requests < 1 or not self.window_ms > 0:
            raise ValueError(
                f"RateLimit needs max_requests >= 1 and window_ms > 0, got {self.max_requests!r}, {self.window_ms!r}"
            )
        object.__setattr__(self, "exempt_kinds", frozenset(self.exempt_kinds))


Handler = Callable[[str, str, Any], "Response | simpy.Event"]


class _Call:
    """One outstanding request; settles ``result`` once (reply or timeout)."""

    __slots__ = ("src", "dst", "kind", "body", "result", "network")

    def __init__(self, src: str, dst: str, kind: str, body: Any, result: simpy.Event, network: Network) -> None:
        self.src = src
        self.dst = dst
        self.kind = kind
        self.body = body
        self.result = result
        self.network = network

    def pending(self) -> bool:
        """True until the request has its outcome."""
        return not self.result.triggered

    def settle(self, value: Response | RequestFailed) -> None:
        if not self.result.triggered:
            self.result.succeed(value)

    def on_connection_error(self) -> None:
        self.settle(RequestFailed("connection"))

    def expire(self, _event: Any) -> None:
        """The timeout: no response in time, the connection is closed."""
        if not self.result.triggered:
            self.settle(RequestFailed("timeout"))
            self.network.close_connection(self.src, self.dst)


class Transport:
    """Request/response between servers over a ``Network``.

    ``rate_limits`` maps a destination to its ``RateLimit``; ``rate_limit``
    applies to every destination not in that mapping. Both default to none.
    ``limiter`` (Synapse's federation rate limiter) applies after them.
    With ``internal_error_rate`` p > 0 (and ``rng``), a destination fails a
    request it received with probability p, answering 500 ``M_UNKNOWN``
    without handling it.
    """

    def __init__(
        self,
        env: simpy.Environment,
        network: Network,
        *,
        rate_limit: RateLimit | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        internal_error_rate: float = 0.0,
        rng: Any = None,
        limiter: FederationRateLimiter | None = None,
    ) -> None:
        if internal_error_rate > 0 and rng is None:
            raise ValueError("Transport: internal_error_rate > 0 needs rng")
        self.env = env
        self._error_rate = internal_error_rate
        self._rng = rng
        self.network = network
        self._handlers: dict[str, Handler] = {}
        self._default_limit = rate_limit
        self._limits = dict(rate_limits or {})
        self._windows: dict[Any, deque[float]] = {}
        self.limiter = limiter
        self._deadlines: dict[float, Deadlines] = {}

    def register(self, server: str, handler: Handler) -> None:
        """Install the handler that answers requests addressed to ``server``."""
        self._handlers[server] = handler

    def request(
        self,
        src: str,
        dst: str,
        kind: str,
        body: Any,
        size_bytes: int,
        *,
        timeout_ms: float,
    ) -> simpy.Event:
        """Send a request; the returned event's value is a Response or RequestFailed.

        The timeout runs from now; a response arriving after it is ignored
        (the request still reached the destination and had its effects).
        """
        env = self.env
        result = env.event()
        call = _Call(src, dst, kind, body, result, self.network)
        if not self.network.is_up(src):
            self.network.send(src, dst, size_bytes, call, self._on_request, kind=kind)
            result.succeed(RequestFailed("connection"))
            return result
        self.network.send(src, dst, size_bytes, call, self._on_request, kind=kind,
                          on_fail=call.on_connection_error)
        deadlines = self._deadlines.get(timeout_ms)
        if deadlines is None:
            deadlines = self._deadlines[timeout_ms] = Deadlines(env, timeout_ms)
        deadlines.add(call)  # as env.timeout(timeout_ms).callbacks.append(call.expire)
        return result

    def _rate_limited(self, call: _Call) -> Response | None:
        limit = self._limits.get(call.dst, self._default_limit)
        if limit is None or call.kind in limit.exempt_kinds:
            return None
        key = (call.dst, call.src) if limit.per_origin else call.dst
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque()
        now = self.env.now
        horizon = now - limit.window_ms
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit.max_requests:
            retry_after = max(1, int(-(-(window[0] + limit.window_ms - now) // 1)))
            err = MatrixError(M_LIMIT_EXCEEDED, "Too many requests", 429, retry_after_ms=retry_after)
            return err.response()
        window.append(now)
        return None

    def _on_request(self, call: _Call) -> None:
        limited = self._rate_limited(call)
        if limited is not None:
            self._respond(call, limited)
            return
        lim = self.limiter
        if lim is None or not lim.applies(call.dst, call.kind):
            self._handle(call, None)
            return
        go = lim.enter(call.dst, call.src)
        if go is None:
            err = MatrixError(M_LIMIT_EXCEEDED, "Too many requests", 429, retry_after_ms=lim.settings.retry_after_ms)
            self._respond(call, err.response())
            return
        go.callbacks.append(lambda _e: self._handle(call, lim))

    def _handle(self, call: _Call, lim: FederationRateLimiter | None) -> None:
        """Answer a request admitted by the limits (``lim``: exit it when answered)."""
        if lim is not None and call.result.triggered:
            lim.exit(call.dst, call.src)  # its requester gave up while it waited
            return
        out = self._answer(call)
        if isinstance(out, simpy.Event):
            out.callbacks.append(lambda ev: self._on_deferred(call, ev, lim))
        else:
            if lim is not None:
                lim.exit(call.dst, call.src)
            self._respond(call, out)

    def _answer(self, call: _Call) -> Response | simpy.Event:
        if self._error_rate > 0 and self._rng.random() < self._error_rate:
            return MatrixError(M_UNKNOWN, "Internal server error", 500).response()
        handler = self._handlers.get(call.dst)
        if handler is None:
            return MatrixError(M_UNRECOGNIZED, f"{call.dst} serves no {call.kind}").response()
        try:
            return handler(call.src, call.kind, call.body)
        except MatrixError as err:
            return err.response()

    def _on_deferred(self, call: _Call, event: simpy.Event, lim: FederationRateLimiter | None = None) -> None:
        if lim is not None:
            lim.exit(call.dst, call.src)
        if event.ok:
            self._respond(call, event.value)
        elif isinstance(event.value, MatrixError):
            event.defused = True
            self._respond(call, event.value.response())

    def _respond(self, call: _Call, response: Response) -> None:
        if not isinstance(response, Response):
            raise TypeError(f"handler for {call.kind!r} at {call.dst} returned {type(response).__name__}, not Response")
        self.network.send(
            call.dst, call.src, response.size_bytes, response, call.settle, kind=call.kind + "_response",
            reply=True, on_fail=call.on_connection_error,
        )
