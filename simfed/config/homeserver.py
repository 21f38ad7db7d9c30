"""Section ``[homeserver]``: how every simulated homeserver behaves.

Each key is a field of :class:`simfed.sim.HomeserverConfig`. The defaults
are Synapse's (the source location is in each docstring and in the README
table "Homeserver behaviour: Synapse defaults and deviations"); where simfed
can behave otherwise, the other behaviour is an opt-in here.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Duration, PositiveDuration, _Model

__all__ = ["DummyEventsConfig", "HomeserverSection", "MOVED_FROM_FEDERATION"]

#: Keys that used to live in ``[federation]``: where they are now.
MOVED_FROM_FEDERATION: dict[str, str] = {
    "prev_events_max": "homeserver.prev_events_max",
    "get_missing_events_limit": "homeserver.get_missing_events_limit",
    "dummy_events": "homeserver.dummy_events",
}


class DummyEventsConfig(_Model):
    """``[homeserver.dummy_events]``: Synapse's ``cleanup_extremities_with_dummy_events``
    (``handlers/message.py`` ``_send_dummy_events_to_fill_extremities``)."""

    enabled: bool = True
    """Send a dummy event into rooms with too many forward extremities (Synapse: on)."""
    extremities_threshold: int = Field(10, ge=1)
    """More forward extremities than this trigger one (Synapse ``dummy_events_threshold``: 10)."""
    interval_ms: PositiveDuration = Field(300_000.0, alias="interval")
    """How often rooms are checked (Synapse: a looping call every 5 minutes)."""
    push: bool = False
    """Push dummy events to the other servers. Synapse does not
    (``proactively_send = False``): they travel only when a later event
    cites them and the receiver pulls them. ``true`` is a deviation."""


class HomeserverSection(_Model):
    """``[homeserver]``: behaviour constants of every homeserver (defaults: Synapse's)."""

    prev_events_max: int = Field(10, ge=1)
    """prev_events of a new event: at most this many newest forward
    extremities (Synapse ``get_prev_events_for_room``: ``LIMIT 10``)."""
    get_missing_events_limit: int = Field(10, ge=1)
    """``limit`` of ``/get_missing_events`` (Synapse ``_get_missing_events_for_pdu``: 10)."""
    request_timeout_ms: PositiveDuration = Field(60_000.0, alias="request_timeout")
    """Timeout of one fetch request (Synapse ``federation.client_timeout``: 60 s)."""
    fetch_retries: int = Field(3, ge=0)
    """Retries of a failed fetch, waiting ``min(0.5 * 2**k s, 2 s) * U(0.8, 1.4)``
    (Synapse ``federation.max_short_retries``: 3, ``max_short_retry_delay``: 2 s)."""
    get_missing_events_retries: int = Field(0, ge=0)
    """Retries of a failed ``/get_missing_events``: Synapse passes it an
    explicit 60 s timeout, which disables the client's retries
    (``_get_missing_events_for_pdu``; ``matrixfederationclient._send_request``
    retries only ``if retries_left and not timeout``): 0, one try."""
    state_fetch_ratio: float = Field(0.1, gt=0.0, le=1.0)
    """Across a gap, the whole state is fetched with ``/state`` when the
    missing events are at least this share of the state and auth chain named
    by ``/state_ids``; else each is fetched with ``/event`` (Synapse
    ``_get_state_ids_after_missing_prev_event``: ``missing * 10 >= total``)."""
    backfill_limit: int = Field(100, ge=1)
    """``limit`` of ``/backfill`` (Synapse ``NUMBER_OF_EVENTS_TO_BACKFILL``: 100)."""
    dummy_events: DummyEventsConfig = DummyEventsConfig()
    gap_fill_retries: int = Field(0, ge=0)
    """A pushed event whose prev_events could not be fetched is dropped
    (Synapse: 0, ``Your server isn't divulging details about prev_events``).
    Above 0 (a deviation), it is retried up to this many times with backoff,
    from its sender first, then from other servers of the room."""
    gap_fill_backoff_ms: PositiveDuration = Field(2_000.0, alias="gap_fill_backoff")
    """First wait of those retries (doubling, times U(0.8, 1.4))."""
    history_backfill_ms: Duration = Field(0.0, alias="history_backfill")
    """Model readers paginating back: about every this long (U(0.8, 1.2)),
    each server backfills holes in its room DAG from a server of the room.
    0 (Synapse without simulated readers: backfill happens only when a
    client asks) turns it off; a period is a deviation."""
    max_inbound_pdus: int = Field(50, ge=1)
    """An inbound ``/send`` transaction with more PDUs than this is refused
    whole with 400 (Synapse ``_handle_incoming_transaction``: 50)."""
    max_inbound_edus: int = Field(100, ge=1)
    """The same for EDUs (Synapse: 100)."""
    strict_answer_limits: bool = False
    """A ``/get_missing_events`` or ``/backfill`` answer with more events than
    the ``limit`` asked fails that fetch (counted ``bad_answer_over_limit``).
    Synapse (false) processes the whole answer (``federation_event.py``
    ``_get_missing_events_for_pdu``); ``true`` is a deviation."""

    def homeserver_kwargs(self) -> dict[str, Any]:
        """The fields of ``simfed.sim.HomeserverConfig`` this section sets."""
        d = self.dummy_events
        return {
            "prev_events_max": self.prev_events_max,
            "get_missing_events_limit": self.get_missing_events_limit,
            "request_timeout_ms": self.request_timeout_ms,
            "fetch_retries": self.fetch_retries,
            "get_missing_events_retries": self.get_missing_events_retries,
            "state_fetch_ratio": self.state_fetch_ratio,
            "backfill_limit": self.backfill_limit,
            "dummy_events": d.enabled,
            "dummy_threshold": d.extremities_threshold,
            "dummy_interval_ms": d.interval_ms,
            "dummy_push": d.push,
            "gap_fill_retries": self.gap_fill_retries,
            "gap_fill_backoff_ms": self.gap_fill_backoff_ms,
            "history_backfill_ms": self.history_backfill_ms,
            "max_inbound_pdus": self.max_inbound_pdus,
            "max_inbound_edus": self.max_inbound_edus,
            "strict_answer_limits": self.strict_answer_limits,
        }
