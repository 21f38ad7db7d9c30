"""State resolution v1, the original Matrix algorithm (protocol.md §3.7).

Applied here to events of any supported room version, with that version's
auth rules, so designers can compare it with v2 on the same traffic. It is
prone to "state resets": a conflict can fall back to an old event.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

from ..auth import StateKey, auth_types_for_event, check_auth
from ..events import Event
from . import ResolutionContext, StateMap, register

__all__ = ["resolve_v1"]

_PL = ("m.room.power_levels", "")


def _separate_v1(state_sets: Sequence[StateMap]) -> tuple[dict, dict[StateKey, set[str]]]:
    # Unlike v2, a key missing from some sets is not a conflict.
    unconflicted: dict = {}
    conflicted: dict[StateKey, set[str]] = {}
    for s in state_sets:
        for k, v in s.items():
            if k in conflicted:
                conflicted[k].add(v)
            elif k in unconflicted:
                if unconflicted[k] != v:
                    conflicted[k] = {v, unconflicted.pop(k)}
            else:
                unconflicted[k] = v
    return unconflicted, conflicted


def _ordered(evs: list[Event]) -> list[Event]:
    """Highest depth first; ties by smallest SHA-1 of the event ID."""
    return sorted(evs, key=lambda e: (-e.depth, hashlib.sha1(e.event_id.encode()).hexdigest()))


def _passes(ev: Event, auth: Mapping[StateKey, Event], ctx: ResolutionContext) -> bool:
    return check_auth(ev, auth, ctx.room_version, compat=ctx.compat).allowed


def _resolve_auth_events(evs: list[Event], auth: dict[StateKey, Event], ctx: ResolutionContext) -> Event:
    oldest_first = list(reversed(_ordered(evs)))
    keys = {k for e in evs for k in auth_types_for_event(e.type, e.state_key, e.sender, e.content)}
    local = {k: auth[k] for k in keys if k in auth}
    prev = oldest_first[0]
    for ev in oldest_first[1:]:
        local[(prev.type, prev.state_key)] = prev
        if not _passes(ev, local, ctx):
            return prev
        prev = ev
    return prev


def _resolve_normal_events(evs: list[Event], auth: Mapping[StateKey, Event], ctx: ResolutionContext) -> Event:
    ordered = _ordered(evs)
    for ev in ordered:
        if _passes(ev, auth, ctx):
            return ev
    return ordered[-1]


@register("v1")
def resolve_v1(state_sets: Sequence[StateMap], events: Mapping[str, Event], ctx: ResolutionContext) -> dict:
    unconflicted, conflicted_ids = _separate_v1(state_sets)
    conflicted: dict[StateKey, list[Event]] = {}
    for k, ids in conflicted_ids.items():
        evs = [events[i] for i in ids if i in events]
        if len(evs) > 1:
            conflicted[k] = evs
        elif evs:
            unconflicted[k] = evs[0].event_id
    # Auth events for the conflicted candidates come from the unconflicted state.
    auth: dict[StateKey, Event] = {}
    for evs in conflicted.values():
        for e in evs:
            for k in auth_types_for_event(e.type, e.state_key, e.sender, e.content):
                if k not in auth and k in unconflicted and unconflicted[k] in events:
                    auth[k] = events[unconflicted[k]]
    chosen: dict[StateKey, Event] = {}
    if _PL in conflicted:
        chosen[_PL] = _resolve_auth_events(conflicted[_PL], auth, ctx)
    auth.update(chosen)
    for k, evs in conflicted.items():
        if k[0] == "m.room.join_rules":
            chosen[k] = _resolve_auth_events(evs, auth, ctx)
    auth.update(chosen)
    for k, evs in conflicted.items():
        if k[0] == "m.room.member":
            chosen[k] = _resolve_auth_events(evs, auth, ctx)
    auth.update(chosen)
    for k, evs in conflicted.items():
        if k not in chosen:
            chosen[k] = _resolve_normal_events(evs, auth, ctx)
    out = dict(unconflicted)
    out.update({k: e.event_id for k, e in chosen.items()})
    return out
