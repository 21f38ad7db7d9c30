"""Section ``[services]``: EDUs (presence, typing, receipts), profiles, the
room alias directory and identity servers.

Everything is off by default, so a scenario without a ``[services]`` table
runs exactly as before (same tables, same numbers). Each subsection has an
``enabled`` switch; rates are per user (Poisson) unless the key says
otherwise. Timers default to Synapse's (``handlers/presence.py``,
``handlers/typing.py``), see protocol.md §5.5.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .base import ConfigProblems, Duration, NonNegative, PositiveDuration, Probability, _Model, format_duration, show

__all__ = [
    "DirectoryConfig",
    "IdentityConfig",
    "PresenceConfig",
    "PresenceListsConfig",
    "ProfilesConfig",
    "ReceiptsConfig",
    "ServicesConfig",
    "TypingConfig",
]


class PresenceListsConfig(_Model):
    """``[services.presence.lists]``: users following other users' presence."""

    invites_per_user_per_hour: NonNegative = 0.0
    """Rate at which each user invites a random user of another server to
    its presence list."""
    accept_probability: Probability = 0.8
    """Chance the invited user accepts (else declines)."""
    reply_delay_ms: PositiveDuration = Field(30_000.0, alias="reply_delay")
    """Mean time (exponential) before the invited user answers."""


class PresenceConfig(_Model):
    """``[services.presence]``: per-user presence driven by client sessions."""

    enabled: bool = False
    sessions_per_user_per_hour: NonNegative = 2.0
    """Rate at which an offline user's client connects (goes online)."""
    session_ms: PositiveDuration = Field(1_200_000.0, alias="session")
    """Mean length of a client session (exponential); the user goes offline
    ``offline_after`` after it ends (Synapse: 30 s after the last sync)."""
    actions_per_user_per_minute: NonNegative = 0.5
    """Rate of proactive actions (sending a message, ...) while connected."""
    idle_after_ms: PositiveDuration = Field(300_000.0, alias="idle_after")
    """online -> unavailable after this long without a proactive action (Synapse: 5 min)."""
    offline_after_ms: Duration = Field(30_000.0, alias="offline_after")
    """A client that stops syncing is marked offline after this (Synapse: 30 s)."""
    last_active_granularity_ms: PositiveDuration = Field(60_000.0, alias="last_active_granularity")
    """``currently_active`` lasts this long after an action; a newer
    ``last_active`` is only pushed when it moved by more than this (Synapse: 60 s)."""
    resend_interval_ms: PositiveDuration = Field(1_500_000.0, alias="resend_interval")
    """Online users' presence is pushed again to remote servers this often (Synapse: 25 min)."""
    online_at_start: Probability = 0.5
    """Fraction of users online at t = 0."""
    daily_cycle: bool = False
    """Modulate the session rate by ``1 + amplitude * cos(2 pi (t - peak) / 24h)``."""
    daily_amplitude: Probability = 0.8
    daily_peak_ms: Duration = Field(72_000_000.0, alias="daily_peak")
    """Time of day (from t = 0) of the busiest hour (default 20h)."""
    max_users_per_edu: int = Field(50, ge=1)
    """Users per m.presence EDU (Synapse: 50)."""
    lists: PresenceListsConfig = PresenceListsConfig()


class TypingConfig(_Model):
    """``[services.typing]``: m.typing EDUs."""

    enabled: bool = False
    starts_per_user_per_minute: NonNegative = 0.5
    """Rate at which a joined user starts typing (while its server is in the room)."""
    typing_ms: PositiveDuration = Field(8_000.0, alias="typing")
    """Mean time (exponential) a user types before stopping (typing = false)."""
    timeout_ms: PositiveDuration = Field(30_000.0, alias="timeout")
    """The client's typing timeout: typing longer than this is refreshed
    (Synapse refreshes remote typing every 40 s, expires it after 60 s)."""
    remote_expiry_ms: PositiveDuration = Field(60_000.0, alias="remote_expiry")


class ReceiptsConfig(_Model):
    """``[services.receipts]``: m.receipt EDUs (read receipts)."""

    enabled: bool = False
    reads_per_user_per_minute: NonNegative = 1.0
    """Rate at which a joined user reads the room (a receipt for the newest event its server holds)."""


class ProfilesConfig(_Model):
    """``[services.profiles]``: display name changes and federation profile queries."""

    enabled: bool = False
    changes_per_user_per_hour: NonNegative = 1.0
    """Display name changes (a member event with the new name) per joined user."""
    queries_per_server_per_minute: NonNegative = 1.0
    """Federation profile queries (``/query/profile``) each server makes about a random remote user."""


class DirectoryConfig(_Model):
    """``[services.directory]``: room aliases ``#name:server`` and directory queries."""

    enabled: bool = False
    aliases_per_server: int = Field(1, ge=0)
    """Aliases each server creates for the room at the start (once it is in the room)."""
    creates_per_minute: NonNegative = 0.2
    moves_per_minute: NonNegative = 0.2
    """Aliases re-pointed to another room (room-wide rate)."""
    deletes_per_minute: NonNegative = 0.1
    queries_per_server_per_minute: NonNegative = 1.0
    """Directory queries each server makes for a random alias (known or deleted)."""
    cache_ttl_ms: Duration = Field(60_000.0, alias="cache_ttl")
    """How long a querying server reuses an answer (0: no cache)."""
    join_by_alias: bool = True
    """A server not in the room joins it by alias (resolve, then join through a returned server)."""


class IdentityConfig(_Model):
    """``[services.identity]``: a cluster of replicated identity servers."""

    enabled: bool = False
    count: int = Field(3, ge=1)
    """Identity servers ``is0 .. is{count-1}`` (network nodes, like homeservers)."""
    binds_per_user_per_hour: NonNegative = 1.0
    """3PID binds (email or phone, after verification) per user."""
    rebind_probability: Probability = 0.2
    """Chance a bind moves an existing 3PID to another user."""
    verification_ms: PositiveDuration = Field(20_000.0, alias="verification")
    """Mean time (exponential) for the user to verify the 3PID (token by email/SMS)."""
    verification_failure: Probability = 0.05
    """Chance the submitted token is wrong (bind refused with M_FORBIDDEN)."""
    lookups_per_server_per_minute: NonNegative = 2.0
    """Lookups each homeserver makes at a random identity server."""
    anti_entropy_interval_ms: PositiveDuration = Field(10_000.0, alias="anti_entropy_interval")
    """Each identity server syncs with one random peer this often (push-pull of missing records)."""
    max_requests_per_second: int = Field(50, ge=1)
    """Per-origin rate limit of an identity server (above it: 429 M_LIMIT_EXCEEDED)."""

    def server_names(self) -> tuple[str, ...]:
        """``is0 .. is{count-1}`` when enabled, else none."""
        return tuple(f"is{i}" for i in range(self.count)) if self.enabled else ()


class ServicesConfig(_Model):
    """``[services]``: everything beyond room events; all off by default."""

    presence: PresenceConfig = PresenceConfig()
    typing: TypingConfig = TypingConfig()
    receipts: ReceiptsConfig = ReceiptsConfig()
    profiles: ProfilesConfig = ProfilesConfig()
    directory: DirectoryConfig = DirectoryConfig()
    identity: IdentityConfig = IdentityConfig()

    @model_validator(mode="after")
    def _timers(self) -> ServicesConfig:
        p = self.presence
        problems: list[tuple[tuple[str | int, ...], Any, str]] = []
        if p.enabled and p.idle_after_ms < p.last_active_granularity_ms:
            problems.append((
                ("presence", "idle_after"), format_duration(p.idle_after_ms),
                f"{show(format_duration(p.idle_after_ms))} is shorter than last_active_granularity = "
                f"{show(format_duration(p.last_active_granularity_ms))} (a user would go idle while still "
                "currently_active)",
            ))
        t = self.typing
        if t.enabled and t.remote_expiry_ms <= t.timeout_ms:
            problems.append((
                ("typing", "remote_expiry"), format_duration(t.remote_expiry_ms),
                f"{show(format_duration(t.remote_expiry_ms))} is not longer than timeout = "
                f"{show(format_duration(t.timeout_ms))} (remote typing would expire before it is refreshed)",
            ))
        if problems:
            raise ConfigProblems(problems)
        return self

