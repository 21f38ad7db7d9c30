"""Deadlines (simfed.sim.deadlines) fire exactly where env.timeout would."""

from __future__ import annotations

import random

import simpy

from simfed.sim.deadlines import Deadlines


class _Item:
    def __init__(self, log: list, name: str) -> None:
        self.log, self.name, self.done = log, name, False

    def pending(self) -> bool:
        return not self.done

    def expire(self, _event) -> None:
        if not self.done:
            self.done = True
            self.log.append(("expire", self.name))


def _run(seed: int, use_deadlines: bool) -> tuple[list, int]:
    """Requests at whole-ms times (many ties), answered after 0-12 ms or never,
    timeouts of 10 or 5 ms, and unrelated timers at the same times."""
    rnd = random.Random(seed)
    env = simpy.Environment()
    log: list = []
    deadlines: dict[float, Deadlines] = {}

    def client(k: int):
        for i in range(30):
            yield env.timeout(rnd.choice((0, 1, 1, 2)))
            item = _Item(log, f"{k}.{i}")
            timeout = rnd.choice((10.0, 10.0, 5.0))
            if use_deadlines:
                if timeout not in deadlines:
                    deadlines[timeout] = Deadlines(env, timeout)
                deadlines[timeout].add(item)
            else:
                env.timeout(timeout).callbacks.append(item.expire)
            answer = rnd.choice((None, 0, 3, 5, 10, 12))
            if answer is not None:
                env.timeout(answer).callbacks.append(lambda _e, it=item: _answer(it))
            env.timeout(rnd.choice((5, 10))).callbacks.append(lambda _e, n=f"{k}.{i}": log.append(("tick", n, env.now)))

    def _answer(item: _Item) -> None:
        if not item.done:
            item.done = True
            log.append(("answer", item.name, env.now))

    for k in range(4):
        env.process(client(k))
    env.run()
    return log, next(env._eid)


def test_deadlines_fire_in_the_order_of_timeouts():
    for seed in range(20):
        a, b = _run(seed, False), _run(seed, True)
        assert a == b, seed
        assert any(e[0] == "expire" for e in a[0])


def test_negative_delay_is_refused():
    import pytest

    with pytest.raises(ValueError, match="Negative delay"):
        Deadlines(simpy.Environment(), -1.0)
