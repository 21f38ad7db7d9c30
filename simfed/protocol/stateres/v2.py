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

from ..auth import CREATE_KEY, PL_KEY, StateKey, _creator, _is_map, auth_checker, auth_types_for_event
from ..authchain import state_chain_difference
from ..events import Event
from ..toposort import CycleError, toposort
from . import ResolutionContext, StateMap, register, separate

__all__ = ["resolve_v2"]

_POWER_TYPES = ("m.room.power_levels", "m.room.join_rules")
_MEMBER = "m.room.member"


def is_power_event(ev: Event, *, include_create: bool = False) -> bool:
    sk = ev.state_key
    if sk is None:
        return False
    t = ev.type
    if sk == "" and (t in _POWER_TYPES or (include_create and t == "m.room.create")):
        return True
    return t == _MEMBER and ev.membership in ("leave", "ban") and ev.sender != sk


def _sender_level(ev: Event, events: Mapping[str, Event], ctx: ResolutionContext) -> int:
    """The sender's power level by the power levels among ``ev``'s auth
    events (the creator's 100 without one)."""
    get = events.get
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
            return 100 if _creator(a, ctx.room_version) == ev.sender else 0
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
        keys = {n: (-_sender_level(events[n], events, ctx), events[n].origin_server_ts, n) for n in preds}
        return _topo_sort(preds, preds, keys.__getitem__)
    out: list[str] = []
    for _ in _kahn(power, full, events, ctx, out):
        pass
    return out


def _kahn(power: list[str], full: set[str], events: Mapping[str, Event], ctx: ResolutionContext,
          out: list[str]) -> Iterator[str]:
    """The power order of ``compat="synapse"``, yielded node by node (and
    appended to ``out``), so that the replay can check each event while its
    data is still in the processor's caches, before the order goes on.

    Kahn's algorithm over the power events and their F-ancestors through
    auth edges within F: each node after its parents among them, ready
    nodes by (-sender level, ts, ID); the same order as ``toposort`` (a
    repeated parent is counted and released twice, so it acts once). A
    node's children are one ID or, from the second, a list: few objects.
    Raises ValueError, at the end, if the graph has a cycle.
    """
    remaining: dict[str, int] = {}
    children: dict[str, str | list[str]] = {}
    heap: list[tuple[int, int, str]] = []
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
            heap.append((-_sender_level(ev, events, ctx), ev.origin_server_ts, eid))
    heapq.heapify(heap)
    push, pop, append = heapq.heappush, heapq.heappop, out.append
    get_children = children.get
    while heap:
        n = pop(heap)[2]
        append(n)
        yield n
        c = get_children(n)
        if c is None:
            continue
        for s in (c,) if type(c) is str else c:
            r = remaining[s] - 1
            remaining[s] = r
            if not r:
                ev = events[s]
                push(heap, (-_sender_level(ev, events, ctx), ev.origin_server_ts, s))
    if len(out) != len(remaining):
        raise ValueError("the auth graph of the conflicted events has a cycle")


#: A key of the state not looked up yet (``None`` is a looked-up absence).
_UNSEEN = object()

#: What replaying an event needs from its content and its auth events', by
#: event ID: ``(event, auth event IDs, own auth state items, auth types,
#: power-levels parent)`` (see :func:`_replay_info`). Every entry is a
#: function of the event alone (interned: one object per ID, checked), so
#: the servers of a run share it; cleared whole at ``REPLAY_INFO_MAX``.
_replay_infos: dict[str, tuple] = {}
REPLAY_INFO_MAX = 200_000


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
    items = tuple(((a.type, a.state_key), a) for a in own if a.state_key is not None)
    parent = next((a for a in own if a.type == "m.room.power_levels" and a.state_key == ""), None)
    info = (ev, frozenset(ev.auth_events), items, types, parent)
    if len(_replay_infos) >= REPLAY_INFO_MAX:
        _replay_infos.clear()
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


def iterative_auth_checks(
    order: Iterable[str],
    base: Mapping[StateKey, str],
    events: Mapping[str, Event],
    ctx: ResolutionContext,
) -> dict[StateKey, str]:
    """Replay ``order`` on top of ``base``, keeping each event that passes
    the auth rules against its auth events overlaid with the state so far."""
    resolved = dict(base)
    rejected: Container[str] = ctx.rejected
    compat = ctx.compat
    skip_rejected = compat == "synapse"
    allowed = auth_checker(ctx.room_version, compat=compat)
    get = events.get
    held = events.keys()
    none_rejected = _none_of(rejected)
    info_get = _replay_infos.get
    resolved_get = resolved.get
    # The events the state so far names that may serve as auth events (not
    # rejected, known), looked up on first use and kept beside it: the
    # state may hold a thousand keys, a replay reads a handful.
    live: dict[StateKey, Event | None] = {}
    live_get = live.get
    n_checks = 0
    for eid in order:
        if skip_rejected and eid in rejected:
            continue
        ev = events[eid]
        info = info_get(eid)
        if info is None or info[0] is not ev:
            info = _replay_info(ev, events)
        aids = info[1]
        if aids is not None and held >= aids and none_rejected(aids):
            auth: dict[StateKey, Event] = dict(info[2])
        else:
            auth = {}
            for aid in ev.auth_events:
                if aid not in rejected:
                    a = get(aid)
                    if a is not None:
                        sk = a.state_key
                        if sk is not None:
                            auth[(a.type, sk)] = a
        for k in info[3]:
            cur_ev = live_get(k, _UNSEEN)
            if cur_ev is _UNSEEN:
                v = resolved_get(k)
                cur_ev = live[k] = get(v) if v is not None and v not in rejected else None
            if cur_ev is not None:
                auth[k] = cur_ev
        n_checks += 1
        if allowed(ev, auth):
            key = (ev.type, ev.state_key)
            resolved[key] = eid
            live[key] = None if eid in rejected else ev  # spec mode re-admits it, never as an auth event
    ctx.stats["auth_checks"] = ctx.stats.get("auth_checks", 0) + n_checks
    return resolved


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
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    chains = ctx.auth_chains
    assert chains is not None
    held = events.keys()
    diff = state_chain_difference(state_sets, chains, include_state_events=ctx.compat == "synapse",
                                  held=lambda ids: held >= ids)
    diff.update(*conflicted.values())
    synapse = ctx.compat == "synapse"
    # The full conflicted set (the events known) and its power events, with
    # one lookup per event.
    full: set[str] = set()
    power: list[str] = []
    add_full, add_power, get = full.add, power.append, events.get
    for e in diff:
        ev = get(e)
        if ev is not None:
            add_full(e)
            if is_power_event(ev, include_create=synapse):
                add_power(e)
    if synapse:  # ordered as replayed
        power_sorted: list[str] = []
        resolved = iterative_auth_checks(_kahn(power, full, events, ctx, power_sorted), unconflicted, events, ctx)
    else:
        power_sorted = _power_order(power, full, events, ctx)
        resolved = iterative_auth_checks(power_sorted, unconflicted, events, ctx)
    rest = _mainline_order(full.difference(power_sorted), resolved.get(PL_KEY), events)
    resolved = iterative_auth_checks(rest, resolved, events, ctx)
    resolved.update(unconflicted)
    ctx.stats["conflicted"] = len(conflicted)
    ctx.stats["full_conflicted"] = len(full)
    return resolved
