"""Do the honest servers agree on what they decided about each event?

Definitions (copied into the README)
------------------------------------
The *decision* of honest server S about event E is the first stored outcome
S reported for E in its room DAG (``stage == "timeline"``, at or before
``end_t``): ``accepted``, ``soft_failed`` or ``rejected``. Outlier outcomes
are left out: an outlier is checked against its own auth events only, so it
may legitimately be decided differently from the same event in the DAG.

*Auth decision*: ``rejected`` versus passed (``accepted`` or
``soft_failed``). The authorisation rules are a function of the event and
the state before it, which every server computes from the same DAG, so all
honest servers holding E must reach the same auth decision. An event on
which they do not is an *auth disagreement*; a run with any is not
converged.

*Soft-fail decision*: among the servers that passed E, ``soft_failed``
versus ``accepted``. Soft failure checks E against the server's *current*
state when E arrives, which depends on arrival order, so honest servers may
differ (as Synapse's do). An event on which they do is a *soft-fail
disagreement*: reported, not required to be zero.

Only events held by at least two honest servers can disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from simfed.metrics.convergence import _resolve, held_at

__all__ = ["OUTCOME_AGREEMENT_COLUMNS", "outcome_agreement", "disagreement_counts"]

OUTCOME_AGREEMENT_COLUMNS = [
    "event_id", "n_servers", "n_accepted", "n_soft_failed", "n_rejected",
    "auth_disagreement", "soft_fail_disagreement",
]


def outcome_agreement(
    tables: Mapping[str, pd.DataFrame],
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
) -> pd.DataFrame:
    """Per event held by an honest server: how many honest servers reached
    each decision, and whether they disagree (see the module docstring)."""
    hs, end = _resolve(tables, honest, end_t)
    held = held_at(tables, end)
    held = held[held["server"].isin(list(hs))]
    if held.empty:
        return pd.DataFrame({c: [] for c in OUTCOME_AGREEMENT_COLUMNS}).astype(
            {"event_id": object, "auth_disagreement": bool, "soft_fail_disagreement": bool})
    counts = pd.crosstab(held["event_id"], held["outcome"])
    for o in ("accepted", "soft_failed", "rejected"):
        if o not in counts.columns:
            counts[o] = 0
    acc, soft, rej = counts["accepted"], counts["soft_failed"], counts["rejected"]
    out = pd.DataFrame({
        "event_id": counts.index.astype(object),
        "n_servers": (acc + soft + rej).to_numpy(),
        "n_accepted": acc.to_numpy(),
        "n_soft_failed": soft.to_numpy(),
        "n_rejected": rej.to_numpy(),
        "auth_disagreement": ((rej > 0) & (acc + soft > 0)).to_numpy(),
        "soft_fail_disagreement": ((soft > 0) & (acc > 0)).to_numpy(),
    })
    return out.reset_index(drop=True)


def disagreement_counts(agreement: pd.DataFrame) -> dict[str, int]:
    """``{"auth_disagreements": n, "soft_fail_disagreements": m}`` (events)."""
    return {
        "auth_disagreements": int(agreement["auth_disagreement"].sum()),
        "soft_fail_disagreements": int(agreement["soft_fail_disagreement"].sum()),
    }
