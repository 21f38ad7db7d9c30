"""Processing costs (issue 12 §2): the cost function, the CPU queue, the
switch back to zero-time processing, and that big rooms pay for it."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import simpy

from simfed.config import ProcessingCosts
from simfed.experiment.scenario import ScenarioError, json_schema, load_scenario
from simfed.metrics import headline
from simfed.metrics.convergence import event_convergence
from simfed.sim.processing import CALIBRATED, WORK, CostTable, Cpu, cost_table
from simfed.sim.world import simulate

UNIT = CostTable(signature_verify_ms=1.0, content_hash_ms=0.5, sign_ms=2.0, auth_check_ms=3.0,
                 resolution_ms=4.0, resolution_per_conflicted_ms=0.25, db_write_ms=5.0, request_ms=0.125)


# -- the cost function ---------------------------------------------------------------


def test_cost_of_counter_deltas():
    assert UNIT.cost_ms({}) == 0.0
    assert UNIT.cost_ms({"signature_checks": 2}) == 3.0  # verify + content hash, twice
    assert UNIT.cost_ms({"signed": 1, "auth_checks": 2}) == 8.0
    assert UNIT.cost_ms({"resolutions": 1, "conflicted_events": 8}) == 6.0
    assert UNIT.cost_ms({"db_writes": 3, "requests_served": 8}) == 16.0
    everything = {k: 1 for k in WORK}
    assert UNIT.cost_ms(everything) == pytest.approx(1 + 0.5 + 2 + 3 + 4 + 0.25 + 5 + 0.125)


def test_cost_table_refuses_unknown_work_and_bad_costs():
    with pytest.raises(ValueError, match="signature_check"):
        UNIT.cost_ms({"signature_check": 1})
    with pytest.raises(ValueError, match="db_write_ms"):
        dataclasses.replace(UNIT, db_write_ms=-1.0)


def test_settings_name_cost_tables():
    assert cost_table("none") is None
    assert cost_table("calibrated") == CALIBRATED
    over = cost_table({"db_write_ms": 7.0})
    assert over.db_write_ms == 7.0 and over.sign_ms == CALIBRATED.sign_ms
    with pytest.raises(ValueError, match="servers.processing.bogus"):
        cost_table({"bogus": 1.0})
    # the scenario's table has exactly the cost table's fields (besides the preset)
    config_fields = set(ProcessingCosts.model_fields) - {"preset"}
    assert config_fields == {f.name for f in dataclasses.fields(CostTable)}


def test_scenario_keys():
    sc = load_scenario({"servers": {"count": 3}})
    assert sc.servers.cpu_cores == 1 and cost_table(sc.servers.processing) == CALIBRATED
    sc = load_scenario({"servers": {"count": 3, "processing": "none", "cpu_cores": 2}})
    assert cost_table(sc.servers.processing) is None and sc.servers.cpu_cores == 2
    sc = load_scenario({"servers": {"processing": {"db_write": "0.5ms", "resolution_per_conflicted": 1}}})
    t = cost_table(sc.servers.processing)
    assert (t.db_write_ms, t.resolution_per_conflicted_ms, t.auth_check_ms) == (0.5, 1.0, CALIBRATED.auth_check_ms)
    for bad, where in [({"cpu_cores": 0}, "servers.cpu_cores"), ({"processing": "fast"}, "servers.processing"),
                       ({"processing": {"db_writ": 1}}, "servers.processing.db_writ"),
                       ({"processing": {"preset": "none", "sign": 1}}, "servers.processing.preset")]:
        with pytest.raises(ScenarioError) as e:
            load_scenario({"servers": bad})
        assert where in str(e.value)
    schema = json_schema()["$defs"]["ServersConfig"]["properties"]["processing"]
    assert {"enum": ["none", "calibrated"]} in schema["anyOf"] and schema["default"] == "calibrated"


# -- the CPU is a queue ------------------------------------------------------------------


def _two_events_together(cores: int) -> list[float]:
    """Two events arrive at t=0; processing each writes one event (5 ms)."""
    env = simpy.Environment()
    writes = [0]
    cpu = Cpu(env, cores, UNIT, lambda: (0, 0, 0, 0, 0, writes[0], 0))
    done: list[float] = []

    def process(name: str):
        yield from cpu.run(lambda: writes.__setitem__(0, writes[0] + 1))
        done.append(env.now)

    env.process(process("a"))
    env.process(process("b"))
    env.run()
    assert cpu.busy_ms == 10.0
    return done


def test_cpu_serialises_at_one_core_and_parallelises_at_two():
    assert _two_events_together(1) == [5.0, 10.0]
    assert _two_events_together(2) == [5.0, 5.0]


def test_cpu_charges_stray_work_with_the_next_unit_and_reraises_after_the_hold():
    env = simpy.Environment()
    work = [0, 0, 0, 0, 0, 0, 0]
    cpu = Cpu(env, 1, UNIT, lambda: tuple(work))
    work[1] += 1  # an event signed outside any unit: 2 ms, paid by the next unit
    seen: list = []

    def fails():
        work[2] += 1  # one auth check (3 ms), then an error
        raise KeyError("boom")

    def proc():
        try:
            yield from cpu.run(fails)
        except KeyError:
            seen.append(env.now)

    env.process(proc())
    env.run()
    assert seen == [5.0]
    with pytest.raises(ValueError, match="cpu_cores"):
        Cpu(env, 0, UNIT, lambda: tuple(work))


# -- in the simulator --------------------------------------------------------------------


def _scenario(servers: int, processing, seed: int = 3, **extra):
    return load_scenario({
        "simulation": {"seed": seed, "duration": "3m"},
        "servers": {"count": servers, "users_per_server": 2, "processing": processing, **extra},
        "network": {"latency": {"model": "constant", "ms": 20}},
        "workload": {"messages_per_user_per_minute": 6, "state_changes_per_minute": 2, "stop": "1m"},
    })


def _outcomes(res):
    d = res.recorder.tables()["deliveries"]
    return sorted(zip(d["t"], d["server"].astype(str), d["event_id"].astype(str), d["outcome"].astype(str)))


def _digest(res) -> tuple[int, str]:
    rows = [(round(t, 6), s, e, o) for t, s, e, o in _outcomes(res)]
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def test_processing_none_reproduces_the_simulator_without_the_model():
    """``processing = "none"`` is the simulator without the model: no CPU,
    and the deliveries (time, server, event, outcome) of this run are those
    the code without the model produced. Checked against the code before the
    model (commit ff6c319); re-pinned when the TCP model, Synapse's defaults
    and the per-user random streams changed the base model (regenerate the
    values with processing-free code when an intended change moves them)."""
    res = simulate(_scenario(5, "none"))
    assert all(hs.cpu is None for hs in res.servers.values())
    h = headline(res.recorder.tables(), honest=res.honest, states=res.recorder.states)
    assert (h["events_created"], h["events_lost"], h["converged"]) == (70, 0, True)
    assert h["event_convergence_ms"]["p50"] == pytest.approx(20.2672, abs=1e-6)
    assert _digest(res) == (389, "8456823dad662a4f")


def test_zero_costs_add_no_time():
    """The CPU hooks with every cost at 0 add no time: the same number of
    events, all delivered, with convergence percentiles within a millisecond
    (not identical: a response deferred within the same instant can swap
    places in a link's send queue, which moves later timestamps and so
    event IDs by fractions of a millisecond)."""
    zero = {f.name.removesuffix("_ms"): 0 for f in dataclasses.fields(CostTable)}
    a = simulate(_scenario(5, "none"))
    b = simulate(_scenario(5, zero))
    ha, hb = (headline(r.recorder.tables(), honest=r.honest, states=r.recorder.states) for r in (a, b))
    assert (hb["events_created"], hb["events_lost"], hb["converged"]) == (ha["events_created"], 0, True)
    for q in ("p50", "p95", "p99", "max"):
        assert hb["event_convergence_ms"][q] == pytest.approx(ha["event_convergence_ms"][q], abs=1.0)
    assert all(hs.cpu is not None and hs.cpu.busy_ms == 0 for hs in b.servers.values())


def test_calibrated_costs_take_time_and_bigger_rooms_pay_more():
    """Every delivery is later by the work of processing it (calibrated
    costs), and once the CPUs are loaded the time added grows with the room:
    each server has more events to process per second (the workload is per
    user), so work queues for its CPU. The load is made plain with a slow
    database (25 ms per write): a 3-server room keeps each CPU ~5% busy, a
    12-server room ~30%, where work waits several times longer."""
    def mean_and_busy(servers: int, processing):
        res = simulate(load_scenario({
            "simulation": {"seed": 1, "duration": "90s"},
            "servers": {"count": servers, "users_per_server": 1, "processing": processing},
            "network": {"latency": {"model": "constant", "ms": 20}},
            "workload": {"messages_per_user_per_minute": 60, "state_changes_per_minute": 12, "stop": "30s"},
        }))
        conv = event_convergence(res.recorder.tables(), honest=res.honest)
        # A loaded 12-server room joining all at once may leave an event in a
        # timeline gap (held as an outlier): the mean is over the others.
        assert conv["lost"].sum() <= 0.01 * len(conv)
        busy = [hs.cpu.busy_ms for hs in res.servers.values()] if processing != "none" else [0.0]
        return float(conv["convergence_ms"].mean()), min(busy)

    for n in (3, 12):
        base, _ = mean_and_busy(n, "none")
        slow, busy = mean_and_busy(n, "calibrated")
        assert slow > base + 2.0  # at least a db write and an auth check per hop
        assert busy > 0
    added = {}
    for n in (3, 12):
        base, _ = mean_and_busy(n, "none")
        slow, _ = mean_and_busy(n, {"db_write": "25ms"})
        added[n] = slow - base
    assert added[12] > 2 * added[3]


# -- Cores: SimPy's Resource, exactly ------------------------------------------------------


def _trace(cores_factory, capacity: int, seed: int) -> list[tuple]:
    """Who gets a core when, and in which order, among same-time bystanders
    (integer times make ties common)."""
    import random

    rnd = random.Random(seed)
    env = simpy.Environment()
    cores = cores_factory(env, capacity)
    log: list[tuple] = []

    def user(i: int, start: int, hold: int):
        yield env.timeout(start)
        if isinstance(cores, simpy.Resource):
            with cores.request() as req:
                yield req
                log.append((env.now, i, "got"))
                if hold:
                    yield env.timeout(hold)
        else:
            req = cores.request()
            yield req
            log.append((env.now, i, "got"))
            if hold:
                yield env.timeout(hold)
            cores.release(req)
        log.append((env.now, i, "released"))
        yield env.timeout(0)
        log.append((env.now, i, "after"))

    def bystander(j: int, t: int):
        yield env.timeout(t)
        log.append((env.now, f"b{j}"))

    for i in range(60):
        env.process(user(i, rnd.randrange(20), rnd.choice((0, 0, 1, 2, 3))))
    for j in range(30):
        env.process(bystander(j, rnd.randrange(25)))
    env.run()
    return log


@pytest.mark.parametrize("capacity", [1, 2, 3])
def test_cores_schedule_exactly_as_simpy_resource(capacity):
    from simfed.sim.processing import Cores

    for seed in range(20):
        assert _trace(Cores, capacity, seed) == _trace(simpy.Resource, capacity, seed)


def _job_trace(use_start: bool, cores: int, seed: int) -> list[tuple]:
    """Jobs on a Cpu at tied integer times, some failing: when each runs and
    ends, and how (``Cpu.start`` or ``env.process(Cpu.run)``)."""
    import random

    rnd = random.Random(seed)
    env = simpy.Environment()
    work = [0, 0, 0, 0, 0, 0, 0]
    cpu = Cpu(env, cores, UNIT, lambda: tuple(work))
    log: list[tuple] = []

    def job(i: int, writes: int, fails: bool):
        def fn():
            log.append((env.now, i, "runs"))
            work[5] += writes
            if fails:
                raise KeyError(i)
            return i
        return fn

    def ended(i: int):
        def cb(ev):
            if not ev.ok:
                ev.defused = True
            log.append((env.now, i, ev.ok, repr(ev.value)))
        return cb

    def launcher(i: int, t: int, writes: int, fails: bool):
        yield env.timeout(t)
        fn = job(i, writes, fails)
        done = cpu.start(fn) if use_start else env.process(cpu.run(fn))
        done.callbacks.append(ended(i))

    def bystander(j: int, t: int, writes: int):
        yield env.timeout(t)
        log.append((env.now, f"b{j}"))
        yield from cpu.run(job(f"b{j}", writes, False))  # competes for a core from a timeout's step

    for i in range(50):
        env.process(launcher(i, rnd.randrange(15), rnd.choice((0, 0, 1, 2)), rnd.random() < 0.2))
    for j in range(30):
        env.process(bystander(j, rnd.randrange(20), rnd.choice((0, 1))))
    env.run()
    return log


@pytest.mark.parametrize("cores", [1, 2])
def test_cpu_start_is_env_process_of_cpu_run_exactly(cores):
    for seed in range(20):
        assert _job_trace(True, cores, seed) == _job_trace(False, cores, seed)
