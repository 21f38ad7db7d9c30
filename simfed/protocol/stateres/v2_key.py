"""One key of a v2 resolution, without replaying the rest, when that is exact.

A server often needs one entry of a state it has not resolved yet: the
sender's membership for a soft-fail check, a user's membership for a
client. When the forward extremities disagree on that key the whole v2
resolution would be needed, and in a large room it replays hundreds of
concurrent joins to answer for one.

The replay (:func:`~.v2.iterative_auth_checks`) decides each event by its
own auth events overlaid with the state built so far, read only at the
event's auth types. So the entry for key ``k`` is decided by the events of
the full conflicted set that have key ``k``, in their mainline order,
provided nothing else in the replay changes what those events read:

- the full conflicted set holds no power event (their replay comes first
  and may change any key, and the mainline is taken after it), and
- no event of the full conflicted set outside key ``k`` has a key that an
  event of key ``k`` reads (its auth types other than ``k``).

Then replaying the key-``k`` events alone, in the same relative order (the
mainline sort key of an event depends on that event alone), from the same
unconflicted state, reads exactly what the whole replay reads for them:
the value is the same. Otherwise the caller resolves the whole state.
"""

from __future__ import annotations

from typing import AbstractSet, Callable, Container, Mapping, Sequence

from ..auth import PL_KEY, StateKey
from ..authchain import AuthChainIndex, state_chain_difference
from ..events import Event
from ..roomversions import get_room_version
from . import ResolutionContext, StateMap, separate
from .v2 import _mainline_order, _replay_info, _replay_infos, is_power_event, iterative_auth_checks

__all__ = ["UNDECIDED", "resolve_key_v2", "resolve_v2_key"]


class _Undecided:
    def __repr__(self) -> str:
        return "UNDECIDED"


#: What :func:`resolve_v2_key` answers when the shortcut does not apply.
UNDECIDED = _Undecided()


def resolve_v2_key(state_sets: Sequence[StateMap], key: StateKey, events: Mapping[str, Event],
                   ctx: ResolutionContext) -> "str | None | _Undecided":
    """``resolve_v2(state_sets, events, ctx).get(key)`` when the module's
    conditions hold, else :data:`UNDECIDED`."""
    unconflicted, conflicted = separate(state_sets, ctx.items_of)
    if key not in conflicted:
        return unconflicted.get(key)
    chains = ctx.auth_chains
    assert chains is not None
    synapse = ctx.compat == "synapse"
    held_has = events.__contains__
    diff = state_chain_difference(state_sets, chains, include_state_events=synapse, held=lambda ids: all(map(held_has, ids)))
    diff.update(*conflicted.values())
    mine: list[str] = []
    others: set[StateKey] = set()
    get = events.get
    for e in diff:
        ev = get(e)
        if ev is None:
            continue
        if is_power_event(ev, include_create=synapse):
            return UNDECIDED
        k = (ev.type, ev.state_key)
        if k == key:
            mine.append(e)
        else:
            others.add(k)
    for e in mine:
        ev = events[e]
        info = _replay_infos.get(e)
        if info is None or info[0] is not ev:
            info = _replay_info(ev, events)
        if not others.isdisjoint(info[3]):
            return UNDECIDED
    order = _mainline_order(mine, unconflicted.get(PL_KEY), events)
    return iterative_auth_checks(map(events.__getitem__, order), unconflicted, events, ctx).get(key)


def resolve_key_v2(
    state_sets: Sequence[StateMap],
    key: StateKey,
    events: Mapping[str, Event],
    room_version: str = "11",
    *,
    compat: str = "spec",
    rejected: Container[str] = frozenset(),
    auth_chains: AuthChainIndex | None = None,
    items_of: "Callable[[StateMap], AbstractSet] | None" = None,
) -> "str | None | _Undecided":
    """``resolve_state("v2", state_sets, ...).get(key)`` by
    :func:`resolve_v2_key` (same arguments), or :data:`UNDECIDED`."""
    if compat not in ("spec", "synapse"):
        raise ValueError(f"compat={compat!r}: choose 'spec' or 'synapse'")
    if not state_sets:
        return None
    if len(state_sets) == 1:
        return state_sets[0].get(key)
    ctx = ResolutionContext(get_room_version(room_version), compat, rejected, auth_chains, items_of=items_of)
    if ctx.auth_chains is None:
        ctx.auth_chains = AuthChainIndex(events)
    return resolve_v2_key(state_sets, key, events, ctx)
