"""The room DAG as each server holds it: saved with a run, drawn, exported.

What a run saves (two tables beside the recorder's, built once at the end
of the run from the servers' storage, so they cost nothing while it runs)
----------------------------------------------------------------------------
``pdus``  run_id, event_id, room_id, pdu -- every distinct event any server
          holds (DAG member or outlier), once, as the canonical JSON of its
          federation-format PDU (no ``event_id``: room versions 3+ derive it
          from the content, so the stored bytes reproduce it).
``dag``   run_id, server, room_id, event_id, status, outlier, extremity --
          one row per (server, event it stores): ``status`` is the server's
          decision (``accepted``, ``soft_failed``, ``rejected``; an outlier
          -- known only as an auth or state event -- is ``accepted`` or
          ``rejected`` by its auth events), ``extremity`` marks the
          server's forward extremities at the end.

A crashed server keeps its storage, so its rows are what it held when the
run ended. The rows come from the storage itself, not from ``deliveries``
(which records outcomes as they happen and can hold two per event).

Drawing (:func:`plot_dag`, ``simfed dag``, ``RunResult.plot_dag``)
------------------------------------------------------------------
One server's DAG at a time, as TARDIS draws a room: one row per ``depth``
(time runs down), the events of a depth spread side by side (so forks sit
next to each other), ordered by the mean position of their parents to keep
edges short; an edge from each event to its prev_events. Colour: the origin
server (the sender's server). Shape: square for state events, circle for
the rest. Outline: red cross for rejected, orange dashes for soft-failed,
a thick black ring for the server's forward extremities; outliers are drawn
hollow. Large DAGs: only the ``last`` events (by depth) are drawn.

Exporting (:func:`export_dag`, ``simfed dag --export``)
-------------------------------------------------------
A JSON array of one server's PDUs (DAG members and outliers, causal order),
the input ``simfed resolve`` reads: resolving it at that server's forward
extremities gives that server's state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DAG_TABLES", "dag_tables", "server_dag", "dag_layout", "plot_dag", "export_dag", "DagError"]

#: The tables a run saves for the DAG view, and their columns.
DAG_TABLES: dict[str, tuple[str, ...]] = {
    "pdus": ("run_id", "event_id", "room_id", "pdu"),
    "dag": ("run_id", "server", "room_id", "event_id", "status", "outlier", "extremity"),
}
_DTYPES = {"outlier": "bool", "extremity": "bool"}

#: Events drawn by default: enough to see the forks of a run's last minutes.
DEFAULT_LAST = 300


class DagError(ValueError):
    """A request the saved DAG cannot answer (no such server, no PDUs saved)."""


def _frame(name: str, cols: Mapping[str, list]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(cols[c], dtype=_DTYPES.get(c, "str")) for c in DAG_TABLES[name]})


def dag_tables(sim: Any, run_id: str) -> dict[str, pd.DataFrame]:
    """The ``pdus`` and ``dag`` tables of a finished simulation (empty without servers)."""
    pdus: dict[str, list] = {c: [] for c in DAG_TABLES["pdus"]}
    dag: dict[str, list] = {c: [] for c in DAG_TABLES["dag"]}
    seen: set[str] = set()
    for server, hs in (getattr(sim, "servers", None) or {}).items():
        for room_id in sorted(getattr(hs, "rooms", {})):
            room = hs.rooms[room_id]
            members = room.graph.events
            outliers = room.graph.outliers
            extremities = set(room.forward_extremities)
            for eid in sorted(members.keys() | outliers.keys(), key=lambda e: ((members.get(e) or outliers[e]).depth, e)):
                ev = members.get(eid) or outliers[eid]
                outlier = eid not in members
                if outlier:
                    status = "rejected" if eid in room.rejected else "accepted"
                else:
                    decision = room.status.get(eid)
                    status = decision.outcome if decision is not None else "accepted"
                for c, v in zip(DAG_TABLES["dag"], (run_id, server, room_id, eid, status, outlier, eid in extremities)):
                    dag[c].append(v)
                if eid not in seen:
                    seen.add(eid)
                    for c, v in zip(DAG_TABLES["pdus"], (run_id, eid, room_id, ev.canonical_bytes.decode("utf-8"))):
                        pdus[c].append(v)
    return {"pdus": _frame("pdus", pdus), "dag": _frame("dag", dag)}


def _servers(dag: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(dag["server"].astype(str)))


def server_dag(tables: Mapping[str, pd.DataFrame], server: str | None = None,
               room_id: str | None = None) -> pd.DataFrame:
    """One server's stored events with their PDUs parsed.

    Columns: event_id, status, outlier, extremity, pdu (dict), depth,
    type, state_key, sender, origin (the sender's server), prev_events.
    ``server`` defaults to the first server, ``room_id`` to its first room.
    """
    dag, pdus = tables.get("dag"), tables.get("pdus")
    if dag is None or pdus is None or dag.empty:
        raise DagError("no DAG saved with this run (pdus.parquet and dag.parquet are written by simfed "
                       "runs since the DAG view; run the scenario again)")
    servers = _servers(dag)
    server = servers[0] if server is None else server
    if server not in servers:
        raise DagError(f"--server {server}: not a server of this run (servers: {', '.join(servers)})")
    rows = dag[dag["server"].astype(str) == server]
    rooms = list(dict.fromkeys(rows["room_id"].astype(str)))
    if not rooms:
        raise DagError(f"--server {server}: holds no room")
    room_id = rooms[0] if room_id is None else room_id
    if room_id not in rooms:
        raise DagError(f"--room {room_id}: {server} holds no such room (rooms: {', '.join(rooms)})")
    rows = rows[rows["room_id"].astype(str) == room_id]
    text = dict(zip(pdus["event_id"].astype(str), pdus["pdu"].astype(str)))
    out = pd.DataFrame({
        "event_id": rows["event_id"].astype(str).tolist(),
        "status": rows["status"].astype(str).tolist(),
        "outlier": rows["outlier"].astype(bool).tolist(),
        "extremity": rows["extremity"].astype(bool).tolist(),
    })
    missing = [e for e in out["event_id"] if e not in text]
    if missing:
        raise DagError(f"pdus.parquet lacks {len(missing)} events of {server} (e.g. {missing[0]})")
    parsed = [json.loads(text[e]) for e in out["event_id"]]
    out["pdu"] = parsed
    out["depth"] = [int(p.get("depth", 0)) for p in parsed]
    out["type"] = [str(p.get("type", "")) for p in parsed]
    out["state_key"] = [p.get("state_key") for p in parsed]
    out["sender"] = [str(p.get("sender", "")) for p in parsed]
    out["origin"] = [s.split(":", 1)[1] if ":" in s else s for s in out["sender"]]
    out["prev_events"] = [list(p.get("prev_events") or []) for p in parsed]
    return out.sort_values(["depth", "event_id"], kind="stable").reset_index(drop=True)


def dag_layout(events: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """``event_id -> (x, y)``: y is the depth, events of one depth spread on x.

    Within a depth, events are ordered by the mean x of their drawn parents
    (then by ID) and centred on 0, so a fork shows as events side by side
    and a linear stretch as a straight column.
    """
    pos: dict[str, tuple[float, float]] = {}
    for depth, g in events.groupby("depth", sort=True):
        keyed = []
        for eid, prevs in zip(g["event_id"], g["prev_events"]):
            xs = [pos[p][0] for p in prevs if p in pos]
            keyed.append((sum(xs) / len(xs) if xs else 0.0, eid))
        keyed.sort()
        k = len(keyed)
        for i, (_, eid) in enumerate(keyed):
            pos[eid] = (i - (k - 1) / 2.0, float(depth))
    return pos


def plot_dag(tables: Mapping[str, pd.DataFrame], server: str | None = None, *, room_id: str | None = None,
             last: int | None = DEFAULT_LAST, path: str | os.PathLike[str] | None = None):
    """Draw one server's DAG (see the module docstring); ``last=None`` or 0 draws every event."""
    from matplotlib.lines import Line2D

    from simfed.plots import _figure, _finish

    events = server_dag(tables, server, room_id)
    server = server or _servers(tables["dag"])[0]
    total = len(events)
    if last and total > last:
        events = events.iloc[total - last:].reset_index(drop=True)
    pos = dag_layout(events)
    depths = events["depth"]
    width = max((events.groupby("depth").size().max() if total else 1), 1)
    height = min(max(3.0, 0.16 * (depths.max() - depths.min() + 1) if total else 3.0), 60.0)
    fig = _figure((min(max(6.0, 2.5 + 0.7 * width), 20.0), height + 1.5))
    ax = fig.subplots()
    shown = f"last {len(events)} of {total} events" if len(events) < total else f"{total} events"
    ax.set_title(f"room DAG as {server} holds it ({shown})")

    segments = [(pos[e], pos[p]) for e, prevs in zip(events["event_id"], events["prev_events"])
                for p in prevs if p in pos]
    if segments:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.7, zorder=1))
    origins = sorted(set(events["origin"]), key=_natural)
    cmap = _colours(len(origins))
    colour = {o: cmap[i] for i, o in enumerate(origins)}
    for is_state, marker in ((False, "o"), (True, "s")):
        sel = events[events["state_key"].notna() == is_state]
        if sel.empty:
            continue
        xy = [pos[e] for e in sel["event_id"]]
        faces = ["none" if o else colour[g] for o, g in zip(sel["outlier"], sel["origin"])]
        edges = [colour[g] for g in sel["origin"]]
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], marker=marker, s=36, c=faces, edgecolors=edges,
                   linewidths=1.2, zorder=2)
    _overlay(ax, events, pos, events["status"] == "soft_failed", marker="o", s=110, edgecolors="orange",
             linestyles="--", linewidths=1.4)
    _overlay(ax, events, pos, events["status"] == "rejected", marker="x", s=90, c="red", linewidths=1.6)
    _overlay(ax, events, pos, events["extremity"], marker="o", s=150, edgecolors="black", linewidths=1.8)
    ax.invert_yaxis()
    ax.set_ylabel("depth")
    ax.set_xlabel("events of the same depth side by side (forks)")
    ax.set_xticks([])
    ax.margins(x=0.15, y=0.02)
    handles = [Line2D([], [], marker="o", linestyle="", color=colour[o], label=f"from {o}") for o in origins]
    handles += [
        Line2D([], [], marker="s", linestyle="", color="0.4", label="state event"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="0.4", label="outlier"),
        Line2D([], [], marker="x", linestyle="", color="red", label="rejected"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="orange",
               markersize=9, label="soft-failed"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black",
               markeredgewidth=1.8, markersize=10, label="forward extremity"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return _finish(fig, path)


def _overlay(ax, events: pd.DataFrame, pos: Mapping[str, tuple[float, float]], mask: pd.Series, **kw: Any) -> None:
    ids = events.loc[mask.to_numpy(dtype=bool), "event_id"]
    if len(ids):
        xy = [pos[e] for e in ids]
        if "c" not in kw:
            kw["facecolors"] = "none"
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], zorder=3, **kw)


def _natural(name: str) -> tuple:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1, name)


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def export_dag(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str], server: str | None = None,
               *, room_id: str | None = None) -> list[str]:
    """Write one server's PDUs (federation format, causal order) as a JSON array.

    Every event the server stores is written, outliers included (``simfed
    resolve`` needs each event's prev and auth events). Returns the
    server's forward extremities: resolving the file at them
    (``simfed resolve FILE --at ...``) gives the server's state.
    """
    events = server_dag(tables, server, room_id)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(list(events["pdu"]), f, indent=1, ensure_ascii=False)
        f.write("\n")
    return sorted(events.loc[events["extremity"], "event_id"])


def extremity_args(extremities: Sequence[str]) -> str:
    """``--at 'A' --at 'B'``: the ``simfed resolve`` options for these events (quoted for a shell)."""
    import shlex

    return " ".join(f"--at {shlex.quote(e)}" for e in extremities)
