"""Human units in scenario files: durations and bandwidths.

Scenario authors write ``"250ms"``, ``"6m30s"`` or ``"20Mbit/s"``; the models
in :mod:`simfed.config` hold plain floats with the unit in the field name
(``duration_ms``, ``bandwidth_bps``). The parsers here do the conversion and
refuse anything doubtful with a message that names the value and the accepted
forms.

Numbers are parsed as :class:`decimal.Decimal` and converted to ``float`` once,
at the end, so ``"1h2m3.5s"`` is exactly ``3723500.0`` and
``parse_duration(format_duration(x)) == x`` for every finite ``x >= 0``.

Durations
    ``<number><unit>`` repeated, units ``d`` (days), ``h``, ``m`` (minutes),
    ``s``, ``ms``, ``us``: ``"250ms"``, ``"2s"``, ``"6m30s"``, ``"1h2m3.5s"``,
    ``"7d"``. A bare number (``250`` or ``"250"``) is milliseconds. Result:
    float milliseconds.
Bandwidths
    ``<number><unit>/s`` with ``bit``, ``kbit``, ``Mbit``, ``Gbit`` (bits) or
    ``B``, ``kB``, ``MB``, ``GB`` (bytes); SI prefixes (k = 1000); ``bps``,
    ``kbps``, ``Mbps``, ``Gbps`` are accepted too. A bare number is bit/s.
    Result: float bit/s.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "DURATION_FORMS",
    "BANDWIDTH_FORMS",
    "UnitError",
    "format_bandwidth",
    "format_duration",
    "parse_bandwidth",
    "parse_duration",
    "parse_signed_duration",
]

from .errors import SimfedError

#: Shown in error messages: what a duration may look like.
DURATION_FORMS = (
    'a number of milliseconds or a string such as "250ms", "2s", "6m30s", '
    '"1h2m3.5s" or "7d"; units d, h, m, s, ms, us'
)
#: Shown in error messages: what a bandwidth may look like.
BANDWIDTH_FORMS = (
    'a number of bit/s or a string such as "500kbit/s", "20Mbit/s", "1Gbit/s" '
    'or "10MB/s"; units bit, kbit, Mbit, Gbit, or bytes B, kB, MB, GB'
)

_MS_PER = {
    "d": Decimal(86_400_000),
    "h": Decimal(3_600_000),
    "m": Decimal(60_000),
    "s": Decimal(1000),
    "ms": Decimal(1),
    "us": Decimal("0.001"),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# "ms" must be tried before "m"; the lookahead-free alternation order does it.
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|us|d|h|m|s)")
_BARE_NUMBER = re.compile(rf"^{_NUMBER}$")

_BPS_PER = {
    "bit": Decimal(1),
    "kbit": Decimal(10**3),
    "mbit": Decimal(10**6),
    "gbit": Decimal(10**9),
    "b": Decimal(8),
    "kb": Decimal(8 * 10**3),
    "mb": Decimal(8 * 10**6),
    "gb": Decimal(8 * 10**9),
}
_BANDWIDTH = re.compile(
    rf"^({_NUMBER})\s*(?:([kKMG]?)(bit|B)\s*/\s*s|([kKMG]?)bps)$"
)


class UnitError(SimfedError, ValueError):
    """A duration or bandwidth that could not be understood.

    The message names the value and lists the accepted forms; pydantic turns
    it into a validation error at the field being parsed.
    """


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _number(value: Any, what: str, forms: str) -> Decimal | None:
    """A plain (non-bool) number as Decimal; ``None`` if not a number."""
    if isinstance(value, bool):
        raise UnitError(f"{_show(value)} is not a {what} (expected {forms})")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise UnitError(f"{_show(value)} is not a {what} (expected {forms})")
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return None


def _parse_duration_decimal(value: Any) -> Decimal:
    forms = DURATION_FORMS
    number = _number(value, "duration", forms)
    if number is not None:
        return number
    if not isinstance(value, str):
        raise UnitError(f"{_show(value)} is not a duration (expected {forms})")
    text = value.strip()
    if not text:
        raise UnitError(f"an empty string is not a duration (expected {forms})")
    if _BARE_NUMBER.match(text):
        return Decimal(text)
    total = Decimal(0)
    pos = 0
    text_nospace = text.replace(" ", "")
    for match in _DURATION_PART.finditer(text_nospace):
        if match.start() != pos:
            break
        total += Decimal(match.group(1)) * _MS_PER[match.group(2)]
        pos = match.end()
    if pos != len(text_nospace) or pos == 0:
        raise UnitError(f"{_show(value)} is not a duration (expected {forms})")
    return total


def parse_duration(value: Any) -> float:
    """A duration in milliseconds, from a number (ms) or a string with units.

    Negative, empty, non-finite and malformed values raise :class:`UnitError`.

    >>> parse_duration("6m30s"), parse_duration(250), parse_duration("1h2m3.5s")
    (390000.0, 250.0, 3723500.0)
    """
    if isinstance(value, str) and value.strip().startswith("-"):
        raise UnitError(f"{_show(value)} is negative (a duration must be >= 0)")
    ms = _parse_duration_decimal(value)
    if ms < 0:
        raise UnitError(f"{_show(value)} is negative (a duration must be >= 0)")
    return float(ms)


def parse_signed_duration(value: Any) -> float:
    """Like :func:`parse_duration` but a leading ``-`` is allowed (clock skew)."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return -float(_parse_duration_decimal(value.strip()[1:]))
    return float(_parse_duration_decimal(value))


def parse_bandwidth(value: Any) -> float:
    """A bandwidth in bit/s, from a number (bit/s) or a string with units.

    >>> parse_bandwidth("20Mbit/s"), parse_bandwidth("10MB/s"), parse_bandwidth(1e6)
    (20000000.0, 80000000.0, 1000000.0)
    """
    forms = BANDWIDTH_FORMS
    number = _number(value, "bandwidth", forms)
    if number is None:
        if not isinstance(value, str):
            raise UnitError(f"{_show(value)} is not a bandwidth (expected {forms})")
        text = value.strip()
        if not text:
            raise UnitError(f"an empty string is not a bandwidth (expected {forms})")
        if text.startswith("-"):
            raise UnitError(f"{_show(value)} is negative (a bandwidth must be > 0)")
        if _BARE_NUMBER.match(text):
            number = Decimal(text)
        else:
            match = _BANDWIDTH.match(text)
            if match is None:
                raise UnitError(f"{_show(value)} is not a bandwidth (expected {forms})")
            if match.group(3):
                unit = (match.group(2) + match.group(3)).lower()
                if match.group(3) == "B":
                    unit = match.group(2).lower() + "b"
                else:
                    unit = match.group(2).lower() + "bit"
            else:
                unit = match.group(4).lower() + "bit"
            number = Decimal(match.group(1)) * _BPS_PER[unit]
    if number < 0:
        raise UnitError(f"{_show(value)} is negative (a bandwidth must be > 0)")
    return float(number)


def _trim(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text


def format_duration(ms: float) -> str:
    """The shortest unit string for ``ms`` milliseconds: ``390000 -> "6m30s"``.

    Days, hours and minutes come out whole; the rest as seconds (``"3.5s"``)
    or, below one second, milliseconds (``"250ms"``). ``0`` is ``"0s"``.
    Negative values get a leading ``-``. Round trip:
    ``parse_signed_duration(format_duration(x)) == x``.
    """
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms):
        raise UnitError(f"{_show(ms)} is not a finite number of milliseconds")
    if ms < 0:
        return "-" + format_duration(-ms)
    if ms == 0:
        return "0s"
    rest = Decimal(repr(float(ms)))
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        whole = rest // _MS_PER[unit]
        if whole:
            parts.append(f"{whole}{unit}")
            rest -= whole * _MS_PER[unit]
    if rest:
        if rest >= 1000 or parts:
            parts.append(f"{_trim(rest / 1000)}s")
        else:
            parts.append(f"{_trim(rest)}ms")
    return "".join(parts)


def format_bandwidth(bps: float) -> str:
    """A readable bandwidth: ``20e6 -> "20Mbit/s"``, ``1500 -> "1.5kbit/s"`` (exact, no rounding)."""
    if isinstance(bps, bool) or not isinstance(bps, (int, float)) or not math.isfinite(bps):
        raise UnitError(f"{_show(bps)} is not a finite number of bit/s")
    value = Decimal(repr(float(bps)))
    for prefix, factor in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if value >= factor:
            return f"{_trim(value / factor)}{prefix}bit/s"
    return f"{_trim(value)}bit/s"
