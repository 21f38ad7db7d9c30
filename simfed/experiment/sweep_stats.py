"""Rows and statistics of a sweep: a run's headline figures flattened, the
``runs`` table, and mean with a 95% Student-t interval per grid point.

Intervals respect the quantity: times, counts and ratios cannot be negative
and rates and shares lie in [0, 1], so each figure's interval is clipped to
its range (:data:`METRIC_RANGES`). Clipping never lowers the coverage of an
interval for the mean (the true mean lies in the range too); it only drops
impossible values. The alternatives were rejected on purpose: a percentile
bootstrap undercovers badly with few runs (with n = 2 it is the range of
the two values, about a 50% interval), and a t interval on logarithms
estimates the geometric mean, not the mean shown beside it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from simfed.experiment.grid import RunSpec, _canonical


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
    "state_converged": "boolean",
    "max_divergence_distinct_states": "Int64",
    "messages_total": "Int64",
    "bytes_total": "Int64",
    "soft_failed": "Int64",
    "rejected_total": "Int64",
    "push_messages_per_event": "float64",
    "redundancy_factor": "float64",
    "fetched_share": "float64",
    "security_illegitimate_in_state": "Int64",
    "security_equivocations_seen": "Int64",
    "security_content_divergence": "Int64",
    "security_caused_events_lost": "Int64",
    "security_caused_p95_convergence_ms": "float64",
    "security_caused_requests": "Int64",
    "security_work_amplification": "float64",
}
#: ``runs`` column -> prefix of its columns in the ``summary`` table.
SUMMARY_METRICS: dict[str, str] = {
    "event_convergence_ms_p50": "event_convergence_ms_p50",
    "event_convergence_ms_p95": "event_convergence_ms_p95",
    "state_convergence_ms": "state_convergence_ms",
    "events_lost": "events_lost",
    "messages_total": "messages_total",
    "converged": "converged_rate",
    "push_messages_per_event": "push_messages_per_event",
    "redundancy_factor": "redundancy_factor",
    "fetched_share": "fetched_share",
}
#: Summary prefix -> (low, high) of the values the figure can take; its interval is clipped to it.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "event_convergence_ms_p50": (0.0, math.inf),
    "event_convergence_ms_p95": (0.0, math.inf),
    "state_convergence_ms": (0.0, math.inf),
    "events_lost": (0.0, math.inf),
    "messages_total": (0.0, math.inf),
    "converged_rate": (0.0, 1.0),
    "push_messages_per_event": (0.0, math.inf),
    "redundancy_factor": (0.0, math.inf),
    "fetched_share": (0.0, 1.0),
}
#: Columns of ``runs`` that depend on the machine, not on the scenario.
WALL_CLOCK_COLUMNS = ("wall_time_s",)


# --------------------------------------------------------------------------
# Rows and statistics


def _total(d: Any) -> int | None:
    return None if d is None else int(sum(d.values()))


def flatten_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a ``summary.json`` as flat columns (:data:`HEADLINE_COLUMNS`)."""
    ec = summary.get("event_convergence_ms") or {}
    md = summary.get("max_divergence") or {}
    topo = summary.get("topology") or {}
    sec = summary.get("security") or {}
    caused = sec.get("caused") or {}
    return {
        "events_created": summary.get("events_created"),
        "events_lost": summary.get("events_lost"),
        "converged": summary.get("converged"),
        "event_convergence_ms_p50": ec.get("p50"),
        "event_convergence_ms_p95": ec.get("p95"),
        "event_convergence_ms_p99": ec.get("p99"),
        "event_convergence_ms_max": ec.get("max"),
        "state_convergence_ms": summary.get("state_convergence_ms"),
        "state_converged": _state_converged(summary),
        "max_divergence_distinct_states": md.get("distinct_states"),
        "messages_total": _total(summary.get("messages")),
        "bytes_total": _total(summary.get("bytes")),
        "soft_failed": summary.get("soft_failed"),
        "rejected_total": _total(summary.get("rejected")),
        "push_messages_per_event": topo.get("push_messages_per_event"),
        "redundancy_factor": topo.get("redundancy_factor"),
        "fetched_share": topo.get("fetched_share"),
        "security_illegitimate_in_state": sec.get("illegitimate_in_state"),
        "security_equivocations_seen": sec.get("equivocations_seen"),
        "security_content_divergence": sec.get("content_divergence"),
        "security_caused_events_lost": caused.get("events_lost"),
        "security_caused_p95_convergence_ms": caused.get("p95_convergence_ms"),
        "security_caused_requests": caused.get("requests"),
        "security_work_amplification": caused.get("work_amplification"),
    }


def _state_converged(summary: Mapping[str, Any]) -> bool | None:
    """The run's ``state_converged`` if it says, else whether it has a state convergence time."""
    if "state_converged" in summary:
        v = summary["state_converged"]
        return None if v is None else bool(v)
    if "state_convergence_ms" not in summary:
        return None  # no summary (a failed run)
    return summary["state_convergence_ms"] is not None


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


def mean_ci(values: Iterable[Any],
            bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[int, float, float, float]:
    """``(n, mean, ci_low, ci_high)``: the 95% Student-t interval of the mean.

    Missing values (None, NaN, ``pd.NA``) are left out of ``n``; ``n = 0``
    gives NaN for all three, ``n = 1`` NaN bounds. The interval is clipped
    to ``bounds``, the range the quantity can take (``(0, inf)`` for times
    and counts).
    """
    xs = [float(x) for x in values if x is not None and x is not pd.NA and not _isnan(x)]
    n = len(xs)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    mean = statistics.fmean(xs)
    if n == 1:
        return 1, mean, math.nan, math.nan
    half = t_quantile_975(n - 1) * statistics.stdev(xs) / math.sqrt(n)
    low, high = bounds
    return n, mean, max(low, mean - half), min(high, mean + half)


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


def _never_converged(ok: pd.DataFrame) -> pd.Series:
    """Per ok run: its state never converged (``state_converged`` false, or no state convergence time)."""
    never = pd.Series(False, index=ok.index)
    if "state_convergence_ms" in ok:
        never |= ok["state_convergence_ms"].isna()
    if "state_converged" in ok:
        never |= ok["state_converged"].astype("boolean").eq(False).fillna(False).astype(bool)
    return never


def summarise_runs(runs: pd.DataFrame, grid_keys: Sequence[str]) -> pd.DataFrame:
    """Per grid point: runs, ok, errors, n_excluded and ``n``/``mean``/``ci_low``/``ci_high`` per figure.

    Figures are :data:`SUMMARY_METRICS`; statistics over the ``ok`` runs,
    intervals clipped to :data:`METRIC_RANGES`. ``n_excluded`` counts the ok
    runs whose state never converged: they have no state convergence time,
    so ``state_convergence_ms`` is averaged over the others (its ``_n``).
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
        never = _never_converged(ok)
        row["n_excluded"] = int(never.sum())
        for col, prefix in SUMMARY_METRICS.items():
            values = ok[col].astype("float64") if col in ok else pd.Series([], dtype="float64")
            if col == "state_convergence_ms":
                values = values[~never]
            n, mean, lo, hi = mean_ci(values.tolist(), METRIC_RANGES.get(prefix, (-math.inf, math.inf)))
            row.update({f"{prefix}_n": n, f"{prefix}_mean": mean, f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi})
        rows.append(row)
    out = pd.DataFrame(rows, columns=["point", *grid_keys, "runs", "ok", "errors", "n_excluded",
                                      *(f"{p}_{s}" for p in SUMMARY_METRICS.values()
                                        for s in ("n", "mean", "ci_low", "ci_high"))])
    for key in grid_keys:
        out[key] = out[key].astype(runs[key].dtype)
    for c in out.columns:
        if c in ("point", "runs", "ok", "errors", "n_excluded") or c.endswith("_n"):
            out[c] = out[c].astype("int64")
        elif c.endswith(("_mean", "_ci_low", "_ci_high")):
            out[c] = out[c].astype("float64")
    return out
