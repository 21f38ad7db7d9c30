"""Section ``[topology.graph]``: the network under the federation as a graph.

Servers sit on the nodes of a graph whose edges carry a one-way latency; a
message between two servers takes the shortest-path latency (plus optional
per-message ``jitter``). The graph is generated (``waxman``,
``barabasi_albert``, ``random_geometric``, ``grid``) from the scenario seed, or
read from an edge-list file (``edge_list``).

Nodes are named by strings: ``"0"`` .. ``"n-1"`` for generated graphs (a grid
node at row r, column c is ``str(r * cols + c)``), the names in the file for
an edge list. ``placement`` says which node each server sits on:
``"in_order"`` (server i on the i-th node; the remaining nodes are routers),
``"random"`` (distinct nodes drawn from the seed) or a table
``{ hs0 = "a", hs1 = "b" }`` naming a node for every server.

Edge-list files
---------------
One undirected edge per line: ``a b latency``, separated by whitespace, or
by commas in a ``.csv`` file (whose first row may be a header such as
``source,target,latency_ms``). The latency is milliseconds or a duration
string (``"12.5"``, ``"12.5ms"``, ``"1s"``). ``#`` starts a comment; blank lines
are skipped. Self-loops, repeated edges, negative latencies and a
disconnected graph are refused, each with its line number. "In order" for
an edge list means the order in which nodes first appear in the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from ..units import parse_duration
from .base import ConfigProblems, Duration, _Model, _tagged, show
from .network import ConstantLatency, LognormalLatency, NormalLatency, UniformLatency, _latency_shorthand

__all__ = [
    "BarabasiAlbertGraph",
    "EdgeListGraph",
    "EdgeListError",
    "GridGraph",
    "LinkLatencyConfig",
    "NetworkGraphConfig",
    "RandomGeometricGraph",
    "WaxmanGraph",
    "graph_problems",
    "read_edge_list",
]

#: A distribution for one draw: per edge (``edge_latency``) or per message (``jitter``).
LinkLatencyConfig = _tagged("model", ConstantLatency, UniformLatency, NormalLatency, LognormalLatency)
_Link = Annotated[LinkLatencyConfig, BeforeValidator(_latency_shorthand)]

_PLACEMENTS = ("in_order", "random")


def _placement(value: Any) -> Any:
    """One clear message for a placement that is neither a known name nor a table."""
    if isinstance(value, dict):
        bad = [((k,), v, f"{show(v)} is not a node name (expected a string)")
               for k, v in value.items() if not isinstance(v, str)]
        if bad:
            raise ConfigProblems(bad)
        return value
    if value in _PLACEMENTS:
        return value
    raise ValueError(f'{show(value)} is not a placement (expected "in_order", "random" '
                     'or a table { hs0 = "node", ... })')


Placement = Annotated[Literal["in_order", "random"] | dict[str, str], BeforeValidator(_placement)]

_Problems = list[tuple[tuple[str | int, ...], Any, str]]


class EdgeListError(ValueError):
    """An edge-list file that can't be used; ``problems`` holds ``(line, message)``."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        super().__init__("; ".join(f"line {n}: {m}" if n else m for n, m in problems))


def read_edge_list(path: str | Path) -> list[tuple[str, str, float]]:
    """The edges ``(a, b, latency_ms)`` of an edge-list file, in file order.

    Raises ``EdgeListError`` listing every bad line (see the module docstring
    for the format); an unreadable file is one problem with line 0.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgeListError(str(p), [(0, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeListError(str(p), [(0, f"cannot read ({exc})")]) from None
    is_csv = p.suffix.lower() == ".csv"
    edges: list[tuple[str, str, float]] = []
    problems: list[tuple[int, str]] = []
    seen: dict[frozenset[str], int] = {}
    first_row = True
    for lineno, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        fields = [f.strip() for f in next(csv.reader([body]))] if is_csv else body.split()
        header, first_row = first_row, False
        if len(fields) != 3:
            problems.append((lineno, f"{show(body)} has {len(fields)} fields (expected: a b latency)"))
            continue
        a, b, raw = fields
        try:
            latency = parse_duration(raw)
        except ValueError as exc:
            if not (header and is_csv):
                problems.append((lineno, f"latency {exc}"))
            continue
        if a == b:
            problems.append((lineno, f"{show(a)} - {show(b)} is a self-loop"))
            continue
        key = frozenset((a, b))
        if key in seen:
            problems.append((lineno, f"{show(a)} - {show(b)} repeats the edge on line {seen[key]}"))
            continue
        seen[key] = lineno
        edges.append((a, b, latency))
    if not edges and not problems:
        problems.append((0, "no edges"))
    if not problems:
        parts = _components(edges)
        if len(parts) > 1:
            sizes = ", ".join(f"{len(c)} ({show(min(c))}..)" for c in parts[:4])
            problems.append((0, f"the graph is disconnected: {len(parts)} components of sizes {sizes}"))
    if problems:
        raise EdgeListError(str(p), problems)
    return edges


def _components(edges: Iterable[tuple[str, str, float]]) -> list[set[str]]:
    """Connected components by union-find (no networkx needed at the edge)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in edges:
        parent[find(a)] = find(b)
    groups: dict[str, set[str]] = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return sorted(groups.values(), key=len, reverse=True)


class _Graph(_Model):
    """Options every graph model shares."""

    placement: Placement = "in_order"
    """Which node each server sits on: "in_order", "random", or { server = "node" }."""
    jitter: _Link | None = None
    """Extra delay drawn per message, added to the path latency
    (e.g. ``{ model = "uniform", low = 0, high = "5ms" }``)."""

    def node_names(self) -> list[str]:
        """Every node, in placement order."""
        return [str(i) for i in range(self.node_count())]

    def node_count(self) -> int:
        raise NotImplementedError

    def _count_key(self) -> str:
        return "nodes"

    def _placement_problems(self, nodes: Iterable[str]) -> _Problems:
        if not isinstance(self.placement, dict):
            return []
        known = set(nodes)
        return [
            (("placement", server), node, f"{show(node)} is not a node of the graph (nodes are {_names(known)})")
            for server, node in self.placement.items()
            if node not in known
        ]

    @model_validator(mode="after")
    def _check_placement(self) -> _Graph:
        problems = self._placement_problems(self.node_names())
        if problems:
            raise ConfigProblems(problems)
        return self


class _Generated(_Graph):
    nodes: int = Field(ge=1)
    """How many nodes the graph has (servers plus routers)."""
    connected: bool = True
    """Redraw the graph (new seed from the same stream) until it is connected;
    false keeps the first draw, and messages between disconnected servers drop."""

    def node_count(self) -> int:
        return self.nodes


class WaxmanGraph(_Generated):
    """Waxman: nodes uniform in the unit square, an edge between u and v with
    probability ``beta * exp(-d(u, v) / (alpha * L))`` (networkx ``waxman_graph``)."""

    model: Literal["waxman"] = "waxman"
    alpha: float = Field(0.4, gt=0.0, le=1.0)
    beta: float = Field(0.4, gt=0.0, le=1.0)
    ms_per_unit_ms: Duration = Field(100.0, alias="ms_per_unit")
    """Edge latency per unit of Euclidean distance (the square is 1 x 1)."""


class RandomGeometricGraph(_Generated):
    """Random geometric: nodes uniform in the unit square, an edge between
    nodes closer than ``radius`` (networkx ``random_geometric_graph``)."""

    model: Literal["random_geometric"] = "random_geometric"
    radius: float = Field(gt=0.0)
    ms_per_unit_ms: Duration = Field(100.0, alias="ms_per_unit")
    """Edge latency per unit of Euclidean distance (the square is 1 x 1)."""


class BarabasiAlbertGraph(_Generated):
    """Barabási-Albert preferential attachment: each new node links to ``m``
    existing ones (networkx ``barabasi_albert_graph``); always connected."""

    model: Literal["barabasi_albert"] = "barabasi_albert"
    m: int = Field(2, ge=1)
    edge_latency: _Link = ConstantLatency(delay_ms=10.0)
    """Latency of each edge, drawn once per edge (a duration is a constant)."""

    @model_validator(mode="after")
    def _m_below_n(self) -> BarabasiAlbertGraph:
        if self.m >= self.nodes:
            raise ConfigProblems([(("m",), self.m, f"{self.m} is not below nodes = {self.nodes}")])
        return self


class GridGraph(_Graph):
    """A ``rows`` x ``cols`` lattice (a torus with ``periodic``)."""

    model: Literal["grid"] = "grid"
    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    periodic: bool = False
    edge_latency: _Link = ConstantLatency(delay_ms=10.0)
    """Latency of each edge, drawn once per edge (a duration is a constant)."""

    def node_count(self) -> int:
        return self.rows * self.cols

    def _count_key(self) -> str:
        return "rows"


class EdgeListGraph(_Graph):
    """Edges read from a file (format in the module docstring). A relative
    ``path`` in a scenario file is relative to that file's directory."""

    model: Literal["edge_list"] = "edge_list"
    path: str

    def edges(self) -> list[tuple[str, str, float]]:
        """The file's edges (read again on each call)."""
        return read_edge_list(self.path)

    def node_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for a, b, _ in self.edges():
            seen.setdefault(a)
            seen.setdefault(b)
        return list(seen)

    def node_count(self) -> int:
        return len(self.node_names())

    def _count_key(self) -> str:
        return "path"

    @model_validator(mode="after")
    def _check_placement(self) -> EdgeListGraph:
        """Replaces the shared check: the file is read (and checked) first."""
        try:
            nodes = self.node_names()
        except EdgeListError as exc:
            raise ConfigProblems(
                [(("path",), self.path, f"{show(self.path)} {'line ' + str(n) + ': ' if n else ''}{m}")
                 for n, m in exc.problems]
            ) from None
        problems = self._placement_problems(nodes)
        if problems:
            raise ConfigProblems(problems)
        return self


NetworkGraphConfig = _tagged("model", WaxmanGraph, BarabasiAlbertGraph, RandomGeometricGraph, GridGraph, EdgeListGraph)


def graph_problems(graph: Any, servers: tuple[str, ...]) -> _Problems:
    """Problems of a graph given the scenario's servers, paths relative to
    ``topology.graph``: too few nodes, or a placement table that leaves out
    a server or names one that does not exist."""
    if isinstance(graph.placement, dict):
        known = set(servers)
        out: _Problems = [
            (("placement", s), node, f"{show(s)} is not a server (servers are {_names(known)})")
            for s, node in graph.placement.items() if s not in known
        ]
        missing = [s for s in servers if s not in graph.placement]
        if missing:
            out.append((("placement",), graph.placement,
                        f"places no node for {_names(missing)} (name a node for every server)"))
        return out
    n = graph.node_count()
    if n < len(servers):
        key = graph._count_key()
        value = getattr(graph, key)
        what = f"{graph.rows} x {graph.cols} = {n} nodes" if isinstance(graph, GridGraph) else f"{n} nodes"
        return [((key,), value, f"{show(value)} gives {what}, fewer than the {len(servers)} servers "
                                 "(each server needs its own node)")]
    return []


def _names(names: Iterable[str]) -> str:
    ordered = sorted(names, key=lambda n: (len(n), n))
    return ", ".join(ordered) if len(ordered) <= 8 else f"{ordered[0]} .. {ordered[-1]}"
