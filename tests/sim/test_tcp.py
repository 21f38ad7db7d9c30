"""The TCP model: segments, RTO backoff, SYN backoff, give-up, connections,
the closed-form mean delay, and its wiring into Network and Transport."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from simfed.sim.latency import ConstantLatency
from simfed.sim.loss import BernoulliLoss, NoLoss
from simfed.sim.network import Network
from simfed.sim.tcp import TcpModel, TcpParams, expected_segment_delay_ms
from simfed.sim.transport import RequestFailed, Response, Transport

RTT = 200.0
RTO = RTT + 200.0  # Linux: RTT + rto_min


class Scripted:
    """Loss decided by a script of booleans, one per packet; counts the asks."""

    def __init__(self, script, then=False):
        self.script = list(script)
        self.then = then
        self.asked: list[tuple[str, str]] = []

    def drops(self, src, dst, rng):
        self.asked.append((src, dst))
        return self.script.pop(0) if self.script else self.then


def model(loss, **kw) -> TcpModel:
    return TcpModel(TcpParams(**kw), loss, lambda a, b: RTT)


def warm(m: TcpModel, a="a", b="b") -> TcpModel:
    m.used(a, b, 0.0)
    return m


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("size,segments", [(0, 1), (1, 1), (1460, 1), (1461, 2), (14_600, 10), (14_601, 11)])
def test_one_loss_draw_per_segment(size, segments):
    loss = Scripted([])
    tr = warm(model(loss)).transfer("a", "b", size, 1.0, RNG)
    assert len(loss.asked) == segments and loss.asked[0] == ("a", "b")
    assert (tr.delay_ms, tr.retransmissions, tr.failed, tr.opened) == (0.0, 0, False, False)


def test_rto_doubles_on_consecutive_losses_of_a_segment():
    tr = warm(model(Scripted([True, True, True, False]))).transfer("a", "b", 100, 1.0, RNG)
    assert tr.delay_ms == pytest.approx(RTO * (1 + 2 + 4)) and tr.retransmissions == 3 and not tr.failed


def test_losses_of_different_segments_each_start_at_rto():
    tr = warm(model(Scripted([True, False, True, False]))).transfer("a", "b", 2000, 1.0, RNG)
    assert tr.delay_ms == pytest.approx(2 * RTO) and tr.retransmissions == 2


def test_rto_is_capped_and_rfc6298_variant():
    tr = warm(model(Scripted([True] * 3 + [False]), rto_max_ms=500.0)).transfer("a", "b", 1, 1.0, RNG)
    assert tr.delay_ms == pytest.approx(RTO + 500 + 500)
    m = model(NoLoss(), rto="rfc6298", rto_min_ms=1000.0)
    assert m.rto_ms(200.0) == 1000.0 and m.rto_ms(500.0) == 1500.0
    assert model(NoLoss()).rto_ms(50.0) == 250.0


def test_syn_backoff_one_two_four_seconds():
    # SYN lost, then SYN-ACK lost, then both through: 1 s + 2 s + one RTT (TLS off).
    loss = Scripted([True, False, True, False, False])
    tr = model(loss, tls_rtts=0).transfer("a", "b", 100, 0.0, RNG)
    assert tr.opened and not tr.failed and tr.retransmissions == 2
    assert tr.delay_ms == pytest.approx(1000 + 2000 + RTT)
    assert loss.asked[:4] == [("a", "b"), ("a", "b"), ("b", "a"), ("a", "b")]


def test_handshake_costs_tcp_and_tls_round_trips():
    tr = model(NoLoss()).transfer("a", "b", 100, 0.0, RNG)
    assert tr.opened and tr.delay_ms == pytest.approx(2 * RTT)
    assert model(NoLoss(), tls_rtts=2).transfer("a", "b", 100, 0.0, RNG).delay_ms == pytest.approx(3 * RTT)


def test_exhausted_data_retries_fail_after_linux_924_seconds():
    m = warm(TcpModel(TcpParams(), Scripted([], then=True), lambda a, b: 0.0))
    tr = m.transfer("a", "b", 100, 1.0, RNG)
    assert tr.failed and tr.retransmissions == 15
    assert tr.delay_ms == pytest.approx(924_600.0)  # 0.2 s x (2^10 - 1) + 6 x 120 s
    assert not m.connected("a", "b", 2.0)  # the failed connection is gone


def test_exhausted_syn_retries_fail_after_127_seconds():
    tr = model(Scripted([], then=True)).transfer("a", "b", 100, 0.0, RNG)
    assert tr.failed and tr.opened and tr.retransmissions == 6
    assert tr.delay_ms == pytest.approx(127_000.0)
    tr = model(Scripted([], then=True), syn_retries=1).transfer("a", "b", 100, 0.0, RNG)
    assert tr.delay_ms == pytest.approx(3000.0)


def test_keepalive_idle_timeout_and_per_request_connections():
    m = model(NoLoss())
    assert m.transfer("a", "b", 1, 0.0, RNG).opened
    m.used("a", "b", 1000.0)
    assert not m.transfer("a", "b", 1, 60_000.0, RNG).opened
    assert m.transfer("a", "b", 1, 1000.0 + 120_001.0, RNG).opened       # idle > 2 min
    assert not m.transfer("b", "a", 1, 0.0, RNG, reply=True).opened       # a reply never opens one
    assert m.transfer("b", "a", 1, 0.0, RNG).opened                       # b's own requests need b's connection
    m.close_all("a")
    assert not m.connected("a", "b", 1000.0)
    per_request = model(NoLoss(), keepalive=False)
    per_request.used("a", "b", 0.0)
    assert per_request.transfer("a", "b", 1, 1.0, RNG).opened


def test_mathis_cap_adds_transfer_time():
    size = 100 * 1460
    m = warm(model(BernoulliLoss(0.01), mathis=True))
    rate = 1460 * math.sqrt(1.5) / (RTT * 0.1)  # bytes per ms
    tr = m.transfer("a", "b", size, 1.0, np.random.default_rng(5), serialization_ms=10.0)
    plain = warm(model(BernoulliLoss(0.01))).transfer("a", "b", size, 1.0, np.random.default_rng(5))
    assert tr.delay_ms - plain.delay_ms == pytest.approx(size / rate - 10.0)


def test_closed_form_matches_exact_sum():
    for p in (0.01, 0.05, 0.2):
        # the RTO cap (120 s) and the retry limit matter only at large p
        assert expected_segment_delay_ms(p, RTO) == pytest.approx(RTO * p / (1 - 2 * p), rel=1e-3)


@pytest.mark.parametrize("p,segments", [(0.05, 1), (0.05, 4), (0.15, 2)])
def test_mean_added_delay_matches_closed_form(p, segments):
    """n segments at Bernoulli loss p on a warm link of RTT r: mean added
    delay n * (r + 200 ms) * p / (1 - 2p), within 4 standard errors."""
    m = warm(model(BernoulliLoss(p)))
    rng = np.random.default_rng(12)
    x = np.array([m.transfer("a", "b", segments * 1460, 1.0, rng).delay_ms for _ in range(40_000)])
    expected = segments * RTO * p / (1 - 2 * p)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert abs(x.mean() - expected) < 4 * se, (x.mean(), expected, se)
    retrans = np.array([m.transfer("a", "b", segments * 1460, 1.0, rng).retransmissions for _ in range(20_000)])
    assert retrans.mean() == pytest.approx(segments * p / (1 - p), rel=0.1)


# -- wiring: Network and Transport ---------------------------------------------------------


class Log:
    def __init__(self):
        self.rows = []

    def message(self, *row, retransmissions=0):
        self.rows.append((*row, retransmissions))


def net(env, *, loss=None, tcp_loss=None, log=None, **kw):
    tcp = None if tcp_loss is None else TcpModel(TcpParams(**kw), tcp_loss, lambda a, b: 100.0)
    return Network(env, ["a", "b"], latency=ConstantLatency(50.0), loss=loss, tcp=tcp,
                   rng=np.random.default_rng(1), observer=log)


def test_network_adds_tcp_delay_and_records_retransmissions():
    env, log = simpy.Environment(), Log()
    n = net(env, tcp_loss=Scripted([False, False, True, False]), log=log)  # handshake ok, TLS ok, data lost once
    got = []
    n.send("a", "b", 100, "x", lambda p: got.append(env.now), kind="transaction")
    env.run()
    # handshake: 100 (TCP) + 100 (TLS); data: lost once, RTO = 100 + 200; then 50 ms one way
    assert got == [pytest.approx(200 + 300 + 50)]
    assert log.rows[0][6:] == (True, None, 1)


def test_network_tcp_failure_calls_on_fail_and_records_connection():
    env, log = simpy.Environment(), Log()
    n = net(env, tcp_loss=Scripted([], then=True), log=log, syn_retries=1)
    failed, got = [], []
    n.send("a", "b", 100, "x", got.append, kind="transaction", on_fail=lambda: failed.append(env.now))
    env.run()
    assert got == [] and failed == [pytest.approx(3000.0)]
    assert log.rows[0][6:] == (False, "connection", 1)


def test_request_loss_still_drops_whole_messages():
    env, log = simpy.Environment(), Log()
    n = net(env, loss=BernoulliLoss(1.0), tcp_loss=NoLoss(), log=log)
    got = []
    n.send("a", "b", 100, "x", got.append, kind="transaction")
    env.run()
    assert got == [] and log.rows[0][6:8] == (False, "loss")


def test_transport_connection_error_and_timeout_closes_connection():
    env = simpy.Environment()
    n = net(env, tcp_loss=Scripted([], then=True), syn_retries=0)
    tr = Transport(env, n)
    tr.register("b", lambda origin, kind, body: Response(200, {}, 10))
    results = []

    def go():
        res = yield tr.request("a", "b", "ping", {}, 10, timeout_ms=60_000)
        results.append((env.now, res))

    env.process(go())
    env.run()
    assert results == [(pytest.approx(1000.0), RequestFailed("connection"))]

    env = simpy.Environment()
    n = net(env, tcp_loss=NoLoss())
    tr = Transport(env, n)
    tr.register("b", lambda origin, kind, body: env.timeout(10_000, Response(200, {}, 10)))
    out = []

    def slow():
        out.append((yield tr.request("a", "b", "ping", {}, 10, timeout_ms=1000)))
        out.append(n._tcp.connected("a", "b", env.now))

    env.process(slow())
    env.run()
    assert out == [RequestFailed("timeout"), False]


# -- scenario keys -------------------------------------------------------------------------


def test_scenario_keys_validate_and_reach_the_model():
    from simfed.experiment.scenario import ScenarioError, load_scenario
    from simfed.sim.world import World

    sc = load_scenario({"network": {"loss": 0.03, "request_loss": {"model": "gilbert-elliott", "p_good_to_bad": 0.1,
                                                                    "p_bad_to_good": 0.5},
                                    "tcp": {"rto": "rfc6298", "rto_min": "1s", "tls_rtts": 2, "keepalive": False}}})
    assert sc.network.request_loss.model == "gilbert-elliott"
    tcp = World(sc).network._tcp
    assert tcp.params.rto == "rfc6298" and tcp.params.rto_min_ms == 1000.0 and tcp.params.tls_rtts == 2
    assert isinstance(tcp.loss, BernoulliLoss) and tcp.loss.p == 0.03 and not tcp.params.keepalive
    assert World(load_scenario({"network": {"tcp": {"enabled": False}}})).network._tcp is None
    for bad, where in (({"tcp": {"enabled": False}, "loss": 0.1}, "network.tcp.enabled"),
                       ({"request_loss": 2}, "network.request_loss"),
                       ({"tcp": {"rto_min": "1s", "rto_max": "500ms"}}, "network.tcp.rto_max"),
                       ({"tcp": {"syn_retries": -1}}, "network.tcp.syn_retries")):
        with pytest.raises(ScenarioError, match=where.replace(".", r"\.")):
            load_scenario({"network": bad})


def test_runs_with_packet_loss_record_retransmissions_and_request_loss_drops():
    from simfed.experiment.scenario import load_scenario
    from simfed.sim.world import simulate

    def traffic(**network):
        sc = load_scenario({"simulation": {"seed": 3, "duration": "2m"}, "servers": {"count": 3},
                            "workload": {"stop": "1m"}, "network": network})
        return simulate(sc).recorder.tables()["traffic"]

    tcp = traffic(loss=0.1)
    assert tcp["retransmissions"].sum() > 0 and not (tcp["reason"] == "loss").any()
    late = tcp[tcp["delivered"] & (tcp["retransmissions"] > 0)]
    assert ((late["t_done"] - late["t_sent"]) >= 200.0).all()  # at least one RTO (RTT + 200 ms)
    whole = traffic(loss=0, request_loss=0.1, tcp={"enabled": False})
    assert (whole["reason"] == "loss").sum() > 0 and whole["retransmissions"].sum() == 0
