"""Observation of a run: the recorder servers push facts into, and the measures.

``simfed.metrics`` only observes. It never imports SimPy, ``simfed.sim`` or
``simfed.experiment``: the simulator calls it, never the other way round.
Plots live in :mod:`simfed.plots` (matplotlib is imported only there).
"""

from simfed.metrics.agreement import after_last_fault, fault_agreement
from simfed.metrics.convergence import (
    censored_percentiles,
    deliveries,
    delivery_latency,
    lost_in_gaps,
    event_convergence,
    expected_holders,
    held_at,
    honest_servers,
    infer_end_t,
    last_perturbation,
    percentiles,
    state_convergence,
)
from simfed.metrics.divergence import (
    agreement_since,
    divergence,
    divergence_across_rooms,
    state_difference,
)
from simfed.metrics.outcomes import disagreement_counts, outcome_agreement
from simfed.metrics.recorder import (
    HELD_OUTCOMES,
    OUTCOMES,
    STAGES,
    TABLE_COLUMNS,
    VIAS,
    Recorder,
    states_from_tables,
)
from simfed.metrics.summary import headline, jsonable
from simfed.metrics.traffic import (
    PDU_KINDS,
    drops_by_reason,
    messages_per_event,
    traffic_by_kind,
)

__all__ = [
    "Recorder",
    "OUTCOMES",
    "HELD_OUTCOMES",
    "VIAS",
    "STAGES",
    "TABLE_COLUMNS",
    "states_from_tables",
    "honest_servers",
    "infer_end_t",
    "expected_holders",
    "held_at",
    "event_convergence",
    "delivery_latency",
    "lost_in_gaps",
    "percentiles",
    "censored_percentiles",
    "deliveries",
    "fault_agreement",
    "after_last_fault",
    "outcome_agreement",
    "disagreement_counts",
    "last_perturbation",
    "state_convergence",
    "state_difference",
    "divergence",
    "divergence_across_rooms",
    "agreement_since",
    "PDU_KINDS",
    "traffic_by_kind",
    "drops_by_reason",
    "messages_per_event",
    "headline",
    "jsonable",
]
