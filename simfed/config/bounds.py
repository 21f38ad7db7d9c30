"""Bounds that keep every valid scenario a finite run.

A scenario that validates must run to completion on a workstation: these
limits refuse, before the run, values that would exhaust memory (a hundred
million servers) or never finish (years of simulated time, rates no
population produces). They are far above any published measurement of a
Matrix room (the largest public rooms span about 10,000 servers) and are
listed in the README's scenario section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import format_duration, show

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = [
    "MAX_CLOCK_SKEW_MS",
    "MAX_DURATION_MS",
    "MAX_EXPECTED_COPIES",
    "MAX_EXPECTED_EVENTS",
    "MAX_RATE",
    "MAX_SAMPLES",
    "MAX_SERVERS",
    "MAX_USERS",
    "MAX_USERS_PER_SERVER",
    "run_size_problems",
]

MAX_SERVERS = 10_000
MAX_USERS_PER_SERVER = 10_000
#: servers.count x servers.users_per_server
MAX_USERS = 100_000
#: simulation.duration: one year of simulated time.
MAX_DURATION_MS = 365 * 86_400_000.0
#: |clock offset| of any server (servers.clock_skew), so timestamps stay integers.
MAX_CLOCK_SKEW_MS = 365 * 86_400_000.0
#: Any rate (per user or room-wide, per minute or per hour) or weight.
MAX_RATE = 1_000_000.0
#: Expected events the workload creates over its window.
MAX_EXPECTED_EVENTS = 10_000_000
#: Expected events x servers: the copies the federation has to deliver and store.
MAX_EXPECTED_COPIES = 1_000_000_000
#: State samples the metrics take (duration / sample_interval x servers).
MAX_SAMPLES = 100_000_000

Problem = tuple[tuple[str | int, ...], Any, str]


def expected_events(sc: "Scenario") -> float:
    """Mean number of events the workload generates (messages, state and profile changes)."""
    w = sc.workload
    minutes = max(0.0, sc.workload_stop_ms - w.start_ms) / 60_000.0
    users = sc.servers.count * sc.servers.users_per_server
    per_minute = users * w.messages_per_user_per_minute + w.state_changes_per_minute
    per_minute += users * w.profile_changes_per_user_per_hour / 60.0
    return per_minute * minutes


def run_size_problems(sc: "Scenario") -> list[Problem]:
    """Problems for a scenario whose expected work exceeds the bounds above."""
    problems: list[Problem] = []
    n = sc.servers.count
    events = expected_events(sc)
    if events > MAX_EXPECTED_EVENTS:
        problems.append((("workload",), round(events),
                         f"the workload would create about {events:,.0f} events (limit {MAX_EXPECTED_EVENTS:,}): "
                         "lower the rates, the users or the workload window"))
    elif events * n > MAX_EXPECTED_COPIES:
        problems.append((("workload",), round(events),
                         f"about {events:,.0f} events to each of {n:,} servers is {events * n:,.0f} copies "
                         f"(limit {MAX_EXPECTED_COPIES:,}): lower the rates, the users or the servers"))
    samples = sc.simulation.duration_ms / sc.metrics.sample_interval_ms * n
    if samples > MAX_SAMPLES:
        problems.append((("metrics", "sample_interval"), format_duration(sc.metrics.sample_interval_ms),
                         f"{show(format_duration(sc.metrics.sample_interval_ms))} over "
                         f"{format_duration(sc.simulation.duration_ms)} at {n:,} servers is {samples:,.0f} "
                         f"state samples (limit {MAX_SAMPLES:,}): sample less often"))
    return problems
