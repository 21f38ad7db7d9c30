"""Divergence over time, on hand-built state samples with known contents."""

import math

from simfed.metrics import (
    Recorder,
    agreement_since,
    divergence,
    divergence_across_rooms,
    state_difference,
)

R = "!room"
H0 = {("m.room.create", ""): "$c", ("m.room.member", "@a:a"): "$ja"}
H1 = {**H0, ("m.room.name", ""): "$n"}                                   # +1 key
H2 = {**H0, ("m.room.member", "@a:a"): "$ja2", ("m.room.topic", ""): "$t"}  # 1 changed, 1 added
STATES = {"h0": H0, "h1": H1, "h2": H2}


def test_state_difference_counts_keys_that_differ_or_are_absent():
    assert state_difference(H0, H0) == 0
    assert state_difference(H0, H1) == 1
    assert state_difference(H0, H2) == 2
    assert state_difference(H1, H2) == 3
    assert state_difference(H2, H1) == 3


def stream() -> Recorder:
    r = Recorder()
    for s in ("a", "b", "c"):
        r.server_info(s, True, None)
        r.membership(0.0, s, R, True)
    r.server_info("m", False, None)
    for s in ("a", "b", "c"):
        r.state_sample(0.0, s, R, True, 1, "h0", 2, 0, state=H0)
    r.state_sample(100.0, "a", R, True, 2, "h1", 3, 0, state=H1)
    r.state_sample(100.0, "m", R, True, 9, "evil", 1, 99)            # dishonest
    r.state_sample(200.0, "b", R, True, 3, "h2", 3, 4, state=H2)
    r.state_sample(300.0, "c", R, False, 1, "h0", 2, 0)              # c goes down
    r.state_sample(400.0, "a", R, True, 1, "h2", 3, 0)
    r.state_sample(500.0, "b", R, True, 1, "h2", 3, 0)
    return r


def test_divergence_rows_follow_the_samples():
    r = stream()
    div = divergence(r.tables(), r.states).set_index("t")
    assert list(div.index) == [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
    assert div["n_distinct_states"].tolist() == [1, 2, 3, 2, 1, 1]
    assert div["max_state_diff"].tolist() == [0.0, 1.0, 3.0, 3.0, 0.0, 0.0]
    assert div["n_up"].tolist() == [3, 3, 3, 2, 2, 2]
    assert div["n_servers"].tolist() == [3, 3, 3, 3, 3, 3]
    assert div.loc[200.0, "mean_extremities"] == 2.0
    assert div.loc[200.0, "max_extremities"] == 3.0
    assert div.loc[200.0, "backlog"] == 4            # m's 99 is not counted
    assert div.loc[300.0, "backlog"] == 4            # c is down; b still has 4
    assert div.loc[500.0, "backlog"] == 0
    assert agreement_since(div.reset_index()) == 400.0


def test_states_default_to_the_state_entries_table():
    r = stream()
    a = divergence(r.tables())
    b = divergence(r.tables(), r.states)
    assert a.equals(b)


def test_unknown_state_contents_give_nan_difference():
    r = Recorder()
    r.state_sample(0.0, "a", R, True, 1, "x", 1, 0)
    r.state_sample(0.0, "b", R, True, 1, "y", 1, 0)
    div = divergence(r.tables())
    assert div["n_distinct_states"].item() == 2
    assert math.isnan(div["max_state_diff"].item())


def test_a_server_that_left_the_room_is_not_counted():
    r = Recorder()
    for s in ("a", "b"):
        r.membership(0.0, s, R, True)
        r.state_sample(0.0, s, R, True, 1, "h0", 2, 0, state=H0)
    r.membership(50.0, "b", R, False)
    r.state_sample(100.0, "a", R, True, 1, "h1", 3, 0, state=H1)
    div = divergence(r.tables()).set_index("t")
    assert div.loc[50.0, "n_servers"] == 1
    assert div.loc[100.0, "n_distinct_states"] == 1


def test_across_rooms_carries_each_room_forward():
    r = Recorder()
    r.state_sample(0.0, "a", "!x", True, 1, "h0", 2, 1, state=H0)
    r.state_sample(0.0, "b", "!x", True, 3, "h1", 3, 2, state=H1)
    r.state_sample(10.0, "a", "!y", True, 1, "h0", 2, 5, state=H0)
    r.state_sample(20.0, "b", "!x", True, 1, "h0", 2, 0, state=H0)
    agg = divergence_across_rooms(divergence(r.tables())).set_index("t")
    assert agg["n_distinct_states"].tolist() == [2, 2, 1]
    assert agg["rooms_diverged"].tolist() == [1, 1, 0]
    assert agg["backlog"].tolist() == [3, 8, 6]
    assert agg.loc[20.0, "max_state_diff"] == 0.0


def test_empty_tables():
    div = divergence(Recorder().tables())
    assert div.empty
    assert math.isnan(agreement_since(div))
    assert divergence_across_rooms(div).empty
