"""Compact streams (simfed.sim.streams) draw exactly what numpy's generators draw."""

from __future__ import annotations

import numpy as np
import pytest

from simfed.sim.streams import Stream, Streams, stream
from simfed.sim.world import component_rng

SEEDS = (0, 1, 11, 2**32 - 1, 2**32, 2**40 + 7, 2**130 + 5)
NAMES = ("link/hs1->hs2/latency", "link/hs0->hs9/loss", "", "x" * 300)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_draws_equal_numpys(seed):
    for name in NAMES:
        a, b = stream(seed, name), component_rng(seed, name)
        assert [a.random() for _ in range(200)] == [b.random() for _ in range(200)], name


def test_other_methods_continue_numpys_stream_at_the_same_state():
    a, b = stream(3, "link/a->b/latency"), component_rng(3, "link/a->b/latency")
    assert [a.random() for _ in range(7)] == [b.random() for _ in range(7)]
    assert a.standard_normal() == b.standard_normal()
    assert list(a.integers(0, 10, size=5)) == list(b.integers(0, 10, size=5))
    assert [a.random() for _ in range(20)] == [b.random() for _ in range(20)]
    assert list(a.random(4)) == list(b.random(4))
    assert isinstance(a.generator(), np.random.Generator)


def test_streams_of_different_names_differ():
    assert stream(1, "link/a->b/loss").random() != stream(1, "link/b->a/loss").random()


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed=-1"):
        Stream(-1, 0)


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_seeded_streams_equal_numpys(seed):
    names = list(NAMES) + [f"link/hs{i}->hs{j}/{k}" for i in range(3) for j in range(4) for k in ("latency", "loss")]
    words = Streams(seed).many(names).tolist()
    for name, w in zip(names, words):
        a, b = Stream.from_words(w), component_rng(seed, name)
        assert [a.random() for _ in range(50)] == [b.random() for _ in range(50)], name
        assert a.standard_normal() == b.standard_normal()


def test_streams_factory_gives_the_named_stream():
    assert Streams(5)("link/a->b/loss").random() == component_rng(5, "link/a->b/loss").random()
    assert Streams(5).many([]).shape == (0, 4)


def test_network_seeds_a_busy_sources_links_together_with_the_same_draws():
    import simpy

    from simfed.sim.latency import ConstantLatency
    from simfed.sim.network import BATCH_AFTER, Network

    names = [f"hs{i}" for i in range(2 * BATCH_AFTER + 12)]

    def net(rng_for):
        return Network(simpy.Environment(), names, latency=ConstantLatency(1.0), rng_for=rng_for)

    batched, single = net(Streams(9)), net(lambda name: stream(9, name))
    order = [("hs0", d) for d in reversed(names[1:])] + [("hs3", "hs1"), ("hs0", "hs1")]
    for src, dst in order:
        a, b = batched.link_rngs(src, dst), single.link_rngs(src, dst)
        for x, y in zip(a, b):
            assert [x.random() for _ in range(5)] == [y.random() for _ in range(5)], (src, dst)
    assert "hs0" not in batched._seeded  # every link from hs0 made: its words are dropped
