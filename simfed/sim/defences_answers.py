"""Requester-side checks of fetch answers: a peer's answer is validated before use.

:func:`check_answer` looks at a 2xx answer to one of the federation fetches
and returns why it is unusable (or None). The homeserver then treats the
fetch as failed (no retry: the request itself succeeded, as Synapse's
``InvalidResponseError``) and counts ``bad_answer_<reason>``; a bad answer
never reaches the code that would use it, so it can fail only that fetch.

Reasons:

- ``shape``: not an object, or a field missing or of the wrong type (events
  must be events, ID lists lists of strings). Synapse raises on such a body
  (``federation_client.py``: "invalid response from /state_ids",
  "transaction_data.pdus is not a list", "Bad 'event' field in response").
- ``wrong_room``: an event (or make_join template) of another room than the
  one asked about. Synapse refuses a whole ``/backfill`` answer for it
  (``federation_event.py`` ``backfill``) and leaves such events out of
  ``/state_ids`` state; simfed refuses every such answer, so a room's DAG
  only ever holds its own events.
- ``not_requested``: ``/event`` answered with another event than the one asked.
- ``over_limit``: with ``strict_answer_limits`` only, a ``/get_missing_events``
  or ``/backfill`` answer with more events than the ``limit`` asked. Synapse
  (the default, off) processes such an answer whole.
"""

from __future__ import annotations

from typing import Any, Callable

from ..protocol import Event

__all__ = ["ANSWER_FIELDS", "check_answer"]


def _events(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, Event) for x in v)


def _ids(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_SHAPES: dict[str, Callable[[Any], bool]] = {
    "events": _events,
    "event": lambda v: isinstance(v, Event),
    "ids": _ids,
    "object": lambda v: isinstance(v, dict),
    "str": lambda v: isinstance(v, str),
}

#: Per fetch kind: the answer's fields and their shapes.
ANSWER_FIELDS: dict[str, dict[str, str]] = {
    "get_missing_events": {"events": "events"},
    "state_ids": {"pdu_ids": "ids", "auth_chain_ids": "ids"},
    "state": {"pdus": "events", "auth_chain": "events"},
    "event": {"pdu": "event"},
    "event_auth": {"auth_chain": "events"},
    "backfill": {"pdus": "events"},
    "extremities": {"event_ids": "ids"},
    "make_join": {"event": "object"},
    "send_join": {"state": "events", "auth_chain": "events"},
}

#: Fetches whose request carries a ``limit`` on the events answered.
_LIMITED = {"get_missing_events": "events", "backfill": "pdus"}


def check_answer(kind: str, request: Any, answer: Any, *, strict_limits: bool = False) -> str | None:
    """Why the 2xx ``answer`` to the ``kind`` fetch ``request`` is unusable, or None."""
    fields = ANSWER_FIELDS.get(kind)
    if fields is None or not isinstance(request, dict):
        return None
    if not isinstance(answer, dict):
        return "shape"
    for name, shape in fields.items():
        if name not in answer or not _SHAPES[shape](answer[name]):
            return "shape"
    room_id = request.get("room_id")
    if room_id is not None:
        for name, shape in fields.items():
            if shape == "events" and any(e.room_id != room_id for e in answer[name]):
                return "wrong_room"
        if kind == "make_join" and answer["event"].get("room_id") != room_id:
            return "wrong_room"
    if kind == "event" and answer["pdu"].event_id != request.get("event_id"):
        return "not_requested"
    if strict_limits and kind in _LIMITED:
        limit = request.get("limit")
        if isinstance(limit, int) and len(answer[_LIMITED[kind]]) > limit:
            return "over_limit"
    return None
