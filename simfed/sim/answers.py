"""Requester-side checks of the content of fetch answers.

A server that asks a peer for events cannot trust what comes back: the
peer may be lying (``[[adversaries]]`` behaviour ``lie``). Each function
here takes an answer already received and returns the part of it that may
be used, counting what it throws away in the requester's counters as
``bad_answer_<reason>``:

- ``wrong_room``: an event of another room. Synapse leaves such events out
  of a state map (``_get_state_ids_after_missing_prev_event``), rejects
  them through the auth rules (their auth events are in another room) and
  refuses a whole ``/backfill`` answer that holds one
  (``federation_event.backfill``: ``InvalidResponseError``).
- ``unasked``: an event that is not one of those asked for (``/event``,
  ``/state`` filtered by the IDs of ``/state_ids``). Event IDs are hashes
  of the events (room versions 3 and later), so a changed event cannot
  pass for the one asked.
- ``not_state``: a ``/state_ids`` entry that is not a state event (Synapse
  leaves it out of the state map).
- ``no_create``, ``room_version``, ``other_create``, ``join_event``: a
  ``/send_join`` answer without the room's create event in its state, whose
  create event names another room version, whose auth chain holds another
  create event, or whose returned join event is not the one sent: Synapse
  refuses the answer (``federation_client.send_join``) and tries the next
  server.

Signature and hash checks are not repeated here: every fetched event still
goes through ``check_pdu``. What cannot be checked from an answer alone --
a state that is stale or has events left out, but whose events are all
real, correctly signed and in the room -- is trusted, as Synapse trusts it;
state resolution against the requester's other states is what limits it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ..protocol import Event

if TYPE_CHECKING:
    from .homeserver import Homeserver

__all__ = ["BadAnswer", "backfill_events", "fetched_events", "send_join_problem", "state_map_ids"]


class BadAnswer(Exception):
    """An answer refused as a whole; ``reason`` is counted as ``bad_answer_<reason>``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _count(hs: "Homeserver", reason: str, n: int = 1) -> None:
    if n:
        hs.counters[f"bad_answer_{reason}"] += n


def fetched_events(hs: "Homeserver", room_id: str, events: Iterable[Event],
                   asked: Iterable[str] | None = None) -> list[Event]:
    """The events of an answer that are in ``room_id`` and, if ``asked`` is
    given, among the IDs asked for; the others are counted and dropped."""
    want = None if asked is None else set(asked)
    out: list[Event] = []
    for e in events:
        if e.room_id != room_id:
            _count(hs, "wrong_room")
        elif want is not None and e.event_id not in want:
            _count(hs, "unasked")
        else:
            out.append(e)
    return out


def backfill_events(hs: "Homeserver", room_id: str, events: list[Event]) -> list[Event]:
    """A ``/backfill`` answer, refused whole (``BadAnswer``) if it holds an
    event of another room, as Synapse refuses it."""
    for e in events:
        if e.room_id != room_id:
            _count(hs, "wrong_room")
            raise BadAnswer("wrong_room", f"backfill returned {e.event_id} of room {e.room_id}")
    return events


def state_map_ids(hs: "Homeserver", room_id: str, ids: Iterable[str],
                  held: dict[str, Event]) -> dict[tuple[str, str], str]:
    """The state map named by a ``/state_ids`` answer, from the events held:
    events of another room and non-state events are left out (counted), and
    so are IDs that could not be fetched, as Synapse does. Rejected events
    stay in, as in Synapse's map; the auth rules ignore them."""
    state: dict[tuple[str, str], str] = {}
    room = hs.rooms.get(room_id)
    key = room.state_key if room is not None else _state_key
    for i in ids:
        e = held.get(i)
        if e is None:
            continue
        if e.room_id != room_id:
            _count(hs, "wrong_room")
        elif e.state_key is None:
            _count(hs, "not_state")
        else:
            state[key(e.type, e.state_key)] = i
    return state


def _state_key(etype: str, state_key: str) -> tuple[str, str]:
    return (etype, state_key)


def send_join_problem(hs: "Homeserver", room_id: str, sent: Event, body: dict) -> str | None:
    """Why a ``/send_join`` answer must be refused (counted), or ``None``."""
    state: list[Event] = list(body["state"])
    creates = [e for e in state if (e.type, e.state_key) == ("m.room.create", "") and e.room_id == room_id]
    reason = None
    if not creates:
        reason = "no_create"
    elif creates[0].content.get("room_version", "1") != hs.config.room_version:
        reason = "room_version"
    elif any((e.type, e.state_key) == ("m.room.create", "") and e.event_id != creates[0].event_id
             for e in body["auth_chain"]):
        reason = "other_create"
    elif body.get("event") is not None and body["event"].event_id != sent.event_id:
        reason = "join_event"
    if reason is not None:
        _count(hs, reason)
    return reason
