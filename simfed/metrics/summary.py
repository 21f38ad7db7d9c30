"""Headline figures of one run, JSON-serialisable (for ``summary.json``).

Definitions (copied into the README)
------------------------------------
``events_created``        rows of ``events`` created at or before ``end_t``
``events_lost``           events created by honest servers that some honest
                          server that should hold them does not hold at
                          ``end_t`` (see :mod:`simfed.metrics.convergence`)
``converged``             every event that entered an honest server's DAG
                          (accepted or soft-failed by at least one honest
                          server; this includes every honest-created event)
                          is held by every honest server that should hold it,
                          *and* the state has converged (every room's up
                          honest members agree on ``state_hash`` at the end:
                          ``state_convergence_ms`` is not null)
``event_convergence_ms``  {p50, p95, p99, max} of the event convergence time
                          of honest-created events that converged (lost ones
                          excluded; they are ``events_lost``)
``state_convergence_ms``  state convergence time; null if never
``max_divergence``        {"distinct_states": max over time and rooms of the
                          number of distinct states among up honest servers,
                          "state_entries": max over time and rooms of the
                          largest pairwise state difference in (type,
                          state_key) entries; null if the contents of some
                          diverged states were not recorded}
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

from simfed.metrics.convergence import (
    _resolve,
    event_convergence,
    percentiles,
    state_convergence,
)
from simfed.metrics.divergence import divergence
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

    # Events that entered some honest server's DAG.
    d = tables["deliveries"]
    entered = set(
        d["event_id"][
            d["outcome"].isin(["accepted", "soft_failed"])
            & d["server"].isin(list(hs))
            & (d["t"] <= end)
        ].astype(object)
    )
    entered |= set(honest_ev["event_id"])
    events_ok = not conv[conv["event_id"].isin(entered)]["lost"].any()
    converged = bool(events_ok and not math.isnan(state_ms))

    tk = traffic_by_kind(tables)
    at_honest = d[d["server"].isin(list(hs)) & (d["t"] <= end)]
    rej = at_honest[at_honest["outcome"] == "rejected"]
    rejected = (
        rej["reason"].astype(object).fillna("unknown").value_counts().sort_index()
    )
    soft = int((at_honest["outcome"] == "soft_failed").sum())

    if div.empty:
        max_div = {"distinct_states": 0, "state_entries": None}
    else:
        # A maximum over partly unknown differences would only be a lower
        # bound: report null if any diverged row lacks the states' contents.
        unknown = div["max_state_diff"].isna().any()
        max_div = {
            "distinct_states": int(div["n_distinct_states"].max()),
            "state_entries": None if unknown else div["max_state_diff"].max(),
        }
    out = {
        "events_created": int(len(conv)),
        "events_lost": lost,
        "converged": converged,
        "event_convergence_ms": percentiles(
            honest_ev["convergence_ms"].to_numpy(dtype=float)
        ),
        "state_convergence_ms": state_ms,
        "max_divergence": max_div,
        "messages": {str(k): int(v) for k, v in tk["messages"].items()},
        "bytes": {str(k): int(v) for k, v in tk["bytes"].items()},
        "rejected": {str(k): int(v) for k, v in rejected.items()},
        "soft_failed": soft,
        "topology": topology_summary(tables, hs, end, conv=conv, div=div),
    }
    return jsonable(out)

