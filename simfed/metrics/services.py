"""Measures of EDUs and federation services (presence, typing, receipts,
profiles, alias directory, identity servers).

Tables (one row per observation, each with ``run_id``; all empty when the
services are off):

``edus``       t, src, dst, edu_type, entries, size_bytes -- one row per EDU
               *received* in a ``/send`` transaction (``entries``: users in
               an m.presence EDU, (room, user) receipts in an m.receipt
               EDU, else 1). EDUs lost with their transaction, replaced in
               the queue or discarded under backoff have no row.
``presence``   t, server, user, state, currently_active, last_active_ago,
               role, n_audience, reason -- ``role = "local"``: an update
               the user's server pushes (``n_audience`` servers it is
               queued for; ``reason`` change / activity / resend /
               subscribe); ``role = "remote"``: the state or
               currently_active another server shows for the user changed
               (``reason`` edu / timeout).
``profiles``   t, server, user, kind, displayname, event_id, latency_ms,
               outcome, errcode -- ``change`` (the member event carrying a
               new display name) and ``query`` (a federation profile query
               by ``server``; outcome ok / stale / error / failed, or
               pending: still unanswered when the run ended).
``directory``  t, server, alias, kind, room_id, n_servers, latency_ms,
               outcome, cached, errcode -- alias ``create`` / ``move`` /
               ``delete`` at the alias's server, ``query`` by ``server``
               (outcome ok / stale / missing / not_found / error /
               failed / pending), ``join`` (a join by alias).
``identity``   t, node, kind, medium, address, mxid, ref, t_bound,
               latency_ms, outcome, errcode -- ``bind`` (accepted at the
               identity server ``node``, ``ref`` = record ID; or failed at
               the homeserver ``node``, ``ref`` = identity server),
               ``applied`` (record ``ref`` stored at identity server
               ``node``), ``lookup`` (by homeserver ``node`` at identity
               server ``ref``), ``server`` (one row per identity server
               at the start: the cluster's members).

Measures (copied into the README): see each function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def percentiles(values: Any) -> dict[str, float]:
    # Imported here: the recorder imports this module's table specs, and
    # convergence imports the recorder.
    from simfed.metrics.convergence import percentiles as p

    return p(values)

__all__ = [
    "SERVICE_TABLE_COLUMNS",
    "SERVICE_KEYS",
    "edu_traffic",
    "presence_amplification",
    "presence_staleness",
    "profile_staleness",
    "directory_lookups",
    "identity_replication",
    "identity_lookups",
    "services_headline",
]

Tables = Mapping[str, pd.DataFrame]

SERVICE_TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "edus": {"run_id": "cat", "t": "f", "src": "cat", "dst": "cat", "edu_type": "cat", "entries": "i",
             "size_bytes": "i"},
    "presence": {"run_id": "cat", "t": "f", "server": "cat", "user": "cat", "state": "cat",
                 "currently_active": "b", "last_active_ago": "i", "role": "cat", "n_audience": "i",
                 "reason": "cat"},
    "profiles": {"run_id": "cat", "t": "f", "server": "cat", "user": "cat", "kind": "cat", "displayname": "cat",
                 "event_id": "cat", "latency_ms": "f", "outcome": "cat", "errcode": "cat"},
    "directory": {"run_id": "cat", "t": "f", "server": "cat", "alias": "cat", "kind": "cat", "room_id": "cat",
                  "n_servers": "i", "latency_ms": "f", "outcome": "cat", "cached": "b", "errcode": "cat"},
    "identity": {"run_id": "cat", "t": "f", "node": "cat", "kind": "cat", "medium": "cat", "address": "cat",
                 "mxid": "cat", "ref": "cat", "t_bound": "f", "latency_ms": "f", "outcome": "cat",
                 "errcode": "cat"},
}

#: Keys :func:`services_headline` adds to ``summary.json``.
SERVICE_KEYS = ("edus", "presence", "profiles", "directory", "identity")


def _table(tables: Tables, name: str) -> pd.DataFrame:
    df = tables.get(name)
    if df is None:
        return pd.DataFrame({c: pd.Series(dtype="float64" if k == "f" else object)
                             for c, k in SERVICE_TABLE_COLUMNS[name].items()})
    return df


def _s(series: pd.Series) -> np.ndarray:
    return series.astype(object).to_numpy()


# -- EDUs ------------------------------------------------------------------------


def edu_traffic(tables: Tables) -> pd.DataFrame:
    """EDUs received by type: ``messages`` (EDUs), ``entries`` and ``bytes``, sorted by type."""
    e = _table(tables, "edus")
    if e.empty:
        return pd.DataFrame({"messages": pd.Series(dtype="int64"), "entries": pd.Series(dtype="int64"),
                             "bytes": pd.Series(dtype="int64")}, index=pd.Index([], name="edu_type"))
    g = pd.DataFrame({"edu_type": _s(e["edu_type"]), "entries": e["entries"], "bytes": e["size_bytes"]})
    out = g.groupby("edu_type").agg(messages=("entries", "size"), entries=("entries", "sum"),
                                    bytes=("bytes", "sum"))
    return out.sort_index().astype("int64")


# -- presence ----------------------------------------------------------------------


def presence_amplification(tables: Tables) -> dict[str, Any]:
    """Cost of presence.

    ``updates``                 local updates pushed (rows ``role = local``)
    ``state_changes``           of which changed the state (reason change)
    ``entries_queued``          (update, destination) entries queued: sum of n_audience
    ``edus_received``           m.presence EDUs received (each up to 50 users)
    ``entries_received``        user entries in them
    ``edus_per_change``         entries_queued / updates: servers each update goes to
    ``edus_received_per_change`` edus_received / updates: EDU messages actually
                                delivered per update (batching makes it < entries)
    ``entries_per_state_change``  entries_queued / state_changes: what each change of
                                a user's state costs, counting the activity and
                                resend updates presence sends besides
    ``edus_received_per_state_change``  edus_received / state_changes
    """
    p = _table(tables, "presence")
    local = p[_s(p["role"]) == "local"] if not p.empty else p
    e = _table(tables, "edus")
    pe = e[_s(e["edu_type"]) == "m.presence"] if not e.empty else e
    updates = int(len(local))
    queued = int(local["n_audience"].sum()) if updates else 0
    received = int(len(pe))
    changes = int((_s(local["reason"]) == "change").sum()) if updates else 0
    return {
        "updates": updates,
        "state_changes": changes,
        "entries_queued": queued,
        "edus_received": received,
        "entries_received": int(pe["entries"].sum()) if received else 0,
        "edus_per_change": queued / updates if updates else None,
        "edus_received_per_change": received / updates if updates else None,
        "entries_per_state_change": queued / changes if changes else None,
        "edus_received_per_state_change": received / changes if changes else None,
    }


def presence_staleness(tables: Tables, end_t: float | None = None) -> pd.DataFrame:
    """Episodes during which a server shows an outdated presence state.

    For every (observer server, user) pair where the observer has shown the
    user's presence at least once (a ``remote`` row), an episode starts when
    the user's true state (its ``local`` rows) changes away from what the
    observer shows, and ends when the observer shows the true state again
    (an update arrives, or the truth changes back). Only ``state`` is
    compared (online / unavailable / offline). Episodes still open at
    ``end_t`` (default: the last row) have ``open = True`` and run to it.

    Columns: server, user, start, end, duration_ms, open.
    """
    p = _table(tables, "presence")
    cols = ["server", "user", "start", "end", "duration_ms", "open"]
    if p.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("start", "end", "duration_ms") else object)
                             for c in cols}).astype({"open": bool})
    end = float(p["t"].max()) if end_t is None else float(end_t)
    df = pd.DataFrame({"t": p["t"].to_numpy(float), "server": _s(p["server"]), "user": _s(p["user"]),
                       "state": _s(p["state"]), "role": _s(p["role"])})
    df = df[df["t"] <= end]
    df["order"] = np.arange(len(df))
    rows: list[tuple] = []
    for user, g in df.sort_values(["t", "order"], kind="stable").groupby("user", sort=True):
        truth: str | None = None
        views: dict[str, str] = {}
        since: dict[str, float] = {}
        last_truth: str | None = None
        for t, server, state, role in zip(g["t"], g["server"], g["state"], g["role"]):
            if role == "local":
                if state == last_truth:
                    continue
                last_truth = truth = state
                for obs, shown in views.items():
                    if shown != truth and obs not in since:
                        since[obs] = t
                    elif shown == truth and obs in since:
                        rows.append((obs, user, since.pop(obs), t, False))
            else:
                views[server] = state
                if truth is None:
                    continue
                if state == truth and server in since:
                    rows.append((server, user, since.pop(server), t, False))
                elif state != truth and server not in since:
                    since[server] = t
        for obs, t0 in since.items():
            rows.append((obs, user, t0, end, True))
    out = pd.DataFrame(rows, columns=["server", "user", "start", "end", "open"])
    out["duration_ms"] = out["end"] - out["start"]
    return out[cols].sort_values(["server", "user", "start"], kind="stable").reset_index(drop=True)


# -- profiles ----------------------------------------------------------------------


def profile_staleness(tables: Tables, end_t: float | None = None) -> pd.DataFrame:
    """Per display name change: how long other servers showed the old name.

    A server shows the new name once it holds the member event that carries
    it; ``stale_ms`` is the event's convergence time (every honest server
    that should hold it does, see :func:`~simfed.metrics.event_convergence`);
    NaN while some server never got it (``lost``).

    Columns: event_id, user, server (the user's), t, stale_ms, lost.
    """
    from simfed.metrics.convergence import event_convergence

    pr = _table(tables, "profiles")
    ch = pr[_s(pr["kind"]) == "change"] if not pr.empty else pr
    cols = ["event_id", "user", "server", "t", "stale_ms", "lost"]
    if ch.empty or "events" not in tables:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("t", "stale_ms") else object) for c in cols})
    conv = event_convergence(tables, end_t=end_t).set_index("event_id")
    ids = _s(ch["event_id"])
    stale = [float(conv["convergence_ms"].get(i, math.nan)) if i in conv.index else math.nan for i in ids]
    lost = [bool(conv["lost"].get(i, False)) if i in conv.index else False for i in ids]
    return pd.DataFrame({"event_id": ids, "user": _s(ch["user"]), "server": _s(ch["server"]),
                         "t": ch["t"].to_numpy(float), "stale_ms": stale, "lost": lost})[cols]


# -- directory ---------------------------------------------------------------------


def directory_lookups(tables: Tables) -> pd.DataFrame:
    """The ``query`` rows of ``directory``: server, alias, t, latency_ms, outcome, cached."""
    d = _table(tables, "directory")
    q = d[_s(d["kind"]) == "query"] if not d.empty else d
    return pd.DataFrame({"server": _s(q["server"]), "alias": _s(q["alias"]), "t": q["t"].to_numpy(float),
                         "latency_ms": q["latency_ms"].to_numpy(float), "outcome": _s(q["outcome"]),
                         "cached": q["cached"].to_numpy(bool)})


# -- identity ---------------------------------------------------------------------


def identity_replication(tables: Tables, n_servers: int | None = None) -> pd.DataFrame:
    """Per accepted bind: when each identity server stored it.

    ``n_applied`` servers stored it, ``max_lag_ms`` is the latest of them
    minus the bind time, ``convergence_ms`` equals it when all
    ``n_servers`` (default: the identity servers of the ``server`` rows) hold the
    record, else NaN (``converged = False``).

    Columns: ref, t_bound, n_applied, max_lag_ms, convergence_ms, converged.
    """
    i = _table(tables, "identity")
    cols = ["ref", "t_bound", "n_applied", "max_lag_ms", "convergence_ms", "converged"]
    ap = i[_s(i["kind"]) == "applied"] if not i.empty else i
    if ap.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    if n_servers is None:
        members = i[_s(i["kind"]) == "server"]
        n = len(set(_s(members["node"]))) if not members.empty else len(set(_s(ap["node"])))
    else:
        n = n_servers
    df = pd.DataFrame({"ref": _s(ap["ref"]), "node": _s(ap["node"]), "t": ap["t"].to_numpy(float),
                       "t_bound": ap["t_bound"].to_numpy(float)})
    g = df.groupby("ref", sort=True).agg(t_bound=("t_bound", "first"), n_applied=("node", "nunique"),
                                         last=("t", "max"))
    g["max_lag_ms"] = g["last"] - g["t_bound"]
    g["converged"] = g["n_applied"] >= n
    g["convergence_ms"] = g["max_lag_ms"].where(g["converged"])
    return g.reset_index()[cols]


def identity_lags(tables: Tables) -> np.ndarray:
    """Replication lag of every (record, other identity server): applied - bound, in ms."""
    i = _table(tables, "identity")
    ap = i[_s(i["kind"]) == "applied"] if not i.empty else i
    if ap.empty:
        return np.array([], dtype=float)
    lag = ap["t"].to_numpy(float) - ap["t_bound"].to_numpy(float)
    return lag[lag > 0]


def identity_lookups(tables: Tables) -> pd.DataFrame:
    """The ``lookup`` rows of ``identity``: node (homeserver), ref (identity server), t, latency_ms, outcome."""
    i = _table(tables, "identity")
    q = i[_s(i["kind"]) == "lookup"] if not i.empty else i
    return pd.DataFrame({"node": _s(q["node"]), "ref": _s(q["ref"]), "t": q["t"].to_numpy(float),
                         "latency_ms": q["latency_ms"].to_numpy(float), "outcome": _s(q["outcome"])})


# -- headline ---------------------------------------------------------------------


def _counts(values: np.ndarray) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def services_headline(tables: Tables, *, end_t: float | None = None) -> dict[str, Any]:
    """The ``summary.json`` keys of the services (:data:`SERVICE_KEYS`); see the README."""
    from simfed.metrics.summary import jsonable

    et = edu_traffic(tables)
    edus = {str(k): {"messages": int(r.messages), "entries": int(r.entries), "bytes": int(r.bytes)}
            for k, r in et.iterrows()}
    amp = presence_amplification(tables)
    st = presence_staleness(tables, end_t)
    closed = st[~st["open"].astype(bool)] if not st.empty else st
    presence = {**amp, "stale_episodes": int(len(st)), "stale_open_at_end": int(st["open"].astype(bool).sum())
                if not st.empty else 0,
                "staleness_ms": percentiles(closed["duration_ms"].to_numpy(float) if not closed.empty else [])}
    ps = profile_staleness(tables, end_t)
    pr = _table(tables, "profiles")
    q = pr[_s(pr["kind"]) == "query"] if not pr.empty else pr
    profiles = {
        "changes": int(len(ps)),
        "staleness_ms": percentiles(ps["stale_ms"].to_numpy(float) if not ps.empty else []),
        "changes_never_seen_everywhere": int(ps["lost"].astype(bool).sum()) if not ps.empty else 0,
        "queries": int(len(q)),
        "query_outcomes": _counts(_s(q["outcome"])) if not q.empty else {},
        "query_latency_ms": percentiles(q["latency_ms"].to_numpy(float)[~np.isin(_s(q["outcome"]), ["failed", "pending"])]
                                        if not q.empty else []),
    }
    dl = directory_lookups(tables)
    remote = dl[~dl["cached"] & ~dl["outcome"].isin(["failed", "pending"])]
    d = _table(tables, "directory")
    kinds = _s(d["kind"]) if not d.empty else np.array([])
    directory = {
        "queries": int(len(dl)),
        "cache_hits": int(dl["cached"].sum()),
        "outcomes": _counts(dl["outcome"].to_numpy()),
        "stale_fraction": float((dl["outcome"] == "stale").mean()) if len(dl) else None,
        "latency_ms": percentiles(remote["latency_ms"].to_numpy(float)),
        "creates": int((kinds == "create").sum()), "moves": int((kinds == "move").sum()),
        "deletes": int((kinds == "delete").sum()), "joins_by_alias": int((kinds == "join").sum()),
    }
    rep = identity_replication(tables)
    il = identity_lookups(tables)
    i = _table(tables, "identity")
    ik = _s(i["kind"]) if not i.empty else np.array([])
    io = _s(i["outcome"]) if not i.empty else np.array([])
    answered = il[~il["outcome"].isin(["failed", "pending"])]
    identity = {
        "binds": int(((ik == "bind") & (io == "ok")).sum()),
        "binds_failed": int(((ik == "bind") & (io != "ok")).sum()),
        "replication_lag_ms": percentiles(identity_lags(tables)),
        "convergence_ms": percentiles(rep["convergence_ms"].to_numpy(float) if not rep.empty else []),
        "unconverged_records": int((~rep["converged"].astype(bool)).sum()) if not rep.empty else 0,
        "lookups": int(len(il)),
        "lookup_outcomes": _counts(il["outcome"].to_numpy()),
        "lookup_latency_ms": percentiles(answered["latency_ms"].to_numpy(float)),
    }
    return jsonable({"edus": edus, "presence": presence, "profiles": profiles, "directory": directory,
                     "identity": identity})
