"""Categorical columns recorded as codes widen as their distinct values grow."""

from __future__ import annotations

from simfed.metrics.recorder import _Codes


def test_codes_widen_and_keep_every_value():
    col = _Codes()
    values = [f"v{i % 40_000}" for i in range(100_000)] + [None, ("a", "b"), "v3"]
    for v in values:
        col.append(v)
    assert col.codes.typecode == "i"
    assert len(col) == len(values)
    assert list(col.to_objects()) == values


def test_codes_stay_narrow_for_few_values():
    col = _Codes()
    for i in range(1000):
        col.append(("join", "leave", None)[i % 3])
    assert col.codes.typecode == "b" and col.codes.itemsize == 1
    assert list(col.to_objects()) == [("join", "leave", None)[i % 3] for i in range(1000)]
    for i in range(200):
        col.append(i)
    assert col.codes.typecode == "h"
    assert list(col.to_objects())[-3:] == [197, 198, 199]


def test_narrow_number_columns_widen_and_keep_every_value_exactly():
    from simfed.metrics.recorder import Recorder

    r = Recorder()
    ints = [0, 1, -128, 127, 128, -(2**15), 2**15, 2**31 - 1, -(2**31), 2**31, 2**62, 5]
    times = [0.0, 2000.0, 598000.0, -0.5, 16_777_216.0, 351400.1285460128, 0.1, 1e300, float("inf"),
             float("nan"), 1e-50, 3.0]
    widths = []
    for i, (v, t) in enumerate(zip(ints, times)):
        r.state_sample(t, f"hs{i}", "!r", True, v, "h", v, 1)
        r.message(t, t, "transaction", "hs0", "hs1", v, True, retransmissions=i)
        r.push(t, "hs0", "hs1", "$e", "origin", v)
        widths.append((r._cols["state"]["t"].typecode, r._cols["state"]["extremities"].typecode))
    assert widths[3] == ("f", "b") and widths[4] == ("f", "h")  # 4 bytes, then 1, while they fit
    assert widths[-1] == ("d", "q")
    tables = r.tables()
    state = tables["state"]
    assert state["extremities"].dtype == "int64" and state["t"].dtype == "float64"
    assert list(state["extremities"]) == ints and list(state["state_size"]) == ints
    assert [repr(x) for x in state["t"]] == [repr(x) for x in times]  # nan, inf and every digit kept
    assert list(tables["traffic"]["size_bytes"]) == ints
    assert list(tables["traffic"]["retransmissions"]) == list(range(len(ints)))
    assert list(tables["pushes"]["size_bytes"]) == ints
    assert tables["traffic"]["size_bytes"].dtype == "int64"


def test_seen_outcomes_are_per_event_and_server_with_late_servers():
    from simfed.metrics.recorder import Recorder

    r = Recorder()
    r.event_outcome(1.0, "hs0", "$a", "!r", "accepted", "push")
    for i in range(1, 40):  # servers first seen after the event's bytes were made
        r.event_outcome(2.0, f"hs{i}", "$a", "!r", "accepted", "push")
    r.event_outcome(3.0, "hs39", "$a", "!r", "accepted", "push")  # a repeat
    r.event_outcome(3.0, "hs39", "$a", "!r", "accepted", "backfill", stage="outlier")  # another stage
    r.event_outcome(3.0, "hs39", "$b", "!r", "accepted", "push")  # another event
    r.event_outcome(4.0, "hs0", "$a", "!r", "rejected", "push")  # another outcome
    assert r.duplicate_outcomes == 1
    d = r.tables()["deliveries"]
    assert len(d) == 43
