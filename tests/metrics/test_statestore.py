"""StateStore reads back every state exactly as it was added."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simfed.metrics.statestore import StateStore

KEYS = [("m.room.member", f"@u{i}:hs{i % 3}") for i in range(8)] + [("m.room.power_levels", "")]
states = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["$a", "$b", "$c"]), max_size=len(KEYS))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hs0", "hs1", "hs2"]), states), max_size=60))
def test_every_state_reads_back_as_added(samples):
    store = StateStore()
    store.SNAPSHOT_EVERY = 3
    expected = {}
    for source, state in samples:
        h = repr(sorted(state.items()))  # content-derived, as the simulator's digest
        store.add(h, state, source)
        expected.setdefault(h, dict(state))
    assert len(store) == len(expected)
    assert set(store) == set(expected)
    for h, state in expected.items():
        assert store[h] == state
        assert store.get(h) == state
    assert dict(store.items()) == expected
    assert store.get("missing") is None


def test_a_long_run_of_small_changes_is_kept_as_changes():
    store = StateStore()
    state: dict = {("m.room.create", ""): "$c"}
    for i in range(100):
        state = {**state, ("m.room.member", f"@u{i}:x"): f"$j{i}"}
        store.add(f"h{i}", state, "hs0")
    full = [e for e in store._entries.values() if e[0] is None]
    assert len(full) == 100 // (store.SNAPSHOT_EVERY + 1) + 1
    assert store["h99"] == state and len(store["h50"]) == 52
