"""Helpers the services share: sizes of EDUs on the wire, queue look-ups,
server names of user IDs and aliases, exponential waits, and the latency of
extra network nodes (identity servers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from ..federation import FederationSender
    from ..homeserver import Homeserver

__all__ = [
    "EDU_OVERHEAD_BYTES",
    "HostedLatency",
    "Outstanding",
    "edu_entries",
    "edu_queued",
    "edu_size",
    "exp_ms",
    "hosts_for",
    "per_minute_mean_ms",
    "queue_edu",
    "record",
    "server_of",
]

#: Bytes of an EDU besides its entries (``{"edu_type": ..., "content": ...}``).
EDU_OVERHEAD_BYTES = 40
_PRESENCE_ENTRY = 110     # {"user_id", "presence", "last_active_ago", "currently_active"}
_TYPING = 110             # {"room_id", "user_id", "typing"}
_RECEIPT_ROOM = 60        # {room_id: {"m.read": {...}}}
_RECEIPT_USER = 130       # {user_id: {"event_ids": [id], "data": {"ts": ms}}}


def server_of(mxid: str) -> str:
    """``@u0:hs3`` or ``#a:hs3`` -> ``hs3``."""
    return mxid.partition(":")[2]


def edu_size(edu: dict) -> int:
    """Approximate JSON size of an EDU (a function of its entries only)."""
    kind = edu["edu_type"]
    c = edu["content"]
    if kind == "m.presence":
        return EDU_OVERHEAD_BYTES + sum(_PRESENCE_ENTRY + len(e["user_id"]) for e in c["push"])
    if kind == "m.typing":
        return EDU_OVERHEAD_BYTES + _TYPING + len(c["room_id"]) + len(c["user_id"])
    if kind == "m.receipt":
        return EDU_OVERHEAD_BYTES + sum(
            _RECEIPT_ROOM + len(rid) + sum(_RECEIPT_USER + len(u) for u in r["m.read"]) for rid, r in c.items()
        )
    return EDU_OVERHEAD_BYTES + 160


def edu_entries(edu: dict) -> int:
    """Entries an EDU carries: users for presence, (room, user) pairs for receipts, else 1."""
    kind = edu["edu_type"]
    if kind == "m.presence":
        return len(edu["content"]["push"])
    if kind == "m.receipt":
        return sum(len(r["m.read"]) for r in edu["content"].values())
    return 1


def edu_queued(sender: "FederationSender", destination: str, key: Any) -> bool:
    """True while the EDU queued under ``key`` is still waiting (not yet put in a transaction).

    The sender builds a transaction by popping queued EDUs synchronously, so
    an EDU still in its queue has not left; only then may we merge more
    entries into it (Synapse merges pending presence and receipts the same
    way until the next transaction is built).
    """
    return sender.edu_queued(destination, key)


def queue_edu(hs: "Homeserver", destination: str, edu: dict, key: Any,
              render: Callable[[], dict] | None = None) -> None:
    """Hand an EDU to ``hs``'s federation sender (its size computed from its
    entries); with ``render``, the sender sends ``render()`` as the
    transaction is built instead of ``edu``."""
    hs.sender.send_edu(destination, render if render is not None else edu, key=key, size_bytes=edu_size(edu))


def exp_ms(rng: np.random.Generator, mean_ms: float) -> float:
    """An exponential draw of mean ``mean_ms`` (infinite mean: never)."""
    if not mean_ms < float("inf"):
        return float("inf")
    return float(rng.exponential(mean_ms))


def per_minute_mean_ms(rate_per_minute: float) -> float:
    return 60_000.0 / rate_per_minute if rate_per_minute > 0 else float("inf")


class Outstanding:
    """Requests sent but not yet answered. When the run ends, each is recorded
    with outcome ``pending`` (so a lookup stuck behind a partition or a dead
    server counts, instead of vanishing from the outcome shares)."""

    def __init__(self) -> None:
        self._open: dict[int, Callable[[], None]] = {}
        self._next = 0

    def start(self, on_end: Callable[[], None]) -> int:
        """Register a request; ``on_end`` records it as pending if it is still open at the end."""
        self._next += 1
        self._open[self._next] = on_end
        return self._next

    def done(self, token: int) -> None:
        self._open.pop(token, None)

    def flush(self) -> None:
        """Record every open request as pending (in the order they were sent)."""
        for token in sorted(self._open):
            self._open[token]()
        self._open.clear()


def record(world: Any, method: str, *args: Any) -> None:
    rec = world.recorder
    if rec is not None:
        getattr(rec, method)(*args)


class HostedLatency:
    """A latency model for extra nodes (identity servers) placed at a host.

    Each extra node sits where its host homeserver is (identity server ``isK``
    at homeserver number ``K mod n``): a message to or from it is drawn as if
    to or from the host, so region and graph models keep working.
    """

    def __init__(self, base: Any, hosts: dict[str, str]) -> None:
        self.base = base
        self.hosts = dict(hosts)

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        h = self.hosts
        return self.base.sample(h.get(src, src), h.get(dst, dst), rng)

    def mean(self, src: str, dst: str) -> float:
        h = self.hosts
        return self.base.mean(h.get(src, src), h.get(dst, dst))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def hosts_for(nodes: tuple[str, ...], servers: tuple[str, ...]) -> dict[str, str]:
    """``isK`` -> the ``K mod n``-th homeserver."""
    return {node: servers[k % len(servers)] for k, node in enumerate(nodes)}


class JoinedServers:
    """``hs.joined_servers(room)`` memoised on the (immutable-until-replaced)
    current state mapping: the per-EDU cost stays a dict lookup in big rooms."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[Any, frozenset[str]]] = {}

    def __call__(self, hs: "Homeserver", room_id: str) -> frozenset[str]:
        room = hs.rooms.get(room_id)
        if room is None:
            return frozenset()
        st = room.current_state()
        hit = self._cache.get((hs.name, room_id))
        if hit is None or hit[0] is not st:
            hit = (st, frozenset(hs.joined_servers(room, st)))
            self._cache[(hs.name, room_id)] = hit
        return hit[1]
