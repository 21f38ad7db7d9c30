"""Durations and bandwidths in human units (simfed.units)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simfed.errors import SimfedError
from simfed.units import (
    UnitError,
    format_bandwidth,
    format_duration,
    parse_bandwidth,
    parse_duration,
    parse_signed_duration,
)

DURATIONS = [
    ("250ms", 250.0),
    ("2s", 2000.0),
    ("6m30s", 390_000.0),
    ("1h", 3_600_000.0),
    ("1h2m3.5s", 3_723_500.0),
    ("7d", 7 * 86_400_000.0),
    ("0s", 0.0),
    ("1.5ms", 1.5),
    ("500us", 0.5),
    (" 2s ", 2000.0),
    (250, 250.0),
    (0.5, 0.5),
    ("250", 250.0),
]


@pytest.mark.parametrize(("text", "ms"), DURATIONS)
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [(250, "250ms"), (2000, "2s"), (390_000, "6m30s"), (3_723_500, "1h2m3.5s"), (604_800_000, "7d"), (0, "0s")],
)
def test_format_duration(ms, text):
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    "bad", ["", "   ", "6x", "m", "1.2.3s", "1s-1", "-5s", "s5", "1 parsec", True, None, [], float("nan"), float("inf"), -3]
)
def test_bad_durations_name_the_value_and_the_forms(bad):
    with pytest.raises(UnitError) as info:
        parse_duration(bad)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SimfedError)
    if bad in ("", "   "):
        assert "empty" in message
    elif isinstance(bad, str):
        assert f'"{bad}"' in message
    if "negative" not in message:
        assert "250ms" in message  # the accepted forms are listed


def test_negative_duration_says_negative():
    assert "negative" in str(pytest.raises(UnitError, parse_duration, "-5s").value)
    assert "negative" in str(pytest.raises(UnitError, parse_duration, -1).value)


def test_signed_duration():
    assert parse_signed_duration("-20ms") == -20.0
    assert parse_signed_duration("1s") == 1000.0
    assert format_duration(-20) == "-20ms"


@given(st.floats(min_value=0, max_value=1e13, allow_nan=False))
def test_duration_round_trip_is_exact(ms):
    assert parse_duration(format_duration(ms)) == ms


@given(st.integers(min_value=0, max_value=10**12))
def test_integer_ms_round_trip(ms):
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("20Mbit/s", 20e6),
        ("1Gbit/s", 1e9),
        ("500kbit/s", 500e3),
        ("10MB/s", 80e6),
        ("1kB/s", 8000.0),
        ("100Mbps", 100e6),
        ("64bit/s", 64.0),
        (1e6, 1e6),
        ("1500", 1500.0),
    ],
)
def test_parse_bandwidth(text, bps):
    assert parse_bandwidth(text) == bps


@pytest.mark.parametrize("bad", ["", "20Mbit", "20 furlongs/s", "-1Mbit/s", "fast", True, None])
def test_bad_bandwidths(bad):
    with pytest.raises(UnitError) as info:
        parse_bandwidth(bad)
    if isinstance(bad, str) and bad:
        assert f'"{bad}"' in str(info.value)


@given(st.floats(min_value=1, max_value=1e12, allow_nan=False))
def test_bandwidth_round_trip(bps):
    assert parse_bandwidth(format_bandwidth(bps)) == bps


def test_format_bandwidth():
    assert format_bandwidth(20e6) == "20Mbit/s"
    assert format_bandwidth(1500) == "1.5kbit/s"
    assert format_bandwidth(1e9) == "1Gbit/s"


def test_format_refuses_non_finite():
    with pytest.raises(UnitError):
        format_duration(math.inf)
