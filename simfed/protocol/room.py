"""Room state as one server holds it: statuses, state before/after each
event, forward extremities and current state (protocol.md §3.1, §4).

:class:`RoomState` is the decision core a homeserver drives (sans-I/O): it is
handed events whose parents and auth events it already holds and answers
with a :class:`Decision`. :func:`process_room` runs a whole room's events
through it offline (``simfed resolve`` uses it).

Memoised by content: the state after an event depends only on its
ancestry, which its ID pins, so it is computed once per event; a resolution
of the same prev set is computed once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import AbstractSet, Callable, Iterable, Iterator, Mapping, Sequence

from .auth import StateKey, auth_types_for_event, check_auth, check_auth_events_sanity
from .authchain import AuthChainIndex
from .dag import RoomGraph
from .events import Event
from .roomversions import DEFAULT_ROOM_VERSION, get_room_version
from .stateres import ItemSets, conflicted_pairs, get_resolver, resolve_state
from .stateres.v2_key import UNDECIDED, resolve_key_v2
from .toposort import CycleError, toposort

__all__ = ["Decision", "RoomResult", "RoomState", "SharedStateMemo", "StateMapT", "conflicted_size", "process_room"]

StateMapT = Mapping[StateKey, str]

ACCEPTED = "accepted"
REJECTED = "rejected"
SOFT_FAILED = "soft_failed"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a server decided about one event.

    ``outcome``: ``accepted``, ``rejected`` or ``soft_failed``; ``stage``:
    which check decided (``auth_events``, ``state_before``, ``current_state``);
    ``rule``: the auth rule; ``reason``: a sentence.
    """

    outcome: str
    stage: str | None = None
    rule: str | None = None
    reason: str | None = None

    @property
    def code(self) -> str:
        """A short, countable reason: ``stage:rule`` (``""`` when accepted)."""
        return "" if self.outcome == ACCEPTED else f"{self.stage}:{self.rule}"


_OK = Decision(ACCEPTED)


class _Statuses(Mapping):
    """A room's decisions by stored event ID, as a read-only view: the
    events stored are the keys of the state-after map, and only decisions
    other than the shared acceptance are kept (no entry per accepted event)."""

    __slots__ = ("_stored", "_other")

    def __init__(self, stored: Mapping[str, object], other: Mapping[str, Decision]) -> None:
        self._stored = stored
        self._other = other

    def __getitem__(self, event_id: str) -> Decision:
        d = self._other.get(event_id)
        if d is not None:
            return d
        if event_id in self._stored:
            return _OK
        raise KeyError(event_id)

    def get(self, event_id: str, default: "Decision | None" = None) -> "Decision | None":
        d = self._other.get(event_id)
        if d is not None:
            return d
        return _OK if event_id in self._stored else default

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._stored

    def __iter__(self) -> "Iterator[str]":
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)

#: a set of event IDs as a memo key: sorted, without repeats (a tuple is a
#: quarter of a frozenset's memory, and servers keep a thousand of them)
PrevKey = tuple[str, ...]


def prev_key(ids: Iterable[str]) -> PrevKey:
    """The memo key of a set of event IDs."""
    return tuple(sorted(set(ids)))


def _ids_key(maps: Iterable[object]) -> tuple[int, ...]:
    """The memo key of a set of state maps, by identity: their distinct
    ``id``s, sorted (a tuple of two or three is a quarter of a frozenset's
    memory, and the shared memos keep thousands)."""
    return tuple(sorted({id(m) for m in maps}))


class _Owed:
    """A resolution (of the states after ``key``) counted as work done but
    not computed yet."""

    __slots__ = ("key",)

    def __init__(self, key: "PrevKey") -> None:
        self.key = key


#: algorithms whose result keeps every unconflicted entry as it is
_KEEPS_UNCONFLICTED = frozenset({"v2", "v1", "naive"})


class SharedStateMemo:
    """Results that depend only on content, shared by servers that agree on it.

    The state before an event is pinned by its prev_events' IDs, the decision
    of checks 4-5 and the state after it by its own ID, as long as the state
    was computed from the event's ancestry (not supplied across a gap). Honest
    servers that hold the ancestry therefore compute identical answers; this
    memo lets them compute each once. Soft-fail checks depend on a server's
    current state and are never shared.
    """

    __slots__ = ("before", "before_of", "decision", "after", "hits", "by_states", "chains", "of_state", "conflicted",
                 "state_chains", "items", "prev_keys", "state_keys")

    #: resolutions kept per memo (oldest dropped first): bounds memory only...
    MAX_RESOLUTIONS = 20_000
    #: ... and at most about this many state entries in their resolved maps
    #: (each a full map, one entry per member in a big room)
    MAX_RESOLVED_ENTRIES = 1_000_000
    #: answers kept in ``of_state`` (oldest dropped first)
    MAX_DERIVED = 1024
    #: distinct local memo keys shared (then started afresh)
    MAX_PREV_KEYS = 200_000

    @classmethod
    def max_resolutions(cls, state_size: int) -> int:
        """How many resolutions to keep when resolved states hold about
        ``state_size`` entries (at least 1,024)."""
        return max(1024, min(cls.MAX_RESOLUTIONS, cls.MAX_RESOLVED_ENTRIES // max(1, state_size)))

    def __init__(self) -> None:
        #: resolutions of prev sets: (resolved state, conflicted events counted)
        self.before: "OrderedDict[PrevKey, tuple[dict[StateKey, str], int]]" = OrderedDict()
        #: the same keyed by the identities of the distinct state maps
        #: resolved (the maps are kept in the value, so identities stay valid)
        self.by_states: "OrderedDict[tuple[int, ...], tuple[tuple[dict, ...], tuple[dict, int]]]" = OrderedDict()
        #: the canonical state before each event stored canonically somewhere
        self.before_of: dict[str, StateMapT] = {}
        self.decision: dict[str, Decision] = {}
        self.after: dict[str, dict[StateKey, str]] = {}
        self.hits = 0
        #: complete auth chains by event ID (``AuthChainIndex(shared=...)``)
        self.chains: dict[str, frozenset[str]] = {}
        #: callers' answers derived from one state map's content, keyed by
        #: (purpose, the map's identity); the map is kept in the value
        self.of_state: "OrderedDict[tuple[str, int], tuple[Mapping, object]]" = OrderedDict()
        #: conflicted events counted for a resolution of distinct state maps,
        #: keyed by their identities (the maps are kept in the value)
        self.conflicted: "OrderedDict[tuple[int, ...], tuple[tuple[Mapping, ...], int]]" = OrderedDict()
        #: the union of the auth chains of a state map's events, by the map's
        #: identity (``AuthChainIndex.state_chain``; the map is kept in the value)
        self.state_chains: "OrderedDict[tuple[int, bool], tuple]" = OrderedDict()
        #: the (key, event) pairs of state maps as frozensets, by identity
        self.items = ItemSets()
        #: one tuple per set of event IDs the servers' local memos are keyed by
        self.prev_keys: dict[PrevKey, PrevKey] = {}
        #: one tuple per state key of the room's state maps (:meth:`RoomState.state_key`)
        self.state_keys: dict[StateKey, StateKey] = {}


class RoomState:
    """One server's view of one room.

    ``add(event)`` requires the event's prev_events to be DAG members (use
    ``graph.missing_parents``) and its auth events to be held (DAG members or
    outliers; use :meth:`missing_auth_events`).
    """

    #: :meth:`current_get` of a key the forward extremities disagree on asks
    #: v2 for that key alone when it can (exact; False resolves the state)
    one_key_reads = True

    def __init__(
        self,
        room_version: str = DEFAULT_ROOM_VERSION,
        *,
        algorithm: str = "v2",
        compat: str = "spec",
        room_id: str | None = None,
        shared: SharedStateMemo | None = None,
        auth_chains: "AuthChainIndex | None" = None,
    ) -> None:
        self.shared = shared
        self.room_version = get_room_version(room_version)
        get_resolver(algorithm)  # fail early on an unknown name
        self.algorithm = algorithm
        self.compat = compat
        self.graph = RoomGraph(room_id)
        #: held events whose auth events were not all held when stored
        self._auth_gaps: set[str] = set()
        if auth_chains is not None:
            self.graph.auth_chains = auth_chains
        elif shared is not None:
            self.graph.auth_chains = AuthChainIndex(self.graph.get, shared=shared.chains, closed=self.auth_closed,
                                                    state_chains=shared.state_chains)
        #: DAG members and outliers by ID (read-only)
        self.events: Mapping[str, Event] = self.graph.held
        #: the state after each stored event (its keys: the events stored,
        #: in the order they were)
        self._after: dict[str, dict[StateKey, str]] = {}
        #: decisions other than ``_OK`` (rejections, soft-fails) by event ID
        self._decisions: dict[str, Decision] = {}
        #: each stored event's decision (read-only view)
        self.status: Mapping[str, Decision] = _Statuses(self._after, self._decisions)
        #: resolutions by key, oldest first (a plain dict: insertion-ordered,
        #: and half an OrderedDict's memory per entry; one per server)
        self._before_memo: "dict[PrevKey, dict[StateKey, str] | _Owed]" = {}
        #: keys of resolutions counted in the memo but not computed yet
        self._owed: set[PrevKey] = set()
        self.forward_extremities: set[str] = set()
        self._current: dict[StateKey, str] | None = {}
        self.rejected: dict[str, str] = {}
        self._decided_before: StateMapT = {}
        self._decided_canonical = False
        #: the state before a stored event, kept only when it is not the
        #: state after its single prev_event (:meth:`stored_state_before`)
        self._before: dict[str, StateMapT] = {}
        #: stored events whose state is not known to be the one computed from
        #: their full ancestry (supplied across a gap and different, or built
        #: on such a state); every other stored event's state is canonical,
        #: and only those are shared with other servers (the exception is
        #: kept, being the rare case)
        self._noncanonical: set[str] = set()
        self.resolutions = 0
        #: conflicted state events over all resolutions counted in ``resolutions``
        self.conflicted_events = 0
        self.auth_checks = 0

    # -- lookups --------------------------------------------------------------

    def missing_auth_events(self, event: Event) -> list[str]:
        ev = self.events
        return [a for a in event.auth_events if a not in ev]

    def auth_closed(self) -> bool:
        """True if every held event's auth events are held (so the auth
        chain of every held event is held whole)."""
        gaps = self._auth_gaps
        if gaps:
            evs = self.events
            get = self.graph.get
            for g in [g for g in gaps if all(a in evs for a in get(g).auth_events)]:
                gaps.discard(g)
        return not gaps

    def _note_auth_gap(self, event: Event) -> None:
        evs = self.events
        if any(a not in evs for a in event.auth_events):
            self._auth_gaps.add(event.event_id)

    def has_state_after(self, event_id: str) -> bool:
        return event_id in self._after

    def state_after(self, event_id: str) -> dict[StateKey, str]:
        """The state after a DAG member (rejected events leave it unchanged)."""
        return self._after[event_id]

    def as_known_state_after(self, event_id: str, state: dict[StateKey, str]) -> dict[StateKey, str]:
        """``state``, a state after ``event_id`` learnt from elsewhere (a
        ``/state_ids`` answer), or the room's shared map of the same content
        when some server computed the state after that event from its full
        ancestry: the same content, held once, so that what is derived from
        the map by its identity (pair sets, digests) is found again."""
        shared = self.shared
        if shared is None:
            return state
        known = shared.after.get(event_id)
        if known is None:
            known = shared.before_of.get(event_id)  # a non-state event's state after is its state before
        if known is not None and known is not state and known == state:
            return known
        return state

    def stored_state_before(self, event_id: str) -> StateMapT | None:
        """The state before a stored DAG member, as it was when stored."""
        before = self._before.get(event_id)
        if before is None and event_id in self._after:
            # not kept: the state after its one prev_event, which was stored
            # before it (and a state after is never replaced)
            before = self._after[self.graph.held[event_id].prev_events[0]]
        return before

    def resolve(self, state_sets: Sequence[StateMapT]) -> dict[StateKey, str]:
        """Resolve ``state_sets``, counted as this server's work."""
        self._count_resolution(state_sets)
        return self._compute(state_sets)

    def _compute(self, state_sets: Sequence[StateMapT]) -> dict[StateKey, str]:
        """Resolve ``state_sets`` over the events held (not counted)."""
        return resolve_state(
            self.algorithm, state_sets, self.events, self.room_version,
            compat=self.compat, rejected=self.rejected, auth_chains=self.graph.auth_chains,
            items_of=self.shared.items if self.shared is not None else None,
        )

    def state_before(self, event: Event) -> dict[StateKey, str]:
        """Resolution of the states after the event's prev_events."""
        prevs = event.prev_events
        if not prevs:
            return {}
        if len(prevs) == 1:
            return self._after[prevs[0]]
        key = prev_key(prevs)
        hit = self._local(key)
        if hit is None:
            hit = self._resolve_shared(key)
            self._remember_local(key, hit)
        return hit

    def _local(self, key: "PrevKey") -> dict[StateKey, str] | None:
        """The local memo's resolution of ``key``, computed now if it was
        only counted (:meth:`count_current_state`)."""
        hit = self._before_memo.get(key)
        if type(hit) is _Owed:
            hit = self._resolve_shared(key, count=False)
            self._before_memo[key] = hit  # same place in the memo's order
            self._owed.discard(key)
        return hit

    def _settle_owed(self) -> None:
        """Compute every counted-but-unread resolution now, before an input
        it may depend on changes (an event it names becomes rejected)."""
        for key in list(self._owed):
            self._local(key)
        if type(self._current) is _Owed:
            self.current_state()

    def _remember_local(self, key: "PrevKey", value: "dict[StateKey, str] | _Owed") -> None:
        memo = self._before_memo
        memo[self._intern_key(key)] = value
        if len(memo) > 1024:
            old = next(iter(memo))
            del memo[old]
            self._owed.discard(old)

    def state_key(self, etype: str, state_key: str) -> StateKey:
        """``(etype, state_key)``, one tuple for every state map of the room
        made with it (a map built from events made a new tuple per entry)."""
        key = (etype, state_key)
        shared = self.shared
        return key if shared is None else shared.state_keys.setdefault(key, key)

    def _intern_key(self, key: "PrevKey") -> "PrevKey":
        """One tuple for all the servers' local memo keys of these events
        (a server's memo keeps up to 1,024; most repeat other servers')."""
        shared = self.shared
        if shared is None:
            return key
        keys = shared.prev_keys
        if len(keys) >= SharedStateMemo.MAX_PREV_KEYS:
            keys.clear()  # sharing only: a memo key is compared by value
        return keys.setdefault(key, key)

    def _distinct_after(self, key: "PrevKey") -> list[StateMapT]:
        """The distinct state maps after ``key``'s events (the same object
        once: non-state events share their parents' maps, and canonical maps
        are shared between servers)."""
        sets = [self._after[p] for p in key]
        return list({id(m): m for m in sets}.values())

    def _resolve_shared(self, key: "PrevKey", *, count: bool = True) -> dict[StateKey, str]:
        """Resolve the states after ``key``'s events, shared when canonical.

        Identical state maps are resolved once; a single distinct map is the
        answer itself. ``count=False``: the resolution was counted as work
        already (:meth:`count_current_state`).
        """
        distinct = self._distinct_after(key)
        if len(distinct) == 1:
            return distinct[0]
        shared = self.shared
        canonical = shared is not None and self._noncanonical.isdisjoint(key)
        if canonical:
            found = shared.before.get(key)
            if found is None:
                entry = shared.by_states.get(_ids_key(distinct))
                if entry is not None:
                    found = entry[1]
                    self._remember(shared.before, key, found, len(found[0]))
            if found is not None:
                shared.hits += 1
                if count:
                    self.resolutions += 1
                    self.conflicted_events += found[1]
                return found[0]
        hit = self.resolve(distinct) if count else self._compute(distinct)
        if canonical:
            found = (hit, self._conflicted_size(distinct))
            self._remember(shared.before, key, found, len(hit))
            self._remember(shared.by_states, _ids_key(distinct), (tuple(distinct), found), len(hit))
        return hit

    def _count_resolution(self, state_sets: Sequence[StateMapT]) -> None:
        """Count one resolution and its conflicted events (work a server does)."""
        self.resolutions += 1
        self.conflicted_events += self._conflicted_size(state_sets)

    def _conflicted_size(self, state_sets: Sequence[StateMapT]) -> int:
        """:func:`conflicted_size`, shared by the servers that resolve the
        same state maps (the same objects, kept alive by the memo)."""
        shared = self.shared
        if shared is None:
            return conflicted_size(state_sets)
        key = _ids_key(state_sets)
        memo = shared.conflicted
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = (tuple(state_sets), conflicted_size(state_sets, shared.items))
            if len(memo) > SharedStateMemo.max_resolutions(len(state_sets[0])):
                memo.popitem(last=False)
        return hit[1]

    @staticmethod
    def _remember(memo: "OrderedDict", key: object, value: object, state_size: int) -> None:
        """Keep a resolution (of a state of ``state_size`` entries) in a
        shared memo, dropping the oldest beyond the memo's bound."""
        memo[key] = value
        if len(memo) > SharedStateMemo.max_resolutions(state_size):
            memo.popitem(last=False)

    def derived(self, purpose: str, state: StateMapT, compute: "Callable[[StateMapT], object]") -> object:
        """``compute(state)``, shared by the servers that hold this very map
        (a canonical state) when ``compute`` depends only on its content and
        the events it names (which every holder of the map holds)."""
        shared = self.shared
        if shared is None:
            return compute(state)
        memo = shared.of_state
        key = (purpose, id(state))
        hit = memo.get(key)
        if hit is not None and hit[0] is state:
            return hit[1]
        value = compute(state)
        memo[key] = (state, value)
        if len(memo) > SharedStateMemo.MAX_DERIVED:
            memo.popitem(last=False)
        return value

    def current_state(self) -> dict[StateKey, str]:
        """Resolution of the states after the forward extremities."""
        cur = self._current
        if type(cur) is _Owed:
            key = cur.key
            cur = self._local(key)
            if cur is None:  # dropped from the local memo meanwhile
                cur = self._resolve_shared(key, count=False)
            self._current = cur
        elif cur is None:
            fwd = sorted(self.forward_extremities)
            if not fwd:
                cur = {}
            elif len(fwd) == 1:
                cur = self._after[fwd[0]]
            else:
                key = tuple(fwd)
                cur = self._local(key)
                if cur is None:
                    cur = self._resolve_shared(key)
                    self._remember_local(key, cur)
            self._current = cur
        return cur

    def count_current_state(self) -> None:
        """Count the work of resolving the current state now, as
        :meth:`current_state` would, but compute it only when it is read.

        A server resolves its current state whenever it persists an event
        (the work the processing model bills); the simulator needs the
        answer only when something reads it. The counts, and the local
        memo's contents and order, are exactly those of calling
        :meth:`current_state` here."""
        if self._current is not None:
            return
        fwd = self.forward_extremities
        if len(fwd) < 2 or not self.auth_closed():
            # Without every auth event held, events fetched later could
            # enter the resolution: compute it now, with what is held now.
            self.current_state()
            return
        key = prev_key(fwd)
        hit = self._before_memo.get(key)
        if hit is not None:
            self._current = hit
            return
        distinct = self._distinct_after(key)
        if len(distinct) == 1:
            self._current = distinct[0]
            self._remember_local(key, distinct[0])
            return
        self._count_resolution(distinct)
        key = self._intern_key(key)
        owed = _Owed(key)
        self._remember_local(key, owed)
        self._owed.add(key)
        self._current = owed

    def _auth_state_from(self, event: Event, state: StateMapT) -> dict[StateKey, Event]:
        out: dict[StateKey, Event] = {}
        evs = self.events
        for k in auth_types_for_event(event.type, event.state_key, event.sender, event.content):
            eid = state.get(k)
            if eid is not None and eid not in self.rejected:
                ev = evs.get(eid)
                if ev is not None:
                    out[k] = ev
        return out

    # -- decisions ------------------------------------------------------------

    def authorise(self, event: Event, before: StateMapT | None = None) -> Decision:
        """Checks 4 and 5 of protocol.md §4.1: against the event's own auth
        events, then against the state before it."""
        rv = self.room_version
        evs = self.events
        own = [evs.get(a) for a in event.auth_events]
        self.auth_checks += 1
        sanity = check_auth_events_sanity(event, own, self.rejected)
        if not sanity.allowed:
            return Decision(REJECTED, "auth_events", sanity.rule, sanity.reason)
        own_state = {(a.type, a.state_key): a for a in own if a is not None}
        res = check_auth(event, own_state, rv, compat=self.compat)
        if not res.allowed:
            return Decision(REJECTED, "auth_events", res.rule, res.reason)
        if event.type == "m.room.create":
            return _OK
        if before is None:
            before = self.state_before(event)
        calc = self._auth_state_from(event, before)
        if {k: v.event_id for k, v in calc.items()} != {k: v.event_id for k, v in own_state.items()}:
            self.auth_checks += 1
            res = check_auth(event, calc, rv, compat=self.compat)
            if not res.allowed:
                return Decision(REJECTED, "state_before", res.rule, res.reason)
        return _OK

    def current_get(self, key: StateKey) -> str | None:
        """``current_state().get(key)``, without resolving when every
        forward extremity's state maps ``key`` to the same event (or none):
        v2, v1 and the naive merge keep such an entry as it is (v2
        re-imposes unconflicted state last)."""
        cur = self._current
        if (cur is None or type(cur) is _Owed) and self.algorithm in _KEEPS_UNCONFLICTED \
                and len(self.forward_extremities) > 1:
            values = {self._after[f].get(key) for f in self.forward_extremities}
            if len(values) == 1:
                return values.pop()
            if self.algorithm == "v2" and self.one_key_reads:
                if cur is None:
                    self.count_current_state()
                    cur = self._current
                if type(cur) is _Owed:
                    got = self._owed_get(cur.key, key)
                    if got is not UNDECIDED:
                        return got
        return self.current_state().get(key)

    def _owed_get(self, owed: "PrevKey", key: StateKey) -> "str | None | object":
        """``key`` in the owed resolution of ``owed``'s states, from a
        resolution already made (local or shared) or by v2 for that key alone
        (:mod:`.stateres.v2_key`); :data:`UNDECIDED` if that does not apply."""
        hit = self._before_memo.get(owed)
        if hit is not None and type(hit) is not _Owed:
            return hit.get(key)
        distinct = self._distinct_after(owed)
        if len(distinct) == 1:
            return distinct[0].get(key)
        shared = self.shared
        if shared is not None and self._noncanonical.isdisjoint(owed):
            found = shared.before.get(owed)
            if found is None:
                entry = shared.by_states.get(_ids_key(distinct))
                found = entry[1] if entry is not None else None
            if found is not None:
                return found[0].get(key)
        return resolve_key_v2(distinct, key, self.events, self.room_version, compat=self.compat,
                              rejected=self.rejected, auth_chains=self.graph.auth_chains,
                              items_of=shared.items if shared is not None else None)

    def _current_auth_state(self, event: Event) -> dict[StateKey, Event]:
        """``event``'s auth keys in the current state, each read with
        :meth:`current_get`: when they are unconflicted across the forward
        extremities no resolution is needed, which spares one per received
        event in busy rooms."""
        state: dict[StateKey, str] = {}
        for k in auth_types_for_event(event.type, event.state_key, event.sender, event.content):
            v = self.current_get(k)
            if v is not None:
                state[k] = v
        return self._auth_state_from(event, state)

    def soft_fail_check(self, event: Event) -> Decision:
        """Check 6: against the current state (soft-fail on failure)."""
        self.auth_checks += 1
        res = check_auth(event, self._current_auth_state(event), self.room_version, compat=self.compat)
        if res.allowed:
            return _OK
        return Decision(SOFT_FAILED, "current_state", res.rule, res.reason)

    def add(
        self,
        event: Event,
        *,
        before: StateMapT | None = None,
        soft_fail: bool = True,
        backfilled: bool = False,
        decided: Decision | None = None,
    ) -> Decision:
        """Authorise, store and apply an event whose parents and auth events
        are held. ``before`` supplies the state before it (after a state
        fetch across a gap); ``soft_fail`` runs check 6 (skipped for
        backfilled events, which also never move forward extremities).
        ``decided``: the answer :meth:`decide` just gave for this event (so a
        caller can look before it stores)."""
        eid = event.event_id
        if eid in self._after:
            return self.status[eid]
        if decided is None:
            decided = self.decide(event, before=before, soft_fail=soft_fail, backfilled=backfilled)
        decision = decided
        before = self._decided_before
        if not self._decided_canonical:
            self._noncanonical.add(eid)
        elif self.shared is not None:
            self.shared.before_of.setdefault(eid, before)
        self._store(event, decision, before, backfilled)
        return decision

    def decide(
        self,
        event: Event,
        *,
        before: StateMapT | None = None,
        soft_fail: bool = True,
        backfilled: bool = False,
    ) -> Decision:
        """What :meth:`add` would decide, without storing anything."""
        eid = event.event_id
        if before is None:
            stored, nonc = self._after, self._noncanonical
            canonical = all(p in stored and p not in nonc for p in event.prev_events)
        else:
            # State supplied across a gap (state fetch, join) is canonical
            # when it equals what was computed from the full ancestry.
            known = self.shared.before_of.get(eid) if self.shared is not None else None
            canonical = known is not None and (known is before or known == before)
            if canonical:
                before = known  # the same content, held once for every server
        shared = self.shared if canonical else None
        if before is None and event.prev_events:
            if self.graph.missing_parents(event):
                raise ValueError(f"{eid}: prev_events missing; pass before= (state fetched across the gap)")
            before = self.state_before(event)
        elif before is None:
            before = {}
        decision = shared.decision.get(eid) if shared is not None else None
        if decision is None:
            decision = self.authorise(event, before)
            if shared is not None:
                shared.decision[eid] = decision
        else:
            shared.hits += 1
            self.auth_checks += 1
        self._decided_before = before
        self._decided_canonical = canonical
        if decision.outcome == ACCEPTED and soft_fail and not backfilled and event.type != "m.room.create":
            if set(event.prev_events) != self.forward_extremities:
                decision = self.soft_fail_check(event)
        return decision

    def _store(self, event: Event, decision: Decision, before: StateMapT, backfilled: bool) -> None:
        eid = event.event_id
        if decision.outcome == REJECTED and eid in self.events and (self._owed or type(self._current) is _Owed):
            self._settle_owed()  # a held event (an outlier) becomes rejected
        self.graph.add(event, allow_missing=True)
        self._note_auth_gap(event)
        if decision is not _OK:
            self._decisions[eid] = decision
        prevs = event.prev_events
        if len(prevs) != 1 or self._after.get(prevs[0]) is not before:
            self._before[eid] = before
        if decision.outcome == REJECTED:
            self.rejected[eid] = decision.code
            self._after[eid] = before if isinstance(before, dict) else dict(before)
            return
        if event.state_key is not None:
            shared = self.shared if eid not in self._noncanonical else None
            after = shared.after.get(eid) if shared is not None else None
            if after is None:
                after = dict(before)
                after[self.state_key(event.type, event.state_key)] = eid
                if shared is not None:
                    shared.after[eid] = after
        else:
            after = before if isinstance(before, dict) else dict(before)
        self._after[eid] = after
        if decision.outcome == ACCEPTED and not backfilled:
            self._advance_extremities(event)

    def _advance_extremities(self, event: Event) -> None:
        fwd = self.forward_extremities
        stack = list(event.prev_events)
        seen: set[str] = set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            fwd.discard(p)
            st = self._decisions.get(p)
            if st is not None and st.outcome != ACCEPTED:
                ev = self.graph.get(p)
                if ev is not None:
                    stack.extend(ev.prev_events)
        fwd.add(event.event_id)
        self._current = None

    def add_outlier(self, event: Event) -> None:
        """Hold an event known only as an auth/state event."""
        self.graph.add_outlier(event)
        self._note_auth_gap(event)

    def set_forward_extremities(self, event_ids: Iterable[str]) -> None:
        self.forward_extremities = set(event_ids)
        self._current = None


def conflicted_size(state_sets: Sequence[StateMapT],
                    items_of: "Callable[[StateMapT], AbstractSet] | None" = None) -> int:
    """Number of distinct events in the conflicted state of ``state_sets``:
    those of every key that not all sets map to the same event
    (``items_of``: a map's pairs as a set, e.g. :class:`.stateres.ItemSets`)."""
    if len(state_sets) < 2:
        return 0
    return len({eid for _, eid in conflicted_pairs(state_sets, items_of)})


# -- offline processing ---------------------------------------------------------


@dataclass
class RoomResult:
    """The outcome of :func:`process_room`."""

    room: RoomState
    order: list[str]

    @property
    def rejected(self) -> dict[str, str]:
        return {e: f"{d.code}: {d.reason}" for e, d in self.room.status.items() if d.outcome == REJECTED}

    @property
    def forward_extremities(self) -> list[str]:
        return sorted(self.room.forward_extremities)

    def state_before(self, event_id: str) -> dict[StateKey, str]:
        return dict(self.room.state_before(self.room.graph[event_id]))

    def state_after(self, event_id: str) -> dict[StateKey, str]:
        return dict(self.room.state_after(event_id))

    def resolve_at(self, event_ids: Iterable[str]) -> dict[StateKey, str]:
        ids = sorted(set(event_ids))
        if not ids:
            return {}
        return self.room.resolve([self.room.state_after(e) for e in ids])

    def current_state(self) -> dict[StateKey, str]:
        return dict(self.room.current_state())


class RoomInputError(ValueError):
    """The events do not form a processable room (missing ancestor, cycle, ...)."""

    def __init__(self, message: str, event_id: str | None = None) -> None:
        self.event_id = event_id
        super().__init__(message)


def causal_order(events: Mapping[str, Event]) -> list[str]:
    """Every event after its prev_events and auth_events; ties by (depth, ID)."""
    preds: dict[str, set[str]] = {}
    for eid, ev in events.items():
        parents = set(ev.prev_events) | set(ev.auth_events)
        for p in parents:
            if p not in events:
                kind = "prev_event" if p in ev.prev_events else "auth_event"
                raise RoomInputError(f"event {eid} ({ev.type}) names {kind} {p}, which is not in the input", eid)
        preds[eid] = parents
    try:
        return toposort(events, preds, lambda e: (events[e].depth, e))
    except CycleError as e:
        raise RoomInputError(
            f"the events form a cycle (or depend on one): {e.stuck[0]} and {len(e.stuck) - 1} more", e.stuck[0]
        ) from None


def process_room(
    events: Iterable[Event],
    room_version: str = DEFAULT_ROOM_VERSION,
    *,
    algorithm: str = "v2",
    compat: str = "spec",
) -> RoomResult:
    """Authorise every event of one room in causal order and compute the
    state before and after each (no soft-failing: there is no "now" offline)."""
    by_id: dict[str, Event] = {}
    room_id = None
    for ev in events:
        if room_id is None:
            room_id = ev.room_id
        elif ev.room_id != room_id:
            raise RoomInputError(f"event {ev.event_id} is in room {ev.room_id}, not {room_id}", ev.event_id)
        by_id[ev.event_id] = ev
    order = causal_order(by_id)
    room = RoomState(room_version, algorithm=algorithm, compat=compat, room_id=room_id)
    for eid in order:
        ev = by_id[eid]
        if not ev.prev_events and ev.type != "m.room.create":
            raise RoomInputError(f"event {eid} ({ev.type}) has no prev_events but is not a create event", eid)
        room.add(ev, soft_fail=False)
    return RoomResult(room, order)
