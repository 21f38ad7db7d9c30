"""Section ``[[adversaries]]``: Byzantine servers and what they do.

Each entry makes one server an adversary (it no longer counts as honest in
any measure) and gives it one behaviour, active from ``start`` to ``end``
(the whole run by default), acting about ``rate`` times a minute (a Poisson
process). A server may have several entries, one per behaviour. The
behaviours themselves are in :mod:`simfed.sim.adversary`; each entry's
``behaviour`` selects the model below that holds its parameters, so a
parameter of another behaviour is refused by name.

``servers.malicious`` is the older, coarser switch: those servers forge an
event of each kind (another server's user, a broken signature, an
unauthorised power level change) in place of their users' messages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import ConfigProblems, Duration, SignedDuration, _Model, _tagged, show
from .bounds import MAX_RATE
from ..units import format_duration

__all__ = [
    "ADVERSARY_BEHAVIOURS",
    "AdversaryConfig",
    "BadSignature",
    "Backdate",
    "Equivocate",
    "Flood",
    "ForgeUser",
    "KeyCompromise",
    "Lie",
    "StateReset",
    "Unauthorised",
    "Withhold",
]


class _Adversary(_Model):
    """What every behaviour has: who, when and how often."""

    server: str
    """The adversary: a server of ``servers`` (it must not be the only honest one)."""
    start_ms: Duration = Field(0.0, alias="start")
    """When the behaviour starts."""
    end_ms: Duration | None = Field(None, alias="end")
    """When it stops; the end of the run if absent."""
    rate: float = Field(2.0, gt=0.0, le=MAX_RATE)
    """Actions a minute (a Poisson process) for behaviours that act on their own."""
    targets: tuple[str, ...] = ()
    """The servers it acts on; every other server of the room if empty."""

    @model_validator(mode="after")
    def _ordered(self) -> "_Adversary":
        if self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ConfigProblems([(("end",), format_duration(self.end_ms),
                                   f"{show(format_duration(self.end_ms))} is not after start = "
                                   f"{show(format_duration(self.start_ms))}")])
        return self


class ForgeUser(_Adversary):
    """Sends events whose sender is a user of another server, signed with its own key."""

    behaviour: Literal["forge_user"] = "forge_user"
    victim: str | None = None
    """Whose user to claim to be; the honest servers in turn if absent."""


class BadSignature(_Adversary):
    """Sends valid-looking events whose signature or content hash is wrong."""

    behaviour: Literal["bad_signature"] = "bad_signature"
    corrupt: Literal["signature", "hash"] = "signature"
    """``signature``: the signature does not verify (the event must be
    rejected); ``hash``: the content was changed after signing (the
    signature still verifies, so receivers keep the redacted form)."""


class Unauthorised(_Adversary):
    """Sends correctly signed events that the auth rules reject (its user
    raises its own power level without the power to)."""

    behaviour: Literal["unauthorised"] = "unauthorised"


class Equivocate(_Adversary):
    """Tells different servers different things."""

    behaviour: Literal["equivocate"] = "equivocate"
    mode: Literal["fork", "same_id"] = "fork"
    """``fork``: two different events on the same prev_events, one to each
    half of the targets; ``same_id``: one event ID, its real content to half
    of the targets and altered content to the other half."""


class Withhold(_Adversary):
    """Pushes events whose parents it never gives out."""

    behaviour: Literal["withhold"] = "withhold"
    hidden: int = Field(5, ge=1, le=1_000)
    """Events created and kept back before each pushed child."""
    answer: Literal["silence", "not_found"] = "silence"
    """How it answers requests for what it withholds: never (the requester
    waits for its timeout) or ``404 M_NOT_FOUND``."""


class Lie(_Adversary):
    """Answers fetch requests with false data."""

    behaviour: Literal["lie"] = "lie"
    endpoints: tuple[Literal["state_ids", "state", "send_join", "get_missing_events"], ...] = (
        "state_ids", "state", "send_join", "get_missing_events")
    """The requests it lies in."""
    lies: tuple[Literal["stale", "fabricated", "wrong_room", "not_state", "forged", "unrelated", "too_many",
                        "no_create"], ...] = (
        "stale", "fabricated", "wrong_room", "not_state", "forged", "unrelated", "too_many", "no_create")
    """The lies it tells, in turn, where they apply (the README lists which
    lie each endpoint can tell)."""
    gap: int = Field(12, ge=1, le=1_000)
    """Each action creates this many events without pushing them, then
    pushes a child citing them, so that the targets must ask it for the gap
    (more than ``homeserver.get_missing_events_limit`` makes them ask for the
    state at the gap's edge too)."""


class Backdate(_Adversary):
    """Sends events claiming another time and depth."""

    behaviour: Literal["backdate"] = "backdate"
    ts_offset_ms: SignedDuration = Field(-30 * 86_400_000.0, alias="ts_offset")
    """Added to ``origin_server_ts`` (negative: in the past)."""
    depth: Literal["low", "high", "honest"] = "low"
    """Depth claimed: 1 (``low``), far above the room (``high``) or the right one."""


class StateReset(_Adversary):
    """Tries to reset the room's state: correctly signed events citing stale
    power levels, on a fork from an old point, merged late. The scenario's
    honest admin (the room's creator) raises the adversary's first user to
    ``power`` at ``start`` and demotes and bans it at ``ban_at``; the fork
    starts from the adversary's extremities while its user still had that
    power."""

    behaviour: Literal["state_reset"] = "state_reset"
    power: int = Field(50, ge=1, le=100)
    """The power level the admin gives the adversary's first user at ``start``."""
    ban_at_ms: Duration = Field(60_000.0, alias="ban_at")
    """When the admin demotes (level 0) and bans that user; after ``start``."""
    merge_after_ms: Duration = Field(60_000.0, alias="merge_after")
    """How long the fork grows in secret (from when the adversary sees the
    ban) before it is merged into the room."""
    depth: Literal["high", "honest"] = "high"
    """Depth the fork's events claim: far above the room, or the honest one."""

    @model_validator(mode="after")
    def _ban_after_start(self) -> "StateReset":
        if self.ban_at_ms <= self.start_ms:
            raise ConfigProblems([(("ban_at",), format_duration(self.ban_at_ms),
                                   f"{show(format_duration(self.ban_at_ms))} is not after start = "
                                   f"{show(format_duration(self.start_ms))}")])
        return self


class Flood(_Adversary):
    """Sends much more than an honest server would."""

    behaviour: Literal["flood"] = "flood"
    kind: Literal["valid", "unknown_prevs", "huge_txn"] = "valid"
    """Valid events, events whose prev_events exist nowhere, or
    transactions far above the 50-PDU limit."""
    batch: int = Field(50, ge=1, le=100_000)
    """Events per action."""


class KeyCompromise(_Adversary):
    """Holds another server's signing key from ``start`` and sends events as
    that server's users, validly signed."""

    behaviour: Literal["key_compromise"] = "key_compromise"
    victim: str
    """The server whose key was stolen (never a target: it would notice)."""
    kind: Literal["message", "leave"] = "message"
    """``message``: messages as the victim's users; ``leave``: each action
    makes one of the victim's joined users leave the room (a state change)."""


AdversaryConfig = _tagged(
    "behaviour", ForgeUser, BadSignature, Unauthorised, Equivocate, Withhold, Lie, Backdate, StateReset, Flood,
    KeyCompromise,
)

#: Behaviour names, in the order the README lists them.
ADVERSARY_BEHAVIOURS: tuple[str, ...] = (
    "forge_user", "bad_signature", "unauthorised", "equivocate", "withhold", "lie", "backdate", "state_reset",
    "flood", "key_compromise",
)
