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
    """Each packet (``loss``) or message (``request_loss``) is lost
    independently with probability ``p``."""

    model: Literal["bernoulli"] = "bernoulli"
    p: Probability = 0.0


class GilbertElliottLoss(_Model):
    """Two-state (good/bad) Markov loss, for bursts; one chain per link,
    stepped per packet (``loss``) or per message (``request_loss``)."""

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


class TcpConfig(_Model):
    """``[network.tcp]``: how packet loss costs time (``simfed.sim.tcp``).

    Defaults are Linux's TCP constants and Synapse's connection pool."""

    enabled: bool = True
    """False: no handshakes, no retransmissions; ``network.loss`` must be 0."""
    mss: int = Field(1460, ge=1)
    """Bytes of payload per segment (Ethernet MTU 1500 - IPv4 and TCP headers)."""
    rto: Literal["linux", "rfc6298"] = "linux"
    """First retransmission timeout: RTT + rto_min (Linux), or max(rto_min, 3 RTT) (RFC 6298)."""
    rto_min_ms: PositiveDuration = Field(200.0, alias="rto_min")
    """Linux TCP_RTO_MIN; RFC 6298 asks for 1 s."""
    rto_max_ms: PositiveDuration = Field(120_000.0, alias="rto_max")
    """Linux TCP_RTO_MAX: the doubling RTO stops here."""
    syn_rto_ms: PositiveDuration = Field(1_000.0, alias="syn_rto")
    """First SYN retransmission timeout (Linux TCP_TIMEOUT_INIT), doubling."""
    syn_retries: int = Field(6, ge=0)
    """Linux tcp_syn_retries: SYN retransmissions before connect fails."""
    data_retries: int = Field(15, ge=0)
    """Linux tcp_retries2: retransmissions of a segment before the connection fails."""
    tls_rtts: int = Field(1, ge=0)
    """Round trips of the TLS handshake after the TCP one (1: TLS 1.3, 2: TLS 1.2)."""
    keepalive: bool = True
    """Requests reuse the requester's connection to the destination (Synapse's pool);
    False opens a connection per request."""
    idle_timeout_ms: PositiveDuration = Field(120_000.0, alias="idle_timeout")
    """A kept-alive connection idle this long is closed (Synapse: 2 minutes)."""
    mathis: bool = False
    """Cap each message's throughput at MSS / RTT * sqrt(3/2) / sqrt(p) (Mathis et al. 1997)."""

    @model_validator(mode="after")
    def _ordered(self) -> "TcpConfig":
        if self.rto_max_ms < self.rto_min_ms:
            raise ConfigProblems([(("rto_max",), format_duration(self.rto_max_ms),
                                   f"{show(format_duration(self.rto_max_ms))} is below rto_min = "
                                   f"{show(format_duration(self.rto_min_ms))}")])
        return self


class LossWindow(_Model):
    """``network.loss_window``: the period in which ``network.loss`` and
    ``network.request_loss`` apply."""

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
    """Packet loss, per TCP segment: lost packets are retransmitted
    (``[network.tcp]``) and cost time, not the message. A number is the
    probability of independent loss."""
    request_loss: Annotated[LossConfig, BeforeValidator(_loss_shorthand)] = BernoulliLoss()
    """Whole HTTP messages dropped (a nemesis for failure studies: each
    costs the requester its request timeout). Same forms as ``loss``."""
    tcp: TcpConfig = TcpConfig()
    """The TCP model that turns packet loss into delay (see ``TcpConfig``)."""
    bandwidth_bps: Bandwidth = Field(100e6, alias="bandwidth")
    """Link capacity of each server (serialisation delay = bytes * 8 / bandwidth)."""
    bandwidth_per_server: dict[str, Bandwidth] = Field(default_factory=dict)
    """Per-server overrides of ``bandwidth``: ``{ hs0 = "1Mbit/s" }``."""
    partitions: tuple[PartitionConfig, ...] = ()
    """Partitions, applied while active; they may overlap in time."""
    loss_window: LossWindow | None = None
    """When ``loss`` and ``request_loss`` apply: ``{ start = "30s", end = "4m" }``;
    outside it the network loses nothing. Default: the whole run."""

    @model_validator(mode="after")
    def _loss_needs_tcp(self) -> "NetworkConfig":
        lossy = not (self.loss.model == "bernoulli" and self.loss.p == 0)
        if lossy and not self.tcp.enabled:
            raise ConfigProblems([(("tcp", "enabled"), False,
                                   "false leaves packet loss network.loss without a TCP model "
                                   "(set network.loss = 0, or drop whole messages with network.request_loss)")])
        return self


