"""What the workload's readers did (``reader_pages`` table, see
:mod:`simfed.sim.readers`): the ``readers`` key of ``summary.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["readers_headline"]


def readers_headline(tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """``{"readers": {gaps, pages, events_backfilled, unanswered_pages, servers}}``:
    gaps a reader paged through (distinct (server, gap) of its pages), its
    pages (``/backfill`` series it caused), the events they added to room
    DAGs, the pages no server answered, and the servers whose readers paged."""
    rp = tables.get("reader_pages")
    if rp is None or rp.empty:
        return {"readers": {"gaps": 0, "pages": 0, "events_backfilled": 0, "unanswered_pages": 0, "servers": 0}}
    return {"readers": {
        "gaps": int(rp[["server", "gap"]].drop_duplicates().shape[0]),
        "pages": int(len(rp)),
        "events_backfilled": int(rp["events"].sum()),
        "unanswered_pages": int((~rp["answered"].astype(bool)).sum()),
        "servers": int(rp["server"].nunique()),
    }}
