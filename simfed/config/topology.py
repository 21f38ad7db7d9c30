"""Section ``[topology]``: who sends to whom, over what graph, and what changes.

``strategy`` picks the fan-out strategy; each strategy's parameters live in
its own sub-table (``[topology.relay]``, ``[topology.gossip]``,
``[topology.tree]``) so a ``strategy`` change during the run, or a sweep over
``topology.strategy``, switches between fully specified strategies.
``[[topology.changes]]`` is the schedule of changes during the run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import ConfigProblems, Duration, PositiveDuration, _Model, _tagged, format_duration, show
from .netgraph import NetworkGraphConfig

__all__ = [
    "STRATEGIES",
    "ChangeConfig",
    "GossipConfig",
    "JoinChange",
    "LeaveChange",
    "LinkChange",
    "NodeChange",
    "RelayConfig",
    "StrategyChange",
    "TopologyConfig",
    "TreeConfig",
]

#: Fan-out strategies a scenario may name.
STRATEGIES: tuple[str, ...] = ("full_mesh", "relay", "gossip", "tree")
Strategy = Literal["full_mesh", "relay", "gossip", "tree"]


class RelayConfig(_Model):
    """``[topology.relay]``: an origin sends each event to the hubs only; each
    hub forwards it to the servers assigned to it (by a hash of the server's
    name; when that hub is not in the room, the next hub in ``hubs``).
    An origin whose transactions to a hub are failing (an attempt failed since
    the last success) sends to that hub's servers directly."""

    hubs: tuple[str, ...] = ()
    """Hub servers; default: the first server."""
    fallback: bool = True
    """Bypass a failing hub (send to its servers directly)."""
    anti_entropy_interval_ms: Duration = Field(0.0, alias="anti_entropy_interval")
    """Period of the anti-entropy pull (0: off; repair is by fetching only)."""


class GossipConfig(_Model):
    """``[topology.gossip]``: push to ``fanout`` random peers in the room; a
    server forwards an event it has not seen before to ``fanout`` random
    peers of its own; periodic anti-entropy repairs what pushes missed."""

    fanout: int = Field(3, ge=1)
    """Peers each server pushes a new event to (k)."""
    anti_entropy_interval_ms: Duration = Field(30_000.0, alias="anti_entropy_interval")
    """Period of the anti-entropy exchange with one random peer (0: off)."""


class TreeConfig(_Model):
    """``[topology.tree]``: events flow along a spanning tree of the room's
    servers: ``latency`` is the minimum spanning tree by expected one-way
    latency (one tree for every origin); ``origin`` is a tree of the given
    ``degree`` rooted at the event's origin (servers in name order). Every
    server forwards an event to its tree neighbours except the one it came
    from; a failing neighbour is bypassed (its own neighbours get the event
    directly)."""

    mode: Literal["latency", "origin"] = "latency"
    degree: int = Field(3, ge=1)
    """Children per node in ``origin`` mode."""
    anti_entropy_interval_ms: Duration = Field(60_000.0, alias="anti_entropy_interval")
    """Period of the anti-entropy pull (0: off)."""


class _Change(_Model):
    at_ms: Duration = Field(alias="at")
    """When the change happens."""


class JoinChange(_Change):
    """``server`` joins the room at ``at`` through a resident server (the
    first of its users; the others follow). A server whose first change is a
    join starts outside the room."""

    kind: Literal["join"] = "join"
    server: str


class LeaveChange(_Change):
    """Every user of ``server`` leaves the room at ``at``."""

    kind: Literal["leave"] = "leave"
    server: str


class _Timed(_Change):
    until_ms: PositiveDuration | None = Field(None, alias="until")
    """When it recovers (never, if absent)."""

    @model_validator(mode="after")
    def _ordered(self) -> _Timed:
        if self.until_ms is not None and self.until_ms <= self.at_ms:
            raise ConfigProblems([(("until",), format_duration(self.until_ms),
                                   f"{show(format_duration(self.until_ms))} is not after at = "
                                   f"{show(format_duration(self.at_ms))}")])
        return self


class LinkChange(_Timed):
    """The link ``between = [a, b]`` fails at ``at`` and recovers at ``until``.
    With a network graph, ``a`` and ``b`` are graph nodes and traffic routes
    around the failed edge; without one they are servers and every message
    between them is dropped meanwhile."""

    kind: Literal["link"] = "link"
    between: tuple[str, str]


class NodeChange(_Timed):
    """The network graph's ``node`` fails (and recovers): routes through it
    are lost; a server placed on it is cut off."""

    kind: Literal["node"] = "node"
    node: str


class StrategyChange(_Change):
    """Every server switches to fan-out ``strategy`` at ``at``."""

    kind: Literal["strategy"] = "strategy"
    strategy: Strategy


ChangeConfig = _tagged("kind", JoinChange, LeaveChange, LinkChange, NodeChange, StrategyChange)


class TopologyConfig(_Model):
    """``[topology]``: the fan-out strategy, its parameters and scheduled changes."""

    strategy: Strategy = "full_mesh"
    """Fan-out strategy at the start: full_mesh (Matrix today), relay, gossip or tree."""
    relay: RelayConfig = RelayConfig()
    gossip: GossipConfig = GossipConfig()
    tree: TreeConfig = TreeConfig()
    changes: tuple[ChangeConfig, ...] = ()
    """``[[topology.changes]]``: joins, leaves, link and node failures, strategy switches."""
    graph: NetworkGraphConfig | None = None
    """``[topology.graph]``: the network under the federation as a graph (see ``netgraph.py``); default: none."""
