"""The root of a scenario: every section, and the checks that span sections."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from .base import (
    ConfigProblems,
    show,
    _Model,
    _unknown_server,
    format_duration,
)

from .core import FaultConfig, FederationConfig, MetricsConfig, ServersConfig, SimulationConfig, WorkloadConfig
from .network import NetworkConfig, RegionsLatency
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
    metrics: MetricsConfig = MetricsConfig()
    topology: TopologyConfig = TopologyConfig()

    SECTIONS: ClassVar[tuple[str, ...]] = (
        "simulation", "servers", "network", "workload", "faults", "federation", "metrics", "topology",
    )

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        names = self.server_names()
        known = set(names)
        problems: list[tuple[tuple[str | int, ...], Any, str]] = []
        for k, partition in enumerate(self.network.partitions):
            for g, group in enumerate(partition.groups):
                for i, name in enumerate(group):
                    if name not in known:
                        problems.append(
                            (("network", "partitions", k, "groups", g, i), name, _unknown_server(name, known))
                        )
        for name, bps in self.network.bandwidth_per_server.items():
            if name not in known:
                problems.append((("network", "bandwidth_per_server", name), bps, _unknown_server(name, known)))
        for k, fault in enumerate(self.faults):
            if fault.server not in known:
                problems.append((("faults", k, "server"), fault.server, _unknown_server(fault.server, known)))
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
