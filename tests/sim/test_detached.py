"""``detached(env, gen)`` runs a generator exactly as ``env.process(gen)``
does when nobody waits for the process."""

from __future__ import annotations

import random

import pytest
import simpy

from simfed.sim.detached import detached


def _trace(use_detached: bool, seed: int) -> list[tuple]:
    rnd = random.Random(seed)
    env = simpy.Environment()
    log: list[tuple] = []
    done = env.event()
    done.succeed("early")

    def worker(i: int, t: int, steps: list[int]):
        yield env.timeout(t)
        log.append((env.now, i, "start"))
        for k, d in enumerate(steps):
            if d < 0:
                failing = env.event()
                failing.fail(KeyError(i))
                try:
                    yield failing
                except KeyError:
                    log.append((env.now, i, "caught"))
            elif d == 0:
                log.append((env.now, i, "seen", (yield done)))
            else:
                yield env.timeout(d)
            log.append((env.now, i, k))

    def launcher(i: int, t: int, steps: list[int]):
        yield env.timeout(t)
        log.append((env.now, i, "launch"))
        gen = worker(i, 0, steps)
        if use_detached:
            detached(env, gen)
        else:
            env.process(gen)
        yield env.timeout(0)
        log.append((env.now, i, "launcher after"))

    def bystander(j: int, t: int):
        yield env.timeout(t)
        log.append((env.now, f"b{j}"))

    for i in range(40):
        env.process(launcher(i, rnd.randrange(10), [rnd.choice((-1, 0, 1, 2, 3)) for _ in range(rnd.randrange(4))]))
    for j in range(30):
        env.process(bystander(j, rnd.randrange(15)))
    env.run()
    return log


@pytest.mark.parametrize("seed", range(10))
def test_detached_runs_as_env_process(seed):
    assert _trace(True, seed) == _trace(False, seed)
