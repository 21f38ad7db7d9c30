"""Loss models.

Interface: ``drops(src, dst, rng) -> bool``. The network asks it once per
packet (TCP segment, SYN) for the packet loss of ``network.loss``, which the
TCP model in ``tcp.py`` turns into retransmission delays, and once per
message for the whole-message loss of ``network.request_loss``.
``NoLoss`` and ``BernoulliLoss`` are stateless frozen dataclasses.
``GilbertElliottLoss`` keeps a two-state Markov chain per directed link, so
an instance belongs to one simulation run: build a new one per run (or call
``fresh()``), never share it between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

__all__ = ["LossModel", "NoLoss", "BernoulliLoss", "GilbertElliottLoss", "WindowedLoss"]


class LossModel(Protocol):
    """Decides whether one message on a directed link is lost."""

    def drops(self, src: str, dst: str, rng: np.random.Generator) -> bool:
        """True if the message from src to dst is lost."""
        ...


@dataclass(frozen=True, slots=True)
class NoLoss:
    """Nothing is ever lost; draws nothing from rng."""

    def drops(self, src: str, dst: str, rng: np.random.Generator) -> bool:
        """Always False."""
        return False


@dataclass(frozen=True, slots=True)
class BernoulliLoss:
    """Each message is lost independently with probability ``p``."""

    p: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"BernoulliLoss.p must be in [0, 1], got {self.p!r}")

    def drops(self, src: str, dst: str, rng: np.random.Generator) -> bool:
        """One uniform draw per message."""
        return rng.random() < self.p


class GilbertElliottLoss:
    """Bursty loss: a Good/Bad Markov chain per directed link.

    Each link starts Good. For every message on the link the chain first takes
    one step (Good -> Bad with ``p_good_to_bad``, Bad -> Good with
    ``p_bad_to_good``), then the message is lost with ``loss_good`` or
    ``loss_bad`` according to the new state. The chain advances per packet
    or message asked about, not per unit of time, so a burst is a run of
    consecutive packets (messages, for ``request_loss``) on the link.

    Long-run loss rate: ``pi_bad * loss_bad + (1 - pi_bad) * loss_good`` with
    ``pi_bad = p_good_to_bad / (p_good_to_bad + p_bad_to_good)``; the mean
    sojourn in Bad is ``1 / p_bad_to_good`` packets (messages).
    """

    __slots__ = ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad", "_bad")

    def __init__(
        self,
        p_good_to_bad: float,
        p_bad_to_good: float,
        loss_good: float = 0.0,
        loss_bad: float = 1.0,
    ) -> None:
        for name, value in (
            ("p_good_to_bad", p_good_to_bad),
            ("p_bad_to_good", p_bad_to_good),
            ("loss_good", loss_good),
            ("loss_bad", loss_bad),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"GilbertElliottLoss.{name} must be in [0, 1], got {value!r}")
        if p_good_to_bad + p_bad_to_good == 0:
            raise ValueError("GilbertElliottLoss needs p_good_to_bad + p_bad_to_good > 0")
        self.p_good_to_bad = p_good_to_bad
        self.p_bad_to_good = p_bad_to_good
        self.loss_good = loss_good
        self.loss_bad = loss_bad
        self._bad: dict[tuple[str, str], bool] = {}

    def __repr__(self) -> str:
        return (
            f"GilbertElliottLoss(p_good_to_bad={self.p_good_to_bad}, p_bad_to_good={self.p_bad_to_good}, "
            f"loss_good={self.loss_good}, loss_bad={self.loss_bad})"
        )

    @property
    def stationary_loss_rate(self) -> float:
        """The long-run fraction of messages lost on one link."""
        pi_bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good

    def fresh(self) -> GilbertElliottLoss:
        """A new instance with the same parameters and every link Good."""
        return GilbertElliottLoss(self.p_good_to_bad, self.p_bad_to_good, self.loss_good, self.loss_bad)

    def drops(self, src: str, dst: str, rng: np.random.Generator) -> bool:
        """Step the link's chain, then decide this message (two uniform draws)."""
        key = (src, dst)
        bad = self._bad.get(key, False)
        u = rng.random()
        bad = (u >= self.p_bad_to_good) if bad else (u < self.p_good_to_bad)
        self._bad[key] = bad
        return rng.random() < (self.loss_bad if bad else self.loss_good)


@dataclass(frozen=True, slots=True)
class WindowedLoss:
    """``inner`` applies during ``[start_ms, end_ms)`` of simulated time; no
    loss outside (``now`` gives the current time)."""

    inner: LossModel
    start_ms: float
    end_ms: float
    now: Callable[[], float]

    def drops(self, src: str, dst: str, rng: np.random.Generator) -> bool:
        t = self.now()
        return self.start_ms <= t < self.end_ms and self.inner.drops(src, dst, rng)
