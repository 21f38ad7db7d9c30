"""Scenario files: TOML in, a validated :class:`~simfed.config.Scenario` out.

``load_scenario`` reads a file (or TOML text, or a dict), applies
``--set dotted.key=value`` overrides, and validates. Every problem becomes one
line of a :class:`ScenarioError` naming the TOML path of the bad key and the
value found there, so the user can fix the file without reading a traceback::

    network.loss: 1.5 is not a valid loss (expected a probability in [0, 1], ...)
    network.partitions[0].end: "2m" is not after start = "5m" (...)

``scenario_to_dict`` gives the resolved scenario (defaults included) as plain
JSON data, with the TOML key names; durations are numbers of milliseconds
and bandwidths numbers of bit/s (the bare-number units a scenario file
accepts), so the dict loads back to an equal scenario. ``human=True`` writes
them as unit strings (``"10m"``, ``"20Mbit/s"``) instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from .. import config
from ..config import ConfigProblems, Scenario, show
from ..config.netgraph import NetworkGraphConfig
from ..errors import SimfedError, SimfedWarning

__all__ = [
    "Problem",
    "ScenarioError",
    "ScenarioWarning",
    "json_schema",
    "load_scenario",
    "scenario_to_dict",
]

_NO_VALUE: Any = type("_NoValue", (), {"__repr__": lambda self: "<no value>"})()

# Keys whose value selects a member of a tagged union; pydantic puts the tag
# into error locations, and we leave it out of TOML paths.
_DISCRIMINATORS = ("model", "kind", "distribution", "behaviour")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: where, what was there, and why.

    ``option`` is the command-line override the bad value came from
    (``"--set network.loss=2"``), empty when it came from the file.
    """

    path: str
    value: Any
    message: str
    option: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def located(self, file: str | os.PathLike[str]) -> str:
        """The problem as one line for a user: against the ``--set`` option it came from, or the file."""
        if self.option:
            return f"{self.option}: {self}"
        if not self.path or self.path.startswith("--"):  # names the file or the option already
            return str(self)
        return f"{os.fspath(file)}: {self}"


class ScenarioError(SimfedError, ValueError):
    """A scenario that can't be run, refused before the run.

    Attributes
    ----------
    problems:
        Every :class:`Problem` found, in file order as far as known.
    path, value, message:
        Those of the first problem: the dotted TOML path
        (``network.partitions[0].end``), the value found there and the
        explanation (which names the value and what was expected).

    ``str()`` is one line per problem.
    """

    def __init__(self, problems: Sequence[Problem] | str, *, path: str = "", value: Any = _NO_VALUE,
                 option: str = ""):
        if isinstance(problems, str):
            problems = [Problem(path, value, problems, option)]
        if not problems:
            raise ValueError("ScenarioError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        first = self.problems[0]
        self.path = first.path
        self.value = first.value
        self.message = first.message
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def lines(self, file: str | os.PathLike[str]) -> list[str]:
        """What a command prints for ``simfed CMD FILE``: one line per problem, then a count if several."""
        out = [p.located(file) for p in self.problems]
        if len(out) > 1:
            out.append(f"{os.fspath(file)}: {len(out)} problems")
        return out


class ScenarioWarning(SimfedWarning):
    """Something about a scenario worth saying that does not stop the run
    (an empty scenario file). ``simfed`` commands print it as one line on stderr."""


# --------------------------------------------------------------------------
# Paths


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _render(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _resolve(data: Any, loc: Sequence[str | int]) -> tuple[list[str | int], Any]:
    """The TOML path for a pydantic location, and the input value found there.

    Union tags are dropped (pydantic inserts them). When a validator
    expanded a shorthand (``loss = 0.05``, ``latency = "80ms"``) the rest of the
    location is below the value the user wrote, so the path stops there.
    """
    parts: list[str | int] = []
    cur: Any = data
    for part in loc:
        if cur is _NO_VALUE:
            parts.append(part)
        elif isinstance(cur, Mapping):
            if part in cur:
                parts.append(part)
                cur = cur[part]
            elif any(cur.get(d) == part for d in _DISCRIMINATORS):
                continue
            else:
                parts.append(part)
                cur = _NO_VALUE
        elif isinstance(cur, (list, tuple)) and isinstance(part, int) and 0 <= part < len(cur):
            parts.append(part)
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and isinstance(part, int):
            parts.append(part)
            cur = _NO_VALUE
        else:
            break
    return parts, cur


def _strip_value_error(msg: str) -> str:
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _lower_first(msg: str) -> str:
    return msg[:1].lower() + msg[1:]


def _problems_from(exc: pydantic.ValidationError, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        parts, found = _resolve(data, err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, ConfigProblems):
            for rel, value, message in cause.problems:
                sub_parts, sub_found = _resolve(found, rel) if found is not _NO_VALUE else (list(rel), _NO_VALUE)
                problems.append(
                    Problem(_render(parts + sub_parts), sub_found if sub_found is not _NO_VALUE else value, message)
                )
            continue
        value = found if found is not _NO_VALUE else err.get("input", _NO_VALUE)
        if kind == "value_error" or kind == "assertion_error":
            message = str(cause) if cause is not None else _strip_value_error(err["msg"])
        elif kind == "missing":
            message = "missing (this key is required here)"
            value = _NO_VALUE
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            key = str(ctx.get("discriminator", "")).strip("'")
            parts = parts + [key]
            expected = ctx.get("expected_tags")
            if expected is None:
                expected = ", ".join(show(t) for t in _union_tags(err["loc"]))
            expected = str(expected).replace("'", '"')
            if kind == "union_tag_invalid":
                value = ctx.get("tag")
                message = f"{show(value)} is not a valid {key} (expected one of {expected})"
            else:
                value = _NO_VALUE
                message = f"missing (say which {key}: one of {expected})"
        elif kind == "literal_error":
            expected = str(ctx.get("expected", "")).replace("'", '"')
            message = f"{show(value)} is not one of {expected}"
        elif kind == "extra_forbidden":
            key = str(err["loc"][-1]) if err["loc"] else ""
            model = _model_at(err["loc"][:-1])
            message = model.unknown_key_message(key) if model else f"unknown key {show(key)}"
        else:
            message = f"{show(value)} is not valid ({_lower_first(err['msg'])})"
        problems.append(Problem(_render(parts), value, message))
    return problems


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: Sequence[str | int]) -> type[pydantic.BaseModel] | None:
    """The model class validating the value at a pydantic error location."""
    tp: Any = Scenario
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            field = next(
                (f for name, f in tp.model_fields.items() if part in (name, f.alias)), None
            )
            if field is not None:
                tp = field.annotation
            elif not any(tp.model_fields[d].default == part for d in _DISCRIMINATORS if d in tp.model_fields):
                return None  # else: the union tag of a one-member union
        elif origin in (tuple, list) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (typing.Union, types.UnionType):
            members = [_unwrap(a) for a in typing.get_args(tp)]
            tp = next(
                (
                    m
                    for m in members
                    if isinstance(m, type)
                    and issubclass(m, pydantic.BaseModel)
                    and any(m.model_fields[d].default == part for d in _DISCRIMINATORS if d in m.model_fields)
                ),
                None,
            )
            if tp is None:
                return None
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, config._Model) else None


def _union_tags(loc: Sequence[Any]) -> list[str]:
    """The tags the union at ``loc`` accepts (pydantic omits them when the tag is missing)."""
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    union = {
        "latency": config.LatencyConfig,
        "loss": config.LossConfig,
        "request_loss": config.LossConfig,
        "clock_skew": config.ClockSkewConfig,
        "faults": config.FaultConfig,
        "changes": config.ChangeConfig,
        "graph": NetworkGraphConfig,
    }.get(field)
    if union is None:
        return []
    members = typing.get_args(typing.get_args(union)[0])
    return [m.model_fields[k].default for m in members for k in _DISCRIMINATORS if k in m.model_fields]


# --------------------------------------------------------------------------
# Overrides


_INDEX = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def _split_key(key: str, item: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.split("."):
        match = _INDEX.match(piece.strip())
        if not match:
            raise ScenarioError(
                f"{show(item)}: {show(key)} is not a dotted key "
                "(expected e.g. network.loss or network.partitions[0].end)",
                path="--set",
                value=item,
            )
        parts.append(match.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    return parts


def _parse_value(text: str) -> Any:
    """A TOML value if ``text`` is one (``0.1``, ``20``, ``true``, ``[..]``, ``{..}``), else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def _override_parts(key: str, item: str) -> list[str | int]:
    return [int(p) if isinstance(p, str) and p.isdigit() else p for p in _split_key(key.strip(), item)]


def _blame_overrides(problems: Sequence[Problem], overrides: Sequence[str]) -> list[Problem]:
    """Problems at (or inside) a key an override set name that ``--set`` option, the last one winning."""
    targets = []
    for item in overrides:
        key = item.partition("=")[0]
        targets.append((_render(_override_parts(key, item)), f"--set {item}"))
    out = []
    for problem in problems:
        option = next((opt for path, opt in reversed(targets)
                       if problem.path == path or problem.path.startswith((path + ".", path + "["))), "")
        out.append(Problem(problem.path, problem.value, problem.message, option) if option else problem)
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.key=value`` set.

    Missing tables are created; list items are addressed as ``key[0]`` (or
    ``key.0``).
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(
                f"{show(item)} is not an override (expected dotted.key=value, e.g. network.loss=0.1)",
                path="--set",
                value=item,
            )
        parts = _override_parts(key, item)
        value = _parse_value(raw.strip())
        option = f"--set {item}"
        cur: Any = data
        for depth, part in enumerate(parts[:-1]):
            nxt = parts[depth + 1]
            here = _render(parts[: depth + 1])
            if isinstance(part, int):
                if not isinstance(cur, list) or not 0 <= part < len(cur):
                    raise ScenarioError(f"no item [{part}] to set", path=here, value=_NO_VALUE, option=option)
                if not isinstance(cur[part], (dict, list)):
                    raise ScenarioError(f"{show(cur[part])} is not a table", path=here, value=cur[part], option=option)
                cur = cur[part]
                continue
            if not isinstance(cur, dict):
                raise ScenarioError("not a table", path=_render(parts[:depth]), value=cur, option=option)
            if part not in cur:
                cur[part] = [] if isinstance(nxt, int) else {}
            elif not isinstance(cur[part], (dict, list)):
                raise ScenarioError(
                    f"{show(cur[part])} is not a table; set the whole value instead "
                    f"(e.g. --set '{here}={{ ... }}')",
                    path=here,
                    value=cur[part],
                    option=option,
                )
            cur = cur[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(cur, list) or not 0 <= last <= len(cur):
                raise ScenarioError(f"no item [{last}] to set", path=_render(parts), value=_NO_VALUE, option=option)
            if last == len(cur):
                cur.append(value)
            else:
                cur[last] = value
        elif isinstance(cur, dict):
            cur[last] = value
        else:
            raise ScenarioError("not a table", path=_render(parts[:-1]), value=cur, option=option)
    return data


# --------------------------------------------------------------------------
# Loading


def _read_toml_text(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}", value=_NO_VALUE) from None
    except RecursionError:
        raise ScenarioError(f"{source}: invalid TOML: arrays or tables nested too deeply", value=_NO_VALUE) from None


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if isinstance(source, str) and ("\n" in source or ("=" in source and not os.path.exists(source))):
        return _read_toml_text(source, "<string>")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file", value=str(path)) from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a directory, not a scenario file", value=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", value=str(path)) from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})", value=str(path)) from None
    return _read_toml_text(text, str(path))


def _source_dir(source: str | os.PathLike[str] | Mapping[str, Any]) -> Path | None:
    """The directory of a scenario file; None for TOML text or a dict (as ``_read`` decides)."""
    if isinstance(source, Mapping):
        return None
    if isinstance(source, str) and ("\n" in source or ("=" in source and not os.path.exists(source))):
        return None
    return Path(source).resolve().parent


def _anchor_graph_path(data: dict[str, Any], base: Path) -> None:
    """A relative ``topology.graph.path`` is relative to the scenario file's directory."""
    topology = data.get("topology")
    graph = topology.get("graph") if isinstance(topology, dict) else None
    path = graph.get("path") if isinstance(graph, dict) else None
    if isinstance(path, str) and path and not os.path.isabs(path):
        graph["path"] = str(base / path)


def load_scenario(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
) -> Scenario:
    """Read, override and validate a scenario.

    Parameters
    ----------
    source:
        A path to a TOML file (``str`` or ``Path``), TOML text (a ``str``
        containing a newline or ``=`` that is not an existing file), or an
        already-parsed dict.
    overrides:
        ``"dotted.key=value"`` strings applied in order before validation;
        the value is read as a TOML value when it is one (``0.1``, ``20``,
        ``true``, ``["hs0"]``, ``{ model = "constant", ms = 80 }``) and as a
        string otherwise (``30s``).

    A relative ``topology.graph.path`` (an edge-list file) in a scenario file
    is taken relative to that file's directory and stored absolute; in TOML
    text or a dict it is relative to the working directory.

    A problem with a value an override set names that override
    (``Problem.option``), so a command reports it against ``--set``, not
    the file. An empty scenario file (no keys at all) is allowed but warned
    about (:class:`ScenarioWarning`): the run then uses only defaults.

    Raises
    ------
    ScenarioError
        For an unreadable file, a TOML syntax error (with line and column),
        a bad override, or any invalid value (all of them, one per line).
    """
    data = _read(source)
    base = _source_dir(source)
    if base is not None and not data:
        rest = "every value not set by --set is a default" if overrides else "every value is a default"
        warnings.warn(ScenarioWarning(f"{os.fspath(source)}: the scenario file is empty: {rest} "
                                      "(simfed schema lists them)"), stacklevel=2)
    if overrides:
        data = apply_overrides(data, overrides)
    if base is not None:
        _anchor_graph_path(data, base)
    try:
        return Scenario.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ScenarioError(_blame_overrides(_problems_from(exc, data), overrides)) from None


def scenario_to_dict(scenario: Scenario, *, human: bool = False) -> dict[str, Any]:
    """The resolved scenario, defaults included, as JSON-able data.

    Keys are the TOML keys. Durations are float milliseconds and bandwidths
    float bit/s, unless ``human`` (then ``"10m"``, ``"20Mbit/s"``). Either
    way ``load_scenario(scenario_to_dict(s)) == s``. ``servers.names`` and
    ``workload.stop`` stay ``null`` when not given (meaning ``hs0..`` and
    the end of the run), so the dict can be re-run with other overrides.
    """
    return scenario.model_dump(mode="json", by_alias=True, context={"human": human})


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (TOML keys, unit strings allowed)."""
    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    network = defs.get("NetworkConfig", {}).get("properties", {})
    for key in ("loss", "request_loss"):
        if key in network:
            network[key] = {
                "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, _without_meta(network[key])],
                **_meta(network[key]),
            }
    if "latency" in network:
        network["latency"] = {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "description": "a constant latency, e.g. \"80ms\""},
                _without_meta(network["latency"]),
            ],
            **_meta(network["latency"]),
        }
    simulation = defs.get("SimulationConfig", {}).get("properties", {})
    if "state_resolution" in simulation:
        simulation["state_resolution"]["enum"] = list(config.available_state_resolutions())
    servers = defs.get("ServersConfig", {}).get("properties", {})
    if "clock_skew" in servers:
        servers["clock_skew"] = {
            "anyOf": [{"const": "none"}, _without_meta(servers["clock_skew"])],
            **_meta(servers["clock_skew"]),
        }
    if "processing" in servers:
        servers["processing"] = {
            "anyOf": [{"enum": ["none", "calibrated"]}, _without_meta(servers["processing"])],
            **_meta(servers["processing"]), "default": "calibrated",
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


_META_KEYS = ("default", "description", "title")


def _meta(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: prop[k] for k in _META_KEYS if k in prop}


def _without_meta(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prop.items() if k not in _META_KEYS}
