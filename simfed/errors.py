"""The exception hierarchy shared by every layer of simfed."""

from __future__ import annotations

__all__ = ["SimfedError"]


class SimfedError(Exception):
    """Base class of every error simfed raises on purpose."""
