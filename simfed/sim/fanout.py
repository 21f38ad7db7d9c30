"""Fan-out strategies: which servers get a new event pushed, and who forwards it.

A strategy answers two questions for a homeserver ``hs``:

- ``destinations(hs, room, event, extra)``: where ``hs`` pushes an event it
  has just created. ``extra`` holds servers that must hear of the event
  although they may no longer be in the room (the servers that had a member
  just before it: a kicked or leaving server still hears of its own exit).
- ``forward(hs, room, event, came_from)``: where ``hs`` pushes an event it has
  just received *by push* and persisted for the first time. The caller
  never sends back to ``came_from``, to the event's origin or to itself.

``anti_entropy_ms`` is the period of the anti-entropy pull the homeserver runs
under this strategy (0: none). The strategies:

``full_mesh``  Matrix today: the origin pushes to every server in the room; no
               forwarding. Repair: the homeserver's fetching
               (get_missing_events, state fetch, backfill) and the sender's
               catch-up.
``relay``      The origin pushes to the hubs; each hub forwards to the
               servers assigned to it (by a hash of the server's name, so
               hubs agree on it whatever their view of the membership). An
               origin whose transactions to a hub are failing sends to that
               hub's servers directly (``fallback``).
``gossip``     Push to ``fanout`` random peers; a server forwards an event it
               has not seen to ``fanout`` random peers of its own (so at most
               ``fanout`` copies per server per event); anti-entropy repairs
               what the pushes missed.
``tree``       Flood along a spanning tree of the room's servers (minimum
               spanning tree by expected latency as first measured, or a
               tree of fixed degree rooted at the origin); the tree does not
               follow link failures: a tree neighbour that the sender is
               failing to reach (failed transactions) is bypassed, and
               anti-entropy repairs.

Every strategy also relies on the homeserver's fetching: a server that gets
any later event fetches the missing ones from whoever pushed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import zlib

import numpy as np

from ..protocol import Event, RoomState

if TYPE_CHECKING:
    import networkx as nx

    from .homeserver import Homeserver

__all__ = ["FanOut", "FullMesh", "Gossip", "Relay", "Tree", "make_fanout", "STRATEGY_NAMES"]


def origin_server(ev: Event) -> str:
    """The server that created ``ev`` (its sender's domain)."""
    return ev.sender.partition(":")[2]


def _members(hs: "Homeserver", room: RoomState) -> set[str]:
    """The servers ``hs`` believes are in the room, itself included."""
    return hs.joined_servers(room) | {hs.name}


def _direct(hs: "Homeserver", room: RoomState, ev: Event, extra: set[str]) -> set[str]:
    """Servers an origin always sends to itself: those in ``extra`` that are
    no longer in the room (they left with this event) and a membership
    target's server."""
    out = extra - hs.joined_servers(room) if extra else set()
    if ev.type == "m.room.member" and ev.state_key:
        out.add(ev.state_key.partition(":")[2])
    return out


def _failing(hs: "Homeserver", server: str) -> bool:
    """True while ``hs``'s transactions to ``server`` are failing: an attempt
    failed (timed out, refused) since the last one that succeeded."""
    return hs.sender.failed_attempts(server) > 0


class FanOut(Protocol):
    name: str
    anti_entropy_ms: float

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]: ...

    def forward(self, hs: "Homeserver", room: RoomState, event: Event, came_from: str) -> set[str]: ...


class FullMesh:
    """Every server in the room, directly (Matrix today)."""

    name = "full_mesh"
    anti_entropy_ms = 0.0

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]:
        return hs.joined_servers(room) | _direct(hs, room, event, extra)

    def forward(self, hs: "Homeserver", room: RoomState, event: Event, came_from: str) -> set[str]:
        return set()


class Relay:
    """Origins push to hubs; hubs forward to their assigned servers."""

    name = "relay"

    def __init__(self, hubs: tuple[str, ...], *, fallback: bool = True, anti_entropy_ms: float = 0.0) -> None:
        if not hubs:
            raise ValueError("relay needs at least one hub")
        self.hubs = tuple(hubs)
        self.fallback = fallback
        self.anti_entropy_ms = anti_entropy_ms

    def hub_of(self, server: str, hubs_in_room: set[str]) -> str | None:
        """The hub serving ``server``: its home hub (by a hash of its name), or
        the next configured hub in the room when that one is not. The choice
        depends on nothing but the server's name and which hubs are in the
        room, so two servers whose views of the membership differ still
        agree on it."""
        n = len(self.hubs)
        start = zlib.crc32(server.encode()) % n
        for k in range(n):
            hub = self.hubs[(start + k) % n]
            if hub in hubs_in_room:
                return hub
        return None

    def assignment(self, members: set[str]) -> dict[str, list[str]]:
        """Each hub in the room and the non-hub servers it serves."""
        hubs = {h for h in self.hubs if h in members}
        out: dict[str, list[str]] = {h: [] for h in sorted(hubs)}
        if hubs:
            for s in sorted(members - hubs):
                out[self.hub_of(s, hubs)].append(s)
        return out

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]:
        members = _members(hs, room)
        assigned = self.assignment(members)
        if not assigned:
            return members | _direct(hs, room, event, extra)
        out = _direct(hs, room, event, extra) | set(assigned)
        out |= set(assigned.get(hs.name, ()))
        if self.fallback:
            for hub, served in assigned.items():
                if hub != hs.name and _failing(hs, hub):
                    out |= set(served)
        return out

    def forward(self, hs: "Homeserver", room: RoomState, event: Event, came_from: str) -> set[str]:
        return set(self.assignment(_members(hs, room)).get(hs.name, ()))


class Gossip:
    """Push to k random peers; forward once to k random peers; anti-entropy."""

    name = "gossip"

    def __init__(self, fanout: int, *, anti_entropy_ms: float, rng_for: Callable[[str], np.random.Generator]) -> None:
        self.fanout = fanout
        self.anti_entropy_ms = anti_entropy_ms
        self._rng_for = rng_for

    def _sample(self, hs: "Homeserver", peers: set[str]) -> set[str]:
        ordered = sorted(peers)
        if len(ordered) <= self.fanout:
            return set(ordered)
        picks = self._rng_for(hs.name).choice(len(ordered), size=self.fanout, replace=False)
        return {ordered[int(i)] for i in picks}

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]:
        return self._sample(hs, hs.joined_servers(room) - {hs.name}) | _direct(hs, room, event, extra)

    def forward(self, hs: "Homeserver", room: RoomState, event: Event, came_from: str) -> set[str]:
        return self._sample(hs, hs.joined_servers(room) - {hs.name, came_from, origin_server(event)})


class Tree:
    """Flood along a spanning tree of the room's servers."""

    name = "tree"

    def __init__(self, mode: str, degree: int, *, anti_entropy_ms: float,
                 expected_latency: Callable[[str, str], float]) -> None:
        if mode not in ("latency", "origin"):
            raise ValueError(f"tree mode must be 'latency' or 'origin', got {mode!r}")
        self.mode = mode
        self.degree = degree
        self.anti_entropy_ms = anti_entropy_ms
        self._latency = expected_latency
        self._measured: dict[tuple[str, str], float] = {}
        self._msts: dict[frozenset[str], "nx.Graph"] = {}

    def _expected(self, a: str, b: str) -> float:
        """The expected latency a to b as first measured. Servers do not see
        link failures in the network: a tree keeps its edges and a failing
        neighbour is learned from failed transactions (and bypassed)."""
        key = (a, b)
        hit = self._measured.get(key)
        if hit is None:
            hit = self._measured[key] = self._latency(a, b)
        return hit

    def spanning_tree(self, members: frozenset[str]) -> "nx.Graph":
        """The minimum spanning tree of ``members`` by expected one-way latency (cached)."""
        tree = self._msts.get(members)
        if tree is None:
            import networkx as nx

            g = nx.Graph()
            names = sorted(members)
            g.add_nodes_from(names)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    g.add_edge(a, b, weight=(self._expected(a, b) + self._expected(b, a)) / 2.0)
            tree = self._msts[members] = nx.minimum_spanning_tree(g, weight="weight", algorithm="kruskal")
        return tree

    def neighbours(self, members: frozenset[str], server: str, root: str) -> set[str]:
        """``server``'s tree neighbours (``latency``) or children (``origin``, rooted at ``root``)."""
        if server not in members:
            return set()
        if self.mode == "latency":
            return set(self.spanning_tree(members).adj[server])
        order = [root] + sorted(members - {root}) if root in members else sorted(members)
        i = order.index(server)
        return set(order[i * self.degree + 1: i * self.degree + 1 + self.degree])

    def _send_set(self, hs: "Homeserver", members: frozenset[str], root: str, skip: set[str]) -> set[str]:
        out: set[str] = set()
        for n in self.neighbours(members, hs.name, root) - skip:
            out.add(n)
            if _failing(hs, n):
                out |= self.neighbours(members, n, root) - skip - {hs.name}
        return out

    def destinations(self, hs: "Homeserver", room: RoomState, event: Event, extra: set[str]) -> set[str]:
        members = frozenset(_members(hs, room))
        return self._send_set(hs, members, hs.name, set()) | _direct(hs, room, event, extra)

    def forward(self, hs: "Homeserver", room: RoomState, event: Event, came_from: str) -> set[str]:
        members = frozenset(_members(hs, room) | {came_from})
        return self._send_set(hs, members, origin_server(event), {came_from})


STRATEGY_NAMES = ("full_mesh", "relay", "gossip", "tree")


def make_fanout(name: str, topology: Any = None, *, servers: tuple[str, ...] = (),
                rng_for: Callable[[str], np.random.Generator] | None = None,
                expected_latency: Callable[[str, str], float] | None = None) -> FanOut:
    """The strategy ``name`` with its parameters from a ``TopologyConfig`` (defaults if None)."""
    if name == "full_mesh":
        return FullMesh()
    if name not in STRATEGY_NAMES:
        raise ValueError(f"fan-out strategy {name!r} is unknown; choose one of {sorted(STRATEGY_NAMES)}")
    if topology is None:
        from ..config import TopologyConfig

        topology = TopologyConfig()
    if name == "relay":
        hubs = topology.relay.hubs or servers[:1]
        return Relay(tuple(hubs), fallback=topology.relay.fallback,
                     anti_entropy_ms=topology.relay.anti_entropy_interval_ms)
    if name == "gossip":
        if rng_for is None:
            raise ValueError("gossip needs rng_for (a seeded generator per server)")
        return Gossip(topology.gossip.fanout, anti_entropy_ms=topology.gossip.anti_entropy_interval_ms,
                      rng_for=rng_for)
    if expected_latency is None:
        raise ValueError("tree needs expected_latency(src, dst)")
    return Tree(topology.tree.mode, topology.tree.degree, anti_entropy_ms=topology.tree.anti_entropy_interval_ms,
                expected_latency=expected_latency)
