"""Sections ``[simulation]``, ``[servers]``, ``[workload]``, ``[[faults]]``, ``[federation]`` and ``[metrics]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .base import (
    REGIONS,
    REGION_TABLES,
    ConfigProblems,
    Duration,
    _Model,
    NonNegative,
    PositiveDuration,
    Probability,
    SignedDuration,
    available_state_resolutions,
    format_duration,
    show,
    _tagged,
    _unknown_server,
)
from .bounds import MAX_CLOCK_SKEW_MS, MAX_DURATION_MS, MAX_SERVERS, MAX_USERS, MAX_USERS_PER_SERVER



class SimulationConfig(_Model):
    """``[simulation]``: the run as a whole."""

    seed: int = Field(0, ge=0)
    """Root seed; every component draws from its own stream spawned from it."""
    duration_ms: PositiveDuration = Field(60_000.0, alias="duration")
    """Length of the whole run (simulated), at most a year. Nothing is simulated after it."""
    room_version: Annotated[
        Literal["10", "11"], BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
    ] = "11"
    """Room version of the simulated room."""
    state_resolution: str = "v2"
    """State resolution algorithm every server uses (see ``available_state_resolutions``)."""
    compat: Literal["synapse", "spec"] = "synapse"
    """Where Synapse departs from the spec text (auth rules, state resolution),
    follow Synapse (the mode the differential tests check) or the spec."""

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

    @field_validator("duration_ms")
    @classmethod
    def _bounded_duration(cls, value: float) -> float:
        if value > MAX_DURATION_MS:
            raise ValueError(f"{show(format_duration(value))} is longer than {show(format_duration(MAX_DURATION_MS))}")
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


class ProcessingCosts(_Model):
    """``servers.processing``: ``"none"``, ``"calibrated"`` (both shorthands for
    ``preset``) or a table of per-operation CPU costs overriding the calibrated
    ones (``simfed.sim.processing.CALIBRATED``); unset keys keep them."""

    preset: Literal["none", "calibrated"] = "calibrated"
    """``"none"``: processing takes no simulated time; ``"calibrated"``: the measured costs."""

    signature_verify_ms: Duration | None = Field(None, alias="signature_verify")
    """Signature check of one received PDU."""
    content_hash_ms: Duration | None = Field(None, alias="content_hash")
    """Content hash check of one received PDU."""
    sign_ms: Duration | None = Field(None, alias="sign")
    """Hashing and signing one new event."""
    auth_check_ms: Duration | None = Field(None, alias="auth_check")
    """Auth rules on one event, once."""
    resolution_ms: Duration | None = Field(None, alias="resolution")
    """Fixed cost of one state resolution."""
    resolution_per_conflicted_ms: Duration | None = Field(None, alias="resolution_per_conflicted")
    """Cost of one state resolution per conflicted state event."""
    db_write_ms: Duration | None = Field(None, alias="db_write")
    """Persisting one event."""
    request_ms: Duration | None = Field(None, alias="request")
    """Answering one federation request (its X-Matrix signature check)."""


    @model_validator(mode="after")
    def _costs_need_a_model(self) -> ProcessingCosts:
        given = [f.alias or k for k, f in type(self).model_fields.items() if k != "preset" and getattr(self, k) is not None]
        if self.preset == "none" and given:
            raise ConfigProblems([(("preset",), self.preset, f'costs given ({", ".join(given)}) but preset = "none"')])
        return self


def _processing_shorthand(value: Any) -> Any:
    return {"preset": value} if isinstance(value, str) else value


class ServersConfig(_Model):
    """``[servers]``: the homeservers in the room."""

    count: int = Field(4, ge=1, le=MAX_SERVERS)
    """Number of homeservers."""
    names: tuple[str, ...] | None = None
    """Explicit server names; default ``hs0 .. hs{count-1}``."""
    users_per_server: int = Field(2, ge=1, le=MAX_USERS_PER_SERVER)
    """Local users on each server, all joined to the room."""
    regions: str | dict[str, str] | None = None
    """A region table name (``"simblock-2019"``), an explicit ``{server = region}``
    mapping covering every server (regions NA, EU, SA, AP, JP, AU), or none."""
    clock_skew: Annotated[ClockSkewConfig, BeforeValidator(_skew_shorthand)] = NoSkew()
    """Per-server clock offset (origin_server_ts comes from the skewed clock)."""
    malicious: tuple[str, ...] = ()
    """Servers that forge events."""
    cpu_cores: int = Field(1, ge=1)
    """CPU cores of each server: operations queue for them (Synapse's main process: 1)."""
    processing: Annotated[ProcessingCosts, BeforeValidator(_processing_shorthand)] = ProcessingCosts()
    """CPU time of signature checks, auth, state resolution and persistence:
    ``"none"`` (it takes no simulated time), ``"calibrated"`` (costs measured
    with Synapse, see README "Processing costs") or a table overriding some costs."""

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
        if self.count * self.users_per_server > MAX_USERS:
            problems.append((("users_per_server",), self.users_per_server,
                             f"{self.count} servers x {self.users_per_server} users is more than {MAX_USERS:,} users"))
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
        for field in ("mean_ms", "sd_ms", "low_ms", "high_ms"):
            v = getattr(self.clock_skew, field, 0.0)
            if abs(v) > MAX_CLOCK_SKEW_MS:
                problems.append((("clock_skew", field[:-3]), format_duration(abs(v)),
                                 f"{show(format_duration(abs(v)))} is more than "
                                 f"{show(format_duration(MAX_CLOCK_SKEW_MS))} of clock skew"))
        if seen and seen >= known:
            problems.append((("malicious",), list(self.malicious),
                             "every server is malicious (at least one honest server must create the room)"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def server_names(self) -> tuple[str, ...]:
        """The servers' names, in order: ``names`` or ``hs0 .. hs{count-1}``."""
        if self.names is not None:
            return self.names
        return tuple(f"hs{i}" for i in range(self.count))



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
    readers: Literal["on_gap", "none"] = "on_gap"
    """Clients reading the room. ``"on_gap"``: when a server's room gains a
    timeline gap (a backward extremity it does not hold) while one of its
    users is joined and active, that user's client, told by a ``limited``
    sync, paginates back (``/messages``) and the server backfills from the
    gap as Synapse does. ``"none"``: no client ever paginates, so gaps stay
    open (Synapse backfills only on a client's request)."""
    reader_delay_ms: PositiveDuration = Field(1_000.0, alias="reader_delay")
    """Time from a gap (or the previous page) to a reader's next
    ``/messages``: sync long-poll return plus the client's round trip,
    times U(0.5, 1.5)."""
    reader_pages: int = Field(5, ge=1)
    """At most this many pages (backfills of up to ``homeserver.backfill_limit``
    events) a reader pulls per gap: it stops earlier when the gap is closed."""

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


class RateLimitConfig(_Model):
    """``[federation.rate_limit]``: Synapse's inbound federation rate limiter
    (``util/ratelimitutils.py``; ``rc_federation`` defaults of
    ``config/ratelimiting.py``), per origin, on every request but ``/send``."""

    enabled: bool = True
    """Synapse: always on (``rc_federation`` has defaults)."""
    window_ms: PositiveDuration = Field(1000.0, alias="window")
    """``window_size``: requests counted over this window."""
    sleep_limit: int = Field(10, ge=1)
    """More requests than this in the window: each waits ``sleep_delay`` first."""
    sleep_delay_ms: Duration = Field(500.0, alias="sleep_delay")
    reject_limit: int = Field(50, ge=0)
    """More requests than this waiting (asleep or queued): 429 ``M_LIMIT_EXCEEDED``."""
    concurrent: int = Field(3, ge=1)
    """At most this many requests of one origin processed at once; the rest queue."""
    max_requests: int | None = Field(None, ge=1)
    """Optional hard cap (not Synapse): more requests than this in the window
    are refused at once with 429. None: no cap."""


class FederationConfig(_Model):
    """``[federation]``: protocol constants, Synapse's defaults."""

    max_pdus_per_txn: int = Field(50, ge=1)
    max_edus_per_txn: int = Field(100, ge=0)
    request_timeout_ms: PositiveDuration = Field(60_000.0, alias="request_timeout")
    retry: RetryConfig = RetryConfig()
    catchup_threshold_ms: PositiveDuration = Field(3_600_000.0, alias="catchup_threshold")
    """A destination down longer than this is caught up (latest events only)."""
    rate_limit: RateLimitConfig = RateLimitConfig()
    internal_error_rate: Probability = 0.0
    """Chance that a server fails a request it received internally and answers
    500 ``M_UNKNOWN`` instead of handling it (homeservers and identity
    servers alike; the requester retries as for any 5xx)."""

    @classmethod
    def unknown_key_message(cls, key: str) -> str:
        from .homeserver import MOVED_FROM_FEDERATION

        if key in MOVED_FROM_FEDERATION:
            return f"{show(key)} moved to [homeserver]: write {MOVED_FROM_FEDERATION[key]}"
        return super().unknown_key_message(key)


# --------------------------------------------------------------------------
# [metrics], [topology]


class MetricsConfig(_Model):
    """``[metrics]``: what the collectors sample."""

    sample_interval_ms: PositiveDuration = Field(1000.0, alias="sample_interval")
    """Period of the per-server state samples."""
    paired_baseline: bool = True
    """A run with adversaries (``[[adversaries]]`` or ``servers.malicious``)
    is run a second time with them removed, same seed (common random
    numbers), and ``security.caused`` reports the differences; no effect on
    runs without adversaries. False skips the second run."""

