"""The exception hierarchy shared by every layer of simfed."""

from __future__ import annotations

__all__ = ["SimfedError", "SimfedWarning", "ScenarioMismatch"]


class SimfedError(Exception):
    """Base class of every error simfed raises on purpose."""


class SimfedWarning(UserWarning):
    """Base class of every warning simfed gives on purpose (the command line
    prints these as one plain line on stderr)."""


class ScenarioMismatch(SimfedError, ValueError):
    """A scenario that validates on its own but does not fit what the run
    built from its seed (a link change naming two nodes the generated graph
    does not connect). Raised before the simulation starts; the message
    starts with the dotted path of the offending key."""
