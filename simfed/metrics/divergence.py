"""How far apart the honest servers' views of each room are, over time.

Definitions (copied into the README)
------------------------------------
The ``state`` table holds samples; a server's sample for a room holds until
its next sample for that room (samples may be periodic or on change). The
``membership`` table says when a server is in a room (a server with no
membership records for a room counts as in it whenever it has a sample).

At every time ``t`` at which some honest server's sample or membership for
room R changes, one row is produced for R, computed after applying every
change at ``t``, over the honest servers that are in R, have sampled R and
whose latest sample says ``up``:

``n_servers``          honest servers in R with a sample (up or down)
``n_up``               of those, up
``n_distinct_states``  distinct ``state_hash`` values among the up servers
``max_state_diff``     largest pairwise difference between their states, in
                       (type, state_key) entries: the size of the symmetric
                       difference of the keyed maps -- a key counts when the
                       two states map it to different event IDs, including
                       absent on one side. 0 with one distinct state; NaN when
                       the states' contents were not recorded.
``mean_extremities``   mean / max forward extremities over the up servers
``max_extremities``
``backlog``            total missing-event backlog over the up servers

Down servers are excluded (their state is frozen and will be caught up on
restart); dishonest servers are always excluded.

:func:`agreement_since` gives the earliest time from which every room has at
most one distinct state among its up honest servers, through the last row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from simfed.metrics.convergence import honest_servers, infer_end_t
from simfed.metrics.recorder import states_from_tables

__all__ = [
    "DIVERGENCE_COLUMNS",
    "state_difference",
    "divergence",
    "divergence_across_rooms",
    "agreement_since",
]

DIVERGENCE_COLUMNS = [
    "t",
    "room_id",
    "n_servers",
    "n_up",
    "n_distinct_states",
    "max_state_diff",
    "mean_extremities",
    "max_extremities",
    "backlog",
]

StateMap = Mapping[tuple[str, str], str]


def state_difference(a: StateMap, b: StateMap) -> int:
    """Number of (type, state_key) keys on which ``a`` and ``b`` differ (absent counts)."""
    n = sum(1 for k, v in a.items() if b.get(k) != v)
    n += sum(1 for k in b if k not in a)
    return n


def divergence(
    tables: Mapping[str, pd.DataFrame],
    recorder_states: Mapping[str, StateMap] | None = None,
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    pairwise: bool = True,
) -> pd.DataFrame:
    """Divergence rows per (change time, room); see the module docstring.

    ``recorder_states`` is ``Recorder.states`` (``{state_hash: {(type,
    state_key): event_id}}``); by default it is rebuilt from the
    ``state_entries`` table. ``pairwise=False`` skips ``max_state_diff``
    (NaN), which is all :func:`agreement_since` needs.
    """
    hs = honest_servers(tables) if honest is None else {str(s) for s in honest}
    end = infer_end_t(tables) if end_t is None else float(end_t)
    if pairwise and recorder_states is None:
        recorder_states = states_from_tables(tables)
    states = recorder_states or {}

    st = tables["state"]
    st = st[(st["t"] <= end) & st["server"].isin(list(hs))]
    mem = tables.get("membership")
    if mem is not None and not mem.empty:
        mem = mem[(mem["t"] <= end) & mem["server"].isin(list(hs))]
    else:
        mem = None

    # A merged change stream: (t, order, kind, payload).  Stable sort on t
    # keeps the recording order for equal times (the last report wins).
    items: list[tuple] = []
    for t, s, r, up, ext, h, size, bl in zip(
        st["t"].to_numpy(dtype=float),
        st["server"].astype(object),
        st["room_id"].astype(object),
        st["up"].to_numpy(dtype=bool),
        st["extremities"].to_numpy(),
        st["state_hash"].astype(object),
        st["state_size"].to_numpy(),
        st["backlog"].to_numpy(),
    ):
        items.append((t, 0, s, r, (bool(up), int(ext), h, int(size), int(bl))))
    has_records: set[tuple[str, str]] = set()
    if mem is not None:
        for t, s, r, j in zip(
            mem["t"].to_numpy(dtype=float),
            mem["server"].astype(object),
            mem["room_id"].astype(object),
            mem["joined"].to_numpy(dtype=bool),
        ):
            items.append((t, 1, s, r, bool(j)))
            has_records.add((s, r))
    items.sort(key=lambda it: it[0])

    cur: dict[str, dict[str, tuple]] = {}      # room -> server -> sample
    member: dict[str, dict[str, bool]] = {}    # room -> server -> in room
    diff_memo: dict[tuple[str, str], float] = {}

    def pair_diff(h1: str, h2: str) -> float:
        key = (h1, h2) if h1 < h2 else (h2, h1)
        v = diff_memo.get(key)
        if v is None:
            a, b = states.get(h1), states.get(h2)
            v = math.nan if a is None or b is None else float(state_difference(a, b))
            diff_memo[key] = v
        return v

    rows: list[tuple] = []

    def emit(t: float, room: str) -> None:
        samples = cur.get(room, {})
        mem_r = member.get(room, {})
        inroom = [
            smp for s, smp in samples.items()
            if ((s, room) not in has_records) or mem_r.get(s, False)
        ]
        ups = [smp for smp in inroom if smp[0]]
        hashes = sorted({smp[2] for smp in ups})
        if len(hashes) <= 1:
            mdiff = 0.0
        elif not pairwise:
            mdiff = math.nan
        else:
            ds = [pair_diff(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
            ds = [d for d in ds if not math.isnan(d)]
            mdiff = max(ds) if ds else math.nan
        exts = [smp[1] for smp in ups]
        rows.append((
            t, room, len(inroom), len(ups), len(hashes), mdiff,
            float(np.mean(exts)) if exts else math.nan,
            float(max(exts)) if exts else math.nan,
            int(sum(smp[4] for smp in ups)),
        ))

    i, n = 0, len(items)
    while i < n:
        t = items[i][0]
        touched: dict[str, None] = {}
        while i < n and items[i][0] == t:
            _, kind, s, r, payload = items[i]
            if kind == 0:
                cur.setdefault(r, {})[s] = payload
            else:
                member.setdefault(r, {})[s] = payload
            touched[r] = None
            i += 1
        for r in touched:
            emit(t, r)

    df = pd.DataFrame(rows, columns=DIVERGENCE_COLUMNS)
    return df.astype({
        "t": "float64", "room_id": object, "n_servers": "int64", "n_up": "int64",
        "n_distinct_states": "int64", "max_state_diff": "float64",
        "mean_extremities": "float64", "max_extremities": "float64",
        "backlog": "int64",
    })


def divergence_across_rooms(div: pd.DataFrame) -> pd.DataFrame:
    """One row per change time over all rooms (each room's last row carried forward).

    Columns: t, n_distinct_states (max over rooms), max_state_diff (max),
    mean_extremities (mean of the rooms' means), max_extremities (max),
    backlog (sum), rooms_diverged (rooms with more than one state).
    """
    cols = ["t", "n_distinct_states", "max_state_diff", "mean_extremities",
            "max_extremities", "backlog", "rooms_diverged"]
    if div.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    d = div.drop_duplicates(["t", "room_id"], keep="last")
    wide = {
        c: d.pivot(index="t", columns="room_id", values=c).sort_index().ffill()
        for c in ("n_distinct_states", "max_state_diff", "mean_extremities",
                  "max_extremities", "backlog")
    }
    nd = wide["n_distinct_states"]
    out = pd.DataFrame({
        "t": nd.index.to_numpy(dtype=float),
        "n_distinct_states": nd.max(axis=1).to_numpy(),
        "max_state_diff": wide["max_state_diff"].max(axis=1).to_numpy(),
        "mean_extremities": wide["mean_extremities"].mean(axis=1).to_numpy(),
        "max_extremities": wide["max_extremities"].max(axis=1).to_numpy(),
        "backlog": wide["backlog"].sum(axis=1).to_numpy(),
        "rooms_diverged": (nd > 1).sum(axis=1).to_numpy(),
    })
    return out


def agreement_since(div: pd.DataFrame) -> float:
    """Earliest time from which every room has <= 1 distinct state through the end.

    NaN if some room disagrees at its last row (or there are no rows). A room
    that never disagrees contributes its first row's time.
    """
    if div.empty:
        return math.nan
    t_all = -math.inf
    # Rows are emitted in time order, so each group is in time order.
    for _, g in div.groupby("room_id", sort=False):
        ts = g["t"].to_numpy(dtype=float)
        bad = g["n_distinct_states"].to_numpy() > 1
        if bad[-1]:
            return math.nan
        if bad.any():
            last_bad = int(np.flatnonzero(bad)[-1])
            t_room = ts[last_bad + 1]
        else:
            t_room = ts[0]
        t_all = max(t_all, float(t_room))
    return t_all
