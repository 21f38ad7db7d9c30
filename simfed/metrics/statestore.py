"""The distinct room states a run sampled, stored as changes.

A big room's servers sample thousands of distinct states that differ from
one another by a few members, each a map of one entry per member. Keeping a
full copy of each grew as the cube of the room size (8,600 copies of 500
entries at 500 servers). :class:`StateStore` keeps each new state as the
entries that differ from the state last stored for the same server, with a
full copy every :attr:`StateStore.SNAPSHOT_EVERY` states so that reading one
back walks a short chain. It reads as the plain ``{state_hash: state map}``
mapping the metrics expect.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Iterator

__all__ = ["StateMap", "StateStore"]

StateMap = Mapping[tuple[str, str], str]


class StateStore(Mapping):
    """``{state_hash: {(type, state_key): event_id}}``, stored as changes.

    :meth:`add` keeps a reference to the map it is given as the base of the
    next state from the same source: state maps are never changed once
    built (the simulator shares them between servers and caches by
    identity), so the reference stays equal to what was stored.
    """

    #: a full copy after this many changes in a row (reads walk at most this far)
    SNAPSHOT_EVERY = 16
    #: states read back kept materialised (oldest dropped first)
    CACHE = 64

    def __init__(self) -> None:
        #: hash -> (base hash or None, entries added or changed, keys removed)
        self._entries: dict[str, tuple[str | None, dict, tuple]] = {}
        self._chain: dict[str, int] = {}
        self._last: dict[str, tuple[str, StateMap]] = {}
        self._cache: "OrderedDict[str, dict]" = OrderedDict()

    def add(self, state_hash: str, state: StateMap, source: str = "") -> None:
        """Store ``state`` under ``state_hash`` unless that hash is held."""
        if state_hash not in self._entries:
            last = self._last.get(source)
            if last is None or self._chain[last[0]] >= self.SNAPSHOT_EVERY:
                self._entries[state_hash] = (None, dict(state), ())
                self._chain[state_hash] = 0
            else:
                base_hash, base = last
                changed = dict(state.items() - base.items())
                removed = tuple(base.keys() - state.keys())
                self._entries[state_hash] = (base_hash, changed, removed)
                self._chain[state_hash] = self._chain[base_hash] + 1
        self._last[source] = (state_hash, state)

    def __getitem__(self, state_hash: str) -> dict[tuple[str, str], str]:
        cache = self._cache
        hit = cache.get(state_hash)
        if hit is not None:
            return hit
        path = []
        h: str | None = state_hash
        while h is not None:
            entry = self._entries[h]
            path.append(entry)
            h = entry[0]
        state = dict(path[-1][1])
        for _base, changed, removed in reversed(path[:-1]):
            for k in removed:
                del state[k]
            state.update(changed)
        cache[state_hash] = state
        if len(cache) > self.CACHE:
            cache.popitem(last=False)
        return state

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, state_hash: object) -> bool:
        return state_hash in self._entries
