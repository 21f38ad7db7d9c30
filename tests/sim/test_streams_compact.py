"""Compact streams (simfed.sim.streams) draw exactly what numpy's generators draw."""

from __future__ import annotations

import numpy as np
import pytest

from simfed.sim.streams import Stream, stream
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
