"""Section ``[network]``: latency, loss, partitions and bandwidth."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from .base import (
    Bandwidth,
    ConfigProblems,
    Duration,
    _Model,
    PositiveDuration,
    Probability,
    format_duration,
    show,
    _tagged,
)


# --------------------------------------------------------------------------
# [network]


class ConstantLatency(_Model):
    """Every message takes exactly ``ms``."""

    model: Literal["constant"] = "constant"
    delay_ms: Duration = Field(50.0, alias="ms")


class UniformLatency(_Model):
    """One-way latency drawn per message from Uniform(low, high)."""

    model: Literal["uniform"] = "uniform"
    low_ms: Duration = Field(alias="low")
    high_ms: Duration = Field(alias="high")

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.high_ms < self.low_ms:
            raise ConfigProblems(
                [(("high",), self.high_ms, f"{format_duration(self.high_ms)} is below low = {format_duration(self.low_ms)}")]
            )
        return self


class NormalLatency(_Model):
    """One-way latency drawn per message from Normal(mean, sd), truncated at 0."""

    model: Literal["normal"] = "normal"
    mean_ms: Duration = Field(alias="mean")
    sd_ms: Duration = Field(alias="sd")


class LognormalLatency(_Model):
    """One-way latency drawn per message from a lognormal with this median and
    log-space standard deviation ``sigma`` (heavy right tail, never negative)."""

    model: Literal["lognormal"] = "lognormal"
    median_ms: PositiveDuration = Field(50.0, alias="median")
    sigma: float = Field(0.5, ge=0.0)


class RegionsLatency(_Model):
    """Latency from the region-to-region table of ``servers.regions``;
    ``jitter = "pareto"`` adds SimBlock-style Pareto-distributed variation."""

    model: Literal["regions"] = "regions"
    jitter: Literal["pareto", "none"] = "pareto"


LatencyConfig = _tagged(
    "model", ConstantLatency, UniformLatency, NormalLatency, LognormalLatency, RegionsLatency
)


def _latency_shorthand(value: Any) -> Any:
    """``latency = "50ms"`` means ``{ model = "constant", ms = "50ms" }``."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"model": "constant", "ms": value}
    return value


class BernoulliLoss(_Model):
    """Each message is lost independently with probability ``p``."""

    model: Literal["bernoulli"] = "bernoulli"
    p: Probability = 0.0


class GilbertElliottLoss(_Model):
    """Two-state (good/bad) Markov loss, for bursts; one chain per link."""

    model: Literal["gilbert-elliott"] = "gilbert-elliott"
    p_good_to_bad: Probability
    p_bad_to_good: Probability
    loss_good: Probability = 0.0
    loss_bad: Probability = 1.0


LossConfig = _tagged("model", BernoulliLoss, GilbertElliottLoss)

_LOSS_FORMS = 'a probability in [0, 1], or a table with model = "bernoulli" or "gilbert-elliott"'


def _loss_shorthand(value: Any) -> Any:
    """``loss = 0.05`` means ``{ model = "bernoulli", p = 0.05 }``."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError(f"{show(value)} is not a valid loss (expected {_LOSS_FORMS})")
    if isinstance(value, (int, float)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{show(value)} is not a valid loss (expected {_LOSS_FORMS})")
        return {"model": "bernoulli", "p": float(value)}
    return value


class PartitionConfig(_Model):
    """A network partition from ``start`` until ``end`` (then it heals).

    Servers in different ``groups`` cannot reach each other; servers not
    listed in any group form one more, implicit group. With ``one_way``,
    only traffic from a group to a *later* group (in list order, the implicit
    group last) is cut; the reverse direction still flows.
    """

    start_ms: Duration = Field(alias="start")
    end_ms: Duration = Field(alias="end")
    groups: tuple[tuple[str, ...], ...] = Field(min_length=1)
    one_way: bool = False

    @model_validator(mode="after")
    def _valid(self) -> PartitionConfig:
        problems: list[tuple[tuple[str | int, ...], Any, str]] = []
        if self.end_ms <= self.start_ms:
            problems.append(
                (
                    ("end",),
                    format_duration(self.end_ms),
                    f"{show(format_duration(self.end_ms))} is not after start = "
                    f"{show(format_duration(self.start_ms))} (a partition must end after it starts)",
                )
            )
        seen: dict[str, int] = {}
        for g, group in enumerate(self.groups):
            if not group:
                problems.append((("groups", g), [], "[] is an empty group"))
            for i, name in enumerate(group):
                if name in seen:
                    where = "twice in this group" if seen[name] == g else f"also in groups[{seen[name]}]"
                    problems.append(
                        (("groups", g, i), name, f"{show(name)} is {where} (a server belongs to at most one group)")
                    )
                else:
                    seen[name] = g
        if problems:
            raise ConfigProblems(problems)
        return self

    def servers(self) -> tuple[str, ...]:
        """Every server named in a group."""
        return tuple(n for group in self.groups for n in group)


class LossWindow(_Model):
    """``network.loss_window``: the period in which ``network.loss`` applies."""

    start_ms: Duration = Field(0.0, alias="start")
    end_ms: PositiveDuration = Field(alias="end")

    @model_validator(mode="after")
    def _ordered(self) -> "LossWindow":
        if not self.end_ms > self.start_ms:
            raise ValueError(f"end ({self.end_ms} ms) must be after start ({self.start_ms} ms)")
        return self


class NetworkConfig(_Model):
    """``[network]``: links between every pair of servers."""

    latency: Annotated[LatencyConfig, BeforeValidator(_latency_shorthand)] = LognormalLatency()
    """One-way delay per message. Default: lognormal, median 50 ms, sigma 0.5.
    A bare duration (``latency = "80ms"``) is a constant latency."""
    loss: Annotated[LossConfig, BeforeValidator(_loss_shorthand)] = BernoulliLoss()
    """Message loss. A number is the probability of independent loss."""
    bandwidth_bps: Bandwidth = Field(100e6, alias="bandwidth")
    """Link capacity of each server (serialisation delay = bytes * 8 / bandwidth)."""
    bandwidth_per_server: dict[str, Bandwidth] = Field(default_factory=dict)
    """Per-server overrides of ``bandwidth``: ``{ hs0 = "1Mbit/s" }``."""
    partitions: tuple[PartitionConfig, ...] = ()
    """Partitions, applied while active; they may overlap in time."""
    loss_window: LossWindow | None = None
    """When ``loss`` applies: ``{ start = "30s", end = "4m" }``; outside it
    the network loses nothing. Default: the whole run."""


