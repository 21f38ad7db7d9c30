"""Byzantine behaviours of ``[[adversaries]]`` entries (see
:mod:`simfed.config.adversaries` for their parameters and the README
section "Adversaries" for what each can and cannot show).

:func:`attach` gives every entry's server its behaviour; a server with at
least one entry is not honest. Each behaviour module registers its classes
in :data:`BEHAVIOURS` by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import equivocation, flood, forging, history, keys, lying, withholding
from .base import BEHAVIOURS, Behaviour, register

if TYPE_CHECKING:
    from ..world import World

__all__ = ["BEHAVIOURS", "Behaviour", "attach", "register"]

_MODULES = (forging, equivocation, history, flood, keys, withholding, lying)


def attach(world: "World") -> list[Behaviour]:
    """Create the behaviours of the scenario's ``[[adversaries]]`` and hand
    each to its server (``Homeserver.behaviours``); returns them in order."""
    out: list[Behaviour] = []
    for index, cfg in enumerate(world.scenario.adversaries):
        cls = BEHAVIOURS.get(cfg.behaviour)
        if cls is None:
            raise NotImplementedError(f"adversary behaviour {cfg.behaviour!r} is not implemented yet")
        hs = world.servers[cfg.server]
        b = cls(world, hs, cfg, index)
        hs.behaviours.append(b)
        out.append(b)
    return out
