"""Event and state convergence, measured from the recorder's tables.

Definitions (copied into the README)
------------------------------------
*Honest servers* are those with ``honest=True`` in the ``servers`` table (all
servers seen anywhere, when that table is empty). Only honest servers are ever
*expected* to hold anything; dishonest servers are never waited for.

*Holds.* A server holds event E from the first time it reports a *stored*
outcome for E in its room DAG (``stage == "timeline"``): ``accepted``,
``soft_failed`` or ``rejected`` (all three are persisted by a Matrix server,
and after any of them the server has decided about E and will not fetch it
again). An event stored only as an *outlier* (fetched as a state or auth
event: state fetch, join, /event_auth) is not held: it counts from the later
time it enters the DAG, and never if it does not. ``dropped`` (not persisted,
e.g. a bad signature or hash) does not count. The creating server holds E
from ``created_at`` even if it reported no outcome. Outcomes after ``end_t``
are ignored. Tables without a ``stage`` column (results written before it
existed) count every row as ``timeline``.

Dummy events (``org.matrix.dummy_event``, which merge a server's forward
extremities) are not expected anywhere: like Synapse, their creator does not
push them and clients never see them; they travel only as prev_events.

*Should hold.* An honest server S should hold E (created in room R at time
``created_at``) when S was in R at ``created_at`` and stayed until the end
of the run: the start of S's final uninterrupted joined period in R (from
the ``membership`` table) is at or before ``created_at``, and S did not
leave afterwards. A room with no membership records at all falls back to
"every honest server that appears in any table for that room".

*Event convergence time* of E: ``converged_at - created_at`` where
``converged_at`` is the latest first-hold time over the honest servers that
should hold E. If one of them never holds E by ``end_t`` the convergence
time is NaN and E is *lost*. Events created after ``end_t`` are ignored.
There is no grace period: run the scenario with a quiet drain phase at the
end, or events created just before ``end_t`` count as lost.

*Delivery latency* of E at S: first-hold time at S minus ``created_at``
(excluding the creator itself by default), with the ``via`` and ``outcome``
of that first stored outcome.

*State convergence time*: let ``t0`` be the last perturbation -- the latest
time in the ``perturbations`` table or the latest ``created_at`` in
``events`` (so the last event counts even if it was not logged as
``last_event``). Let ``T`` be the earliest time from which, in every room, all
honest servers that are up and in the room agree on ``state_hash`` and keep
agreeing until ``end_t`` (from the ``state`` samples, each sample's values
holding until that server's next sample for the room; see
:mod:`simfed.metrics.divergence`). The state convergence time is
``max(0, T - t0)``; NaN if the servers disagree at the last sample. If the
states diverge again after first agreeing, ``T`` is after the *last*
divergence.

*Censored percentiles* (:func:`censored_percentiles`, used for the event
convergence headline): computed over *every* event some honest server should
hold, a lost event counting as +inf (it had not converged when the run
ended: its convergence time is right-censored at ``end_t``). Interpolation is
numpy's default (linear); a percentile whose interpolation touches a lost
event is +inf, and the result lists it in ``censored`` and says how many
events were lost (``events_lost``) beside the percentiles. Plain
:func:`percentiles` (non-NaN values only) is for measures without losses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from simfed.metrics.recorder import HELD_OUTCOMES, STAGES

#: The type of the events a server creates to merge forward extremities.
DUMMY_TYPE = "org.matrix.dummy_event"

__all__ = [
    "honest_servers",
    "infer_end_t",
    "expected_holders",
    "held_at",
    "event_convergence",
    "delivery_latency",
    "percentiles",
    "censored_percentiles",
    "deliveries",
    "state_convergence",
    "last_perturbation",
]

Tables = Mapping[str, pd.DataFrame]


def _strs(series: pd.Series) -> pd.Series:
    """A categorical/str column as plain Python-object strings."""
    return series.astype(object)


def honest_servers(tables: Tables) -> set[str]:
    """Servers marked honest in ``servers``; every server seen when that table is empty."""
    servers = tables.get("servers")
    if servers is not None and not servers.empty:
        return {str(s) for s, h in zip(servers["server"], servers["honest"]) if h}
    seen: set[str] = set()
    for name, cols in (
        ("events", ("server",)),
        ("deliveries", ("server",)),
        ("state", ("server",)),
        ("membership", ("server",)),
    ):
        df = tables.get(name)
        if df is not None and not df.empty:
            for c in cols:
                seen.update(str(x) for x in df[c].dropna().unique())
    return seen


def infer_end_t(tables: Tables) -> float:
    """The latest simulated time anywhere in the tables (0.0 when empty)."""
    best = 0.0
    for name, cols in (
        ("events", ("created_at",)),
        ("deliveries", ("t",)),
        ("state", ("t",)),
        ("traffic", ("t_sent", "t_done")),
        ("membership", ("t",)),
        ("perturbations", ("t",)),
    ):
        df = tables.get(name)
        if df is not None and not df.empty:
            for c in cols:
                m = df[c].max()
                if pd.notna(m):
                    best = max(best, float(m))
    return best


def _resolve(tables: Tables, honest: Iterable[str] | None, end_t: float | None):
    hs = honest_servers(tables) if honest is None else {str(s) for s in honest}
    end = infer_end_t(tables) if end_t is None else float(end_t)
    return hs, end


def _final_join_since(tables: Tables, honest: set[str], end_t: float) -> pd.DataFrame:
    """(room_id, server, since): start of each honest server's final joined period."""
    rows: list[tuple[str, str, float]] = []
    mem = tables.get("membership")
    rooms_with_records: set[str] = set()
    if mem is not None and not mem.empty:
        m = mem[mem["t"] <= end_t]
        m = pd.DataFrame(
            {
                "room_id": _strs(m["room_id"]),
                "server": _strs(m["server"]),
                "t": m["t"].to_numpy(),
                "joined": m["joined"].to_numpy(),
            }
        )
        rooms_with_records = set(m["room_id"])
        m = m.sort_values("t", kind="stable")
        for (room, server), g in m.groupby(["room_id", "server"], sort=False):
            if server not in honest:
                continue
            ts = g["t"].to_numpy()
            js = g["joined"].to_numpy()
            if not js[-1]:
                continue
            i = len(js) - 1
            while i > 0 and js[i - 1]:
                i -= 1
            rows.append((room, server, float(ts[i])))
    # Fallback for rooms nobody recorded membership for.
    seen: dict[str, set[str]] = {}
    for name in ("events", "deliveries", "state"):
        df = tables.get(name)
        if df is None or df.empty:
            continue
        pairs = df[["room_id", "server"]].drop_duplicates()
        for room, server in zip(_strs(pairs["room_id"]), _strs(pairs["server"])):
            if room not in rooms_with_records and server in honest:
                seen.setdefault(room, set()).add(server)
    for room, servers in seen.items():
        rows.extend((room, s, -math.inf) for s in sorted(servers))
    return pd.DataFrame(rows, columns=["room_id", "server", "since"]).astype(
        {"room_id": object, "server": object, "since": "float64"}
    )


def _events(tables: Tables, honest: set[str], end_t: float) -> pd.DataFrame:
    ev = tables["events"]
    ev = ev[(ev["created_at"] <= end_t) & (_strs(ev["type"]) != DUMMY_TYPE)]
    return pd.DataFrame(
        {
            "event_id": _strs(ev["event_id"]).to_numpy(),
            "room_id": _strs(ev["room_id"]).to_numpy(),
            "creator": _strs(ev["server"]).to_numpy(),
            "created_at": ev["created_at"].to_numpy(dtype=float),
        }
    ).assign(honest_creator=lambda d: d["creator"].isin(honest))


def expected_holders(
    tables: Tables, honest: Iterable[str] | None = None, end_t: float | None = None
) -> pd.DataFrame:
    """One row per (event, honest server that should hold it): event_id, room_id, server, created_at."""
    hs, end = _resolve(tables, honest, end_t)
    ev = _events(tables, hs, end)
    since = _final_join_since(tables, hs, end)
    x = ev.merge(since, on="room_id", how="inner")
    x = x[x["since"] <= x["created_at"]]
    return x[["event_id", "room_id", "server", "created_at"]].reset_index(drop=True)


def deliveries(tables: Tables) -> pd.DataFrame:
    """The ``deliveries`` table with a ``stage`` column (``timeline`` for
    every row of a table recorded before stages existed)."""
    d = tables["deliveries"]
    if "stage" not in d.columns:
        d = d.assign(stage=pd.Categorical(["timeline"] * len(d), categories=list(STAGES)))
    return d


def held_at(
    tables: Tables,
    end_t: float | None = None,
    *,
    held_outcomes: Iterable[str] = HELD_OUTCOMES,
    stages: Iterable[str] = ("timeline",),
) -> pd.DataFrame:
    """First time each server holds each event: event_id, server, t, outcome, via.

    Only outcomes of the given ``stages`` count (default: in the room DAG;
    pass ``STAGES`` to count outliers too). Includes the creator at
    ``created_at`` (outcome ``accepted``, via ``created``) unless it reported
    an earlier stored outcome.
    """
    end = infer_end_t(tables) if end_t is None else float(end_t)
    d = deliveries(tables)
    d = d[d["outcome"].isin(list(held_outcomes)) & d["stage"].isin(list(stages)) & (d["t"] <= end)]
    a = pd.DataFrame(
        {
            "event_id": _strs(d["event_id"]).to_numpy(),
            "server": _strs(d["server"]).to_numpy(),
            "t": d["t"].to_numpy(dtype=float),
            "outcome": _strs(d["outcome"]).to_numpy(),
            "via": _strs(d["via"]).to_numpy(),
        }
    )
    ev = tables["events"]
    ev = ev[ev["created_at"] <= end]
    b = pd.DataFrame(
        {
            "event_id": _strs(ev["event_id"]).to_numpy(),
            "server": _strs(ev["server"]).to_numpy(),
            "t": ev["created_at"].to_numpy(dtype=float),
            "outcome": "accepted",
            "via": "created",
        }
    )
    both = pd.concat([a, b], ignore_index=True) if len(b) else a
    both = both.sort_values("t", kind="stable")
    return both.drop_duplicates(["event_id", "server"], keep="first").reset_index(
        drop=True
    )


def event_convergence(
    tables: Tables,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    *,
    held_outcomes: Iterable[str] = HELD_OUTCOMES,
) -> pd.DataFrame:
    """Per event: when every honest server that should hold it does.

    Columns: event_id, room_id, creator, honest_creator, created_at,
    n_expected, n_held, converged_at, convergence_ms, lost. See the module
    docstring for the definitions. ``lost`` is True when some expected
    server never holds the event (then ``converged_at``/``convergence_ms``
    are NaN). An event no honest server is expected to hold has
    ``n_expected == 0``, NaN times and ``lost == False``.
    """
    hs, end = _resolve(tables, honest, end_t)
    ev = _events(tables, hs, end)
    exp = expected_holders(tables, hs, end)
    held = held_at(tables, end, held_outcomes=held_outcomes)[["event_id", "server", "t"]]
    x = exp.merge(held, on=["event_id", "server"], how="left")
    g = x.groupby("event_id", sort=False).agg(
        n_expected=("server", "size"),
        n_held=("t", "count"),
        last_t=("t", "max"),
    )
    out = ev.merge(g, left_on="event_id", right_index=True, how="left")
    out["n_expected"] = out["n_expected"].fillna(0).astype("int64")
    out["n_held"] = out["n_held"].fillna(0).astype("int64")
    complete = (out["n_held"] == out["n_expected"]) & (out["n_expected"] > 0)
    out["converged_at"] = np.where(complete, out["last_t"], np.nan)
    out["convergence_ms"] = out["converged_at"] - out["created_at"]
    out["lost"] = out["n_held"] < out["n_expected"]
    return out.drop(columns=["last_t"]).reset_index(drop=True)


def lost_in_gaps(
    tables: Tables,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    *,
    held_outcomes: Iterable[str] = HELD_OUTCOMES,
) -> set[str]:
    """Lost events (see :func:`event_convergence`) that sit in timeline gaps
    of every expected server lacking them in its DAG at ``end_t``.

    An event E is in a gap at server S when S holds E as an outlier (fetched
    as a state or auth event while bridging a gap), or when S holds in its DAG
    a descendant of E (E is behind one of S's backward extremities). Synapse
    fetches at most ``get_missing_events_limit`` missing events and leaves the
    rest of a gap until a reader paginates back: such an event is reachable by
    backfill from S. The other lost events never reached some server and
    nothing S holds leads to them. Descendants come from the ``pdus`` table
    (each stored event's prev_events); without it only outliers count.
    """
    hs, end = _resolve(tables, honest, end_t)
    exp = expected_holders(tables, hs, end)[["event_id", "server"]]
    timeline = held_at(tables, end, held_outcomes=held_outcomes)[["event_id", "server"]]
    anywhere = held_at(tables, end, held_outcomes=held_outcomes, stages=STAGES)[["event_id", "server"]]
    x = exp.merge(timeline.assign(in_dag=True), on=["event_id", "server"], how="left")
    missing = x[x["in_dag"].isna()][["event_id", "server"]]
    if missing.empty:
        return set()
    outliers = set(zip(_strs(anywhere["event_id"]), _strs(anywhere["server"])))
    in_dag: dict[str, set[str]] = {}
    for eid, server in zip(_strs(timeline["event_id"]), _strs(timeline["server"])):
        in_dag.setdefault(server, set()).add(eid)
    children = _children(tables)

    def behind_gap(eid: str, server: str) -> bool:
        if (eid, server) in outliers:
            return True
        held = in_dag.get(server, set())
        seen, todo = {eid}, [eid]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child in held:
                    return True
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return False

    gap = {}
    for eid, server in zip(_strs(missing["event_id"]), _strs(missing["server"])):
        gap[eid] = gap.get(eid, True) and behind_gap(eid, server)
    return {eid for eid, ok in gap.items() if ok}


def _children(tables: Tables) -> dict[str, list[str]]:
    """Event id -> the stored events that cite it as a prev event (from ``pdus``)."""
    pdus = tables.get("pdus")
    children: dict[str, list[str]] = {}
    if pdus is None or pdus.empty:
        return children
    for eid, pdu in zip(_strs(pdus["event_id"]), pdus["pdu"].astype(object)):
        for prev in json.loads(pdu).get("prev_events", ()):
            children.setdefault(prev, []).append(eid)
    return children


def delivery_latency(
    tables: Tables,
    *,
    end_t: float | None = None,
    include_creator: bool = False,
    held_outcomes: Iterable[str] = HELD_OUTCOMES,
    stages: Iterable[str] = ("timeline",),
) -> pd.DataFrame:
    """Per (event, server) first hold (by default: entry into the room DAG):
    event_id, room_id, server, creator, created_at, t, latency_ms, outcome, via."""
    end = infer_end_t(tables) if end_t is None else float(end_t)
    ev = _events(tables, set(), end).drop(columns=["honest_creator"])
    held = held_at(tables, end, held_outcomes=held_outcomes, stages=stages)
    x = held.merge(ev, on="event_id", how="inner")
    if not include_creator:
        x = x[x["server"] != x["creator"]]
    x = x.assign(latency_ms=x["t"] - x["created_at"])
    cols = ["event_id", "room_id", "server", "creator", "created_at", "t",
            "latency_ms", "outcome", "via"]
    return x[cols].reset_index(drop=True)


def percentiles(values, qs: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ..., "max": ...}`` over non-NaN values (NaN if none)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    out: dict[str, float] = {}
    for q in qs:
        key = f"p{q:g}"
        out[key] = float(np.percentile(arr, q)) if arr.size else math.nan
    out["max"] = float(arr.max()) if arr.size else math.nan
    return out


def _censored_quantile(s: np.ndarray, q: float) -> float:
    """numpy's linear percentile of sorted ``s`` (+inf allowed); +inf when
    the interpolation touches an infinite value."""
    h = (s.size - 1) * q / 100.0
    lo = int(math.floor(h))
    hi = min(lo + 1, s.size - 1)
    frac = h - lo
    if math.isinf(s[lo]) or (frac > 0 and math.isinf(s[hi])):
        return math.inf
    return float(s[lo] + frac * (s[hi] - s[lo]))


def censored_percentiles(values, qs: Iterable[float] = (50, 95, 99)) -> dict:
    """Percentiles over every value, +inf (lost) included: ``{"p50", "p95",
    "p99", "max", "censored", "events", "events_lost"}``.

    ``censored`` lists the keys whose value is +inf (they fall on a lost
    event); NaN values are ignored; with no values every figure is NaN.
    """
    arr = np.asarray(values, dtype=float)
    arr = np.sort(arr[~np.isnan(arr)])
    out: dict = {}
    for q in qs:
        out[f"p{q:g}"] = _censored_quantile(arr, q) if arr.size else math.nan
    out["max"] = float(arr[-1]) if arr.size else math.nan
    out["censored"] = [k for k, v in out.items() if v == math.inf]
    out["events"] = int(arr.size)
    out["events_lost"] = int(np.isposinf(arr).sum())
    return out


def last_perturbation(tables: Tables, end_t: float | None = None) -> float:
    """``t0``: latest perturbation or event creation at or before ``end_t``."""
    end = infer_end_t(tables) if end_t is None else float(end_t)
    t0 = -math.inf
    p = tables.get("perturbations")
    if p is not None and not p.empty:
        ts = p["t"][p["t"] <= end]
        if len(ts):
            t0 = max(t0, float(ts.max()))
    ev = tables.get("events")
    if ev is not None and not ev.empty:
        ts = ev["created_at"][ev["created_at"] <= end]
        if len(ts):
            t0 = max(t0, float(ts.max()))
    return t0 if t0 > -math.inf else 0.0


def state_convergence(
    tables: Tables,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    *,
    div: pd.DataFrame | None = None,
) -> float:
    """State convergence time in simulated ms (see the module docstring); NaN if never.

    ``div`` may be a precomputed :func:`simfed.metrics.divergence.divergence`
    frame (for the same honest set) to avoid recomputing it.
    """
    from simfed.metrics.divergence import agreement_since, divergence

    hs, end = _resolve(tables, honest, end_t)
    if div is None:
        div = divergence(tables, honest=hs, end_t=end, pairwise=False)
    t_agree = agreement_since(div)
    if math.isnan(t_agree):
        return math.nan
    t0 = last_perturbation(tables, end)
    return max(0.0, t_agree - t0)
