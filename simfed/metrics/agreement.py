"""How long the honest servers take to agree on the room state after each fault.

Definitions (copied into the README)
------------------------------------
A *fault* is any row of the ``perturbations`` table: partition start and
heal, crash and restart, and the scheduled topology changes (join, leave,
link and node down/up, strategy switch). Event creations are not faults.

*Agreement* at time t: in every room, the honest servers that are up and in
the room have at most one distinct ``state_hash`` (the rows of
:func:`simfed.metrics.divergence.divergence`).

Per fault at time ``t`` (:func:`fault_agreement`), the window runs from
``t`` up to (not including) the next fault strictly after ``t``, or to
``end_t`` (included) for the last:

``agreement_ms``         time from the fault until the servers agree and keep
                         agreeing to the end of the window (0 when they
                         already agree at ``t`` and never stop); NaN when they
                         disagree at the end of the window
``agreed``               ``agreement_ms`` is not NaN
``window_end``           end of the window (next fault or ``end_t``)
``until``                ``"next_fault"`` or ``"end"``: what ended the window
``distinct_states_at_end``  most distinct states in a room at the end of the
                         window
``max_distinct_states``  most distinct states in a room during the window
``max_state_diff``       largest pairwise state difference in the window
                         ((type, state_key) entries; NaN if unknown)

:func:`after_last_fault` is the last fault's row: "how long until everyone
agrees after the last fault". With no faults it is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from simfed.metrics.convergence import _resolve
from simfed.metrics.divergence import agreement_since, divergence

__all__ = ["FAULT_AGREEMENT_COLUMNS", "fault_agreement", "after_last_fault", "window"]

FAULT_AGREEMENT_COLUMNS = [
    "t", "kind", "detail", "agreement_ms", "agreed", "window_end", "until",
    "distinct_states_at_end", "max_distinct_states", "max_state_diff",
]


def window(div: pd.DataFrame, t0: float, t1: float, *, closed: bool = True) -> pd.DataFrame:
    """Divergence rows in ``[t0, t1]`` (``[t0, t1)`` when not ``closed``),
    with each room's row in force at ``t0`` moved to ``t0``."""
    if div.empty:
        return div
    parts = []
    for _, g in div.groupby("room_id", sort=False):
        before = g[g["t"] < t0].tail(1).assign(t=t0)
        inside = (g["t"] >= t0) & ((g["t"] <= t1) if closed else (g["t"] < t1))
        parts.append(pd.concat([before, g[inside]]))
    return pd.concat(parts).sort_values("t", kind="stable") if parts else div.iloc[0:0]


def _at_end(win: pd.DataFrame) -> int:
    """Most distinct states in a room at the last row of the window."""
    if win.empty:
        return 0
    return int(win.groupby("room_id", sort=False)["n_distinct_states"].last().max())


def fault_agreement(
    tables: Mapping[str, pd.DataFrame],
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    *,
    div: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per fault, in time order (see the module docstring)."""
    hs, end = _resolve(tables, honest, end_t)
    p = tables.get("perturbations")
    if p is None or p.empty or not (p["t"] <= end).any():
        return pd.DataFrame({c: [] for c in FAULT_AGREEMENT_COLUMNS}).astype(
            {"t": float, "kind": object, "detail": object, "agreement_ms": float, "agreed": bool,
             "window_end": float, "until": object, "distinct_states_at_end": "int64",
             "max_distinct_states": "int64", "max_state_diff": float})
    p = p[p["t"] <= end].sort_values("t", kind="stable")
    if div is None:
        div = divergence(tables, honest=hs, end_t=end, pairwise=True)
    times = p["t"].to_numpy(dtype=float).tolist()
    rows = []
    for i, (t, kind, detail) in enumerate(zip(times, p["kind"].astype(object), p["detail"].astype(object))):
        t_next = next((x for x in times[i + 1:] if x > t), None)
        t_end = end if t_next is None else t_next
        # Rows at the next fault's time already show that fault's effect.
        win = window(div, t, t_end, closed=t_next is None)
        t_agree = agreement_since(win) if not win.empty else math.nan
        ms = max(0.0, t_agree - t) if not math.isnan(t_agree) else math.nan
        rows.append({
            "t": t, "kind": str(kind), "detail": str(detail),
            "agreement_ms": ms, "agreed": not math.isnan(ms),
            "window_end": t_end, "until": "end" if t_next is None else "next_fault",
            "distinct_states_at_end": _at_end(win),
            "max_distinct_states": int(win["n_distinct_states"].max()) if not win.empty else 0,
            "max_state_diff": float(win["max_state_diff"].max()) if not win.empty else math.nan,
        })
    return pd.DataFrame(rows, columns=FAULT_AGREEMENT_COLUMNS)


def after_last_fault(faults: pd.DataFrame) -> dict[str, Any] | None:
    """The last fault's row as a dict (``None`` when there were no faults)."""
    if faults.empty:
        return None
    return faults.iloc[-1].to_dict()
