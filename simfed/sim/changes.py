"""Scheduled topology changes (``[[topology.changes]]``) applied to a World.

Each change is applied at its time and recorded as a perturbation (kind
``join``, ``leave``, ``link_down``/``link_up``, ``node_down``/``node_up`` or
``strategy``) so the metrics can measure convergence after it:

- ``join``: the server's users join the room through a resident server
  (make_join/send_join, retried with backoff as at the start of the run).
- ``leave``: every user of the server leaves the room.
- ``link``: with a network graph, the graph edge fails and traffic routes
  around it; without one, messages between the two servers are dropped.
- ``node``: a node of the network graph fails.
- ``strategy``: every server switches fan-out strategy; queued transactions
  and in-flight fetches are unaffected.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import ScenarioMismatch
from .network import Partition

if TYPE_CHECKING:
    from .world import World

__all__ = ["check_changes", "late_joiners", "schedule_changes"]


def late_joiners(topology: Any) -> frozenset[str]:
    """Servers whose first change is a join: they start outside the room."""
    first: dict[str, str] = {}
    for change in sorted(topology.changes, key=lambda c: c.at_ms):
        if change.kind in ("join", "leave"):
            first.setdefault(change.server, change.kind)
    return frozenset(s for s, kind in first.items() if kind == "join")


def _note(world: "World", kind: str, detail: str) -> None:
    if world.recorder is not None:
        world.recorder.perturbation(world.env.now, kind, detail)


def _leave(world: "World", server: str) -> None:
    """Every user of ``server`` leaves (a server that is down at that moment
    cannot: its users stay, and the perturbation says so)."""
    hs = world.servers[server]
    if not hs.up:
        _note(world, "leave", f"{server} (down: nobody left)")
        return
    rid = world.room_id
    for user in hs.users:
        if hs.is_joined(rid, user):
            hs.create_event(rid, user, "m.room.member", {"membership": "leave"}, user)
    _note(world, "leave", server)


def _graph(world: "World") -> Any:
    """The network graph. Servers are not told that it changes: they learn
    of a failed link from their failing requests."""
    graph = getattr(world, "graph", None)
    if graph is None:
        raise RuntimeError("a link or node change on a graph needs [topology.graph]")
    return graph


def check_changes(topology: Any, graph: Any) -> None:
    """Refuse a link change on an edge the (seeded) network graph does not have."""
    if graph is None:
        return
    for k, change in enumerate(topology.changes):
        if change.kind == "link" and not graph.has_edge(*change.between):
            a, b = change.between
            raise ScenarioMismatch(
                f"topology.changes[{k}].between: [\"{a}\", \"{b}\"] is not an edge of the network graph "
                f"this seed generates (a link change fails an existing edge)")


def schedule_changes(world: "World") -> None:
    """Schedule every ``[[topology.changes]]`` entry of the world's scenario."""
    for change in world.scenario.topology.changes:
        at = change.at_ms
        if change.kind == "join":
            world.workload.join_at(world.servers[change.server], at)
            world._at(at, lambda c=change: _note(world, "join", c.server))
        elif change.kind == "leave":
            world._at(at, lambda c=change: _leave(world, c.server))
        elif change.kind == "strategy":
            def switch(c: Any = change) -> None:
                world.fanout = world.make_fanout(c.strategy)
                _note(world, "strategy", c.strategy)

            world._at(at, switch)
        elif change.kind == "link":
            a, b = change.between
            detail = f"{a}-{b}"
            if getattr(world, "graph", None) is None:
                until = change.until_ms if change.until_ms is not None else math.inf
                world.network.add_partition(Partition(at, until, ((a,), (b,))))
                world._at(at, lambda d=detail: _note(world, "link_down", d))
                if change.until_ms is not None:
                    world._at(change.until_ms, lambda d=detail: _note(world, "link_up", d))
            else:
                world._at(at, lambda a=a, b=b, d=detail: (_graph(world).fail_edge(a, b), _note(world, "link_down", d)))
                if change.until_ms is not None:
                    world._at(change.until_ms,
                              lambda a=a, b=b, d=detail: (_graph(world).recover_edge(a, b), _note(world, "link_up", d)))
        elif change.kind == "node":
            n = change.node
            world._at(at, lambda n=n: (_graph(world).fail_node(n), _note(world, "node_down", n)))
            if change.until_ms is not None:
                world._at(change.until_ms, lambda n=n: (_graph(world).recover_node(n), _note(world, "node_up", n)))
