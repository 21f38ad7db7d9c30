"""What a fan-out strategy costs and how the room fares around topology changes.

Definitions (copied into the README)
------------------------------------
From the ``pushes`` table (one row per copy of an event a server queued for
another server, by its creator (``origin``) or passed on (``forward``)):

``push_messages_per_event``  copies pushed per created event (retries of a
                             transaction are not extra copies)
``push_bytes_per_event``     bytes of those copies per created event
``origin_copies_per_event``  copies queued by the event's creator
``forward_copies_per_event`` copies queued by other servers (hubs, gossip
                             peers, tree nodes)
``repair_requests_per_event`` fetching and anti-entropy requests sent (the
                             ``traffic`` kinds in :data:`REPAIR_KINDS`, retries
                             included) per created event: what the strategy
                             and the homeserver spend filling what pushes missed
``redundancy_factor``        copies pushed / receivers, where the receivers of
                             an event are the honest servers that should hold
                             it, less its creator: 1.0 is one copy per
                             receiver (a full mesh); gossip is above 1, and a
                             strategy that reaches servers only by fetching is
                             below 1

From the ``deliveries`` table (the first time each honest server stored each
event, as an outlier or in its room DAG, the creator excluded):

``arrivals``       {via: share of (event, server) arrivals by that path}
``fetched_share``  share that arrived by fetching (get_missing_events, state
                   fetch, backfill, /event, anti-entropy) rather than by push
                   or with the state of a join (``send_join``)

Per change (the ``perturbations`` table: topology changes, partitions,
crashes), over the window from the change to the next one (or ``end_t``):

``state_convergence_ms``  time from the change until every room's up honest
                          members agree on one state and keep agreeing to the
                          end of the window; null if they disagree at its end
``max_distinct_states``   most distinct states among up honest members of a
                          room during the window
``max_state_diff``        largest pairwise state difference in the window (in
                          (type, state_key) entries; null if unknown)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from simfed.metrics.agreement import fault_agreement
from simfed.metrics.convergence import _resolve, event_convergence, held_at
from simfed.metrics.recorder import STAGES

__all__ = ["FETCH_VIAS", "REPAIR_KINDS", "arrival_shares", "change_convergence", "push_stats", "topology_summary"]

Tables = Mapping[str, pd.DataFrame]

#: Request kinds that repair what pushes missed (fetching, anti-entropy).
REPAIR_KINDS = ("get_missing_events", "state_ids", "state", "event", "event_auth", "backfill", "extremities")
#: Arrival paths that are fetching rather than push.
FETCH_VIAS = ("get_missing_events", "state_fetch", "backfill", "event", "anti_entropy")


def push_stats(tables: Tables, honest: Iterable[str] | None = None, end_t: float | None = None,
               *, conv: pd.DataFrame | None = None) -> dict[str, float]:
    """Copies and bytes pushed per created event, and the redundancy factor."""
    hs, end = _resolve(tables, honest, end_t)
    pushes = tables.get("pushes")
    n_events = len(tables["events"])
    if pushes is None or n_events == 0:
        return {k: math.nan for k in ("push_messages_per_event", "push_bytes_per_event", "origin_copies_per_event",
                                      "forward_copies_per_event", "repair_requests_per_event", "redundancy_factor")}
    pushes = pushes[pushes["t"] <= end]
    roles = pushes["role"].astype(object)
    if conv is None:
        conv = event_convergence(tables, hs, end)
    receivers = int((conv["n_expected"] - 1).clip(lower=0).sum())
    tr = tables.get("traffic")
    repairs = 0
    if tr is not None and not tr.empty:
        repairs = int((tr["kind"].astype(object).isin(REPAIR_KINDS) & (tr["t_sent"] <= end)).sum())
    return {
        "push_messages_per_event": len(pushes) / n_events,
        "push_bytes_per_event": float(pushes["size_bytes"].sum()) / n_events,
        "origin_copies_per_event": int((roles == "origin").sum()) / n_events,
        "forward_copies_per_event": int((roles == "forward").sum()) / n_events,
        "repair_requests_per_event": repairs / n_events,
        "redundancy_factor": len(pushes) / receivers if receivers else math.nan,
    }


def arrival_shares(tables: Tables, honest: Iterable[str] | None = None, end_t: float | None = None) -> dict[str, Any]:
    """How events reached honest servers: share by path, and the fetched share."""
    hs, end = _resolve(tables, honest, end_t)
    held = held_at(tables, end, stages=STAGES)
    held = held[held["server"].isin(list(hs)) & (held["via"].astype(object) != "created")]
    if held.empty:
        return {"arrivals": {}, "fetched_share": math.nan}
    counts = held["via"].astype(object).value_counts()
    total = int(counts.sum())
    shares = {str(k): int(v) / total for k, v in counts.sort_index().items()}
    fetched = sum(int(counts.get(v, 0)) for v in FETCH_VIAS)
    return {"arrivals": shares, "fetched_share": fetched / total}


def change_convergence(tables: Tables, honest: Iterable[str] | None = None, end_t: float | None = None,
                       *, div: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per perturbation: t, kind, detail, state_convergence_ms,
    max_distinct_states, max_state_diff (see the module docstring and
    :func:`simfed.metrics.agreement.fault_agreement`, which computes them)."""
    rows = fault_agreement(tables, honest, end_t, div=div)
    rows = rows.rename(columns={"agreement_ms": "state_convergence_ms"})
    return rows[["t", "kind", "detail", "state_convergence_ms", "max_distinct_states", "max_state_diff"]]


def topology_summary(tables: Tables, honest: Iterable[str] | None = None, end_t: float | None = None,
                     *, conv: pd.DataFrame | None = None, div: pd.DataFrame | None = None) -> dict[str, Any]:
    """The ``topology`` block of summary.json: push cost, arrival paths, changes."""
    hs, end = _resolve(tables, honest, end_t)
    out: dict[str, Any] = dict(push_stats(tables, hs, end, conv=conv))
    out.update(arrival_shares(tables, hs, end))
    changes = change_convergence(tables, hs, end, div=div)
    out["changes"] = changes.to_dict(orient="records")
    return out
