"""Network traffic: messages and bytes by kind, delivered vs dropped, per event.

Definitions (copied into the README)
------------------------------------
Every row of the ``traffic`` table is one message *sent* (a retry of a
transaction is a new message). ``messages``/``bytes`` count every message
sent, delivered or not; ``delivered``/``dropped`` split them by fate, and
drops are broken down by ``reason`` (``loss``, ``partition``, ``src_down``,
``dst_down``, ...).

Per created event (``events_created`` = rows of ``events``):

``transactions_per_event``  messages of kind ``transaction`` (including
                            retries and dropped attempts) per created event
``pdu_messages_per_event``  messages that carry PDUs (kinds in
                            :data:`PDU_KINDS`: transactions and the responses
                            to get_missing_events, backfill, event, state and
                            send_join requests) per created event
``messages_per_event``      all messages, of every kind, per created event
``bytes_per_event``         all bytes sent per created event
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd

__all__ = ["PDU_KINDS", "traffic_by_kind", "drops_by_reason", "messages_per_event"]

#: Message kinds that carry PDUs (full events).
PDU_KINDS = frozenset({
    "transaction",
    "get_missing_events_response",
    "backfill_response",
    "event_response",
    "state_response",
    "send_join_response",
})


def traffic_by_kind(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per kind: messages, bytes, delivered, delivered_bytes, dropped, dropped_bytes.

    Indexed by ``kind`` (plain strings), sorted by messages, most first.
    """
    tr = tables["traffic"]
    df = pd.DataFrame({
        "kind": tr["kind"].astype(object).to_numpy(),
        "size_bytes": tr["size_bytes"].to_numpy(dtype="int64"),
        "delivered": tr["delivered"].to_numpy(dtype=bool),
    })
    df["dropped"] = ~df["delivered"]
    df["delivered_bytes"] = df["size_bytes"].where(df["delivered"], 0)
    df["dropped_bytes"] = df["size_bytes"].where(df["dropped"], 0)
    g = df.groupby("kind", sort=True).agg(
        messages=("size_bytes", "size"),
        bytes=("size_bytes", "sum"),
        delivered=("delivered", "sum"),
        delivered_bytes=("delivered_bytes", "sum"),
        dropped=("dropped", "sum"),
        dropped_bytes=("dropped_bytes", "sum"),
    )
    g = g.astype("int64")
    return g.sort_values("messages", ascending=False, kind="stable")


def drops_by_reason(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Dropped messages per (kind, reason): columns kind, reason, messages, bytes."""
    tr = tables["traffic"]
    tr = tr[~tr["delivered"].astype(bool)]
    df = pd.DataFrame({
        "kind": tr["kind"].astype(object).to_numpy(),
        "reason": tr["reason"].astype(object).fillna("unknown").to_numpy(),
        "size_bytes": tr["size_bytes"].to_numpy(dtype="int64"),
    })
    g = df.groupby(["kind", "reason"], sort=True).agg(
        messages=("size_bytes", "size"), bytes=("size_bytes", "sum")
    )
    return g.astype("int64").reset_index()


def messages_per_event(
    tables: Mapping[str, pd.DataFrame], *, pdu_kinds: Iterable[str] = PDU_KINDS
) -> dict[str, float]:
    """Traffic per created event; see the module docstring. NaN with no events."""
    tr = tables["traffic"]
    n_events = len(tables["events"])
    kinds = tr["kind"].astype(object)
    n_tx = int((kinds == "transaction").sum())
    n_pdu = int(kinds.isin(list(pdu_kinds)).sum())
    n_all = len(tr)
    n_bytes = int(tr["size_bytes"].sum())

    def per(x: int) -> float:
        return x / n_events if n_events else math.nan

    return {
        "events_created": n_events,
        "transactions": n_tx,
        "transactions_per_event": per(n_tx),
        "pdu_messages": n_pdu,
        "pdu_messages_per_event": per(n_pdu),
        "messages": n_all,
        "messages_per_event": per(n_all),
        "bytes": n_bytes,
        "bytes_per_event": per(n_bytes),
    }
