"""The SimPy runtime: network, transport, federation sender, homeservers,
workload and the world that runs them (``simulate``).

May import :mod:`simfed.protocol` and :mod:`simfed.config`; never the
experiment layer.
"""

from .fanout import FullMesh, make_fanout
from .federation import FederationConfig, FederationSender
from .homeserver import Homeserver, HomeserverConfig
from .network import Network, Partition
from .transport import MatrixError, RequestFailed, Response, Transport
from .world import SimResult, World, simulate

__all__ = [
    "FederationConfig",
    "FederationSender",
    "FullMesh",
    "Homeserver",
    "HomeserverConfig",
    "MatrixError",
    "Network",
    "Partition",
    "RequestFailed",
    "Response",
    "SimResult",
    "Transport",
    "World",
    "make_fanout",
    "simulate",
]
