"""Latency and loss models: distributions, SimBlock table, burstiness."""

from __future__ import annotations

import numpy as np
import pytest

from simfed.sim.latency import (
    ConstantLatency,
    LogNormalLatency,
    NormalLatency,
    RegionLatency,
    UniformLatency,
    assign_regions,
    load_simblock_regions,
)
from simfed.sim.loss import BernoulliLoss, GilbertElliottLoss, NoLoss


def draws(model, n=20_000, seed=1, src="a", dst="b"):
    rng = np.random.default_rng(seed)
    return np.array([model.sample(src, dst, rng) for _ in range(n)])


def test_constant_and_uniform():
    assert set(draws(ConstantLatency(7.5), n=10)) == {7.5}
    x = draws(UniformLatency(10, 30))
    assert x.min() >= 10 and x.max() < 30
    assert abs(x.mean() - 20) < 0.3


def test_normal_truncated_at_zero():
    x = draws(NormalLatency(100, 10))
    assert abs(x.mean() - 100) < 0.5 and abs(x.std() - 10) < 0.5
    y = draws(NormalLatency(1, 5))
    assert y.min() >= 0
    # conditioned on >= 0, the mean rises above 1
    assert y.mean() > 3


def test_lognormal_median():
    x = draws(LogNormalLatency(50, 0.5))
    assert abs(np.median(x) - 50) < 1.5
    assert x.mean() > np.median(x)


@pytest.mark.parametrize(
    "bad",
    [lambda: ConstantLatency(-1), lambda: UniformLatency(5, 1), lambda: NormalLatency(1, -1),
     lambda: LogNormalLatency(0, 1)],
)
def test_invalid_parameters(bad):
    with pytest.raises(ValueError):
        bad()


def test_simblock_table_matches_source():
    t = load_simblock_regions()
    assert t.regions == ("NA", "EU", "SA", "AP", "JP", "AU")
    assert t.latency_ms[0] == (32, 124, 184, 198, 151, 189)
    assert t.mean_ms("JP", "AP") == 58
    assert t.latency_ms == tuple(zip(*t.latency_ms))  # symmetric
    assert t.node_shares["EU"] == 0.4998
    assert abs(sum(t.node_shares.values()) - 1) < 1e-9
    assert "dsg-titech/simblock" in t.source["repository"]
    assert load_simblock_regions(2015).mean_ms("NA", "NA") == 36


def test_region_latency_pareto_jitter_around_table_mean():
    t = load_simblock_regions()
    lat = RegionLatency.from_table(t, {"a": "EU", "b": "NA"})
    x = draws(lat, n=40_000)
    # Pareto(shape 0.2*m, scale m-5): mean m, minimum m-5, median (m-5)*2**(1/(0.2m))
    assert x.min() >= 124 - 5
    assert abs(x.mean() - 124) < 1.0
    assert abs(np.median(x) - 119 * 2 ** (1 / 24.8)) < 0.5
    flat = RegionLatency.from_table(t, {"a": "EU", "b": "NA"}, jitter="none")
    assert flat.sample("a", "b", np.random.default_rng(0)) == 124
    rounded = RegionLatency.from_table(t, {"a": "EU", "b": "NA"}, round_ms=True)
    assert all(v == int(v) for v in draws(rounded, n=50))


def test_region_latency_validation():
    with pytest.raises(ValueError, match="unknown regions"):
        RegionLatency(((10.0,),), {"a": "XX"}, ("R",))
    with pytest.raises(ValueError, match="> 5"):
        RegionLatency(((5.0,),), {"a": "R"}, ("R",))


def test_assign_regions_apportions_and_is_deterministic():
    t = load_simblock_regions()
    servers = [f"hs{i}" for i in range(100)]
    a = assign_regions(servers, t.node_shares, np.random.default_rng(5))
    b = assign_regions(servers, t.node_shares, np.random.default_rng(5))
    assert a == b
    counts = {r: list(a.values()).count(r) for r in t.regions}
    assert counts == {"NA": 33, "EU": 50, "SA": 1, "AP": 12, "JP": 2, "AU": 2}
    c = assign_regions(servers, t.node_shares, np.random.default_rng(6))
    assert c != a


def test_bernoulli_and_noloss_rates():
    rng = np.random.default_rng(3)
    assert not any(NoLoss().drops("a", "b", rng) for _ in range(100))
    lost = [BernoulliLoss(0.2).drops("a", "b", rng) for _ in range(20_000)]
    assert abs(np.mean(lost) - 0.2) < 0.01


def mean_burst(lost):
    bursts, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    return np.mean(bursts)


def test_gilbert_elliott_rate_and_bursts():
    ge = GilbertElliottLoss(0.02, 0.2)
    assert ge.stationary_loss_rate == pytest.approx(0.02 / 0.22)
    rng = np.random.default_rng(11)
    lost = [ge.drops("a", "b", rng) for _ in range(60_000)]
    assert abs(np.mean(lost) - ge.stationary_loss_rate) < 0.01
    bern = [BernoulliLoss(ge.stationary_loss_rate).drops("a", "b", rng) for _ in range(60_000)]
    assert mean_burst(lost) > 3 * mean_burst(bern)
    assert mean_burst(lost) == pytest.approx(1 / 0.2, rel=0.1)


def test_gilbert_elliott_state_is_per_directed_link():
    ge = GilbertElliottLoss(1.0, 0.0)  # first message on a link turns it Bad forever
    rng = np.random.default_rng(0)
    assert ge.drops("a", "b", rng)
    fresh = ge.fresh()
    assert fresh._bad == {} and ge._bad == {("a", "b"): True}
