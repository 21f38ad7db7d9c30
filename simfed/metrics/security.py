"""Security measures: what adversaries got into honest servers and what they cost.

Every run has them (zeros without adversaries); ``summary.json`` holds them
under ``security``. The adversarial events are those of the ``adversary``
table (``[[adversaries]]`` entries and ``servers.malicious`` forgeries);
``illegitimate`` marks those no honest server may let into its state
(forged, unauthorised, a banned user's fork, a stolen key's events).

Definitions (copied into the README)
------------------------------------
``adversary_servers``       servers that are not honest
``adversarial_events``      distinct events the adversaries sent
``adversarial_accepted``    of those, events some honest server accepted
                            into its room DAG (outcome ``accepted``,
                            timeline stage)
``illegitimate_sent``       distinct illegitimate events sent
``illegitimate_accepted``   of those, accepted into some honest DAG
``illegitimate_in_state``   of those, events present in the room state of
                            some honest server at some sampled time (the
                            ``state`` samples, every ``metrics.sample_interval``,
                            and their ``state_entries``); must be 0 under v2
                            and v1 for forgeries and unauthorised events
``illegitimate_in_state_at_end``  the same in the last sample of each server
``equivocations_seen``      equivocations whose conflicting versions both
                            reached honest servers: ``fork`` pairs (two
                            events the adversary sent at the same instant)
                            of which both have a ``deliveries`` row at an
                            honest server, plus event IDs held with two or
                            more contents (``content_divergence``)
``content_divergence``      event IDs that honest servers hold (DAG or
                            outlier) at the end with different contents
                            (different canonical bytes: e.g. one holds the
                            full event, another its redacted form); null
                            when the servers were not available (a loaded
                            result)
``requests_made``           requests (every message whose kind does not end
                            in ``_response``: transactions and fetches, retries
                            included) sent by honest servers
``requests_served``         requests delivered to honest servers (from anyone)
``requests_per_adversarial_event``  (made + served) / adversarial events
``baseline``                the paired baseline run (same scenario and seed
                            with every ``[[adversaries]]`` entry and
                            ``servers.malicious`` removed; measured over the
                            same honest servers): {events_lost,
                            event_convergence_ms {p50, p95}, requests_made,
                            requests_served}; null when there is none
``caused``                  run minus baseline: {events_lost,
                            p50_convergence_ms, p95_convergence_ms
                            (null when either is censored), requests,
                            work_amplification (requests caused per
                            adversarial event)}; null without a baseline

The baseline shares every component's random stream with the run (streams
are per component), so the differences are common-random-number estimates
of what the adversaries caused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from simfed.metrics.convergence import _resolve, deliveries

__all__ = ["SECURITY_KEYS", "caused_by_adversaries", "content_versions", "request_counts", "security_measures"]

#: Keys of ``summary["security"]``.
SECURITY_KEYS = (
    "adversary_servers", "adversarial_events", "adversarial_accepted", "illegitimate_sent",
    "illegitimate_accepted", "illegitimate_in_state", "illegitimate_in_state_at_end", "equivocations_seen",
    "content_divergence", "requests_made", "requests_served", "requests_per_adversarial_event", "baseline",
    "caused",
)


def content_versions(servers: Mapping[str, Any], honest: Iterable[str], room_id: str | None) -> dict[str, int]:
    """Event IDs that the ``honest`` servers hold with more than one
    content, with the number of distinct versions. ``servers`` maps names to
    objects with ``rooms[room_id].graph.events`` / ``.outliers`` (the
    simulator's homeservers)."""
    first: dict[str, Any] = {}
    copies: dict[str, list[Any]] = {}
    for name in sorted(honest):
        hs = servers.get(name)
        room = getattr(hs, "rooms", {}).get(room_id) if hs is not None else None
        if room is None:
            continue
        for held in (room.graph.events, room.graph.outliers):
            for eid, ev in held.items():
                f = first.setdefault(eid, ev)
                if f is not ev:  # events are interned by content: another object may be another content
                    copies.setdefault(eid, [f]).append(ev)
    out: dict[str, int] = {}
    for eid, evs in copies.items():
        n = len({hashlib.sha256(ev.canonical_bytes).digest() for ev in evs})
        if n > 1:
            out[eid] = n
    return out


def request_counts(tables: Mapping[str, pd.DataFrame], honest: Iterable[str], end_t: float) -> dict[str, int]:
    """``requests_made`` and ``requests_served`` by ``honest`` servers up to ``end_t``."""
    tr = tables.get("traffic")
    if tr is None or tr.empty:
        return {"requests_made": 0, "requests_served": 0}
    hs = list(honest)
    kind = tr["kind"].astype(str)
    req = tr[~kind.str.endswith("_response") & (tr["t_sent"] <= end_t)]
    return {"requests_made": int(req["src"].isin(hs).sum()),
            "requests_served": int((req["dst"].isin(hs) & req["delivered"].astype(bool)).sum())}


def _ids(frame: pd.DataFrame) -> set[str]:
    return {str(e) for e in frame["event_id"].astype(object) if isinstance(e, str) and e}


def _in_state(tables: Mapping[str, pd.DataFrame], states: Mapping[str, Mapping] | None, hs: set[str],
              end: float, ids: set[str]) -> tuple[set[str], set[str]]:
    """Illegitimate ``ids`` in any honest sampled state, and in the last sample of each server."""
    st = tables.get("state")
    if not ids or st is None or st.empty or not states:
        return set(), set()
    rows = st[st["server"].isin(list(hs)) & (st["t"] <= end)]
    found: set[str] = set()
    at_end: set[str] = set()
    hashes = rows["state_hash"].astype(str)
    last = set(rows.assign(h=hashes).sort_values("t").groupby("server", observed=True)["h"].last())
    for h in set(hashes):
        got = ids.intersection((states.get(h) or {}).values())
        found |= got
        if h in last:
            at_end |= got
    return found, at_end


def security_measures(
    tables: Mapping[str, pd.DataFrame],
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    states: Mapping[str, Mapping] | None = None,
    versions: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The run's own security measures (see the module docstring);
    ``baseline`` and ``caused`` are None (see :func:`caused_by_adversaries`).
    ``versions`` is :func:`content_versions` of the run (None: unknown)."""
    hs, end = _resolve(tables, honest, end_t)
    adv = tables.get("adversary")
    if adv is None:
        adv = pd.DataFrame(columns=["t", "server", "behaviour", "action", "event_id", "illegitimate"])
    adv = adv[adv["t"] <= end]
    servers = tables.get("servers")
    n_adv = int((~servers["honest"].astype(bool)).sum()) if servers is not None and not servers.empty else 0
    sent = _ids(adv)
    bad = _ids(adv[adv["illegitimate"].astype(bool)])
    d = deliveries(tables)
    d = d[d["server"].isin(list(hs)) & (d["t"] <= end)]
    reached = set(d["event_id"].astype(str))
    accepted = set(d["event_id"][(d["outcome"] == "accepted") & (d["stage"] == "timeline")].astype(str))
    in_state, in_state_end = _in_state(tables, states, hs, end, bad)
    forks = adv[(adv["behaviour"].astype(str) == "equivocate") & (adv["action"].astype(str) == "fork")]
    fork_seen = 0
    for _, group in forks.groupby(["server", "t"], observed=True):
        if len(_ids(group) & reached) >= 2:
            fork_seen += 1
    divergent = None if versions is None else len(versions)
    work = request_counts(tables, hs, end)
    total = work["requests_made"] + work["requests_served"]
    return {
        "adversary_servers": n_adv,
        "adversarial_events": len(sent),
        "adversarial_accepted": len(sent & accepted),
        "illegitimate_sent": len(bad),
        "illegitimate_accepted": len(bad & accepted),
        "illegitimate_in_state": len(in_state),
        "illegitimate_in_state_at_end": len(in_state_end),
        "equivocations_seen": fork_seen + (divergent or 0),
        "content_divergence": divergent,
        **work,
        "requests_per_adversarial_event": total / len(sent) if sent else None,
        "baseline": None,
        "caused": None,
    }


def _pct(summary: Mapping[str, Any], key: str) -> float | None:
    ec = summary.get("event_convergence_ms") or {}
    return ec.get(key)


def caused_by_adversaries(security: Mapping[str, Any], run: Mapping[str, Any], base: Mapping[str, Any],
                          base_requests: Mapping[str, int]) -> dict[str, Any]:
    """``security`` with ``baseline`` and ``caused`` filled in: ``run`` and
    ``base`` are the headlines (:func:`simfed.metrics.headline`) of the run
    and of its paired baseline measured over the run's honest servers;
    ``base_requests`` is :func:`request_counts` of the baseline."""
    out = dict(security)
    out["baseline"] = {
        "events_lost": base.get("events_lost"),
        "event_convergence_ms": {"p50": _pct(base, "p50"), "p95": _pct(base, "p95")},
        **base_requests,
    }
    caused_requests = (security["requests_made"] + security["requests_served"]
                       - base_requests["requests_made"] - base_requests["requests_served"])

    def delta(key: str) -> float | None:
        a, b = _pct(run, key), _pct(base, key)
        return None if a is None or b is None else a - b

    n = security["adversarial_events"]
    out["caused"] = {
        "events_lost": int(run.get("events_lost", 0)) - int(base.get("events_lost", 0)),
        "p50_convergence_ms": delta("p50"),
        "p95_convergence_ms": delta("p95"),
        "requests": caused_requests,
        "work_amplification": caused_requests / n if n else None,
    }
    return out
