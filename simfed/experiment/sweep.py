"""Parameter sweeps: a grid of scenario values times repetitions, run in parallel.

:func:`sweep` is what ``simfed sweep`` and :func:`simfed.sweep` call.

Theory of operation
-------------------
1. **Plan.** The base scenario is resolved once (file, ``--set``
   overrides, ``--seed``). The grid (``{"network.loss": [0, 0.1],
   "servers.count": [10, 50]}``) gives the cartesian product of its
   values, in the order the keys were given: the *grid points*. Every point
   is validated up front, so a bad key or value is refused (exit 2, naming
   the TOML path) before anything runs. Each point runs ``repeat`` times.
2. **Seeds.** Run ``(point, repetition)`` gets the seed

   ``int.from_bytes(sha256(J).digest()[:8], "big") >> 1``  (63 bits)

   where ``J`` is the compact, key-sorted JSON text of
   ``{"base_seed": S, "params": [[key, value], ...] (sorted by key),
   "repetition": r}``, integral floats written as integers (so ``0``
   on the command line and ``0.0`` in Python are the same value). It
   depends only on the base seed, the run's grid values and its
   repetition index: not on the order of ``--grid`` options, the
   executor, the worker or Python's ``hash()`` (randomised per process).
   Every run therefore has its own seed, and the same command gives the
   same seeds anywhere. The run's ID is ``"r"`` and 12 hex
   digits of the same digest (bytes 8-13): stable, so a resumed sweep finds
   its runs whatever order the grid was written in.
3. **Execute.** A run is a pure function of its resolved scenario
   (:func:`execute_run`: build the world from the scenario and seed,
   simulate, measure). It returns its ``summary`` (and, with
   ``keep_tables``, its tables); it never writes files, so remote Dask
   workers need no shared disk. A run that raises comes back as an
   ``"error"`` outcome with the error text; the sweep goes on. At most
   twice as many runs as the executor has workers are in flight; the rest
   wait here, so Ctrl-C has little to cancel.
4. **Record.** This process writes each finished run as it arrives:
   ``DIR/runs/<run_id>/summary.json`` (the run's summary plus a ``sweep``
   block: run_id, point, repetition, params, seed), written to a temporary
   file in the same directory and moved into place with ``os.replace``;
   with ``keep_tables`` its Parquet tables first. A failed run leaves
   ``error.json`` instead. A run is *finished* when its ``summary.json``
   exists and its scenario, seed and params are this run's: a later
   invocation skips it. Failed runs are tried again. Killing the process at
   any moment loses no finished run.
5. **Tables.** At the end (also after Ctrl-C) the ``runs`` table is built
   from the records of every planned run and the ``summary`` table from it,
   and written as ``runs.parquet``, ``sweep_summary.parquet`` and
   ``sweep_summary.csv`` (atomically too). ``DIR/sweep.json`` (the
   manifest: the scenario as resolved, grid, repeat, base seed, seed
   scheme, simfed version) is written before the first run; a sweep into a
   directory whose manifest differs is refused (:class:`ManifestMismatch`).

Confidence intervals are Student-t 95% intervals of the mean over the
runs of a grid point where the figure is defined (``n`` counts them: a
state that never converged has no ``state_convergence_ms``):
``mean ± t(0.975, n-1) · sd / sqrt(n)``, with ``sd`` the sample standard
deviation; ``n = 1`` has no interval (NaN). The quantiles come from a table
(df 1-30) and the Cornish-Fisher expansion above it (error < 1e-6), so no
SciPy is needed. ``converged_rate`` is the same interval on 0/1 values (a
Wald-type interval: crude for rates near 0 or 1 with few runs).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simfed.errors import SimfedError
from simfed.experiment.scenario import ScenarioError, _parse_value, apply_overrides, load_scenario, scenario_to_dict

__all__ = [
    "sweep",
    "load_sweep",
    "SweepResult",
    "RunSpec",
    "ManifestMismatch",
    "parse_grid",
    "parse_grid_item",
    "derive_seed",
    "plan_runs",
    "execute_run",
    "flatten_summary",
    "summarise_runs",
    "mean_ci",
    "t_quantile_975",
    "HEADLINE_COLUMNS",
    "SUMMARY_METRICS",
    "SEED_SCHEME",
]

SEED_SCHEME = "sha256(base_seed, sorted params, repetition) >> 1, v1"
MANIFEST_FILE = "sweep.json"
RUNS_FILE = "runs.parquet"
SUMMARY_PARQUET = "sweep_summary.parquet"
SUMMARY_CSV = "sweep_summary.csv"
RUNS_DIR = "runs"
ERROR_FILE = "error.json"

#: Headline figures flattened into the ``runs`` table, with their dtypes.
HEADLINE_COLUMNS: dict[str, str] = {
    "events_created": "Int64",
    "events_lost": "Int64",
    "converged": "boolean",
    "event_convergence_ms_p50": "float64",
    "event_convergence_ms_p95": "float64",
    "event_convergence_ms_p99": "float64",
    "event_convergence_ms_max": "float64",
    "state_convergence_ms": "float64",
    "max_divergence_distinct_states": "Int64",
    "messages_total": "Int64",
    "bytes_total": "Int64",
    "soft_failed": "Int64",
    "rejected_total": "Int64",
}
#: ``runs`` column -> prefix of its columns in the ``summary`` table.
SUMMARY_METRICS: dict[str, str] = {
    "event_convergence_ms_p50": "event_convergence_ms_p50",
    "event_convergence_ms_p95": "event_convergence_ms_p95",
    "state_convergence_ms": "state_convergence_ms",
    "events_lost": "events_lost",
    "messages_total": "messages_total",
    "converged": "converged_rate",
}
#: Columns of ``runs`` that depend on the machine, not on the scenario.
WALL_CLOCK_COLUMNS = ("wall_time_s",)


class ManifestMismatch(SimfedError, ValueError):
    """``DIR/sweep.json`` describes another sweep than the one asked for."""


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


def plan_runs(base: Any, grid: Mapping[str, Sequence[Any]], repeat: int) -> list[RunSpec]:
    """Every run of the sweep, point by point (grid order), repetitions within.

    ``base`` is a :class:`~simfed.config.Scenario`. Each grid point is
    validated; all problems are raised together as one
    :class:`ScenarioError`.
    """
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ScenarioError(f"{repeat!r} is too small (expected an integer >= 1)", path="--repeat", value=repeat)
    grid = normalise_grid(grid)
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
            seed = derive_seed(base_seed, params, rep)
            scenario = json.loads(json.dumps(resolved))
            scenario["simulation"]["seed"] = seed
            specs.append(RunSpec(run_id_of(base_seed, params, rep), point, rep, seed, params, scenario))
    if problems:
        raise ScenarioError(list(problems.values()))
    return specs


# --------------------------------------------------------------------------
# One run (in a worker)


@dataclass(frozen=True)
class RunTask:
    """What a worker needs: the scenario as data, the run's labels."""

    run_id: str
    scenario: dict[str, Any]
    name: str
    sweep_info: dict[str, Any]
    keep_tables: bool = False


def execute_run(task: RunTask) -> dict[str, Any]:
    """Run one scenario; never raises for a failing run.

    Returns ``{"run_id", "status": "ok"|"error"|"interrupted", "error",
    "traceback", "wall_time_s", "summary", "tables"}``. Runs in a worker
    process (or thread, or this process); writes nothing.
    """
    from simfed.experiment import runner

    t0 = time.perf_counter()
    out: dict[str, Any] = {"run_id": task.run_id, "status": "ok", "error": None, "traceback": None,
                           "summary": None, "tables": None}
    try:
        scenario = load_scenario(task.scenario)
        result = runner.run_scenario(scenario, out_dir=None, progress=False, name=task.name,
                                     run_id=task.run_id, plots=False)
        if result.interrupted or not result.complete:
            out["status"] = "interrupted"
        else:
            summary = dict(result.summary)
            summary["sweep"] = task.sweep_info
            out["summary"] = summary
            if task.keep_tables:
                out["tables"] = result.tables
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        out.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    out["wall_time_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------
# Rows and statistics


def _total(d: Any) -> int | None:
    return None if d is None else int(sum(d.values()))


def flatten_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a ``summary.json`` as flat columns (:data:`HEADLINE_COLUMNS`)."""
    ec = summary.get("event_convergence_ms") or {}
    md = summary.get("max_divergence") or {}
    return {
        "events_created": summary.get("events_created"),
        "events_lost": summary.get("events_lost"),
        "converged": summary.get("converged"),
        "event_convergence_ms_p50": ec.get("p50"),
        "event_convergence_ms_p95": ec.get("p95"),
        "event_convergence_ms_p99": ec.get("p99"),
        "event_convergence_ms_max": ec.get("max"),
        "state_convergence_ms": summary.get("state_convergence_ms"),
        "max_divergence_distinct_states": md.get("distinct_states"),
        "messages_total": _total(summary.get("messages")),
        "bytes_total": _total(summary.get("bytes")),
        "soft_failed": summary.get("soft_failed"),
        "rejected_total": _total(summary.get("rejected")),
    }


def _record(spec: RunSpec, status: str, error: str | None, wall: float | None,
            summary: Mapping[str, Any] | None) -> dict[str, Any]:
    row = {"status": status, "error": error, "wall_time_s": wall}
    row.update(flatten_summary(summary or {}))
    return row


# Two-sided 95%: t(0.975, df) for df = 1..30.
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836,
    2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
    2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546,
    2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447,
    2.079613845, 2.073873068, 2.068657610, 2.063898562, 2.059538553,
    2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df={df} is too small (expected >= 1)")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)  # Cornish-Fisher (Abramowitz & Stegun 26.7.5)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def mean_ci(values: Iterable[Any]) -> tuple[int, float, float, float]:
    """``(n, mean, ci_low, ci_high)``: the 95% Student-t interval of the mean.

    Missing values (None, NaN, ``pd.NA``) are left out of ``n``; ``n = 0``
    gives NaN for all three, ``n = 1`` NaN bounds.
    """
    xs = [float(x) for x in values if x is not None and x is not pd.NA and not _isnan(x)]
    n = len(xs)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    mean = statistics.fmean(xs)
    if n == 1:
        return 1, mean, math.nan, math.nan
    half = t_quantile_975(n - 1) * statistics.stdev(xs) / math.sqrt(n)
    return n, mean, mean - half, mean + half


def _isnan(x: Any) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def _param_dtype(values: Sequence[Any]) -> tuple[str, Callable[[Any], Any]]:
    if all(isinstance(v, bool) for v in values):
        return "bool", bool
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64", int
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float64", float
    return "string", lambda v: v if isinstance(v, str) else _canonical(v)


def _param_columns(grid: Mapping[str, Sequence[Any]], specs: Sequence[RunSpec]) -> dict[str, pd.Series]:
    cols = {}
    for key, values in grid.items():
        dtype, conv = _param_dtype(values)
        cols[key] = pd.Series([conv(s.params[key]) for s in specs], dtype=dtype)
    return cols


def runs_frame(specs: Sequence[RunSpec], grid: Mapping[str, Sequence[Any]],
               records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per recorded run, in plan order (point, then repetition)."""
    done = [s for s in specs if s.run_id in records]
    cols: dict[str, Any] = {
        "run_id": pd.Series([s.run_id for s in done], dtype="string"),
        "point": pd.Series([s.point for s in done], dtype="int64"),
        "repetition": pd.Series([s.repetition for s in done], dtype="int64"),
        "seed": pd.Series([s.seed for s in done], dtype="int64"),
    }
    cols.update(_param_columns(grid, done))
    rows = [records[s.run_id] for s in done]
    cols["status"] = pd.Series([r["status"] for r in rows], dtype="string")
    cols["error"] = pd.Series([r["error"] for r in rows], dtype="string")
    cols["wall_time_s"] = pd.Series([r["wall_time_s"] for r in rows], dtype="float64")
    for col, dtype in HEADLINE_COLUMNS.items():
        cols[col] = pd.Series([r[col] for r in rows], dtype="object").astype(dtype)
    return pd.DataFrame(cols)


def summarise_runs(runs: pd.DataFrame, grid_keys: Sequence[str]) -> pd.DataFrame:
    """Per grid point: runs, ok, errors and ``n``/``mean``/``ci_low``/``ci_high`` per figure.

    Figures are :data:`SUMMARY_METRICS`; statistics over the ``ok`` runs.
    """
    rows = []
    for point, g in runs.groupby("point", sort=True):
        row: dict[str, Any] = {"point": int(point)}
        for key in grid_keys:
            row[key] = g[key].iloc[0]
        ok = g[g["status"] == "ok"]
        row["runs"] = len(g)
        row["ok"] = len(ok)
        row["errors"] = int((g["status"] == "error").sum())
        for col, prefix in SUMMARY_METRICS.items():
            n, mean, lo, hi = mean_ci(ok[col].astype("float64").tolist())
            row.update({f"{prefix}_n": n, f"{prefix}_mean": mean, f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi})
        rows.append(row)
    out = pd.DataFrame(rows, columns=["point", *grid_keys, "runs", "ok", "errors",
                                      *(f"{p}_{s}" for p in SUMMARY_METRICS.values()
                                        for s in ("n", "mean", "ci_low", "ci_high"))])
    for key in grid_keys:
        out[key] = out[key].astype(runs[key].dtype)
    for c in out.columns:
        if c in ("point", "runs", "ok", "errors") or c.endswith("_n"):
            out[c] = out[c].astype("int64")
        elif c.endswith(("_mean", "_ci_low", "_ci_high")):
            out[c] = out[c].astype("float64")
    return out


# --------------------------------------------------------------------------
# Files


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then move it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, data: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    _atomic_write(path, write)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class _Store:
    """A sweep directory: manifest, one folder per run, the tables."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dir(self, run_id: str) -> Path:
        return self.root / RUNS_DIR / run_id

    def check_manifest(self, manifest: dict[str, Any]) -> None:
        path = self.root / MANIFEST_FILE
        old = _read_json(path) if path.exists() else None
        if path.exists() and not isinstance(old, dict):
            raise ManifestMismatch(f"{path}: unreadable sweep manifest; use another --out directory")
        if old is None:
            if self.root.is_dir() and any(self.root.iterdir()):
                raise ManifestMismatch(
                    f"{self.root}: not empty and not a sweep directory (no {MANIFEST_FILE}); "
                    "choose a new or empty --out directory"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            _write_json(path, manifest)
            return
        differ = [k for k in _MANIFEST_KEYS if _manifest_value(old, k) != _manifest_value(manifest, k)]
        if differ:
            raise ManifestMismatch(
                f"{path}: this directory holds another sweep ({', '.join(differ)} differ"
                f"{_manifest_hint(old, manifest, differ)}); resume only with the same scenario, grid, "
                f"--repeat, seed and simfed version, or choose another --out directory"
            )

    def finished(self, spec: RunSpec) -> dict[str, Any] | None:
        """The run's summary if it finished with this run's parameters, else None."""
        s = _read_json(self.run_dir(spec.run_id) / "summary.json")
        if not isinstance(s, dict):
            return None
        info = s.get("sweep") or {}
        if (info.get("seed") != spec.seed or info.get("params") != spec.params
                or s.get("scenario") != spec.scenario or not s.get("complete")):
            return None
        return s

    def failed(self, spec: RunSpec) -> dict[str, Any] | None:
        e = _read_json(self.run_dir(spec.run_id) / ERROR_FILE)
        return e if isinstance(e, dict) and e.get("seed") == spec.seed else None

    def write_ok(self, spec: RunSpec, summary: dict[str, Any], tables: Mapping[str, pd.DataFrame] | None) -> None:
        d = self.run_dir(spec.run_id)
        d.mkdir(parents=True, exist_ok=True)
        files = []
        for name, df in (tables or {}).items():
            p = d / f"{name}.parquet"
            _atomic_write(p, lambda tmp, df=df: df.to_parquet(tmp, engine="pyarrow", index=False))
            files.append(p.name)
        summary["out_dir"] = str(d)
        summary["out_files"] = [*files, "summary.json"]
        _write_json(d / "summary.json", summary)  # last: its presence means finished
        (d / ERROR_FILE).unlink(missing_ok=True)

    def write_error(self, spec: RunSpec, outcome: Mapping[str, Any]) -> None:
        d = self.run_dir(spec.run_id)
        d.mkdir(parents=True, exist_ok=True)
        _write_json(d / ERROR_FILE, {
            "run_id": spec.run_id, "point": spec.point, "repetition": spec.repetition, "seed": spec.seed,
            "params": spec.params, "error": outcome.get("error"), "traceback": outcome.get("traceback"),
            "wall_time_s": outcome.get("wall_time_s"),
        })

    def write_tables(self, runs: pd.DataFrame, summary: pd.DataFrame) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / RUNS_FILE, lambda tmp: runs.to_parquet(tmp, engine="pyarrow", index=False))
        _atomic_write(self.root / SUMMARY_PARQUET,
                      lambda tmp: summary.to_parquet(tmp, engine="pyarrow", index=False))
        _atomic_write(self.root / SUMMARY_CSV, lambda tmp: summary.to_csv(tmp, index=False))


_MANIFEST_KEYS = ("scenario", "grid", "repeat", "base_seed", "seed_scheme", "simfed_version")


def _manifest_value(m: Mapping[str, Any], key: str) -> Any:
    v = m.get(key)
    if key == "grid" and isinstance(v, Mapping):  # the order of keys and values does not matter
        return {k: sorted(_key(x) for x in vals) for k, vals in v.items()}
    return v


def _manifest_hint(old: Mapping[str, Any], new: Mapping[str, Any], differ: Sequence[str]) -> str:
    hints = []
    for k in differ:
        if k in ("repeat", "base_seed", "simfed_version"):
            hints.append(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now")
        elif k == "grid":
            hints.append(f"grid: {_canonical(old.get(k))} there, {_canonical(new.get(k))} now")
        elif k == "scenario":
            diff = _first_difference(old.get(k), new.get(k))
            if diff:
                hints.append(f"scenario: {diff}")
    return ": " + "; ".join(hints) if hints else ""


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    if a != b:
        return f"{path} = {_canonical(a)} there, {_canonical(b)} now"
    return None


# --------------------------------------------------------------------------
# The result


class SweepResult:
    """The outcome of a sweep.

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per recorded run: run_id, point, repetition, seed, one
        column per grid key, status (``ok``/``error``), error, wall_time_s
        (the run's simulate-and-measure time in its worker, as in its
        ``summary.json``; for a failed run, the time until it failed) and
        the headline figures (:data:`HEADLINE_COLUMNS`, missing for a
        failed run).
    summary : pandas.DataFrame
        One row per grid point: the grid values, runs, ok, errors, and
        ``<figure>_n``, ``_mean``, ``_ci_low``, ``_ci_high`` (95%, Student t)
        for each of :data:`SUMMARY_METRICS`.
    grid, repeat, base_seed, manifest
        What was asked for.
    computed, skipped : int
        Runs computed by this call, and runs found finished in ``out_dir``.
    interrupted : bool
        Ctrl-C stopped the sweep; ``runs`` holds what finished.
    out_dir : pathlib.Path or None
        The sweep directory (None: everything stayed in memory).
    run_summaries, tables : dict
        In memory (no ``out_dir``): each run's summary, and with
        ``keep_tables`` its tables, by run_id.
    """

    def __init__(self, *, runs: pd.DataFrame, summary: pd.DataFrame, manifest: dict[str, Any],
                 computed: int = 0, skipped: int = 0, interrupted: bool = False,
                 out_dir: Path | None = None, run_summaries: dict[str, dict[str, Any]] | None = None,
                 tables: dict[str, dict[str, pd.DataFrame]] | None = None, planned: int | None = None,
                 executor: str | None = None, wall_time_s: float | None = None) -> None:
        self.runs = runs
        self.summary = summary
        self.manifest = manifest
        self.computed = computed
        self.skipped = skipped
        self.interrupted = interrupted
        self.out_dir = out_dir
        self.run_summaries = run_summaries or {}
        self.tables = tables or {}
        self.planned = len(runs) if planned is None else planned
        self.executor = executor
        self.wall_time_s = wall_time_s

    @property
    def grid(self) -> dict[str, list[Any]]:
        return self.manifest["grid"]

    @property
    def repeat(self) -> int:
        return int(self.manifest["repeat"])

    @property
    def base_seed(self) -> int:
        return int(self.manifest["base_seed"])

    @property
    def errors(self) -> pd.DataFrame:
        """The runs that raised (run_id, params, error)."""
        return self.runs[self.runs["status"] == "error"]

    @property
    def complete(self) -> bool:
        """Every planned run is recorded and none failed."""
        return len(self.runs) == self.planned and not len(self.errors)

    def run_summary(self, run_id: str) -> dict[str, Any]:
        """One run's ``summary.json`` (from memory or from ``out_dir``)."""
        if run_id in self.run_summaries:
            return self.run_summaries[run_id]
        if self.out_dir is None:
            raise KeyError(run_id)
        return json.loads((self.out_dir / RUNS_DIR / run_id / "summary.json").read_text(encoding="utf-8"))

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> SweepResult:
        """Read a sweep directory written by ``simfed sweep`` or ``sweep(out_dir=...)``."""
        d = Path(out_dir)
        manifest = json.loads((d / MANIFEST_FILE).read_text(encoding="utf-8"))
        runs = pd.read_parquet(d / RUNS_FILE, engine="pyarrow")
        summary = pd.read_parquet(d / SUMMARY_PARQUET, engine="pyarrow")
        planned = int(manifest["repeat"]) * math.prod(len(v) for v in manifest["grid"].values())
        return cls(runs=runs, summary=summary, manifest=manifest, out_dir=d, planned=planned)

    def report(self) -> str:
        """The summary table as text: grid values, runs, and the main means with their intervals."""
        keys = list(self.grid)
        lines = []
        for r in self.summary.to_dict("records"):
            where = ", ".join(f"{k}={r[k]}" for k in keys) or "(no grid)"
            lines.append(
                f"  {where}: {r['ok']}/{r['runs']} ok; converged {_fmt_rate(r)}; "
                f"p50 {_fmt_ci(r, 'event_convergence_ms_p50', 'ms')}; "
                f"p95 {_fmt_ci(r, 'event_convergence_ms_p95', 'ms')}; "
                f"lost {_fmt_ci(r, 'events_lost', '')}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "interrupted" if self.interrupted else f"{len(self.runs)}/{self.planned} runs"
        return f"<SweepResult {state}, {len(self.errors)} errors\n{self.report()}>"

    def _repr_html_(self) -> str:
        return (f"<div><b>SweepResult</b>: {len(self.runs)}/{self.planned} runs, "
                f"{len(self.errors)} errors{' (interrupted)' if self.interrupted else ''}"
                f"{self.summary.to_html(index=False, float_format=lambda x: f'{x:.4g}')}</div>")


def load_sweep(out_dir: str | os.PathLike[str]) -> SweepResult:
    """Read a sweep directory (``runs.parquet``, ``sweep_summary.parquet``, ``sweep.json``)."""
    return SweepResult.load(out_dir)


def _fmt_ci(row: Mapping[str, Any], prefix: str, unit: str) -> str:
    mean, lo, hi = row[f"{prefix}_mean"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    if _isnan(mean):
        return "-"
    sep = " " if unit else ""
    if _isnan(lo):
        return f"{mean:.4g}{sep}{unit}"
    return f"{mean:.4g}{sep}{unit} [{lo:.4g}, {hi:.4g}]"


def _fmt_rate(row: Mapping[str, Any]) -> str:
    mean = row["converged_rate_mean"]
    return "-" if _isnan(mean) else f"{100 * mean:.0f}%"


# --------------------------------------------------------------------------
# The sweep


class _Bar:
    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="run", desc="sweep", file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, errors: int) -> None:
        if self.bar is not None:
            if errors:
                self.bar.set_postfix_str(f"{errors} errors", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_wanted(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _simfed_version() -> str:
    from simfed import __version__

    return __version__


def sweep(
    scenario_or_path: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    repeat: int = 1,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    keep_tables: bool = False,
    seed: int | None = None,
    set: Iterable[str] | str | None = None,  # noqa: A002 - the CLI's --set
    start_method: str = "spawn",
    **overrides: Any,
) -> SweepResult:
    """Run every point of ``grid`` ``repeat`` times and tabulate the headline figures.

    Parameters
    ----------
    scenario_or_path:
        A ``Scenario``, a dict, a path to a TOML file, or TOML text.
    grid:
        ``{"network.loss": [0, 0.1, 0.3], "servers.count": [10, 50]}``:
        dotted scenario keys (``network__loss`` also accepted) to lists of
        values. The sweep runs the cartesian product.
    repeat:
        Runs per grid point, each with its own derived seed (see the module
        docstring for the scheme).
    workers:
        Local worker processes (default: one per CPU; ``0``: run in this
        process, one at a time).
    scheduler:
        ``"tcp://host:8786"``: a running Dask cluster; ``"local:N"``: start
        a Dask ``LocalCluster`` with N single-threaded worker processes.
    executor:
        Your own ``concurrent.futures.Executor`` or ``dask.distributed.Client``
        (not shut down by the sweep).
    out_dir:
        The sweep directory (manifest, per-run ``summary.json``, Parquet
        tables); resumable. ``None`` keeps everything in memory.
    progress:
        One progress bar over runs on stderr (default: when stderr is a terminal).
    keep_tables:
        Also keep each run's tables (Parquet files per run, or
        ``result.tables`` in memory).
    seed, set, **overrides:
        Applied to the base scenario, as for :func:`simfed.run`; ``seed``
        is the base seed the runs' seeds derive from.
    start_method:
        ``"spawn"`` (default) or ``"forkserver"`` for the local process pool.

    Raises
    ------
    ScenarioError
        A bad scenario, grid key or value (before anything runs).
    ManifestMismatch
        ``out_dir`` holds a different sweep.

    Ctrl-C stops the sweep: what finished is kept and tabulated, and the
    result says ``interrupted``; the same call resumes it.

    Examples
    --------
    >>> res = simfed.sweep("scenarios/baseline.toml", {"network.loss": [0, 0.1]}, repeat=5,
    ...                    servers__count=4)                                   # doctest: +SKIP
    >>> res.summary[["network.loss", "event_convergence_ms_p50_mean"]]         # doctest: +SKIP
    """
    from simfed.api import _is_path, resolve_scenario
    from simfed.experiment.executors import open_executor

    t_start = time.perf_counter()
    base = resolve_scenario(scenario_or_path, set=set, seed=seed, **overrides)
    grid = normalise_grid(grid)
    specs = plan_runs(base, grid, repeat)
    name = "sweep"
    source = None
    if isinstance(scenario_or_path, (str, os.PathLike)) and _is_path(scenario_or_path):
        name, source = Path(scenario_or_path).stem, str(scenario_or_path)
    manifest = {
        "simfed_version": _simfed_version(),
        "scenario": scenario_to_dict(base),
        "source": source,
        "grid": grid,
        "repeat": repeat,
        "base_seed": int(base.simulation.seed),
        "seed_scheme": SEED_SCHEME,
        "runs": len(specs),
    }
    store = _Store(Path(out_dir)) if out_dir is not None else None
    if store is not None:
        store.check_manifest(manifest)

    records: dict[str, dict[str, Any]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    todo = []
    for spec in specs:
        s = store.finished(spec) if store is not None else None
        if s is not None:
            records[spec.run_id] = _record(spec, "ok", None, s.get("wall_time_s"), s)
        else:
            todo.append(spec)
            e = store.failed(spec) if store is not None else None
            if e is not None:  # shown until recomputed
                records[spec.run_id] = _record(spec, "error", e.get("error"), e.get("wall_time_s"), None)
    skipped = len(specs) - len(todo)
    computed = 0
    interrupted = False
    description = None
    broken: BaseException | None = None
    errors = sum(r["status"] == "error" for r in records.values())

    def handle(spec: RunSpec, outcome: dict[str, Any] | None, exc: BaseException | None) -> None:
        nonlocal computed, errors, interrupted
        if exc is not None:  # the executor failed, not the run (worker died, pickling, ...)
            outcome = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": None,
                       "wall_time_s": None}
        assert outcome is not None
        if outcome["status"] == "interrupted":
            interrupted = True
            return
        computed += 1
        if outcome["status"] == "ok":
            summary = outcome["summary"]
            if store is not None:
                store.write_ok(spec, summary, outcome.get("tables"))
            else:
                summaries[spec.run_id] = summary
                if outcome.get("tables") is not None:
                    tables[spec.run_id] = outcome["tables"]
            records[spec.run_id] = _record(spec, "ok", None, outcome["wall_time_s"], summary)
        else:
            errors += 1
            if store is not None:
                store.write_error(spec, outcome)
            records[spec.run_id] = _record(spec, "error", outcome["error"], outcome["wall_time_s"], None)

    if todo:
        # Repetition-major: early results (and an interrupted sweep) cover every point.
        queue = sorted(todo, key=lambda s: (s.repetition, s.point))
        ex = open_executor(workers=workers, scheduler=scheduler, executor=executor,
                           start_method=start_method, max_runs=len(todo))
        bar = _Bar(len(specs), skipped, _progress_wanted(progress))
        description = ex.description
        pending: dict[cf.Future, RunSpec] = {}
        cancel = False
        try:
            it = iter(queue)
            limit = 2 * ex.slots
            while True:
                while len(pending) < limit and not interrupted and broken is None:
                    spec = next(it, None)
                    if spec is None:
                        break
                    task = RunTask(spec.run_id, spec.scenario, name, {
                        "run_id": spec.run_id, "point": spec.point, "repetition": spec.repetition,
                        "params": spec.params, "base_seed": int(base.simulation.seed), "seed": spec.seed,
                        "seed_scheme": SEED_SCHEME,
                    }, keep_tables)
                    try:
                        pending[ex.executor.submit(execute_run, task)] = spec
                    except (cf.BrokenExecutor, RuntimeError) as exc:  # a dead pool, a closed client
                        broken = exc
                        break
                if not pending:
                    break
                done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    spec = pending.pop(fut)
                    exc = fut.exception()
                    handle(spec, None if exc else fut.result(), exc)
                    bar.update(errors)
                if interrupted:
                    cancel = True
                    break
        except KeyboardInterrupt:
            interrupted = cancel = True
        finally:
            if cancel:
                # Keep what finished meanwhile; drop the rest.
                for fut, spec in list(pending.items()):
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        try:
                            handle(spec, fut.result(), None)
                        except KeyboardInterrupt:
                            break
                    else:
                        fut.cancel()
            bar.close()
            ex.close(cancel=cancel)

    runs = runs_frame(specs, grid, records)
    summary = summarise_runs(runs, list(grid))
    if store is not None:
        store.write_tables(runs, summary)
    result = SweepResult(
        runs=runs, summary=summary, manifest=manifest, computed=computed, skipped=skipped,
        interrupted=interrupted, out_dir=store.root if store is not None else None,
        run_summaries=summaries, tables=tables, planned=len(specs), executor=description,
        wall_time_s=time.perf_counter() - t_start,
    )
    if broken is not None and not interrupted:
        from simfed.experiment.executors import ExecutorError

        from simfed.experiment.executors import SCRIPT_GUARD_HINT

        missing = len(specs) - len(runs)
        hint = ""
        if isinstance(broken, cf.BrokenExecutor) and "local processes" in (description or ""):
            hint = f" (a worker process died; if it failed to start: {SCRIPT_GUARD_HINT})"
        err = ExecutorError(
            f"the executor ({description}) stopped working: {type(broken).__name__}: {broken}{hint}; "
            f"{missing} runs were not run" + (f"; run the same command to resume into {out_dir}" if store else "")
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result
