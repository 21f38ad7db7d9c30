"""Packet loss under TCP: what a lost packet costs an HTTP message.

Federation is HTTPS over TCP, so a lost packet is retransmitted; it does not
make the request vanish. ``TcpModel.transfer`` turns the packet-loss model of
a directed link (``loss.py``: Bernoulli or Gilbert-Elliott, asked once per
packet) into the time a request or response message loses to handshakes and
retransmissions, or into a connection error when TCP gives up.

The model, per message of ``size_bytes`` from ``src`` to ``dst``
-----------------------------------------------------------------
Connections (``keepalive = True``, Synapse's behaviour). A request travels on
the requester's connection to the destination; its response on the same
connection. Synapse's federation client keeps HTTP connections alive per
destination in a Twisted ``HTTPConnectionPool`` and closes them after
``cachedConnectionTimeout = 2 * 60`` s idle; a request that times out aborts
its connection. So a request opens a connection when it has none to that
destination, when the last one was idle longer than ``idle_timeout_ms``, when
the last request on it failed, or when either end crashed since. With
``keepalive = False`` every request opens one. A response never opens one.
One logical connection per (requester, destination) pair: concurrent
requests share its warm/cold status.

Opening a connection (Linux client):

- SYN exchange: an attempt succeeds when neither the SYN (src -> dst) nor the
  SYN-ACK (dst -> src) is lost; it costs one RTT. Each failed attempt costs
  the SYN retransmission timer, ``syn_rto_ms`` (1 s, Linux
  ``TCP_TIMEOUT_INIT``, RFC 6298 section 2.1) doubling per attempt: 1 s, 2 s,
  4 s, ... After ``syn_retries`` retransmissions (Linux ``tcp_syn_retries``
  = 6) are lost the connect fails: 1+2+...+64 = 127 s.
- TLS: ``tls_rtts`` more round trips (1: TLS 1.3; 2: TLS 1.2). Each round
  trip carries one segment each way, recovered as a data segment below.

Data. The message is ``n = max(1, ceil(size_bytes / mss))`` segments
(``mss`` = 1460 bytes, Ethernet MTU 1500 minus IPv4 and TCP headers). Each
segment is sent, and while it is lost it is retransmitted after a
retransmission timeout that starts at ``RTO`` and doubles on each
consecutive loss of the same segment (exponential backoff, RFC 6298 section
5.5), capped at ``rto_max_ms`` (Linux ``TCP_RTO_MAX`` = 120 s). After
``data_retries`` retransmissions (Linux ``tcp_retries2`` = 15) are lost the
connection fails; with a 200 ms RTO that takes 0.2 x (2^10 - 1) + 6 x 120 =
924.6 s, so in practice the 60 s federation request timeout (in
``transport.py``) fires first. ``RTO`` comes from the link's round-trip time
R = mean one-way latency there and back:

- ``rto = "linux"`` (default): ``R + rto_min_ms``. Linux sets
  RTO = SRTT + RTTVAR with RTTVAR at least ``TCP_RTO_MIN`` = 200 ms
  (``tcp_rtt_estimator``/``__tcp_set_rto``); on a link whose RTT varies
  little that is R + 200 ms.
- ``rto = "rfc6298"``: ``max(rto_min_ms, 3 R)``, RFC 6298 section 2.2 after
  the first RTT sample (SRTT = R, RTTVAR = R / 2, RTO = SRTT + 4 RTTVAR); RFC
  6298 itself asks for ``rto_min_ms`` = 1 s.

The delays of the segments add up, in segment order (in-order delivery), and
are added to the message's one-way latency; a connection opened for the
message adds its handshake first. Simplifications, all of which make the
added delay an upper bound: no fast retransmit or RACK/tail-loss probes (every
loss is recovered by the RTO), recoveries of segments in one flight do not
overlap, and lost ACKs (cumulative, so rarely harmful) are not modelled. The
congestion window is not modelled either, except through the optional
throughput cap below.

Throughput cap (``mathis = True``; off by default). Mathis, Semke, Mahdavi
and Ott (1997), "The macroscopic behavior of the TCP congestion avoidance
algorithm": a long-lived flow with loss rate p gets at most
``MSS / RTT * C / sqrt(p)`` with C = sqrt(3/2). The message's transfer then
takes at least ``size_bytes`` at that rate; the excess over its
serialization on the sender's link is added. It describes bulk transfers, so
it overstates the cost for the short messages of federation.

Closed form (Bernoulli packet loss p, warm connection, no caps reached)
--------------------------------------------------------------------
A segment is lost k times with probability ``p^k (1 - p)`` and then waits
``RTO (1 + 2 + ... + 2^(k-1)) = RTO (2^k - 1)``, so its mean added delay is

    E[D_seg] = RTO * sum_k p^k (1 - p) (2^k - 1) = RTO * p / (1 - 2p)   (p < 1/2)

and a message of n segments waits ``n * RTO * p / (1 - 2p)`` on average
(5 % loss, RTT 200 ms, one segment: 400 ms x 0.0556 = 22 ms). Its mean
number of retransmissions is ``n * p / (1 - p)``. ``expected_segment_delay_ms``
computes the exact finite sum with the RTO cap and the retry limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .loss import BernoulliLoss, GilbertElliottLoss, LossModel, NoLoss, WindowedLoss

__all__ = ["TcpParams", "Transfer", "TcpModel", "expected_segment_delay_ms", "loss_rate", "MATHIS_C"]

#: The constant of Mathis et al. (1997) for periodic loss and delayed ACKs off.
MATHIS_C = math.sqrt(1.5)


@dataclass(frozen=True, slots=True)
class TcpParams:
    """The constants of the TCP model; defaults are Linux's and Synapse's."""

    mss: int = 1460
    rto: str = "linux"
    rto_min_ms: float = 200.0
    rto_max_ms: float = 120_000.0
    syn_rto_ms: float = 1_000.0
    syn_retries: int = 6
    data_retries: int = 15
    tls_rtts: int = 1
    keepalive: bool = True
    idle_timeout_ms: float = 120_000.0
    mathis: bool = False

    def __post_init__(self) -> None:
        if self.mss < 1:
            raise ValueError(f"TcpParams.mss must be >= 1, got {self.mss!r}")
        if self.rto not in ("linux", "rfc6298"):
            raise ValueError(f"TcpParams.rto must be 'linux' or 'rfc6298', got {self.rto!r}")
        if not (0 < self.rto_min_ms <= self.rto_max_ms and self.syn_rto_ms > 0):
            raise ValueError("TcpParams needs 0 < rto_min_ms <= rto_max_ms and syn_rto_ms > 0")
        if self.syn_retries < 0 or self.data_retries < 0 or self.tls_rtts < 0:
            raise ValueError("TcpParams retries and tls_rtts must be >= 0")


@dataclass(frozen=True, slots=True)
class Transfer:
    """What TCP did to one message.

    ``delay_ms``: time added to its one-way latency (handshake,
    retransmissions, throughput cap); when ``failed``, the time from the end
    of its serialization until TCP gave up. ``retransmissions``: SYN and data
    retransmissions. ``opened``: a connection was opened for it.
    """

    delay_ms: float
    retransmissions: int
    failed: bool
    opened: bool


def loss_rate(model: LossModel) -> float:
    """The long-run packet loss rate of a loss model (for the Mathis cap)."""
    if isinstance(model, BernoulliLoss):
        return model.p
    if isinstance(model, GilbertElliottLoss):
        return model.stationary_loss_rate
    if isinstance(model, WindowedLoss):
        return loss_rate(model.inner) if model.start_ms <= model.now() < model.end_ms else 0.0
    return 0.0


def expected_segment_delay_ms(p: float, rto_ms: float, rto_max_ms: float = 120_000.0,
                              retries: int = 15) -> float:
    """The exact mean delay one segment adds under Bernoulli loss ``p``
    (RTO cap and retry limit included; a segment that exhausts the retries
    counts with the time TCP waited before giving up)."""
    total = 0.0
    waited = 0.0
    rto = rto_ms
    for k in range(retries + 2):
        prob = p**k * (1.0 - p) if k <= retries else p**k
        total += prob * waited
        waited += rto
        rto = min(2.0 * rto, rto_max_ms)
    return total


class TcpModel:
    """Per-message TCP costs on top of a packet-loss model (see the module docstring).

    ``rtt_ms(src, dst)``: the link's mean round-trip time. Connection state
    lives here: one instance belongs to one run.
    """

    def __init__(self, params: TcpParams, loss: LossModel, rtt_ms: Callable[[str, str], float]) -> None:
        self.params = params
        self.loss = loss
        self._lossy = not isinstance(loss, NoLoss)
        self._rtt = rtt_ms
        self._keepalive = params.keepalive
        self._idle_ms = params.idle_timeout_ms
        # client -> server -> when the connection last carried a message
        self._last_used: dict[str, dict[str, float]] = {}

    # -- connections ------------------------------------------------------------------

    def connected(self, client: str, server: str, now: float) -> bool:
        """True if ``client`` has a usable kept-alive connection to ``server``."""
        if not self._keepalive:
            return False
        row = self._last_used.get(client)
        if row is None:
            return False
        last = row.get(server)
        return last is not None and now - last <= self._idle_ms

    def used(self, client: str, server: str, t: float) -> None:
        """The connection carried a message until ``t``."""
        row = self._last_used.get(client)
        if row is None:
            row = self._last_used[client] = {}
        if row.get(server, -math.inf) < t:
            row[server] = t

    def close(self, client: str, server: str) -> None:
        """The connection is gone (a request on it failed or timed out)."""
        row = self._last_used.get(client)
        if row is not None:
            row.pop(server, None)

    def close_all(self, server: str) -> None:
        """Every connection from or to ``server`` is gone (it crashed)."""
        self._last_used.pop(server, None)
        for row in self._last_used.values():
            row.pop(server, None)

    # -- costs --------------------------------------------------------------------------

    def rto_ms(self, rtt_ms: float) -> float:
        """The initial retransmission timeout for a link with this RTT."""
        p = self.params
        rto = rtt_ms + p.rto_min_ms if p.rto == "linux" else max(p.rto_min_ms, 3.0 * rtt_ms)
        return min(rto, p.rto_max_ms)

    def _segment(self, src: str, dst: str, rto: float, rng: np.random.Generator) -> tuple[float, int, bool]:
        """(delay, retransmissions, failed) of one data segment src -> dst."""
        if not self._lossy or not self.loss.drops(src, dst, rng):
            return 0.0, 0, False
        return self._after_loss(src, dst, rto, rng)

    def _after_loss(self, src: str, dst: str, rto: float, rng: np.random.Generator) -> tuple[float, int, bool]:
        """(delay, retransmissions, failed) of a segment whose first transmission was lost."""
        p = self.params
        delay = 0.0
        losses = 0
        while True:
            delay += rto
            losses += 1
            if losses > p.data_retries:
                return delay, losses - 1, True
            rto = min(2.0 * rto, p.rto_max_ms)
            if not self.loss.drops(src, dst, rng):
                return delay, losses, False

    def _handshake(self, src: str, dst: str, rtt: float, rto: float,
                   rng: np.random.Generator) -> tuple[float, int, bool]:
        """(delay, retransmissions, failed) of opening a connection src -> dst."""
        p = self.params
        delay = 0.0
        syn_rto = p.syn_rto_ms
        attempts = 0
        while self._lossy and (self.loss.drops(src, dst, rng) or self.loss.drops(dst, src, rng)):
            delay += syn_rto
            attempts += 1
            if attempts > p.syn_retries:
                return delay, attempts - 1, True
            syn_rto *= 2.0
        delay += rtt
        retrans = attempts
        for _ in range(p.tls_rtts):
            delay += rtt
            for a, b in ((src, dst), (dst, src)):
                d, k, failed = self._segment(a, b, rto, rng)
                delay += d
                retrans += k
                if failed:
                    return delay, retrans, True
        return delay, retrans, False

    def transfer(self, src: str, dst: str, size_bytes: int, now: float, rng: np.random.Generator, *,
                 reply: bool = False, serialization_ms: float = 0.0) -> Transfer:
        """The cost of one message; a request (``reply`` False) opens a
        connection when it has none. Records the connection's use."""
        p = self.params
        rtt = rto = -1.0  # the link's RTT and RTO, looked up when needed
        delay = 0.0
        retrans = 0
        opened = False
        if not reply and not self.connected(src, dst, now):
            opened = True
            rtt = self._rtt(src, dst)
            rto = self.rto_ms(rtt)
            delay, retrans, failed = self._handshake(src, dst, rtt, rto, rng)
            if failed:
                self.close(src, dst)
                return Transfer(delay, retrans, True, True)
        if self._lossy:
            drops = self.loss.drops
            for _ in range(max(1, -(-size_bytes // p.mss))):
                if not drops(src, dst, rng):
                    continue
                if rto < 0:
                    rtt = self._rtt(src, dst)
                    rto = self.rto_ms(rtt)
                d, k, failed = self._after_loss(src, dst, rto, rng)
                delay += d
                retrans += k
                if failed:
                    self.close(*((dst, src) if reply else (src, dst)))
                    return Transfer(delay, retrans, True, opened)
        if p.mathis:
            if rtt < 0:
                rtt = self._rtt(src, dst)
            if rtt > 0:
                rate = loss_rate(self.loss)
                if rate > 0:
                    bytes_per_ms = p.mss * MATHIS_C / (rtt * math.sqrt(rate))
                    delay += max(0.0, size_bytes / bytes_per_ms - serialization_ms)
        if not retrans and not opened and delay == 0.0:
            return _UNHINDERED
        return Transfer(delay, retrans, False, opened)


#: what TCP does to most messages: nothing (no handshake, no loss)
_UNHINDERED = Transfer(0.0, 0, False, False)
