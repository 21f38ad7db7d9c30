"""The configuration of one simulation, as typed, frozen pydantic models.

A :class:`Scenario` is everything ``simfed.simulate(config)`` needs. It is
built from a TOML scenario file (see :mod:`simfed.experiment.scenario`) or in
Python; either way a bad value is refused on construction, with the path of
the offending key, so a bad configuration can't exist.

Conventions
-----------
* Every model is frozen and forbids unknown keys (a typo fails before the
  run, with the closest known key suggested).
* Python attributes carry their unit (``duration_ms``, ``bandwidth_bps``);
  the TOML key is the short alias (``duration``, ``bandwidth``) and takes a
  string with units (``"10m"``, ``"20Mbit/s"``) or a bare number (ms, bit/s),
  see :mod:`simfed.units`. Both spellings are accepted on input.
* Simulated time is float milliseconds from the start of the run (t = 0).
  ``simulation.duration`` is the whole run: nothing happens after it. The
  workload generates new events in ``[workload.start, workload.stop)``; to
  watch the network settle, stop the workload before the end of the run.
* Every section is optional; ``Scenario()`` is a small valid run (4 servers,
  2 users each, 60 s, lognormal latency, no loss).

pydantic is used only here, at the edge; ``sim/`` and ``protocol/`` read
these values into their own frozen dataclasses.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .units import (
    format_bandwidth,
    format_duration,
    parse_bandwidth,
    parse_duration,
    parse_signed_duration,
)

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
    "ServersConfig",
    "SimulationConfig",
    "StateChangeMix",
    "TopologyConfig",
    "UniformLatency",
    "UniformSkew",
    "WorkloadConfig",
    "available_state_resolutions",
]

#: Region names a server may be placed in (SimBlock's six regions).
REGIONS: tuple[str, ...] = ("NA", "EU", "SA", "AP", "JP", "AU")
#: Named region tables: ``servers.regions = "simblock-2019"`` places servers
#: by that table's distribution (the numbers live in ``simfed.sim``).
REGION_TABLES: tuple[str, ...] = ("simblock-2019",)
#: Used when ``simfed.protocol.stateres.available_algorithms`` is not there.
STATE_RESOLUTION_FALLBACK: tuple[str, ...] = ("v2", "v1", "naive")


def available_state_resolutions() -> tuple[str, ...]:
    """Names of the state resolution algorithms ``simulation.state_resolution`` accepts."""
    try:
        from .protocol.stateres import available_algorithms
    except ImportError:
        return STATE_RESOLUTION_FALLBACK
    return tuple(available_algorithms())


# --------------------------------------------------------------------------
# Errors that carry a path: raised inside validators, expanded by
# simfed.experiment.scenario into one ScenarioError line each.


class ConfigProblems(ValueError):
    """One or more problems found by a validator, each at a path relative to
    the model that raised it.

    ``problems`` is a list of ``(path, value, message)`` where ``path`` is a
    tuple of keys and list indices and ``message`` already names the value.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], Any, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(_line(p, m) for p, _v, m in self.problems))


def _line(path: tuple[str | int, ...], message: str) -> str:
    dotted = ".".join(str(p) for p in path)
    return f"{dotted}: {message}" if dotted else message


def show(value: Any) -> str:
    """A value as a scenario author wrote it: strings in double quotes."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


# --------------------------------------------------------------------------
# Unit-bearing field types


def _human(info: SerializationInfo) -> bool:
    return bool(info.context and info.context.get("human"))


def _ser_duration(value: float | None, info: SerializationInfo) -> Any:
    if value is not None and _human(info):
        return format_duration(value)
    return value


def _ser_bandwidth(value: float, info: SerializationInfo) -> Any:
    return format_bandwidth(value) if _human(info) else value


_DURATION_PATTERN = r"^\s*((\d+(\.\d*)?|\.\d+)\s*(ms|us|d|h|m|s)\s*)+$|^\s*(\d+(\.\d*)?|\.\d+)\s*$"


def _duration_schema(minimum: str, signed: bool = False) -> dict[str, Any]:
    pattern = _DURATION_PATTERN.replace(r"^\s*", r"^\s*-?\s*") if signed else _DURATION_PATTERN
    number: dict[str, Any] = {"type": "number"}
    if not signed:
        number[minimum] = 0
    return {
        "anyOf": [number, {"type": "string", "pattern": pattern}],
        "description": 'A duration: milliseconds, or a string such as "250ms", "6m30s", "1h", "7d".',
    }


def _positive_duration(value: Any) -> float:
    ms = parse_duration(value)
    if ms <= 0:
        raise ValueError(f"{show(value)} is too short (expected a duration longer than 0)")
    return ms


def _positive_bandwidth(value: Any) -> float:
    bps = parse_bandwidth(value)
    if bps <= 0:
        raise ValueError(f"{show(value)} is too small (expected a bandwidth above 0)")
    return bps


_ser_d = PlainSerializer(_ser_duration, when_used="always")

#: Milliseconds >= 0, written ``"250ms"``, ``"6m30s"`` or as a number (ms).
Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_duration_schema("minimum")), _ser_d
]
#: Milliseconds > 0.
PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive_duration),
    WithJsonSchema(_duration_schema("exclusiveMinimum")),
    _ser_d,
]
#: Milliseconds, negative allowed (``"-20ms"``): clock offsets.
SignedDuration = Annotated[
    float,
    BeforeValidator(parse_signed_duration),
    WithJsonSchema(_duration_schema("minimum", signed=True)),
    _ser_d,
]
#: bit/s > 0, written ``"20Mbit/s"``, ``"10MB/s"`` or as a number (bit/s).
Bandwidth = Annotated[
    float,
    BeforeValidator(_positive_bandwidth),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*([kKMG]?(bit|B)\s*/\s*s|[kKMG]?bps)?\s*$"},
            ],
            "description": 'A bandwidth: bit/s, or a string such as "20Mbit/s", "1Gbit/s", "10MB/s".',
        }
    ),
    PlainSerializer(_ser_bandwidth, when_used="always"),
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


# --------------------------------------------------------------------------
# Base model


class _Model(BaseModel):
    """Frozen, unknown keys refused with a suggestion, both key spellings accepted."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
    )

    def __hash__(self) -> int:
        # Frozen, so hashable; dict-valued fields (regions, bandwidth_per_server)
        # defeat pydantic's field-tuple hash, so hash the canonical JSON instead.
        return hash((type(self).__qualname__, self.model_dump_json()))

    @classmethod
    def toml_keys(cls) -> list[str]:
        """The keys a scenario file uses for this section (aliases first)."""
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def unknown_key_message(cls, key: str) -> str:
        """``unknown key "latncy" (did you mean "latency"? known keys: ...)``."""
        keys = cls.toml_keys()
        close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        return f"unknown key {show(key)} ({hint}known keys: {', '.join(keys)})"


def _tagged(key: str, *members: type[BaseModel]) -> Any:
    """A union discriminated on ``key``: the tag is the member's ``key`` literal."""
    return Annotated[Union[members], Field(discriminator=key)]


# --------------------------------------------------------------------------
# [simulation]


class SimulationConfig(_Model):
    """``[simulation]``: the run as a whole."""

    seed: int = Field(0, ge=0)
    """Root seed; every component draws from its own stream spawned from it."""
    duration_ms: PositiveDuration = Field(60_000.0, alias="duration")
    """Length of the whole run (simulated). Nothing is simulated after it."""
    room_version: Annotated[
        Literal["10", "11"], BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
    ] = "11"
    """Room version of the simulated room."""
    state_resolution: str = "v2"
    """State resolution algorithm every server uses (see ``available_state_resolutions``)."""

    @field_validator("state_resolution")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        choices = available_state_resolutions()
        if value not in choices:
            raise ValueError(
                f"{show(value)} is not a known state resolution algorithm "
                f"(expected one of {', '.join(show(c) for c in choices)})"
            )
        return value


# --------------------------------------------------------------------------
# [servers]


class NoSkew(_Model):
    """Every server's clock is exact."""

    distribution: Literal["none"] = "none"


class NormalSkew(_Model):
    """Each server's clock offset is drawn once from Normal(mean, sd)."""

    distribution: Literal["normal"] = "normal"
    mean_ms: SignedDuration = Field(0.0, alias="mean")
    sd_ms: Duration = Field(0.0, alias="sd")


class UniformSkew(_Model):
    """Each server's clock offset is drawn once from Uniform(low, high)."""

    distribution: Literal["uniform"] = "uniform"
    low_ms: SignedDuration = Field(0.0, alias="low")
    high_ms: SignedDuration = Field(0.0, alias="high")

    @model_validator(mode="after")
    def _ordered(self) -> UniformSkew:
        if self.high_ms < self.low_ms:
            raise ConfigProblems(
                [(("high",), self.high_ms, f"{format_duration(self.high_ms)} is below low = {format_duration(self.low_ms)}")]
            )
        return self


ClockSkewConfig = _tagged("distribution", NoSkew, NormalSkew, UniformSkew)


def _skew_shorthand(value: Any) -> Any:
    if value is None or value == "none":
        return {"distribution": "none"}
    return value


class ServersConfig(_Model):
    """``[servers]``: the homeservers in the room."""

    count: int = Field(4, ge=1)
    """Number of homeservers."""
    names: tuple[str, ...] | None = None
    """Explicit server names; default ``hs0 .. hs{count-1}``."""
    users_per_server: int = Field(2, ge=1)
    """Local users on each server, all joined to the room."""
    regions: str | dict[str, str] | None = None
    """A region table name (``"simblock-2019"``), an explicit ``{server = region}``
    mapping covering every server (regions NA, EU, SA, AP, JP, AU), or none."""
    clock_skew: Annotated[ClockSkewConfig, BeforeValidator(_skew_shorthand)] = NoSkew()
    """Per-server clock offset (origin_server_ts comes from the skewed clock)."""
    malicious: tuple[str, ...] = ()
    """Servers that forge events."""

    @field_validator("names")
    @classmethod
    def _valid_names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is None:
            return None
        problems = []
        seen: set[str] = set()
        for i, name in enumerate(names):
            if not name or any(c.isspace() for c in name):
                problems.append(((i,), name, f"{show(name)} is not a valid server name (non-empty, no spaces)"))
            elif name in seen:
                problems.append(((i,), name, f"{show(name)} is listed twice"))
            seen.add(name)
        if problems:
            raise ConfigProblems(problems)
        return names

    @field_validator("regions", mode="before")
    @classmethod
    def _valid_regions(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            if value is not None and value not in REGION_TABLES:
                raise ValueError(
                    f"{show(value)} is not a known region table (expected one of "
                    f"{', '.join(show(t) for t in REGION_TABLES)}, or a table {{server = region}})"
                )
            return value
        if isinstance(value, Mapping):
            problems = [
                ((k,), r, f"{show(r)} is not a region (expected one of {', '.join(REGIONS)})")
                for k, r in value.items()
                if r not in REGIONS
            ]
            if problems:
                raise ConfigProblems(problems)
            return dict(value)
        raise ValueError(
            f"{show(value)} is not a valid regions setting (expected a table name such as "
            f'"simblock-2019" or a table {{server = region}})'
        )

    @model_validator(mode="after")
    def _consistent(self) -> ServersConfig:
        problems: list[tuple[tuple[str | int, ...], Any, str]] = []
        if self.names is not None and len(self.names) != self.count:
            problems.append(
                (("names",), list(self.names), f"{len(self.names)} names given but count = {self.count}")
            )
        known = set(self.server_names())
        if isinstance(self.regions, dict):
            for name in self.regions:
                if name not in known:
                    problems.append((("regions", name), self.regions[name], _unknown_server(name, known)))
            missing = [n for n in self.server_names() if n not in self.regions]
            if missing:
                problems.append(
                    (("regions",), self.regions, f"no region for {', '.join(missing)} (every server needs one)")
                )
        seen: set[str] = set()
        for i, name in enumerate(self.malicious):
            if name not in known:
                problems.append((("malicious", i), name, _unknown_server(name, known)))
            elif name in seen:
                problems.append((("malicious", i), name, f"{show(name)} is listed twice"))
            seen.add(name)
        if problems:
            raise ConfigProblems(problems)
        return self

    def server_names(self) -> tuple[str, ...]:
        """The servers' names, in order: ``names`` or ``hs0 .. hs{count-1}``."""
        if self.names is not None:
            return self.names
        return tuple(f"hs{i}" for i in range(self.count))


def _unknown_server(name: Any, known: set[str] | tuple[str, ...]) -> str:
    ordered = sorted(known, key=lambda n: (len(n), n))
    close = difflib.get_close_matches(str(name), ordered, n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    listing = ", ".join(ordered) if len(ordered) <= 8 else f"{ordered[0]} .. {ordered[-1]}"
    return f"{show(name)} is not a server ({hint}servers are {listing})"


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


# --------------------------------------------------------------------------
# [workload]


class StateChangeMix(_Model):
    """Relative weights of the kinds of state change the workload makes."""

    topic: NonNegative = 4.0
    name: NonNegative = 1.0
    power_levels: NonNegative = 1.0
    join: NonNegative = 1.0
    leave: NonNegative = 1.0
    invite: NonNegative = 1.0
    kick: NonNegative = 0.5
    ban: NonNegative = 0.5

    @model_validator(mode="after")
    def _some_weight(self) -> StateChangeMix:
        if not any(getattr(self, k) > 0 for k in type(self).model_fields):
            raise ValueError("all weights are 0 (at least one kind of state change needs a weight above 0)")
        return self


class WorkloadConfig(_Model):
    """``[workload]``: what the simulated users do.

    Work is generated in ``[start, stop)``; ``stop`` defaults to the end of
    the run (``None`` here; :meth:`Scenario.workload_stop_ms` resolves it).
    Room creation and joins are not limited by that window.
    """

    messages_per_user_per_minute: NonNegative = 1.0
    """Each user's message rate (Poisson)."""
    state_changes_per_minute: NonNegative = 0.2
    """Room-wide rate of state changes (Poisson), each by a random user."""
    state_change_mix: StateChangeMix = StateChangeMix()
    """Weights of the kinds of state change."""
    profile_changes_per_user_per_hour: NonNegative = 0.0
    """Each user's rate of displayname/avatar changes (member state events)."""
    join_spread_ms: Duration = Field(0.0, alias="join_spread")
    """The first honest server creates the room at 0; every other server
    joins through a resident server (make_join/send_join) at a time drawn
    uniformly from ``[1 ms, join_spread + 1 ms]`` (0: all in the first
    millisecond, though a join takes round trips and may need retries)."""
    start_ms: Duration = Field(0.0, alias="start")
    """When users begin sending."""
    stop_ms: Duration | None = Field(None, alias="stop")
    """When users stop sending; default: the end of the run."""

    @model_validator(mode="after")
    def _window(self) -> WorkloadConfig:
        if self.stop_ms is not None and self.stop_ms < self.start_ms:
            raise ConfigProblems(
                [
                    (
                        ("stop",),
                        format_duration(self.stop_ms),
                        f"{show(format_duration(self.stop_ms))} is before start = "
                        f"{show(format_duration(self.start_ms))}",
                    )
                ]
            )
        return self


# --------------------------------------------------------------------------
# [[faults]]


class CrashFault(_Model):
    """``server`` crashes at ``at`` (loses nothing persisted, stops processing
    and answering) and restarts at ``restart``; never, if absent."""

    kind: Literal["crash"] = "crash"
    server: str
    at_ms: Duration = Field(alias="at")
    restart_ms: Duration | None = Field(None, alias="restart")

    @model_validator(mode="after")
    def _ordered(self) -> CrashFault:
        if self.restart_ms is not None and self.restart_ms <= self.at_ms:
            raise ConfigProblems(
                [
                    (
                        ("restart",),
                        format_duration(self.restart_ms),
                        f"{show(format_duration(self.restart_ms))} is not after at = "
                        f"{show(format_duration(self.at_ms))} (a server restarts after it crashes)",
                    )
                ]
            )
        return self


FaultConfig = _tagged("kind", CrashFault)


# --------------------------------------------------------------------------
# [federation]


class RetryConfig(_Model):
    """Backoff of a destination after failed transactions (Synapse defaults:
    ``destination_min_retry_interval`` 10m, multiplier 2, max 7d)."""

    mode: Literal["long", "short"] = "long"
    """Synapse's long retries (transactions: 10 attempts) or short (3)."""
    max_retries: int = Field(10, ge=0)
    """Attempts of one request before the destination is marked down; defaults
    to 10 in ``long`` mode and 3 in ``short`` mode."""
    backoff_initial_ms: PositiveDuration = Field(600_000.0, alias="backoff_initial")
    backoff_multiplier: float = Field(2.0, ge=1.0)
    backoff_max_ms: PositiveDuration = Field(7 * 86_400_000.0, alias="backoff_max")

    @model_validator(mode="before")
    @classmethod
    def _short_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("mode") == "short" and "max_retries" not in data:
            return {**data, "max_retries": 3}
        return data


class DummyEventsConfig(_Model):
    """Synapse sends a dummy event to merge forward extremities past a threshold."""

    enabled: bool = True
    extremities_threshold: int = Field(10, ge=1)


class RateLimitConfig(_Model):
    """Inbound federation rate limiting per origin (off by default)."""

    enabled: bool = False
    window_ms: PositiveDuration = Field(1000.0, alias="window")
    max_requests: int = Field(50, ge=1)


class FederationConfig(_Model):
    """``[federation]``: protocol constants, Synapse's defaults."""

    max_pdus_per_txn: int = Field(50, ge=1)
    max_edus_per_txn: int = Field(100, ge=0)
    request_timeout_ms: PositiveDuration = Field(60_000.0, alias="request_timeout")
    retry: RetryConfig = RetryConfig()
    catchup_threshold_ms: PositiveDuration = Field(3_600_000.0, alias="catchup_threshold")
    """A destination down longer than this is caught up (latest events only)."""
    get_missing_events_limit: int = Field(10, ge=1)
    prev_events_max: int = Field(10, ge=1)
    dummy_events: DummyEventsConfig = DummyEventsConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()


# --------------------------------------------------------------------------
# [metrics], [topology]


class MetricsConfig(_Model):
    """``[metrics]``: what the collectors sample."""

    sample_interval_ms: PositiveDuration = Field(1000.0, alias="sample_interval")
    """Period of the per-server state samples."""


class TopologyConfig(_Model):
    """``[topology]``: who sends to whom. Only the protocol's full mesh for now."""

    strategy: Literal["full_mesh"] = "full_mesh"


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
