"""Latency over a network graph: servers on nodes, messages on shortest paths.

``GraphLatency`` is a latency model (see ``latency.py``): the one-way delay
from server A to server B is the length of the shortest path between their
nodes, summing each edge's ``latency_ms``, plus an optional per-message
jitter drawn from the caller's generator. Edges and nodes can fail and
recover while the simulation runs; traffic then follows the shortest path
that remains, and ``reachable`` turns false for pairs with no path left (the
``Network`` drops their messages with reason ``"unreachable"``).

Shortest paths are computed lazily, one Dijkstra per source node, and
cached; a failure or recovery drops only the cached rows it can change (a
failed edge matters only to sources whose shortest paths may use it).
Messages already on the wire keep the delay they were sent with.

``build_graph(cfg, servers, rng)`` builds one from a ``[topology.graph]``
section; the same configuration and generator state give the same graph,
edge latencies and placement.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from ..config.netgraph import (
    BarabasiAlbertGraph,
    EdgeListGraph,
    GridGraph,
    RandomGeometricGraph,
    WaxmanGraph,
    graph_problems,
)
from ..errors import ScenarioMismatch
from .latency import ConstantLatency, LatencyModel, LogNormalLatency, NormalLatency, UniformLatency

__all__ = ["GraphLatency", "build_graph", "WEIGHT"]

#: The edge attribute holding an edge's one-way latency in ms.
WEIGHT = "latency_ms"
#: Redraws of a random generator before giving up on a connected graph.
_CONNECT_ATTEMPTS = 100


class GraphLatency:
    """Shortest-path latency between servers placed on the nodes of a graph.

    Parameters
    ----------
    graph: an undirected graph with string node names and a non-negative
        ``latency_ms`` on every edge; it is copied, later changes to it are
        not seen.
    placement: the node of every server (several servers may share a node;
        the path between them is empty, so only jitter delays them).
    jitter: a latency model whose draw is added to every message's delay.
    """

    def __init__(
        self,
        graph: nx.Graph,
        placement: Mapping[str, str],
        *,
        jitter: LatencyModel | None = None,
    ) -> None:
        base = nx.Graph(graph)
        for u, v, w in base.edges(data=WEIGHT):
            if w is None or not w >= 0:
                raise ValueError(f"edge {u!r}-{v!r} needs a {WEIGHT} >= 0, got {w!r}")
        unknown = sorted({n for n in placement.values() if n not in base})
        if unknown:
            raise ValueError(f"placement names nodes that are not in the graph: {unknown}")
        self._base = base
        self._node_of: dict[str, str] = dict(placement)
        self._hosts = frozenset(self._node_of.values())
        self._jitter = jitter
        self._failed_edges: set[frozenset[str]] = set()
        self._failed_nodes: set[str] = set()
        self._live = base.copy()
        self._dist: dict[str, dict[str, float]] = {}

    # -- what it is -------------------------------------------------------------------

    @property
    def graph(self) -> nx.Graph:
        """The whole graph, failed parts included (read-only view)."""
        return self._base.copy(as_view=True)

    @property
    def placement(self) -> dict[str, str]:
        """Server -> node."""
        return dict(self._node_of)

    def has_edge(self, u: str, v: str) -> bool:
        """True if the graph has the edge u-v (up or failed)."""
        return self._base.has_edge(u, v)

    def node_of(self, server: str) -> str:
        """The node a server sits on."""
        return self._node_of[server]

    @property
    def failed_edges(self) -> frozenset[frozenset[str]]:
        """The edges currently down, each as ``frozenset({u, v})``."""
        return frozenset(self._failed_edges)

    @property
    def failed_nodes(self) -> frozenset[str]:
        """The nodes currently down."""
        return frozenset(self._failed_nodes)

    # -- latency model ----------------------------------------------------------------

    def path_latency(self, src: str, dst: str) -> float | None:
        """Shortest-path latency in ms from server src to server dst, or None
        when no path is up (no jitter)."""
        node = self._node_of[src]
        row = self._dist.get(node)
        if row is None:
            row = self._dist[node] = self._dijkstra(node)
        return row.get(self._node_of[dst])

    def reachable(self, src: str, dst: str) -> bool:
        """True if some path between the two servers' nodes is up."""
        return self.path_latency(src, dst) is not None

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """One message's delay: path latency plus jitter (drawn from rng only with jitter).

        Raises ``ValueError`` for an unreachable pair; check ``reachable`` first.
        """
        d = self.path_latency(src, dst)
        if d is None:
            raise ValueError(f"no path up from {src!r} (node {self._node_of[src]!r}) to {dst!r} "
                             f"(node {self._node_of[dst]!r})")
        if self._jitter is not None:
            d += self._jitter.sample(src, dst, rng)
        return d

    def mean(self, src: str, dst: str) -> float:
        """Expected delay: path latency plus the jitter's mean (inf when unreachable)."""
        d = self.path_latency(src, dst)
        if d is None:
            return math.inf
        return d + (self._jitter.mean(src, dst) if self._jitter is not None else 0.0)

    def route(self, src: str, dst: str) -> list[str] | None:
        """The nodes on a current shortest path from src to dst, or None."""
        if not self.reachable(src, dst):
            return None
        return nx.dijkstra_path(self._live, self._node_of[src], self._node_of[dst], weight=WEIGHT)

    def _dijkstra(self, node: str) -> dict[str, float]:
        if node not in self._live:
            return {}
        return nx.single_source_dijkstra_path_length(self._live, node, weight=WEIGHT)

    # -- failures ---------------------------------------------------------------------

    def fail_edge(self, u: str, v: str) -> None:
        """Take the edge u-v down (either order; failing a failed edge does nothing)."""
        key = self._edge(u, v)
        if key in self._failed_edges:
            return
        self._failed_edges.add(key)
        if self._live.has_edge(u, v):
            w = self._base[u][v][WEIGHT]
            self._live.remove_edge(u, v)
            self._forget(lambda d: _tight(d, u, v, w))

    def recover_edge(self, u: str, v: str) -> None:
        """Bring the edge u-v back up (it carries traffic once both its nodes are up)."""
        key = self._edge(u, v)
        if key not in self._failed_edges:
            return
        self._failed_edges.discard(key)
        if u in self._live and v in self._live:
            w = self._base[u][v][WEIGHT]
            self._live.add_edge(u, v, **{WEIGHT: w})
            self._forget(lambda d: _shortcut(d, u, v, w))

    def fail_node(self, node: str) -> None:
        """Take a node down with all its edges; servers on it become unreachable."""
        if self._node(node) in self._failed_nodes:
            return
        self._failed_nodes.add(node)
        hosts = node in self._hosts
        edges = list(self._live.adj[node].items())
        self._live.remove_node(node)

        def affected(d: dict[str, float]) -> bool:
            return node in d and (hosts or any(_tight(d, node, y, a[WEIGHT]) for y, a in edges))

        self._forget(affected)

    def recover_node(self, node: str) -> None:
        """Bring a node back up, with those of its edges that are not failed."""
        if self._node(node) not in self._failed_nodes:
            return
        self._failed_nodes.discard(node)
        self._live.add_node(node)
        for y, attrs in self._base.adj[node].items():
            if y in self._live and frozenset((node, y)) not in self._failed_edges:
                self._live.add_edge(node, y, **{WEIGHT: attrs[WEIGHT]})
        self._dist.clear()

    def _forget(self, affected: Callable[[dict[str, float]], bool]) -> None:
        """Drop the cached rows a change may have altered; the rest stay exact."""
        for node in [n for n, d in self._dist.items() if affected(d)]:
            del self._dist[node]

    def _edge(self, u: str, v: str) -> frozenset[str]:
        if not self._base.has_edge(u, v):
            raise ValueError(f"no edge {u!r}-{v!r} in the network graph")
        return frozenset((u, v))

    def _node(self, node: str) -> str:
        if node not in self._base:
            raise ValueError(f"no node {node!r} in the network graph ({self._base.number_of_nodes()} nodes)")
        return node


def _tight(d: dict[str, float], u: str, v: str, w: float) -> bool:
    """True if the edge u-v (latency w) may lie on a shortest path from the row's
    source: removing an edge no shortest path uses changes no distance."""
    du, dv = d.get(u), d.get(v)
    if du is None or dv is None:
        return False
    return _close(du + w, dv) or _close(dv + w, du)


def _shortcut(d: dict[str, float], u: str, v: str, w: float) -> bool:
    """True if adding the edge u-v (latency w) may shorten a path from the row's source."""
    du, dv = d.get(u), d.get(v)
    if du is None or dv is None:
        return du is not None or dv is not None
    return du + w <= dv or dv + w <= du or _close(du + w, dv) or _close(dv + w, du)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


# -- building from a scenario ---------------------------------------------------------


def build_graph(cfg: Any, servers: Sequence[str], rng: np.random.Generator) -> GraphLatency:
    """A ``GraphLatency`` for a ``[topology.graph]`` section and these servers.

    Draws, in order, from ``rng``: the generator seeds (one per attempt), the
    edge latencies (in sorted edge order), then the placement when it is
    ``"random"``. Raises ``ValueError`` naming the ``topology.graph`` key when
    the graph does not fit the servers or stays disconnected.
    """
    problems = graph_problems(cfg, tuple(servers))
    if problems:
        raise ValueError("; ".join(
            f"topology.graph.{'.'.join(str(p) for p in path)}: {msg}" for path, _v, msg in problems))
    if isinstance(cfg, EdgeListGraph):
        graph = nx.Graph()
        graph.add_weighted_edges_from(cfg.edges(), weight=WEIGHT)
        order = cfg.node_names()
    else:
        graph = _generated(cfg, rng)
        order = [str(i) for i in range(cfg.node_count())]
    return GraphLatency(graph, _place(cfg.placement, servers, order, rng), jitter=_model(cfg.jitter))


def _generated(cfg: Any, rng: np.random.Generator) -> nx.Graph:
    for _ in range(_CONNECT_ATTEMPTS):
        seed = int(rng.integers(2**32))
        if isinstance(cfg, WaxmanGraph):
            g = nx.waxman_graph(cfg.nodes, beta=cfg.beta, alpha=cfg.alpha, seed=seed)
        elif isinstance(cfg, RandomGeometricGraph):
            g = nx.random_geometric_graph(cfg.nodes, cfg.radius, seed=seed)
        elif isinstance(cfg, BarabasiAlbertGraph):
            g = nx.barabasi_albert_graph(cfg.nodes, cfg.m, seed=seed)
        elif isinstance(cfg, GridGraph):
            g = nx.grid_2d_graph(cfg.rows, cfg.cols, periodic=cfg.periodic)
            g = nx.relabel_nodes(g, {(r, c): r * cfg.cols + c for r, c in g})
        else:
            raise ValueError(f"unknown graph model {getattr(cfg, 'model', cfg)!r}")
        if not getattr(cfg, "connected", False) or nx.is_connected(g):
            break
    else:
        raise ScenarioMismatch(
            f"topology.graph: a {cfg.model} graph with these parameters was disconnected in "
            f"{_CONNECT_ATTEMPTS} draws; make it denser, or set connected = false"
        )
    out = nx.Graph()
    out.add_nodes_from(str(n) for n in sorted(g))
    per_unit = getattr(cfg, "ms_per_unit_ms", None)
    edge_model = _model(getattr(cfg, "edge_latency", None))
    for u, v in sorted((min(e), max(e)) for e in g.edges()):
        if per_unit is not None:
            w = per_unit * math.dist(g.nodes[u]["pos"], g.nodes[v]["pos"])
        else:
            assert edge_model is not None
            w = edge_model.sample(str(u), str(v), rng)
        out.add_edge(str(u), str(v), **{WEIGHT: w})
    return out


def _place(placement: Any, servers: Sequence[str], order: list[str], rng: np.random.Generator) -> dict[str, str]:
    if isinstance(placement, Mapping):
        return {s: placement[s] for s in servers}
    if placement == "random":
        picks = rng.choice(len(order), size=len(servers), replace=False)
        return {s: order[int(i)] for s, i in zip(servers, picks)}
    return dict(zip(servers, order))


def _model(cfg: Any) -> LatencyModel | None:
    """The sim latency model for a constant/uniform/normal/lognormal section."""
    if cfg is None:
        return None
    if cfg.model == "constant":
        return ConstantLatency(cfg.delay_ms)
    if cfg.model == "uniform":
        return UniformLatency(cfg.low_ms, cfg.high_ms)
    if cfg.model == "normal":
        return NormalLatency(cfg.mean_ms, cfg.sd_ms)
    return LogNormalLatency(cfg.median_ms, cfg.sigma)

