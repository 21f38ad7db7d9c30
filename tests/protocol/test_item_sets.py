"""Kept item sets of state maps (``ItemSets``) give the same separation and
conflicted counts as the maps' item views."""

from __future__ import annotations

import random

from simfed.protocol.room import conflicted_size
from simfed.protocol.stateres import ItemSets, separate

from test_stateres import _state_sets, random_room


def test_separation_and_counts_equal_the_item_views():
    for seed in range(60):
        rng = random.Random(seed)
        b, room = random_room(rng)
        sets = _state_sets(rng, b, room, 2 + seed % 4)
        items = ItemSets()
        for _ in range(2):  # made, then kept
            got, want = separate(sets, items), separate(sets)
            assert got == want
            assert list(got[0]) == list(want[0])  # the unconflicted state in the same order
            assert conflicted_size(sets, items) == conflicted_size(sets)


def test_item_sets_are_kept_by_identity_and_bounded():
    items = ItemSets(max_pairs=10)
    a = {("m.room.member", f"@u{i}:x"): f"$e{i}" for i in range(4)}
    b = dict(a)
    assert items(a) is items(a)
    assert items(b) == items(a) and items(b) is not items(a)
    maps = [{("t", str(i)): f"$e{j}" for i in range(4)} for j in range(5)]
    for m in maps:
        assert items(m) == frozenset(m.items())
    assert sum(len(v) for _, v in items._memo.values()) <= 10
    assert items(maps[-1]) is items(maps[-1])
