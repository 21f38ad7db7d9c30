"""The grid of a sweep: parsing ``--grid`` values, deriving each run's seed
and ID, and planning the runs (one scenario per grid point and repetition).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


from simfed.experiment.scenario import ScenarioError, _parse_value, apply_overrides, load_scenario, scenario_to_dict

SEED_SCHEME = "sha256(base_seed, sorted params, repetition) >> 1, v1"


# --------------------------------------------------------------------------
# The grid


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_grid_item(text: str) -> tuple[str, list[Any]]:
    """``"network.loss=0,0.1,0.3"`` -> ``("network.loss", [0, 0.1, 0.3])``.

    Each value is read as a TOML value when it is one (``10``, ``0.1``,
    ``true``, ``"a,b"``, ``[1, 2]``, ``{ model = "constant", ms = 80 }``)
    and as a string otherwise (``30s``, ``v2``). Commas inside brackets,
    braces or quotes do not split.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(
            f"{text!r} is not a grid (expected dotted.key=value1,value2,..., e.g. network.loss=0,0.1)",
            path="--grid",
            value=text,
        )
    pieces = _split_top_level(raw)
    if any(p == "" for p in pieces):
        raise ScenarioError(f"{text!r}: empty value in the list (expected value1,value2,...)", path=key, value=raw)
    return key, [_parse_value(p) for p in pieces]


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """Several ``--grid`` options as one grid (a key given twice is refused)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, values = parse_grid_item(item)
        if key in grid:
            raise ScenarioError(f"given twice in --grid (put all its values in one --grid {key}=a,b,c)",
                                path=key, value=item)
        grid[key] = values
    return grid


def _plain(value: Any) -> Any:
    """A grid value as plain JSON data (numpy scalars unwrapped, tuples as lists)."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise ScenarioError(
            f"{value!r} ({type(value).__name__}) cannot be a grid value "
            "(expected a finite number, string, bool, list or dict)",
            value=value,
        ) from None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _as_number(value: Any) -> Any:
    """``value`` with integral floats as ints, at any depth (``0.0`` and ``0`` are one grid value)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_as_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_number(v) for k, v in value.items()}
    return value


def _key(value: Any) -> str:
    """The canonical text of a grid value: what seeds, run IDs and the manifest compare."""
    return _canonical(_as_number(value))


def normalise_grid(grid: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """Keys with dots (``a__b`` accepted), values as non-empty lists of plain data."""
    out: dict[str, list[Any]] = {}
    for raw_key, values in (grid or {}).items():
        key = str(raw_key).replace("__", ".").strip()
        if key == "simulation.seed":
            raise ScenarioError(
                "cannot be a grid key: each run's seed is derived from the base seed "
                "(use --repeat for replications and --seed for the base seed)",
                path=key, value=values,
            )
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise ScenarioError(f"{values!r} is not a list of values (write [{values!r}] for one value)",
                                path=key, value=values)
        plain = []
        for v in values:
            try:
                plain.append(_plain(v))
            except ScenarioError as exc:
                raise ScenarioError(exc.message, path=key, value=v) from None
        if not plain:
            raise ScenarioError("has no values (expected at least one)", path=key, value=values)
        seen: set[str] = set()
        for v in plain:
            c = _key(v)
            if c in seen:
                raise ScenarioError(f"{c} is listed twice", path=key, value=v)
            seen.add(c)
        if key in out:
            raise ScenarioError("is given twice in the grid", path=key, value=values)
        out[key] = plain
    return out


# --------------------------------------------------------------------------
# The plan


def _digest(base_seed: int, params: Mapping[str, Any], repetition: int) -> bytes:
    blob = _canonical({
        "base_seed": int(base_seed),
        "params": [[k, _as_number(params[k])] for k in sorted(params)],
        "repetition": int(repetition),
    })
    return hashlib.sha256(blob.encode("utf-8")).digest()


def derive_seed(base_seed: int, params: Mapping[str, Any], repetition: int) -> int:
    """The seed of one run: 63 bits of SHA-256 over (base seed, sorted params, repetition)."""
    return int.from_bytes(_digest(base_seed, params, repetition)[:8], "big") >> 1


def run_id_of(base_seed: int, params: Mapping[str, Any], repetition: int) -> str:
    """The stable ID of one run (``r`` + 12 hex digits)."""
    return "r" + _digest(base_seed, params, repetition)[8:14].hex()


@dataclass(frozen=True)
class RunSpec:
    """One planned run: where it sits in the grid, its seed and its scenario."""

    run_id: str
    point: int
    repetition: int
    seed: int
    params: dict[str, Any]
    scenario: dict[str, Any] = field(repr=False)  # resolved, seed included (JSON data)


def _toml_item(key: str, value: Any) -> str:
    from simfed.api import _toml_value

    return f"{key}={_toml_value(value, key)}"


def plan_runs(base: Any, grid: Mapping[str, Sequence[Any]], repeat: int,
              common_seeds: Sequence[str] = ()) -> list[RunSpec]:
    """Every run of the sweep, point by point (grid order), repetitions within.

    ``base`` is a :class:`~simfed.config.Scenario`. Each grid point is
    validated; all problems are raised together as one
    :class:`ScenarioError`. Grid keys in ``common_seeds`` are left out of
    the seed derivation: points that differ only in them share their seeds
    (common random numbers: compare strategies on the same traffic).
    """
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ScenarioError(f"{repeat!r} is too small (expected an integer >= 1)", path="--repeat", value=repeat)
    grid = normalise_grid(grid)
    common = {k.replace("__", ".") for k in common_seeds}
    unknown = sorted(common - set(grid))
    if unknown:
        raise ScenarioError(f"{unknown[0]!r} is not a grid key (expected one of {', '.join(grid) or 'none'})",
                            path="--common-seeds", value=unknown[0])
    base_dict = scenario_to_dict(base)
    base_seed = int(base.simulation.seed)
    keys = list(grid)
    specs: list[RunSpec] = []
    problems: dict[str, Any] = {}
    for point, combo in enumerate(itertools.product(*(grid[k] for k in keys))):
        params = dict(zip(keys, combo))
        try:
            data = apply_overrides(base_dict, [_toml_item(k, v) for k, v in params.items()])
            resolved = scenario_to_dict(load_scenario(data))
        except ScenarioError as exc:
            for p in exc.problems:
                problems.setdefault(str(p), p)
            continue
        for rep in range(repeat):
            seed = derive_seed(base_seed, {k: v for k, v in params.items() if k not in common}, rep)
            scenario = json.loads(json.dumps(resolved))
            scenario["simulation"]["seed"] = seed
            specs.append(RunSpec(run_id_of(base_seed, params, rep), point, rep, seed, params, scenario))
    if problems:
        raise ScenarioError(list(problems.values()))
    return specs
