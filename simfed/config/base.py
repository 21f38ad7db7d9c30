"""Shared pieces of the scenario models: errors with paths, unit-bearing
field types and the frozen base model.

Conventions
-----------
* Every model is frozen and forbids unknown keys (a typo fails before the
  run, with the closest known key suggested).
* Python attributes carry their unit (``duration_ms``, ``bandwidth_bps``);
  the TOML key is the short alias (``duration``, ``bandwidth``) and takes a
  string with units (``"10m"``, ``"20Mbit/s"``) or a bare number (ms, bit/s),
  see :mod:`simfed.units`. Both spellings are accepted on input.
* Simulated time is float milliseconds from the start of the run (t = 0).
  ``simulation.duration`` is the whole run: nothing happens after it. The
  workload generates new events in ``[workload.start, workload.stop)``; to
  watch the network settle, stop the workload before the end of the run.
* Every section is optional; ``Scenario()`` is a small valid run (4 servers,
  2 users each, 60 s, lognormal latency, no loss).

"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    WithJsonSchema,
)

from ..units import (
    format_bandwidth,
    format_duration,
    parse_bandwidth,
    parse_duration,
    parse_signed_duration,
)


#: Region names a server may be placed in (SimBlock's six regions).
REGIONS: tuple[str, ...] = ("NA", "EU", "SA", "AP", "JP", "AU")
#: Named region tables: ``servers.regions = "simblock-2019"`` places servers
#: by that table's distribution (the numbers live in ``simfed.sim``).
REGION_TABLES: tuple[str, ...] = ("simblock-2019",)
#: Used when ``simfed.protocol.stateres.available_algorithms`` is not there.
STATE_RESOLUTION_FALLBACK: tuple[str, ...] = ("v2", "v1", "naive")


def available_state_resolutions() -> tuple[str, ...]:
    """Names of the state resolution algorithms ``simulation.state_resolution`` accepts."""
    try:
        from ..protocol.stateres import available_algorithms
    except ImportError:
        return STATE_RESOLUTION_FALLBACK
    return tuple(available_algorithms())


# --------------------------------------------------------------------------
# Errors that carry a path: raised inside validators, expanded by
# simfed.experiment.scenario into one ScenarioError line each.


class ConfigProblems(ValueError):
    """One or more problems found by a validator, each at a path relative to
    the model that raised it.

    ``problems`` is a list of ``(path, value, message)`` where ``path`` is a
    tuple of keys and list indices and ``message`` already names the value.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], Any, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(_line(p, m) for p, _v, m in self.problems))


def _line(path: tuple[str | int, ...], message: str) -> str:
    dotted = ".".join(str(p) for p in path)
    return f"{dotted}: {message}" if dotted else message


def show(value: Any) -> str:
    """A value as a scenario author wrote it: strings in double quotes."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


# --------------------------------------------------------------------------
# Unit-bearing field types


def _human(info: SerializationInfo) -> bool:
    return bool(info.context and info.context.get("human"))


def _ser_duration(value: float | None, info: SerializationInfo) -> Any:
    if value is not None and _human(info):
        return format_duration(value)
    return value


def _ser_bandwidth(value: float, info: SerializationInfo) -> Any:
    return format_bandwidth(value) if _human(info) else value


_DURATION_PATTERN = r"^\s*((\d+(\.\d*)?|\.\d+)\s*(ms|us|d|h|m|s)\s*)+$|^\s*(\d+(\.\d*)?|\.\d+)\s*$"


def _duration_schema(minimum: str, signed: bool = False) -> dict[str, Any]:
    pattern = _DURATION_PATTERN.replace(r"^\s*", r"^\s*-?\s*") if signed else _DURATION_PATTERN
    number: dict[str, Any] = {"type": "number"}
    if not signed:
        number[minimum] = 0
    return {
        "anyOf": [number, {"type": "string", "pattern": pattern}],
        "description": 'A duration: milliseconds, or a string such as "250ms", "6m30s", "1h", "7d".',
    }


def _positive_duration(value: Any) -> float:
    ms = parse_duration(value)
    if ms <= 0:
        raise ValueError(f"{show(value)} is too short (expected a duration longer than 0)")
    return ms


def _positive_bandwidth(value: Any) -> float:
    bps = parse_bandwidth(value)
    if bps <= 0:
        raise ValueError(f"{show(value)} is too small (expected a bandwidth above 0)")
    return bps


_ser_d = PlainSerializer(_ser_duration, when_used="always")

#: Milliseconds >= 0, written ``"250ms"``, ``"6m30s"`` or as a number (ms).
Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_duration_schema("minimum")), _ser_d
]
#: Milliseconds > 0.
PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive_duration),
    WithJsonSchema(_duration_schema("exclusiveMinimum")),
    _ser_d,
]
#: Milliseconds, negative allowed (``"-20ms"``): clock offsets.
SignedDuration = Annotated[
    float,
    BeforeValidator(parse_signed_duration),
    WithJsonSchema(_duration_schema("minimum", signed=True)),
    _ser_d,
]
#: bit/s > 0, written ``"20Mbit/s"``, ``"10MB/s"`` or as a number (bit/s).
Bandwidth = Annotated[
    float,
    BeforeValidator(_positive_bandwidth),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*([kKMG]?(bit|B)\s*/\s*s|[kKMG]?bps)?\s*$"},
            ],
            "description": 'A bandwidth: bit/s, or a string such as "20Mbit/s", "1Gbit/s", "10MB/s".',
        }
    ),
    PlainSerializer(_ser_bandwidth, when_used="always"),
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: Rates and weights; the cap (``simfed.config.bounds.MAX_RATE``) keeps runs finite.
NonNegative = Annotated[float, Field(ge=0.0, le=1_000_000.0)]


# --------------------------------------------------------------------------
# Base model


class _Model(BaseModel):
    """Frozen, unknown keys refused with a suggestion, both key spellings accepted."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
    )

    def __hash__(self) -> int:
        # Frozen, so hashable; dict-valued fields (regions, bandwidth_per_server)
        # defeat pydantic's field-tuple hash, so hash the canonical JSON instead.
        return hash((type(self).__qualname__, self.model_dump_json()))

    @classmethod
    def toml_keys(cls) -> list[str]:
        """The keys a scenario file uses for this section (aliases first)."""
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def unknown_key_message(cls, key: str) -> str:
        """``unknown key "latncy" (did you mean "latency"? known keys: ...)``."""
        keys = cls.toml_keys()
        close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        return f"unknown key {show(key)} ({hint}known keys: {', '.join(keys)})"


def _tagged(key: str, *members: type[BaseModel]) -> Any:
    """A union discriminated on ``key``: the tag is the member's ``key`` literal."""
    return Annotated[Union[members], Field(discriminator=key)]


# --------------------------------------------------------------------------
# [simulation]

def _unknown_server(name: Any, known: set[str] | tuple[str, ...]) -> str:
    ordered = sorted(known, key=lambda n: (len(n), n))
    close = difflib.get_close_matches(str(name), ordered, n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    listing = ", ".join(ordered) if len(ordered) <= 8 else f"{ordered[0]} .. {ordered[-1]}"
    return f"{show(name)} is not a server ({hint}servers are {listing})"

