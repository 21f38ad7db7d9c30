"""One-way latency models for simulated links.

Every model is a frozen dataclass with ``sample(src, dst, rng) -> float``
returning a one-way delay in simulated milliseconds (never negative). Models
hold no state; all randomness comes from the ``numpy.random.Generator`` the
caller hands in, so the same generator state gives the same delays.

``RegionLatency`` reproduces SimBlock's regional model: a mean per pair of
regions from a measured table, with Pareto-distributed jitter around it. The
six-region table ships in ``simfed/data/simblock_regions.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np

__all__ = [
    "LatencyModel",
    "ConstantLatency",
    "UniformLatency",
    "NormalLatency",
    "LogNormalLatency",
    "RegionLatency",
    "RegionTable",
    "assign_regions",
    "load_simblock_regions",
]

#: Resampling attempts of ``NormalLatency`` before clipping at zero.
_NORMAL_RESAMPLES = 16


class LatencyModel(Protocol):
    """Anything that can draw a one-way delay for a directed pair of servers."""

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """Return a one-way delay in ms (>= 0) for a message from src to dst."""
        ...

    def mean(self, src: str, dst: str) -> float:
        """The expected one-way delay from src to dst (what a latency-aware
        strategy plans with)."""
        ...


@dataclass(frozen=True, slots=True)
class ConstantLatency:
    """The same delay for every message."""

    ms: float

    def __post_init__(self) -> None:
        if not self.ms >= 0:
            raise ValueError(f"ConstantLatency.ms must be >= 0, got {self.ms!r}")

    def mean(self, src: str, dst: str) -> float:
        return self.ms

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """Return ``ms``; draws nothing from rng."""
        return self.ms


@dataclass(frozen=True, slots=True)
class UniformLatency:
    """A delay drawn uniformly from [low_ms, high_ms)."""

    low_ms: float
    high_ms: float

    def __post_init__(self) -> None:
        if not 0 <= self.low_ms <= self.high_ms:
            raise ValueError(
                f"UniformLatency needs 0 <= low_ms <= high_ms, got {self.low_ms!r}, {self.high_ms!r}"
            )

    def mean(self, src: str, dst: str) -> float:
        return (self.low_ms + self.high_ms) / 2.0

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """Draw one delay."""
        return self.low_ms + (self.high_ms - self.low_ms) * rng.random()


@dataclass(frozen=True, slots=True)
class NormalLatency:
    """A normal delay truncated at zero.

    Negative draws are resampled (up to 16 times, which for any mean >= 0
    practically never runs out); if all of them are negative the last one is
    clipped to 0. The result follows the normal distribution conditioned on
    being non-negative, so its mean is slightly above ``mean_ms`` when
    ``sd_ms`` is comparable to ``mean_ms``.
    """

    mean_ms: float
    sd_ms: float

    def __post_init__(self) -> None:
        if not self.sd_ms >= 0:
            raise ValueError(f"NormalLatency.sd_ms must be >= 0, got {self.sd_ms!r}")

    def mean(self, src: str, dst: str) -> float:
        """``mean_ms`` (the truncation at 0 is ignored)."""
        return max(self.mean_ms, 0.0)

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """Draw one delay."""
        x = -1.0
        for _ in range(_NORMAL_RESAMPLES):
            x = self.mean_ms + self.sd_ms * rng.standard_normal()
            if x >= 0:
                return x
        return max(x, 0.0)


@dataclass(frozen=True, slots=True)
class LogNormalLatency:
    """A log-normal delay: ``median_ms * exp(sigma * Z)`` with Z standard normal."""

    median_ms: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.median_ms > 0 and self.sigma >= 0):
            raise ValueError(
                f"LogNormalLatency needs median_ms > 0 and sigma >= 0, got {self.median_ms!r}, {self.sigma!r}"
            )

    def mean(self, src: str, dst: str) -> float:
        return self.median_ms * math.exp(self.sigma**2 / 2.0)

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """Draw one delay."""
        return self.median_ms * math.exp(self.sigma * rng.standard_normal())


@dataclass(frozen=True, slots=True)
class RegionTable:
    """A regional latency table: region names, mean one-way latencies, node shares."""

    regions: tuple[str, ...]
    latency_ms: tuple[tuple[float, ...], ...]
    node_shares: Mapping[str, float]
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def mean_ms(self, src_region: str, dst_region: str) -> float:
        """The table's mean latency from one region to another."""
        return self.latency_ms[self.regions.index(src_region)][self.regions.index(dst_region)]


@dataclass(frozen=True, slots=True)
class RegionLatency:
    """Latency by region pair, with SimBlock's Pareto jitter.

    ``means_ms[i][j]`` is the mean one-way latency from ``region_names[i]`` to
    ``region_names[j]``; ``regions`` maps each server to its region.

    With ``jitter="pareto"`` a delay for mean ``m`` is a Pareto draw with
    shape ``a = 0.2 * m`` and scale (minimum) ``s = m - 5``, sampled by
    inversion as ``s / U ** (1 / a)`` with U uniform on (0, 1]. Its mean is
    ``a * s / (a - 1) = m`` exactly, every draw is at least ``m - 5``, and the
    tail is heavy (finite variance only for m > 10). This is SimBlock's
    ``Network.getLatency``; SimBlock also rounds to whole milliseconds, which
    we do only with ``round_ms=True``. Pareto jitter requires every mean > 5.
    With ``jitter="none"`` the delay is the table mean.
    """

    means_ms: tuple[tuple[float, ...], ...]
    regions: Mapping[str, str]
    region_names: tuple[str, ...]
    jitter: Literal["pareto", "none"] = "pareto"
    round_ms: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        means = tuple(tuple(float(x) for x in row) for row in self.means_ms)
        names = tuple(self.region_names)
        n = len(names)
        if len(means) != n or any(len(row) != n for row in means):
            raise ValueError(f"RegionLatency.means_ms must be a {n}x{n} matrix for regions {names}")
        if self.jitter not in ("pareto", "none"):
            raise ValueError(f"RegionLatency.jitter must be 'pareto' or 'none', got {self.jitter!r}")
        if self.jitter == "pareto" and any(x <= 5 for row in means for x in row):
            raise ValueError("Pareto jitter needs every mean latency > 5 ms (scale = mean - 5)")
        if any(x < 0 for row in means for x in row):
            raise ValueError("RegionLatency.means_ms must be non-negative")
        pos = {name: i for i, name in enumerate(names)}
        unknown = sorted({r for r in self.regions.values() if r not in pos})
        if unknown:
            raise ValueError(f"servers assigned to unknown regions {unknown}; known: {list(names)}")
        object.__setattr__(self, "means_ms", means)
        object.__setattr__(self, "region_names", names)
        object.__setattr__(self, "regions", dict(self.regions))
        object.__setattr__(self, "_index", {s: pos[r] for s, r in self.regions.items()})

    @classmethod
    def from_table(
        cls,
        table: RegionTable,
        regions: Mapping[str, str],
        *,
        jitter: Literal["pareto", "none"] = "pareto",
        round_ms: bool = False,
    ) -> RegionLatency:
        """Build from a ``RegionTable`` (e.g. ``load_simblock_regions()``)."""
        return cls(table.latency_ms, regions, table.regions, jitter=jitter, round_ms=round_ms)

    def mean(self, src: str, dst: str) -> float:
        """The table mean for the pair's regions."""
        return self.means_ms[self._index[src]][self._index[dst]]

    def sample(self, src: str, dst: str, rng: np.random.Generator) -> float:
        """Draw one delay (see the class docstring for the jitter)."""
        m = self.means_ms[self._index[src]][self._index[dst]]
        if self.jitter == "pareto":
            u = 1.0 - rng.random()
            m = (m - 5.0) / u ** (1.0 / (0.2 * m))
        return float(round(m)) if self.round_ms else m


def assign_regions(
    servers: Sequence[str], shares: Mapping[str, float], rng: np.random.Generator
) -> dict[str, str]:
    """Assign each server a region so that region counts follow ``shares``.

    Counts are apportioned by largest remainder (Hamilton's method): each
    region gets ``floor(n * share)`` servers and the leftover seats go to the
    largest fractional parts, ties broken by the order of ``shares``. The
    resulting list of regions is then shuffled with ``rng`` and dealt to
    ``servers`` in their given order. Shares are normalised, so they need not
    sum to 1. Same servers, shares and generator state: same assignment.
    """
    names = list(shares)
    weights = np.array([float(shares[r]) for r in names])
    if not names or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"region shares must be non-negative with a positive sum, got {dict(shares)}")
    n = len(servers)
    quotas = weights / weights.sum() * n
    counts = np.floor(quotas).astype(int)
    leftover = n - int(counts.sum())
    order = sorted(range(len(names)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:leftover]:
        counts[i] += 1
    pool = [names[i] for i in range(len(names)) for _ in range(counts[i])]
    perm = rng.permutation(n)
    return {server: pool[int(k)] for server, k in zip(servers, perm)}


def load_simblock_regions(year: str | int = 2019) -> RegionTable:
    """SimBlock's six-region table (latency matrix and Bitcoin node shares).

    ``year`` is 2019 (SimBlock's default ``LATENCY_2019`` and
    ``REGION_DISTRIBUTION_BITCOIN_2019``) or 2015. Region names are the short
    forms NA, EU, SA, AP, JP, AU. The JSON file records the exact source.
    """
    text = resources.files("simfed").joinpath("data/simblock_regions.json").read_text("utf-8")
    data = json.loads(text)
    key = str(year)
    if key not in data["years"]:
        raise ValueError(f"no SimBlock table for year {year!r}; available: {sorted(data['years'])}")
    entry = data["years"][key]
    names = tuple(data["short_names"])
    return RegionTable(
        regions=names,
        latency_ms=tuple(tuple(float(x) for x in row) for row in entry["latency_ms"]),
        node_shares=dict(zip(names, (float(x) for x in entry["node_shares"]))),
        source={**data["source"], "year": key, "node_shares_name": entry["node_shares_name"]},
    )
