"""State resolution algorithms, registered by name.

A resolver is a callable ``(state_sets, events, ctx) -> dict`` where
``state_sets`` are maps ``(type, state_key) → event_id``, ``events`` maps IDs
to :class:`~simfed.protocol.events.Event` (the state events, their auth
chains and, for ``naive``, any DAG events that link them) and ``ctx`` is a
:class:`ResolutionContext`. Register a new one with :func:`register`; every
caller picks algorithms by name through :func:`resolve_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Container, Mapping, Sequence

from ..authchain import AuthChainIndex
from ..events import Event
from ..roomversions import RoomVersion, get_room_version

__all__ = [
    "ResolutionContext",
    "Resolver",
    "StateMap",
    "available_algorithms",
    "conflicted_keys",
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
    """

    room_version: RoomVersion
    compat: str = "spec"
    rejected: Container[str] = frozenset()
    auth_chains: AuthChainIndex | None = None
    stats: dict = field(default_factory=dict)


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
) -> dict[tuple[str, str], str]:
    """Resolve ``state_sets`` into one state map with the named algorithm.

    ``events`` must hold every event the algorithm may need: the state
    events and their auth chains. The result holds only input events.
    """
    if compat not in ("spec", "synapse"):
        raise ValueError(f"compat={compat!r}: choose 'spec' or 'synapse'")
    resolver = get_resolver(algorithm)
    sets = [s for s in state_sets]
    if not sets:
        return {}
    if len(sets) == 1:
        return dict(sets[0])
    ctx = ResolutionContext(get_room_version(room_version), compat, rejected, auth_chains)
    if ctx.auth_chains is None:
        ctx.auth_chains = AuthChainIndex(events)
    return resolver(sets, events, ctx)


def conflicted_keys(state_sets: Sequence[StateMap]) -> set:
    """The keys that not every set maps to the same event (a key missing from
    some set is conflicted): where some set differs from the first, found by
    a set operation on the (key, event) items, done in C."""
    first = state_sets[0]
    first_items = first.items()
    keys: set = set()
    for s in state_sets[1:]:
        if s is not first:
            keys.update(k for k, _ in first_items ^ s.items())
    return keys


def separate(state_sets: Sequence[StateMap]) -> tuple[dict, dict[tuple[str, str], set[str]]]:
    """Split into unconflicted state and conflicted candidates (v2 rules:
    a key missing from some set is conflicted)."""
    if len(state_sets) > 2:
        return _separate_many(state_sets)
    keys = conflicted_keys(state_sets)
    unconflicted = {k: v for k, v in state_sets[0].items() if k not in keys}
    conflicted = {k: {s[k] for s in state_sets if k in s} for k in keys}
    return unconflicted, conflicted


def _separate_many(state_sets: Sequence[StateMap]) -> tuple[dict, dict[tuple[str, str], set[str]]]:
    """``separate`` for three sets or more: the distinct (key, event) pairs
    of all sets, gathered by one C set union, grouped by key; a key is
    conflicted if it has two events or some set lacks it."""
    pairs = set().union(*[s.items() for s in state_sets])
    cands: dict[tuple[str, str], set[str]] = {}
    multi = set()
    for k, v in pairs:
        c = cands.get(k)
        if c is None:
            cands[k] = {v}
        else:
            c.add(v)
            multi.add(k)
    shared = state_sets[0].keys() & state_sets[1].keys()
    for s in state_sets[2:]:
        shared &= s.keys()
    keys = multi | (cands.keys() - shared)
    unconflicted = {k: v for k, v in state_sets[0].items() if k not in keys}
    return unconflicted, {k: cands[k] for k in keys}
