"""The simulated network: upload bandwidth, latency, loss, partitions, down servers.

A message's life (``Network.send``):

1. At send time ``t_sent``: a message from a down server is dropped
   (``src_down``); a message that an active partition separates is dropped
   (``partition``); so is one with no route up between the two servers when
   the network has a ``reachable`` hook, e.g. a network graph with failed
   links (``unreachable``). None of them occupies the sender's link. The
   destination's state is *not* looked at: the sender cannot know it.
2. Serialization on the sender's upload link, a per-source FIFO: it starts
   when the previous message from that source has finished
   (``max(now, link_free_at)``) and lasts ``size_bytes * 8 / upload_bps``
   seconds. Without an upload rate it takes no time.
3. One-way latency from the latency model; ``arrival = end of serialization +
   latency``.
4. Loss, decided at send time. ``loss`` (the scenario's ``request_loss``)
   drops the whole message: it is recorded at once with reason ``loss`` and
   ``t_done`` = its would-be arrival time; no timer is scheduled for it.
   Then ``tcp`` (``tcp.py``, fed with the scenario's packet ``loss``) adds
   the time of the connection handshake and the retransmissions of lost
   packets to the arrival time, or, when TCP runs out of retransmissions,
   fails the message: recorded with reason ``connection`` at the time TCP
   gave up, when ``on_fail()`` is called.
5. At arrival: dropped if the destination is down (``dst_down``), an active
   partition now separates the pair (``partition``) or no route is up any
   more (``unreachable``); otherwise recorded as
   delivered and ``deliver(payload)`` is called. A server that goes down
   after sending does not recall messages already on the wire.

Each message that survives step 4 costs exactly one entry in SimPy's queue,
where ``env.timeout`` with a callback would put it (the message record is
the event); there is no process per message.

Random streams: with ``rng_for`` every directed link draws its latencies and
its loss decisions from two streams of its own (``rng_for("link/a->b/latency")``
and ``".../loss"``), so the draws of a link do not depend on the traffic of
other links, on the number of servers or on the loss level (common random
numbers for paired comparisons). Without it every draw comes from ``rng``.

The observer, if any, receives one record per message:
``observer.message(t_sent, t_done, kind, src, dst, size_bytes, delivered, reason)``,
plus ``retransmissions=k`` (keyword) when the network has a TCP model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heappush
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import simpy
from simpy.events import NORMAL

from .latency import LatencyModel
from .loss import LossModel, NoLoss
from .streams import Stream
from .tcp import TcpModel

__all__ = ["Partition", "Network", "MessageObserver", "DROP_REASONS"]

#: Links made one by one from a source before the rest of its links are seeded
#: together: at least this many, and half of the servers (a source that sends
#: to half of the servers sends to all of them, as a room's fan-out does;
#: one that only answers some never pays for the words of links it never uses).
BATCH_AFTER = 16

#: Reasons a message can be dropped, as reported to the observer.
DROP_REASONS = ("loss", "partition", "src_down", "dst_down", "unreachable", "connection")


class MessageObserver(Protocol):
    """Receives one record per message sent through a ``Network``."""

    def message(
        self,
        t_sent: float,
        t_done: float,
        kind: str,
        src: str,
        dst: str,
        size_bytes: int,
        delivered: bool,
        reason: str | None,
    ) -> None:
        """Record a delivered (reason None) or dropped message."""
        ...


@dataclass(frozen=True, slots=True)
class Partition:
    """Servers split into groups during ``[start_ms, end_ms)``.

    Two-way (default): while active, a message between servers in different
    groups is dropped. One-way: only a message from a server in group ``i``
    to a server in group ``j`` with ``i < j`` is dropped; the reverse
    direction flows (so ``groups=(("a",), ("b",))`` cuts a->b only). Servers
    listed in no group are unaffected, and messages inside one group flow.
    """

    start_ms: float
    end_ms: float
    groups: tuple[tuple[str, ...], ...]
    one_way: bool = False
    _group_of: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.end_ms > self.start_ms:
            raise ValueError(
                f"Partition needs end_ms > start_ms, got start_ms={self.start_ms!r}, end_ms={self.end_ms!r}"
            )
        groups = tuple(tuple(g) for g in self.groups)
        if len(groups) < 2:
            raise ValueError(f"Partition needs at least two groups, got {len(groups)}")
        group_of: dict[str, int] = {}
        for i, group in enumerate(groups):
            for server in group:
                if server in group_of:
                    raise ValueError(
                        f"server {server!r} is in Partition groups {group_of[server]} and {i}; "
                        "a server may be in at most one group"
                    )
                group_of[server] = i
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "_group_of", group_of)

    @property
    def servers(self) -> frozenset[str]:
        """Every server named in some group."""
        return frozenset(self._group_of)

    def active(self, t: float) -> bool:
        """True during ``[start_ms, end_ms)``."""
        return self.start_ms <= t < self.end_ms

    def separates(self, src: str, dst: str) -> bool:
        """True if this partition (when active) drops a message src -> dst."""
        g = self._group_of
        i = g.get(src)
        if i is None:
            return False
        j = g.get(dst)
        if j is None or i == j:
            return False
        return i < j if self.one_way else True


class Network:
    """Point-to-point message delivery between named servers in simulated time.

    Parameters
    ----------
    env: the SimPy environment (times in ms).
    servers: every server name; all start up.
    latency: the latency model (``latency.py``).
    loss: whole-message loss (``loss.py``; the scenario's ``request_loss``).
    tcp: the TCP model with its packet loss (``tcp.py``), or None: no
        handshakes, no retransmissions.
    rng: the generator for latency and loss draws without ``rng_for``.
    rng_for: ``rng_for(name) -> Generator``, the named streams of each link
        (see the module docstring); None: everything draws from ``rng``.
    upload_bps: one upload rate in bit/s for every server, a mapping per
        server (servers absent from it have unlimited upload), or None
        (no serialization delay).
    partitions: scheduled partitions; more can be added with ``add_partition``.
    observer: gets one ``message(...)`` record per message.
    reachable: ``reachable(src, dst) -> bool``, asked at send and at arrival;
        False drops the message as ``unreachable``. None: every pair is.
    """

    def __init__(
        self,
        env: simpy.Environment,
        servers: Iterable[str],
        *,
        latency: LatencyModel,
        loss: LossModel | None = None,
        rng: np.random.Generator | None = None,
        rng_for: Callable[[str], np.random.Generator] | None = None,
        tcp: TcpModel | None = None,
        upload_bps: float | Mapping[str, float] | None = None,
        partitions: Sequence[Partition] = (),
        observer: MessageObserver | None = None,
        reachable: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.env = env
        names = list(servers)
        self._up: dict[str, bool] = dict.fromkeys(names, True)
        if len(self._up) != len(names):
            raise ValueError("Network servers must be unique")
        self._latency = latency
        self._loss = loss if loss is not None else NoLoss()
        self._lossy = not isinstance(self._loss, NoLoss)
        if rng is None and rng_for is None:
            raise ValueError("Network needs rng or rng_for")
        self._rng = rng
        self._rng_for = rng_for
        # src -> dst -> (latency, loss) streams, made at a link's first message
        self._link_rngs: dict[str, dict[str, tuple[np.random.Generator, np.random.Generator]]] = {
            n: {} for n in names}
        # src -> (dst -> row of words, the state words of those links' streams)
        self._seeded: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        self._batch_after = max(BATCH_AFTER, len(names) // 2)
        self._tcp = tcp
        self._observer = observer
        self._reachable = reachable
        self._free_at: dict[str, float] = dict.fromkeys(names, 0.0)
        self._ms_per_byte: dict[str, float] = dict.fromkeys(names, 0.0)
        if upload_bps is not None:
            rates = upload_bps if isinstance(upload_bps, Mapping) else dict.fromkeys(names, upload_bps)
            for server, bps in rates.items():
                if server not in self._up:
                    raise ValueError(f"upload_bps names unknown server {server!r}")
                if not bps > 0:
                    raise ValueError(f"upload_bps for {server!r} must be > 0, got {bps!r}")
                self._ms_per_byte[server] = 8000.0 / float(bps)
        self._partitions: list[Partition] = []
        for p in partitions:
            self.add_partition(p)

    @property
    def servers(self) -> tuple[str, ...]:
        """Every server name, in construction order."""
        return tuple(self._up)

    @property
    def partitions(self) -> tuple[Partition, ...]:
        """The partitions known to the network (past, current and future)."""
        return tuple(self._partitions)

    def add_partition(self, partition: Partition) -> None:
        """Add a partition; its groups may only name known servers."""
        unknown = sorted(partition.servers - self._up.keys())
        if unknown:
            raise ValueError(f"Partition names unknown servers {unknown}")
        self._partitions.append(partition)

    def set_up(self, server: str, up: bool) -> None:
        """Bring a server up or down. A down server neither sends nor receives."""
        if server not in self._up:
            raise ValueError(f"unknown server {server!r}")
        self._up[server] = bool(up)
        if not up and self._tcp is not None:
            self._tcp.close_all(server)

    def close_connection(self, client: str, server: str) -> None:
        """A request from ``client`` to ``server`` failed: its connection is gone."""
        if self._tcp is not None:
            self._tcp.close(client, server)

    def link_rngs(self, src: str, dst: str) -> tuple[np.random.Generator, np.random.Generator]:
        """The (latency, loss) streams of the directed link src -> dst.

        Made at the link's first message. With a batch factory
        (``rng_for.many``, e.g. :class:`~.streams.Streams`), once links from
        ``src`` to half of the servers (and at least ``BATCH_AFTER``) exist,
        the streams of all its other links are seeded together and kept as
        state words (32 bytes a stream) until each link's first message."""
        row = self._link_rngs[src]
        pair = row.get(dst)
        if pair is None:
            if self._rng_for is None:
                pair = (self._rng, self._rng)
            else:
                seeded = self._seeded.get(src)
                if (seeded is None and len(row) >= self._batch_after
                        and getattr(self._rng_for, "many", None) is not None):
                    seeded = self._seed_row(src, row)
                if seeded is not None:
                    index, words = seeded
                    i = 2 * index.pop(dst)
                    lat, loss = words[i:i + 2].tolist()
                    if not index:
                        del self._seeded[src]
                    pair = (Stream.from_words(lat), Stream.from_words(loss))
                else:
                    name = f"link/{src}->{dst}"
                    pair = (self._rng_for(name + "/latency"), self._rng_for(name + "/loss"))
            row[dst] = pair
        return pair

    def _seed_row(self, src: str, row: dict[str, Any]) -> tuple[dict[str, int], np.ndarray]:
        """Seed the streams of every link from ``src`` not made yet, at once."""
        dsts = [d for d in self._up if d != src and d not in row]
        names = []
        for d in dsts:
            names += (f"link/{src}->{d}/latency", f"link/{src}->{d}/loss")
        seeded = self._seeded[src] = ({d: i for i, d in enumerate(dsts)},
                                      self._rng_for.many(names))  # type: ignore[union-attr]
        return seeded

    def is_up(self, server: str) -> bool:
        """True if the server is up."""
        return self._up[server]

    def partitioned(self, src: str, dst: str, t: float | None = None) -> bool:
        """True if some partition active at ``t`` (default: now) drops src -> dst."""
        if t is None:
            t = self.env.now
        for p in self._partitions:
            if p.start_ms <= t < p.end_ms and p.separates(src, dst):
                return True
        return False

    def link_free_at(self, server: str) -> float:
        """When the server's upload link finishes its queued transmissions."""
        return self._free_at[server]

    def send(
        self,
        src: str,
        dst: str,
        size_bytes: int,
        payload: Any,
        deliver: Callable[[Any], None],
        *,
        kind: str,
        reply: bool = False,
        on_fail: Callable[[], None] | None = None,
    ) -> None:
        """Send one message; ``deliver(payload)`` runs at arrival if it gets there.

        ``reply``: the message answers a request from ``dst`` (it travels on
        ``dst``'s connection and never opens one). ``on_fail()`` runs when TCP
        gives up on the message. See the module docstring for the exact
        order of decisions.
        """
        up = self._up
        if src not in up or dst not in up:
            raise ValueError(f"unknown server in send {src!r} -> {dst!r}")
        if src == dst:
            raise ValueError(f"a server does not send to itself over the network ({src!r})")
        now = self.env.now
        obs = self._observer
        if not up[src]:
            if obs is not None:
                obs.message(now, now, kind, src, dst, size_bytes, False, "src_down")
            return
        if self._partitions and self.partitioned(src, dst, now):
            if obs is not None:
                obs.message(now, now, kind, src, dst, size_bytes, False, "partition")
            return
        if self._reachable is not None and not self._reachable(src, dst):
            if obs is not None:
                obs.message(now, now, kind, src, dst, size_bytes, False, "unreachable")
            return
        start = self._free_at[src]
        if start < now:
            start = now
        serialization = size_bytes * self._ms_per_byte[src]
        end = start + serialization
        self._free_at[src] = end
        pair = self._link_rngs[src].get(dst)
        lat_rng, loss_rng = pair if pair is not None else self.link_rngs(src, dst)
        arrival = end + self._latency.sample(src, dst, lat_rng)
        if self._lossy and self._loss.drops(src, dst, loss_rng):
            if obs is not None:
                obs.message(now, arrival, kind, src, dst, size_bytes, False, "loss")
            return
        tcp = self._tcp
        retrans = 0
        if tcp is not None:
            tr = tcp.transfer(src, dst, size_bytes, now, loss_rng, reply=reply, serialization_ms=serialization)
            retrans = tr.retransmissions
            if tr.failed:
                t_fail = end + tr.delay_ms
                self.env.timeout(t_fail - now).callbacks.append(
                    self._failure(now, kind, src, dst, size_bytes, retrans, on_fail))
                return
            arrival += tr.delay_ms
            if not reply:
                tcp.used(src, dst, arrival)
            elif tcp.connected(dst, src, now):  # a reply on an aborted connection does not revive it
                tcp.used(dst, src, arrival)
        delay = arrival - now
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        # what env.timeout(delay).callbacks.append(...) would put in SimPy's queue, without the Timeout
        env = self.env
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid),  # type: ignore[attr-defined]
                              _InFlight(self, now, kind, src, dst, size_bytes, payload, deliver, retrans)))

    def _failure(self, t_sent: float, kind: str, src: str, dst: str, size_bytes: int, retrans: int,
                 on_fail: Callable[[], None] | None) -> Callable[[Any], None]:
        """The callback of a message's failure timer."""
        return lambda _ev: self._fail(t_sent, kind, src, dst, size_bytes, retrans, on_fail)

    def _fail(self, t_sent: float, kind: str, src: str, dst: str, size_bytes: int, retrans: int,
              on_fail: Callable[[], None] | None) -> None:
        if self._observer is not None:
            self._observer.message(t_sent, self.env.now, kind, src, dst, size_bytes, False, "connection",
                                   retransmissions=retrans)
        if on_fail is not None:
            on_fail()

    def _arrive(
        self,
        t_sent: float,
        kind: str,
        src: str,
        dst: str,
        size_bytes: int,
        payload: Any,
        deliver: Callable[[Any], None],
        retrans: int = 0,
    ) -> None:
        now = self.env.now
        obs = self._observer
        if not self._up[dst]:
            reason: str | None = "dst_down"
        elif self._partitions and self.partitioned(src, dst, now):
            reason = "partition"
        elif self._reachable is not None and not self._reachable(src, dst):
            reason = "unreachable"
        else:
            reason = None
        if obs is not None:
            if self._tcp is None:
                obs.message(t_sent, now, kind, src, dst, size_bytes, reason is None, reason)
            else:
                obs.message(t_sent, now, kind, src, dst, size_bytes, reason is None, reason,
                            retransmissions=retrans)
        if reason is None:
            deliver(payload)


class _InFlight:
    """A message on the wire, in SimPy's queue as its own arrival event: the
    environment's step reads an event's ``callbacks`` (here one function,
    called with the message) and ``_ok``, nothing else."""

    __slots__ = ("callbacks", "_ok", "net", "t_sent", "kind", "src", "dst", "size_bytes", "payload", "deliver",
                 "retrans")

    def __init__(self, net: Network, t_sent: float, kind: str, src: str, dst: str, size_bytes: int,
                 payload: Any, deliver: Callable[[Any], None], retrans: int) -> None:
        self.callbacks: tuple[Callable[[_InFlight], None], ...] | None = _ARRIVAL
        self._ok = True
        self.net = net
        self.t_sent = t_sent
        self.kind = kind
        self.src = src
        self.dst = dst
        self.size_bytes = size_bytes
        self.payload = payload
        self.deliver = deliver
        self.retrans = retrans

    def arrive(self) -> None:
        """The message reaches its destination (or is dropped there)."""
        self.net._arrive(self.t_sent, self.kind, self.src, self.dst, self.size_bytes, self.payload,
                         self.deliver, self.retrans)


_ARRIVAL = (_InFlight.arrive,)
