"""Section ``[topology]``: who sends to whom."""

from __future__ import annotations

from typing import Literal

from .base import _Model

class TopologyConfig(_Model):
    """``[topology]``: who sends to whom. Only the protocol's full mesh for now."""

    strategy: Literal["full_mesh"] = "full_mesh"
