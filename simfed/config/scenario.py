"""The root of a scenario: every section, and the checks that span sections."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from .adversaries import AdversaryConfig
from .bounds import run_size_problems
from .base import (
    ConfigProblems,
    _Model,
    format_duration,
    show,
    _unknown_server,
)
from .core import FaultConfig, FederationConfig, MetricsConfig, ServersConfig, SimulationConfig, WorkloadConfig
from .homeserver import HomeserverSection
from .network import NetworkConfig, RegionsLatency
from .services import ServicesConfig
from .topology import TopologyConfig


# --------------------------------------------------------------------------
# The root


class Scenario(_Model):
    """One simulation, fully specified. Every section is optional."""

    description: str = ""
    """Free text, copied into the results."""
    simulation: SimulationConfig = SimulationConfig()
    servers: ServersConfig = ServersConfig()
    network: NetworkConfig = NetworkConfig()
    workload: WorkloadConfig = WorkloadConfig()
    faults: tuple[FaultConfig, ...] = ()
    federation: FederationConfig = FederationConfig()
    homeserver: HomeserverSection = HomeserverSection()
    """Behaviour of every homeserver: Synapse's by default, deviations opt-in."""
    metrics: MetricsConfig = MetricsConfig()
    topology: TopologyConfig = TopologyConfig()
    services: ServicesConfig = ServicesConfig()
    """EDUs (presence, typing, receipts), profiles, alias directory, identity servers; all off by default."""
    adversaries: tuple[AdversaryConfig, ...] = ()
    """Byzantine servers, one behaviour an entry (``[[adversaries]]``); none by default."""

    SECTIONS: ClassVar[tuple[str, ...]] = (
        "simulation", "servers", "network", "workload", "faults", "federation", "metrics", "topology",
        "services", "homeserver", "adversaries",
    )

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        names = self.server_names()
        known = set(names)
        problems: list[tuple[tuple[str | int, ...], Any, str]] = []
        # Identity servers are network nodes too: partitions may name them.
        nodes = known | set(self.services.identity.server_names())
        for k, partition in enumerate(self.network.partitions):
            for g, group in enumerate(partition.groups):
                for i, name in enumerate(group):
                    if name not in nodes:
                        problems.append(
                            (("network", "partitions", k, "groups", g, i), name, _unknown_server(name, nodes))
                        )
        clash = sorted(known & set(self.services.identity.server_names()))
        if clash:
            problems.append((("services", "identity", "count"), self.services.identity.count,
                             f"identity server {show(clash[0])} has the name of a homeserver (identity servers are "
                             "is0 .. is{count-1}; rename the homeservers)"))
        for name, bps in self.network.bandwidth_per_server.items():
            if name not in known:
                problems.append((("network", "bandwidth_per_server", name), bps, _unknown_server(name, known)))
        for k, fault in enumerate(self.faults):
            if fault.server not in known:
                problems.append((("faults", k, "server"), fault.server, _unknown_server(fault.server, known)))
        problems += _topology_problems(self.topology, names)
        problems += _adversary_problems(self, known)
        if isinstance(self.network.latency, RegionsLatency) and self.servers.regions is None:
            problems.append(
                (
                    ("network", "latency", "model"),
                    "regions",
                    '"regions" needs servers.regions (a table name such as "simblock-2019" or a mapping)',
                )
            )
        duration = self.simulation.duration_ms
        stop = self.workload.stop_ms
        if stop is not None and stop > duration:
            problems.append(
                (
                    ("workload", "stop"),
                    format_duration(stop),
                    f"{show(format_duration(stop))} is after the end of the run "
                    f"(simulation.duration = {show(format_duration(duration))})",
                )
            )
        if self.workload.start_ms > duration:
            problems.append(
                (
                    ("workload", "start"),
                    format_duration(self.workload.start_ms),
                    f"{show(format_duration(self.workload.start_ms))} is after the end of the run "
                    f"(simulation.duration = {show(format_duration(duration))})",
                )
            )
        problems += run_size_problems(self)
        if problems:
            raise ConfigProblems(problems)
        return self

    def server_names(self) -> tuple[str, ...]:
        """The servers' names, in order."""
        return self.servers.server_names()

    @property
    def workload_stop_ms(self) -> float:
        """When the workload stops generating work: ``workload.stop`` or the end of the run."""
        if self.workload.stop_ms is None:
            return self.simulation.duration_ms
        return self.workload.stop_ms

    def describe(self) -> str:
        """One short line: ``12 servers, 10m, v2``."""
        n = self.servers.count
        return (
            f"{n} server{'s' if n != 1 else ''}, {format_duration(self.simulation.duration_ms)}, "
            f"{self.simulation.state_resolution}"
        )


def _adversary_problems(sc: "Scenario", known: set[str]) -> list[tuple[tuple[str | int, ...], Any, str]]:
    problems: list[tuple[tuple[str | int, ...], Any, str]] = []
    for k, adv in enumerate(sc.adversaries):
        if adv.server not in known:
            problems.append((("adversaries", k, "server"), adv.server, _unknown_server(adv.server, known)))
        for i, name in enumerate(adv.targets):
            if name not in known:
                problems.append((("adversaries", k, "targets", i), name, _unknown_server(name, known)))
        victim = getattr(adv, "victim", None)
        if victim is not None:
            if victim not in known:
                problems.append((("adversaries", k, "victim"), victim, _unknown_server(victim, known)))
            elif victim == adv.server:
                problems.append((("adversaries", k, "victim"), victim,
                                 f"{show(victim)} is the adversary itself (the victim is another server)"))
    bad = set(sc.servers.malicious) | {a.server for a in sc.adversaries}
    if sc.adversaries and known and bad >= known:
        problems.append((("adversaries",), sorted(bad),
                         "every server is an adversary (at least one honest server must create the room)"))
    return problems


def _topology_problems(topo: TopologyConfig, names: tuple[str, ...]) -> list[tuple[tuple[str | int, ...], Any, str]]:
    """Servers named in ``[topology]`` must exist; the room must not be left empty."""
    known = set(names)
    problems: list[tuple[tuple[str | int, ...], Any, str]] = []
    for i, hub in enumerate(topo.relay.hubs):
        if hub not in known:
            problems.append((("topology", "relay", "hubs", i), hub, _unknown_server(hub, known)))
    graph = topo.graph
    nodes: set[str] = set()
    if graph is not None:
        from .netgraph import graph_problems

        problems += [(("topology", "graph") + p, v, m) for p, v, m in graph_problems(graph, names)]
        nodes = set(graph.node_names())
    for k, change in enumerate(topo.changes):
        if change.kind in ("join", "leave") and change.server not in known:
            problems.append((("topology", "changes", k, "server"), change.server, _unknown_server(change.server, known)))
        elif change.kind == "link" and graph is None:
            for j, name in enumerate(change.between):
                if name not in known:
                    problems.append((("topology", "changes", k, "between", j), name,
                                     _unknown_server(name, known) + " (without [topology.graph], a link joins two servers)"))
            if change.between[0] == change.between[1]:
                problems.append((("topology", "changes", k, "between"), list(change.between),
                                 f"{show(list(change.between))} names one server twice"))
        elif change.kind == "link":
            for j, name in enumerate(change.between):
                if name not in nodes:
                    problems.append((("topology", "changes", k, "between", j), name,
                                     f"{show(name)} is not a node of the network graph"))
        elif change.kind == "node" and graph is None:
            problems.append((("topology", "changes", k, "node"), change.node,
                             f"{show(change.node)}: a node change needs a network graph ([topology.graph])"))
        elif change.kind == "node" and change.node not in nodes:
            problems.append((("topology", "changes", k, "node"), change.node,
                             f"{show(change.node)} is not a node of the network graph"))
    first = {}
    for change in sorted(topo.changes, key=lambda c: c.at_ms):
        if change.kind in ("join", "leave"):
            first.setdefault(change.server, change.kind)
    late = [n for n in names if first.get(n) == "join"]
    if names and len(late) == len(names):
        problems.append((("topology", "changes"), late[0],
                         "every server's first change is a join: no server is left to create the room"))
    return problems
