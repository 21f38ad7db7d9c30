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
