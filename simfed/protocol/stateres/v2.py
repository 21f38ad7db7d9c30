"""State resolution v2 (room versions 2-11; protocol.md §3.2).

Theory of operation. Unconflicted entries are kept. The *full conflicted set*
F is the conflicted candidates plus the auth chain difference. Power events
in F (power levels, join rules, kicks and bans), with the F-events in their
auth chains, are replayed first in reverse topological power order, each
authorised against the state built so far; the remaining events of F follow
in mainline order (by the power levels they were based on), and finally the
unconflicted entries are put back.

Where the reference homeserver reads the spec differently the context's
``compat`` decides (protocol.md §8):

============================  =======================  ===========================
switch                        ``spec`` (default)       ``synapse``
============================  =======================  ===========================
auth difference (item 4)      chains exclude the sets' chains include the sets'
                              own events               own events
power ordering graph (14)     whole auth graph: a      auth edges only between
                              before b whenever a is   events of F; power events
                              in b's auth chain        reach their F-ancestors
                                                       only through F
previously rejected (item 5)  considered again         skipped
============================  =======================  ===========================
"""

from __future__ import annotations

import heapq
from typing import Callable, Container, Iterable, Iterator, Mapping, Sequence

from ..auth import (
    CREATE_KEY, JR_KEY, PL_KEY, StateKey, _creator, _is_map, auth_checker, auth_types_for_event, member_decider,
    nonmember_checker,
)
from ..authchain import state_chain_difference
from ..events import Event
from ..toposort import CycleError, toposort
from . import ResolutionContext, StateMap, register, separate

__all__ = ["resolve_v2"]

_POWER_TYPES = ("m.room.power_levels", "m.room.join_rules")
_KICK_BAN = ("leave", "ban")
#: memberships whose auth types include the join rules
_JR_MEMBERSHIPS = frozenset(("join", "invite", "knock"))
_MEMBER = "m.room.member"
_CREATE = "m.room.create"


def is_power_event(ev: Event, *, include_create: bool = False) -> bool:
    sk = ev.state_key
    if sk is None:
        return False
    t = ev.type
    if sk == "" and (t in _POWER_TYPES or (include_create and t == "m.room.create")):
        return True
    return t == _MEMBER and ev.membership in _KICK_BAN and ev.sender != sk


def _sender_level(ev: Event, get, rv) -> int:
    """The sender's power level by the power levels among ``ev``'s auth
    events (the creator's 100 without one); ``get`` looks events up."""
    for aid in ev.auth_events:
        a = get(aid)
        if a is not None and a.type == "m.room.power_levels" and a.state_key == "":
            content = a.content
            users = content.get("users")
            level = users.get(ev.sender) if type(users) is dict or _is_map(users) else None
            if level is None:
                level = content.get("users_default", 0)
            if type(level) is int:
                return level
            try:
                return int(level)
            except (TypeError, ValueError):
                return 0
    for aid in ev.auth_events:
        a = get(aid)
        if a is not None and a.type == "m.room.create" and a.state_key == "":
            return 100 if _creator(a, rv) == ev.sender else 0
    return 0


def _topo_sort(nodes: Iterable[str], preds: Mapping[str, set[str]], key) -> list[str]:
    """Reverse topological power order: ancestors first, then by ``key``."""
    try:
        return toposort(nodes, preds, key)
    except CycleError:
        raise ValueError("the auth graph of the conflicted events has a cycle") from None


def _power_order(power: list[str], full: set[str], events: Mapping[str, Event], ctx: ResolutionContext) -> list[str]:
    if ctx.compat != "synapse":
        # The power events and the F-events in their auth chains, each after
        # its ancestors among them. Nearest ancestors have the same closure
        # as whole chains (so the same order), in linear time.
        chains = ctx.auth_chains
        assert chains is not None
        nodes = set(power) | (chains.union_chain(power) & full)
        preds = chains.nearest_ancestors(nodes)
        get, rv = events.get, ctx.room_version
        keys = {n: (-_sender_level(events[n], get, rv), events[n].origin_server_ts, n) for n in preds}
        return _topo_sort(preds, preds, keys.__getitem__)
    out: list[str] = []
    for _ in _kahn(power, full, events, ctx, out):
        pass
    return out


def _kahn(power: list[str], full: set[str], events: Mapping[str, Event], ctx: ResolutionContext,
          out: list[str]) -> Iterator[Event]:
    """The power order of ``compat="synapse"``, yielded event by event (and
    its IDs appended to ``out``), so that the replay can check each event
    while its data is still in the processor's caches, before the order
    goes on. Heap entries carry the event after its unique ID (never
    compared), so the replay gets it without a lookup.

    Kahn's algorithm over the power events and their F-ancestors through
    auth edges within F: each node after its parents among them, ready
    nodes by (-sender level, ts, ID); the same order as ``toposort`` (a
    repeated parent is counted and released twice, so it acts once). A
    node's children are one ID or, from the second, a list: few objects.
    Raises ValueError, at the end, if the graph has a cycle.
    """
    remaining: dict[str, int] = {}
    children: dict[str, str | list[str]] = {}
    heap: list[tuple[int, int, str, Event]] = []
    get, rv = events.get, ctx.room_version
    stack = list(power)
    pop_stack, push_stack = stack.pop, stack.append
    while stack:
        eid = pop_stack()
        if eid in remaining:
            continue
        ev = events[eid]
        count = 0
        for a in ev.auth_events:
            if a in full:
                count += 1
                c = children.get(a)
                if c is None:
                    children[a] = eid
                elif type(c) is str:
                    children[a] = [c, eid]
                else:
                    c.append(eid)
                if a not in remaining:
                    push_stack(a)
        remaining[eid] = count
        if not count:
            heap.append((-_sender_level(ev, get, rv), ev.origin_server_ts, eid, ev))
    heapq.heapify(heap)
    push, pop, append = heapq.heappush, heapq.heappop, out.append
    get_children = children.get
    while heap:
        _, _, n, ev = pop(heap)
        append(n)
        yield ev
        c = get_children(n)
        if c is None:
            continue
        for s in (c,) if type(c) is str else c:
            r = remaining[s] - 1
            remaining[s] = r
            if not r:
                ev = events[s]
                push(heap, (-_sender_level(ev, get, rv), ev.origin_server_ts, s, ev))
    if len(out) != len(remaining):
        raise ValueError("the auth graph of the conflicted events has a cycle")


class _LiveEvents(dict):
    """The events a state names that may serve as auth events (known, not
    rejected), by key, looked up on first use (``None``: no such event): a
    state may hold a thousand keys and a replay read a handful. Kept beside
    the state so far by the replay, which writes every key it changes, so a
    key never written is looked up in the state it started from."""

    __slots__ = ("_state", "_get", "_rejected")

    def __init__(self, state: Mapping[StateKey, str], events: Mapping[str, Event], rejected: Container[str]) -> None:
        super().__init__()
        self._state = state
        self._get = events.get
        self._rejected = rejected

    def __missing__(self, key: StateKey) -> Event | None:
        v = self._state.get(key)
        ev = self[key] = self._get(v) if v is not None and v not in self._rejected else None
        return ev


#: What replaying an event needs from its content and its auth events', by
#: event ID: ``(event, auth event IDs, own auth state (read-only), auth
#: types, power-levels parent)`` (see :func:`_replay_info`). Every entry is a
#: function of the event alone (interned: one object per ID, checked), so
#: the servers of a run share it; cleared whole at ``REPLAY_INFO_MAX``.
_replay_infos: dict[str, tuple] = {}
REPLAY_INFO_MAX = 200_000
#: events replayed once without their info being made: it is made the
#: second time (an event replayed once only, as in a single resolution,
#: costs no more than without the info)
_replayed_once: set[str] = set()


def clear_replay_infos() -> None:
    """Forget every event's replay info (benchmarks: nothing kept between repeats)."""
    _replay_infos.clear()
    _replayed_once.clear()


def _replay_info(ev: Event, events: Mapping[str, Event]) -> tuple:
    """``ev``'s replay info; its auth event IDs are None (and it is not
    kept) unless ``events`` holds every auth event of ``ev``."""
    etype = ev.type
    if etype == _MEMBER:
        types: tuple[StateKey, ...] = tuple(auth_types_for_event(etype, ev.state_key, ev.sender, ev.content))
    elif etype == "m.room.create":
        types = ()
    else:
        types = (CREATE_KEY, PL_KEY, (_MEMBER, ev.sender))
    get = events.get
    own = [get(a) for a in ev.auth_events]
    if None in own:
        return (ev, None, (), types, None)
    items = {(a.type, a.state_key): a for a in own if a.state_key is not None}
    parent = next((a for a in own if a.type == "m.room.power_levels" and a.state_key == ""), None)
    info = (ev, frozenset(ev.auth_events), items, types, parent)
    if len(_replay_infos) >= REPLAY_INFO_MAX:
        _replay_infos.clear()
        _replayed_once.clear()
    _replay_infos[ev.event_id] = info
    return info


def _none_of(rejected: Container[str]) -> "Callable[[frozenset[str]], bool]":
    """A test that none of some event IDs is in ``rejected``, in C for a
    set or a dict."""
    if isinstance(rejected, (set, frozenset)):
        return rejected.isdisjoint
    if isinstance(rejected, dict):
        return rejected.keys().isdisjoint
    return lambda ids: not any(i in rejected for i in ids)


def _own_auth_lookup(events: Mapping[str, Event], rejected: Container[str]) -> "tuple[Callable[[Event], tuple], Callable[[Event, tuple], Mapping[StateKey, Event]]]":
    """Two functions for a replay: an event's replay info (shared; made the
    second time an event is replayed, None the first), and its own auth state (its known, unrejected auth events by
    key; read-only) given that info: the info's when this server holds all
    of them and rejected none, else built."""
    get = events.get
    held = events.keys()
    none_rejected = _none_of(rejected)
    info_get = _replay_infos.get

    once = _replayed_once

    def info_of(ev: Event) -> tuple | None:
        eid = ev.event_id
        info = info_get(eid)
        if info is not None and info[0] is ev:
            return info
        if eid not in once:
            once.add(eid)
            return None
        return _replay_info(ev, events)

    def own_from(ev: Event, info: tuple | None) -> Mapping[StateKey, Event]:
        if info is not None:
            aids = info[1]
            if aids is not None and held >= aids and none_rejected(aids):
                return info[2]
        return _own_auth_events(ev, get, rejected)

    return info_of, own_from


def _or_own(own: Mapping[StateKey, Event], mkey: StateKey, create_ev: Event | None, pl_ev: Event | None,
            member_ev: Event | None) -> tuple[Event | None, Event | None, Event | None]:
    """The create, power-levels and sender's membership events from the
    state so far, each missing one taken from the event's own auth events."""
    return (create_ev if create_ev is not None else own.get(CREATE_KEY),
            pl_ev if pl_ev is not None else own.get(PL_KEY),
            member_ev if member_ev is not None else own.get(mkey))


def iterative_auth_checks(
    order: Iterable[Event],
    base: Mapping[StateKey, str],
    events: Mapping[str, Event],
    ctx: ResolutionContext,
    live: _LiveEvents | None = None,
    keys: Mapping[StateKey, StateKey] | None = None,
) -> dict[StateKey, str]:
    """Replay the events ``order`` yields on top of ``base``, keeping each
    event that passes the auth rules against its auth events overlaid with
    the state so far (``events`` holds those auth events).

    ``live``: ``_LiveEvents(base, ...)`` if the caller has it (a previous
    replay's); kept beside the state so far (one lookup per auth type) and
    updated in place. ``keys``: state keys to use as the resolved map's
    keys where equal (the input maps' own tuples: one tuple per key for
    every map that holds it, not a new one per resolution)."""
    resolved = dict(base)
    rejected: Container[str] = ctx.rejected
    compat = ctx.compat
    skip_rejected = compat == "synapse"
    allowed = auth_checker(ctx.room_version, compat=compat)
    allowed3 = nonmember_checker(ctx.room_version, compat=compat)
    decide = member_decider(ctx.room_version, compat=compat)
    if live is None:
        live = _LiveEvents(base, events, rejected)
    info_of, own_from = _own_auth_lookup(events, rejected)
    # Per replay: the membership key of each sender.
    member_keys: dict[str, StateKey] = {}
    n_checks = 0
    for ev in order:
        eid = ev.event_id
        if skip_rejected and eid in rejected:
            continue
        etype = ev.type
        n_checks += 1
        # The rules read only the auth types' entries of an auth state (the
        # create event, the power levels and the sender's membership for a
        # non-member event), so the state so far's events of those types,
        # or else the event's own, are the whole auth state that matters.
        if etype == _CREATE:
            ok = allowed(ev, dict(own_from(ev, info_of(ev))))
        else:
            sender = ev.sender
            mkey = member_keys.get(sender)
            if mkey is None:
                mkey = member_keys[sender] = (_MEMBER, sender)
            create_ev = live[CREATE_KEY]
            pl_ev = live[PL_KEY]
            member_ev = live[mkey]
            if etype != _MEMBER:
                if create_ev is None or pl_ev is None or member_ev is None:
                    create_ev, pl_ev, member_ev = _or_own(own_from(ev, info_of(ev)), mkey, create_ev, pl_ev,
                                                          member_ev)
                if create_ev is not None and pl_ev is not None and member_ev is not None:
                    ok = allowed3(ev, create_ev, pl_ev, member_ev)
                else:
                    auth: dict[StateKey, Event] = {}
                    if create_ev is not None:
                        auth[CREATE_KEY] = create_ev
                    if pl_ev is not None:
                        auth[PL_KEY] = pl_ev
                    if member_ev is not None:
                        auth[mkey] = member_ev
                    ok = allowed(ev, auth)
            else:
                ok = None
                # A membership event: the entries the membership rules read
                # on common paths, from the state so far or else the event's
                # own auth events (as the auth types' loop below would take
                # them), decided by ``decide`` when it can; anything else
                # goes through the rule-by-rule path.
                membership = ev.membership
                target = ev.state_key
                own = None
                if membership is not None and target is not None:
                    if target == sender:
                        tkey = mkey
                        target_ev = member_ev
                    else:
                        tkey = member_keys.get(target)
                        if tkey is None:
                            tkey = member_keys[target] = (_MEMBER, target)
                        target_ev = live[tkey]
                    jr_ev = live[JR_KEY] if membership in _JR_MEMBERSHIPS else None
                    if (create_ev is None or pl_ev is None or member_ev is None or target_ev is None
                            or (jr_ev is None and membership in _JR_MEMBERSHIPS)):
                        info = info_of(ev)
                        own = own_from(ev, info)
                        create_ev, pl_ev, member_ev = _or_own(own, mkey, create_ev, pl_ev, member_ev)
                        if target_ev is None:
                            target_ev = member_ev if tkey is mkey else own.get(tkey)
                        if jr_ev is None and membership in _JR_MEMBERSHIPS:
                            jr_ev = own.get(JR_KEY)
                    ok = decide(ev, membership, create_ev, pl_ev, member_ev, target_ev, jr_ev)
                if ok is None:
                    if own is None:
                        info = info_of(ev)
                    types = info[3] if info is not None else auth_types_for_event(etype, target, sender, ev.content)
                    auth = {}
                    for k in types:  # the auth types, in auth_types_for_event's order
                        cur_ev = live[k]
                        if cur_ev is None:
                            if own is None:
                                own = own_from(ev, info)
                            cur_ev = own.get(k)
                            if cur_ev is None:
                                continue
                        auth[k] = cur_ev
                    ok = allowed(ev, auth)
        if ok:
            key = (etype, ev.state_key)
            if keys is not None:
                key = keys.get(key, key)
            resolved[key] = eid
            live[key] = None if eid in rejected else ev  # spec mode re-admits it, never as an auth event
    ctx.stats["auth_checks"] = ctx.stats.get("auth_checks", 0) + n_checks
    return resolved


def _own_auth_events(ev: Event, get, rejected: Container[str]) -> dict[StateKey, Event]:
    """``ev``'s auth events (known, not rejected, state events) by key."""
    auth: dict[StateKey, Event] = {}
    for aid in ev.auth_events:
        if aid not in rejected:
            a = get(aid)
            if a is not None:
                sk = a.state_key
                if sk is not None:
                    auth[(a.type, sk)] = a
    return auth


def _pl_parent(ev: Event, events: Mapping[str, Event]) -> Event | None:
    info = _replay_infos.get(ev.event_id)
    if info is not None and info[0] is ev and events.keys() >= info[1]:
        return info[4]
    for aid in ev.auth_events:
        a = events.get(aid)
        if a is not None and a.type == "m.room.power_levels" and a.state_key == "":
            return a
    return None


def _mainline_order(ids: Iterable[str], pl_id: str | None, events: Mapping[str, Event]) -> list[str]:
    ids = list(ids)
    if len(ids) < 2:
        return ids
    mainline: list[str] = []
    cur = events.get(pl_id) if pl_id is not None else None
    while cur is not None:
        mainline.append(cur.event_id)
        cur = _pl_parent(cur, events)
    # Oldest power levels get 1; "no power levels on the mainline" gets 0.
    # Events whose position is known (the mainline's and those walked
    # already) share one map: a walk stops at the first of them.
    position = {eid: len(mainline) - i for i, eid in enumerate(mainline)}
    known = position.get
    keys: dict[str, tuple[int, int, str]] = {}
    for e in ids:
        ev = events[e]
        seen: list[str] = []
        tmp: Event | None = ev
        result = 0
        while tmp is not None:
            hit = known(tmp.event_id)
            if hit is not None:
                result = hit
                break
            seen.append(tmp.event_id)
            tmp = _pl_parent(tmp, events)
        for s in seen:
            if s not in position:
                position[s] = result
        keys[e] = (result, ev.origin_server_ts, e)
    ids.sort(key=keys.__getitem__)
    return ids


@register("v2")
def resolve_v2(state_sets: Sequence[StateMap], events: Mapping[str, Event], ctx: ResolutionContext) -> dict:
    unconflicted, conflicted = separate(state_sets, ctx.items_of)
    if not conflicted:
        return unconflicted
    chains = ctx.auth_chains
    assert chains is not None
    held_has = events.__contains__
    diff = state_chain_difference(state_sets, chains, include_state_events=ctx.compat == "synapse",
                                  held=lambda ids: all(map(held_has, ids)))
    diff.update(*conflicted.values())
    synapse = ctx.compat == "synapse"
    # The full conflicted set (the events known) and its power events, with
    # one lookup per event (``is_power_event`` inline).
    full: set[str] = set()
    power: list[str] = []
    add_full, add_power, get = full.add, power.append, events.get
    for e in diff:
        ev = get(e)
        if ev is not None:
            add_full(e)
            sk = ev.state_key
            if sk is not None:
                t = ev.type
                if sk == "" and (t in _POWER_TYPES or (synapse and t == _CREATE)):
                    add_power(e)
                elif t == _MEMBER and ev.membership in _KICK_BAN and ev.sender != sk:
                    add_power(e)
    # The two replays share the auth events of the state so far.
    live = _LiveEvents(unconflicted, events, ctx.rejected)
    keys = {k: k for k in conflicted}
    if synapse:  # ordered as replayed
        power_sorted: list[str] = []
        resolved = iterative_auth_checks(_kahn(power, full, events, ctx, power_sorted), unconflicted, events, ctx,
                                         live, keys)
    else:
        power_sorted = _power_order(power, full, events, ctx)
        resolved = iterative_auth_checks(map(events.__getitem__, power_sorted), unconflicted, events, ctx, live,
                                         keys)
    rest = _mainline_order(full.difference(power_sorted), resolved.get(PL_KEY), events)
    resolved = iterative_auth_checks(map(events.__getitem__, rest), resolved, events, ctx, live, keys)
    resolved.update(unconflicted)
    ctx.stats["conflicted"] = len(conflicted)
    ctx.stats["full_conflicted"] = len(full)
    return resolved
