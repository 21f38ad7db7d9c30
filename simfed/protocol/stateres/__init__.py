"""State resolution algorithms, registered by name.

A resolver is a callable ``(state_sets, events, ctx) -> dict`` where
``state_sets`` are maps ``(type, state_key) → event_id``, ``events`` maps IDs
to :class:`~simfed.protocol.events.Event` (the state events, their auth
chains and, for ``naive``, any DAG events that link them) and ``ctx`` is a
:class:`ResolutionContext`. Register a new one with :func:`register`; every
caller picks algorithms by name through :func:`resolve_state`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import AbstractSet, Callable, Container, Iterable, Mapping, Sequence

from ..authchain import AuthChainIndex
from ..events import Event
from ..roomversions import RoomVersion, get_room_version

__all__ = [
    "ItemSets",
    "ResolutionContext",
    "Resolver",
    "StateMap",
    "available_algorithms",
    "conflicted_keys",
    "conflicted_pairs",
    "register",
    "resolve_state",
]

StateMap = Mapping[tuple[str, str], str]


@dataclass
class ResolutionContext:
    """What a resolver may use besides the state sets and events.

    ``compat``: ``"spec"`` or ``"synapse"`` (protocol.md §8 items 4, 5, 14).
    ``rejected``: IDs of events rejected earlier (never used as auth events;
    with ``compat="synapse"`` never re-admitted either).
    ``auth_chains``: a shared, memoised auth chain index (built from
    ``events`` if not given).
    ``items_of``: see :class:`ItemSets` (for callers whose maps never change).
    """

    room_version: RoomVersion
    compat: str = "spec"
    rejected: Container[str] = frozenset()
    auth_chains: AuthChainIndex | None = None
    stats: dict = field(default_factory=dict)
    #: the (key, event) pairs of a state map as a set (e.g. :class:`ItemSets`);
    #: None: its ``items()`` view
    items_of: "Callable[[StateMap], AbstractSet] | None" = None


Resolver = Callable[[Sequence[StateMap], Mapping[str, Event], ResolutionContext], dict]

_REGISTRY: dict[str, Resolver] = {}


def register(name: str, resolver: Resolver | None = None):
    """Register ``resolver`` under ``name`` (usable as a decorator)."""

    def deco(fn: Resolver) -> Resolver:
        _REGISTRY[name] = fn
        return fn

    return deco(resolver) if resolver is not None else deco


def available_algorithms() -> tuple[str, ...]:
    _load_builtins()
    return tuple(sorted(_REGISTRY))


def get_resolver(name: str) -> Resolver:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"algorithm={name!r} is not a known state resolution algorithm; "
            f"choose one of {sorted(_REGISTRY)}"
        ) from None


def _load_builtins() -> None:
    # Every built-in, even when one was imported directly first (importing
    # ``stateres.v2`` alone registers only v2); cached after the first call.
    from . import naive, v1, v2  # noqa: F401  (registration side effect)


def resolve_state(
    algorithm: str,
    state_sets: Sequence[StateMap],
    events: Mapping[str, Event],
    room_version: str = "11",
    *,
    compat: str = "spec",
    rejected: Container[str] = frozenset(),
    auth_chains: AuthChainIndex | None = None,
    items_of: "Callable[[StateMap], AbstractSet] | None" = None,
) -> dict[tuple[str, str], str]:
    """Resolve ``state_sets`` into one state map with the named algorithm.

    ``events`` must hold every event the algorithm may need: the state
    events and their auth chains. The result holds only input events.
    ``items_of``: an :class:`ItemSets` kept across calls, for a caller
    whose state maps never change once made (the simulator).
    """
    if compat not in ("spec", "synapse"):
        raise ValueError(f"compat={compat!r}: choose 'spec' or 'synapse'")
    resolver = get_resolver(algorithm)
    sets = [s for s in state_sets]
    if not sets:
        return {}
    if len(sets) == 1:
        return dict(sets[0])
    ctx = ResolutionContext(get_room_version(room_version), compat, rejected, auth_chains, items_of=items_of)
    if ctx.auth_chains is None:
        ctx.auth_chains = AuthChainIndex(events)
    return resolver(sets, events, ctx)


class ItemSets:
    """The (key, event) pairs of state maps as frozensets, kept by each map's
    identity (the map is kept with its set, so the identity stays valid).

    Comparing state maps (their conflicted keys) is a set operation on their
    pairs; on item views every pair is hashed again each time, while a
    frozenset keeps each pair's hash, so operations between two of them
    only probe tables. Valid only for maps that never change once made, as
    the simulator's are. Holds at most about ``max_pairs`` pairs in all
    (oldest maps dropped first).

    Each distinct pair is one tuple for all the sets (``_interned``): maps
    that differ by a few entries share the rest, where ``items()`` makes a
    new 2-tuple per entry (64 bytes each, most of a set's memory)."""

    __slots__ = ("_memo", "_pairs", "max_pairs", "_interned", "_conflicted")

    #: conflicted pairs kept for this many recent combinations of maps
    MAX_CONFLICTED = 256

    def __init__(self, max_pairs: int = 400_000) -> None:
        self._memo: "OrderedDict[int, tuple[StateMap, frozenset]]" = OrderedDict()
        self._pairs = 0
        self.max_pairs = max_pairs
        self._interned: dict[tuple, tuple] = {}
        self._conflicted: "OrderedDict[frozenset[int], tuple[tuple[StateMap, ...], set]]" = OrderedDict()

    def conflicted_pairs(self, state_sets: Sequence[StateMap]) -> set:
        """:func:`conflicted_pairs` of these maps, kept for the last few
        combinations (a server's owed resolution is counted, read one key
        at a time and resolved: three comparisons of the same maps). The
        maps are kept with the answer, so their identities stay valid; the
        answer is shared: callers must not change it."""
        key = frozenset(map(id, state_sets))
        memo = self._conflicted
        hit = memo.get(key)
        if hit is not None:
            return hit[1]
        pairs = _conflicted_pairs(state_sets, self)
        memo[key] = (tuple(state_sets), pairs)
        if len(memo) > self.MAX_CONFLICTED:
            memo.popitem(last=False)
        return pairs

    def __call__(self, state: StateMap) -> frozenset:
        memo = self._memo
        hit = memo.get(id(state))
        if hit is not None and hit[0] is state:
            return hit[1]
        items = frozenset(map(self._interned.setdefault, state.items(), state.items()))
        if hit is not None:  # a map since dropped had this identity
            self._pairs -= len(hit[1])
        memo[id(state)] = (state, items)
        self._pairs += len(items)
        while self._pairs > self.max_pairs and len(memo) > 1:
            _, (_, old) = memo.popitem(last=False)
            self._pairs -= len(old)
        return items


def conflicted_pairs(state_sets: Sequence[StateMap],
                     items_of: "Callable[[StateMap], AbstractSet] | None" = None) -> set:
    """The (key, event) pairs where some set differs from the first: exactly
    the pairs of the conflicted keys (a key missing from some set is
    conflicted), in every set, since a conflicted key has a set that
    disagrees with the first and each set's value of it either differs from
    the first's or is the first's. Set operations on the (key, event) items,
    done in C (``items_of``: see :class:`ItemSets`, which also keeps the
    answers for recent combinations of maps)."""
    if type(items_of) is ItemSets:
        return items_of.conflicted_pairs(state_sets)
    return _conflicted_pairs(state_sets, items_of)


def _conflicted_pairs(state_sets: Sequence[StateMap],
                      items_of: "Callable[[StateMap], AbstractSet] | None") -> set:
    first = state_sets[0]
    items = items_of or _items_view
    first_items = items(first)
    pairs: set = set()
    for s in state_sets[1:]:
        if s is not first:
            pairs |= first_items ^ items(s)
    return pairs


def conflicted_keys(state_sets: Sequence[StateMap],
                    items_of: "Callable[[StateMap], AbstractSet] | None" = None) -> set:
    """The keys that not every set maps to the same event (see
    :func:`conflicted_pairs`)."""
    return {k for k, _ in conflicted_pairs(state_sets, items_of)}


def _items_view(state: StateMap) -> AbstractSet:
    return state.items()


def separate(state_sets: Sequence[StateMap],
             items_of: "Callable[[StateMap], AbstractSet] | None" = None) -> tuple[dict, dict[tuple[str, str], set[str]]]:
    """Split into unconflicted state and conflicted candidates (v2 rules:
    a key missing from some set is conflicted). ``items_of``: see
    :class:`ItemSets`."""
    if items_of is not None:
        return _separate_item_sets(state_sets, items_of)
    if len(state_sets) > 2:
        return _separate_many(state_sets)
    keys = conflicted_keys(state_sets, items_of)
    unconflicted = _without(state_sets[0], keys)
    conflicted = {k: {s[k] for s in state_sets if k in s} for k in keys}
    return unconflicted, conflicted


def _without(state: StateMap, keys: "AbstractSet[tuple[str, str]] | Mapping") -> dict:
    """A copy of ``state`` without ``keys`` (in ``state``'s order): a C copy
    less a few entries when the keys are few, else a filtered copy."""
    if 4 * len(keys) < len(state):
        out = dict(state)
        for k in keys:
            out.pop(k, None)
        return out
    return {k: v for k, v in state.items() if k not in keys}


def _separate_many(state_sets: Sequence[StateMap]) -> tuple[dict, dict[tuple[str, str], set[str]]]:
    """``separate`` for three sets or more: the distinct (key, event) pairs
    of all sets, gathered by one C set union, grouped by key; a key is
    conflicted if it has two events or some set lacks it."""
    cands = _by_key(set().union(*[s.items() for s in state_sets]))
    shared = state_sets[0].keys() & state_sets[1].keys()
    for s in state_sets[2:]:
        shared &= s.keys()
    keys = {k for k, c in cands.items() if len(c) > 1} | (cands.keys() - shared)
    return _without(state_sets[0], keys), {k: cands[k] for k in keys}



def _separate_item_sets(state_sets: Sequence[StateMap],
                        items_of: "Callable[[StateMap], AbstractSet]") -> tuple[dict, dict[tuple[str, str], set[str]]]:
    """``separate`` from the sets' kept item sets: a
    (key, event) pair that some set lacks marks its key conflicted, and
    every pair of a conflicted key is one; the pairs in some set but not
    all are those that differ between the first set and another, found by
    differences of the kept sets (their hashes kept: no pair is hashed
    again), and only those are grouped in Python."""
    cands = _by_key(conflicted_pairs(state_sets, items_of))
    return _without(state_sets[0], cands), cands


def _by_key(pairs: "Iterable[tuple[tuple[str, str], str]]") -> dict[tuple[str, str], set[str]]:
    """(key, event) pairs grouped by key."""
    cands: dict[tuple[str, str], set[str]] = {}
    for k, v in pairs:
        c = cands.get(k)
        if c is None:
            cands[k] = {v}
        else:
            c.add(v)
    return cands
