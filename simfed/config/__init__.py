"""The configuration of one simulation, as typed, frozen pydantic models.

A :class:`Scenario` is everything ``simfed.simulate(config)`` needs. It is
built from a TOML scenario file (see :mod:`simfed.experiment.scenario`) or in
Python; either way a bad value is refused on construction, with the path of
the offending key, so a bad configuration can't exist.

One module per part: :mod:`.base` (errors with paths, unit-bearing types,
the base model), :mod:`.core` (simulation, servers, workload, faults,
federation, metrics), :mod:`.homeserver`, :mod:`.network`, :mod:`.topology`, :mod:`.services`
and :mod:`.scenario` (the root and the checks that span sections).
See :mod:`.base` for the conventions every model follows.

pydantic is used only here, at the edge; ``sim/`` and ``protocol/`` read
these values into their own frozen dataclasses.
"""

from .base import (
    REGION_TABLES,
    REGIONS,
    STATE_RESOLUTION_FALLBACK,
    ConfigProblems,
    _Model,
    available_state_resolutions,
    show,
)
from .core import (
    ClockSkewConfig,
    CrashFault,
    FaultConfig,
    FederationConfig,
    MetricsConfig,
    NormalSkew,
    NoSkew,
    ProcessingCosts,
    RateLimitConfig,
    RetryConfig,
    ServersConfig,
    SimulationConfig,
    StateChangeMix,
    UniformSkew,
    WorkloadConfig,
)
from .homeserver import DummyEventsConfig, HomeserverSection
from .network import (
    BernoulliLoss,
    ConstantLatency,
    GilbertElliottLoss,
    LatencyConfig,
    LognormalLatency,
    LossConfig,
    NetworkConfig,
    NormalLatency,
    PartitionConfig,
    RegionsLatency,
    TcpConfig,
    UniformLatency,
)
from .scenario import Scenario
from .services import (
    DirectoryConfig,
    IdentityConfig,
    PresenceConfig,
    PresenceListsConfig,
    ProfilesConfig,
    ReceiptsConfig,
    ServicesConfig,
    TypingConfig,
)
from .topology import STRATEGIES, ChangeConfig, GossipConfig, RelayConfig, TopologyConfig, TreeConfig

__all__ = [
    "REGIONS",
    "REGION_TABLES",
    "STATE_RESOLUTION_FALLBACK",
    "BernoulliLoss",
    "ClockSkewConfig",
    "ConfigProblems",
    "ConstantLatency",
    "CrashFault",
    "DummyEventsConfig",
    "FaultConfig",
    "FederationConfig",
    "GilbertElliottLoss",
    "HomeserverSection",
    "LatencyConfig",
    "LognormalLatency",
    "LossConfig",
    "MetricsConfig",
    "NetworkConfig",
    "NormalLatency",
    "NormalSkew",
    "NoSkew",
    "PartitionConfig",
    "RateLimitConfig",
    "RegionsLatency",
    "RetryConfig",
    "Scenario",
    "ServicesConfig",
    "PresenceConfig",
    "PresenceListsConfig",
    "TypingConfig",
    "ReceiptsConfig",
    "ProfilesConfig",
    "DirectoryConfig",
    "IdentityConfig",
    "ProcessingCosts",
    "ServersConfig",
    "SimulationConfig",
    "StateChangeMix",
    "STRATEGIES",
    "TcpConfig",
    "ChangeConfig",
    "GossipConfig",
    "RelayConfig",
    "TopologyConfig",
    "TreeConfig",
    "UniformLatency",
    "UniformSkew",
    "WorkloadConfig",
    "_Model",
    "available_state_resolutions",
    "show",
]
