"""Headline figures of one run, JSON-serialisable (for ``summary.json``).

Definitions (copied into the README)
------------------------------------
``events_created``        rows of ``events`` created at or before ``end_t``
``events_lost``           events created by honest servers that some honest
                          server that should hold them does not hold in its
                          room DAG at ``end_t`` (an outlier copy does not
                          count; see :mod:`simfed.metrics.convergence`)
``events_lost_in_gaps``   of those, the events that every server lacking
                          them in its DAG holds as an outlier: it fetched
                          them as state while bridging a timeline gap that
                          Synapse leaves until a reader paginates back
                          (``workload.readers`` models such clients;
                          ``homeserver.history_backfill`` a server-side
                          deviation)
``converged``             true when all of: every event that entered an
                          honest server's DAG (accepted or soft-failed there
                          by at least one honest server; this includes every
                          honest-created event) is held in the DAG of every
                          honest server that should hold it; the states
                          agree at the end (``state_converged``); and the
                          honest servers agree on every event's auth decision
                          (``auth_disagreements == 0``)
``event_convergence_ms``  censored percentiles of the event convergence time
                          over every honest-created event some honest server
                          should hold, lost ones counting as +inf:
                          {p50, p95, p99, max, censored, events,
                          events_lost}. A figure that falls on a lost event
                          is ``null`` and named in ``censored`` (it is +inf:
                          that share of events had not converged when the
                          run ended); ``null`` not named there means no
                          events. ``events_lost`` is the same count as above
``state_converged``       every room's up honest members agree on
                          ``state_hash`` at the end of the run
``state_agreed_since_ms`` the time from which they agree without a break to
                          the end (null when ``state_converged`` is false)
``state_convergence_after_last_fault_ms``  time from the last fault (row of
                          ``perturbations``) until the states agree and stay
                          agreed to the end; null when there were no faults
                          (``last_fault`` null) or when the states never
                          agree again before the end (``state_converged``
                          false). 0 means they agreed at the fault and never
                          diverged after it
``last_fault``            {t, kind, detail} of that fault, or null
``faults``                one entry per fault, in time order: {t, kind,
                          detail, agreement_ms, agreed, window_end, until,
                          distinct_states_at_end, max_distinct_states,
                          max_state_diff} -- the time until all honest
                          servers agree again, within the window up to the
                          next fault (see :mod:`simfed.metrics.agreement`)
``state_convergence_ms``  legacy: time from the last input (fault *or* event
                          creation) until the states agree for good, 0 when
                          they already agreed then; null if never. It is 0
                          on most runs whose last input is a message, which
                          is why the headline prints the two keys above
``auth_disagreements``    events whose auth decision (rejected vs passed)
                          differs between honest servers that hold them in
                          their DAG; must be 0 for ``converged``
``soft_fail_disagreements``  events that some honest servers soft-failed and
                          others accepted (arrival order decides, as in
                          Synapse; reported, not required to be 0; see
                          :mod:`simfed.metrics.outcomes`)
``max_divergence``        {"distinct_states": max over time and rooms of the
                          number of distinct states among up honest servers,
                          "state_entries": max over time and rooms of the
                          largest pairwise state difference in (type,
                          state_key) entries; null if the contents of some
                          diverged states were not recorded,
                          "distinct_states_at_end": the same count at the
                          end of the run}
``messages``              {kind: messages sent (delivered or dropped)}
``bytes``                 {kind: bytes sent (delivered or dropped)}
``rejected``              {reason: (event, honest server) rejections}
``soft_failed``           number of (event, honest server) soft-failures
``topology``              push cost per event, redundancy factor, arrival
                          paths and convergence after each change (see
                          :mod:`simfed.metrics.topology`; ``strategy`` is
                          added by the runner)

The runner adds the EDU and service keys ``edus``, ``presence``,
``profiles``, ``directory`` and ``identity`` from
:func:`simfed.metrics.services.services_headline` (always present; zeros and
nulls when ``[services]`` is off).

Numbers are plain ``int``/``float``; NaN and infinities become ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from simfed.metrics.agreement import after_last_fault, fault_agreement
from simfed.metrics.convergence import (
    _resolve,
    censored_percentiles,
    deliveries,
    event_convergence,
    lost_in_gaps,
    state_convergence,
)
from simfed.metrics.divergence import agreement_since, divergence
from simfed.metrics.outcomes import disagreement_counts, outcome_agreement
from simfed.metrics.topology import topology_summary
from simfed.metrics.traffic import traffic_by_kind

__all__ = ["headline", "jsonable"]


def jsonable(x: Any) -> Any:
    """Recursively turn numpy/pandas scalars into Python ones; NaN/inf -> None."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    return x


def headline(
    tables: Mapping[str, pd.DataFrame],
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    states: Mapping[str, Mapping[tuple[str, str], str]] | None = None,
) -> dict[str, Any]:
    """The headline figures (see the module docstring)."""
    hs, end = _resolve(tables, honest, end_t)
    conv = event_convergence(tables, hs, end)
    honest_ev = conv[conv["honest_creator"]]
    lost = int(honest_ev["lost"].sum())

    div = divergence(tables, states, honest=hs, end_t=end)
    state_ms = state_convergence(tables, hs, end, div=div)
    agreed_since = agreement_since(div)
    faults = fault_agreement(tables, hs, end, div=div)
    last = after_last_fault(faults)
    agreement = disagreement_counts(outcome_agreement(tables, hs, end))

    # Events that entered some honest server's DAG.
    d = deliveries(tables)
    entered = set(
        d["event_id"][
            d["outcome"].isin(["accepted", "soft_failed"])
            & (d["stage"] == "timeline")
            & d["server"].isin(list(hs))
            & (d["t"] <= end)
        ].astype(object)
    )
    entered |= set(honest_ev["event_id"])
    events_ok = not conv[conv["event_id"].isin(entered)]["lost"].any()
    state_ok = not math.isnan(agreed_since)
    converged = bool(events_ok and state_ok and agreement["auth_disagreements"] == 0)

    tk = traffic_by_kind(tables)
    # One row per (event, server, outcome): an outlier later stored in the
    # DAG with the same outcome is not counted twice.
    at_honest = d[d["server"].isin(list(hs)) & (d["t"] <= end)].drop_duplicates(
        ["event_id", "server", "outcome"])
    rej = at_honest[at_honest["outcome"] == "rejected"]
    rejected = (
        rej["reason"].astype(object).fillna("unknown").value_counts().sort_index()
    )
    soft = int((at_honest["outcome"] == "soft_failed").sum())

    if div.empty:
        max_div = {"distinct_states": 0, "state_entries": None, "distinct_states_at_end": 0}
    else:
        # A maximum over partly unknown differences would only be a lower
        # bound: report null if any diverged row lacks the states' contents.
        unknown = div["max_state_diff"].isna().any()
        max_div = {
            "distinct_states": int(div["n_distinct_states"].max()),
            "state_entries": None if unknown else div["max_state_diff"].max(),
            "distinct_states_at_end": int(div.groupby("room_id", sort=False)["n_distinct_states"].last().max()),
        }
    valid = honest_ev[honest_ev["n_expected"] > 0]
    conv_ms = valid["convergence_ms"].to_numpy(dtype=float).copy()
    conv_ms[valid["lost"].to_numpy(dtype=bool)] = math.inf
    out = {
        "events_created": int(len(conv)),
        "events_lost": lost,
        "events_lost_in_gaps": len(lost_in_gaps(tables, hs, end) & set(honest_ev["event_id"])) if lost else 0,
        "converged": converged,
        "event_convergence_ms": censored_percentiles(conv_ms),
        "state_converged": state_ok,
        "state_agreed_since_ms": agreed_since,
        "state_convergence_after_last_fault_ms": last["agreement_ms"] if last else None,
        "last_fault": {k: last[k] for k in ("t", "kind", "detail")} if last else None,
        "faults": faults.to_dict(orient="records"),
        "state_convergence_ms": state_ms,
        **agreement,
        "max_divergence": max_div,
        "messages": {str(k): int(v) for k, v in tk["messages"].items()},
        "bytes": {str(k): int(v) for k, v in tk["bytes"].items()},
        "rejected": {str(k): int(v) for k, v in rejected.items()},
        "soft_failed": soft,
        "topology": topology_summary(tables, hs, end, conv=conv, div=div),
    }
    return jsonable(out)

