"""Network (bandwidth, partitions, down servers) and Transport (request/response)."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from simfed.sim.latency import ConstantLatency, UniformLatency
from simfed.sim.loss import BernoulliLoss
from simfed.sim.network import Network, Partition
from simfed.sim.transport import (
    M_FORBIDDEN,
    M_LIMIT_EXCEEDED,
    MatrixError,
    RateLimit,
    RequestFailed,
    Response,
    Transport,
)


class Recorder:
    def __init__(self):
        self.records = []

    def message(self, *record):
        self.records.append(record)


def make_net(servers=("a", "b", "c"), latency=None, loss=None, seed=0, **kw):
    env = simpy.Environment()
    obs = Recorder()
    net = Network(env, servers, latency=latency or ConstantLatency(10.0), loss=loss,
                  rng=np.random.default_rng(seed), observer=obs, **kw)
    return env, net, obs


def test_constant_latency_delivery_and_record():
    env, net, obs = make_net()
    got = []
    net.send("a", "b", 100, "hi", lambda p: got.append((env.now, p)), kind="ping")
    env.run()
    assert got == [(10.0, "hi")]
    assert obs.records == [(0, 10.0, "ping", "a", "b", 100, True, None)]


def test_bandwidth_serialization_and_fifo():
    env, net, obs = make_net(upload_bps=8_000_000, latency=ConstantLatency(0.0))
    got = []
    net.send("a", "b", 1_000_000, 1, lambda p: got.append((env.now, p)), kind="big")
    net.send("a", "c", 1_000, 2, lambda p: got.append((env.now, p)), kind="small")
    net.send("b", "c", 1_000, 3, lambda p: got.append((env.now, p)), kind="other-sender")
    env.run()
    assert got[0] == (1.0, 3)  # another sender's link is independent
    assert got[1] == (pytest.approx(1000.0), 1)  # 1 MB at 8 Mbit/s = 1 s
    assert got[2] == (pytest.approx(1001.0), 2)  # queued behind the big one


def test_per_server_upload_rates():
    env, net, _ = make_net(upload_bps={"a": 1_000_000}, latency=ConstantLatency(0.0))
    got = []
    net.send("a", "b", 1000, "x", lambda p: got.append(env.now), kind="k")
    net.send("b", "a", 1000, "y", lambda p: got.append(env.now), kind="k")
    env.run()
    assert got == [0.0, pytest.approx(8.0)]


def test_partition_drops_only_across_groups_during_window():
    part = Partition(100, 200, (("a",), ("b",)))
    env, net, obs = make_net(servers=("a", "b", "c", "d"), partitions=[part])
    got = []

    def send_at(t, src, dst):
        def go(_):
            net.send(src, dst, 10, (t, src, dst), got.append, kind="m")
        env.timeout(t).callbacks.append(go)

    send_at(50, "a", "b")  # before: delivered
    send_at(95, "a", "b")  # sent before, arrives during: dropped at arrival
    send_at(150, "a", "b")  # during: dropped at send
    send_at(150, "b", "a")  # two-way
    send_at(150, "a", "c")  # c in no group: unaffected
    send_at(150, "c", "d")
    send_at(200, "a", "b")  # end is exclusive
    env.run()
    assert got == [(50, "a", "b"), (150, "a", "c"), (150, "c", "d"), (200, "a", "b")]
    dropped = [(r[0], r[1], r[7]) for r in obs.records if not r[6]]
    assert dropped == [(95, 105, "partition"), (150, 150, "partition"), (150, 150, "partition")]


def test_one_way_partition():
    part = Partition(0, 1000, (("a",), ("b", "c")), one_way=True)
    env, net, _ = make_net(partitions=[part])
    got = []
    for src, dst in [("a", "b"), ("b", "a"), ("c", "a"), ("a", "c"), ("b", "c")]:
        net.send(src, dst, 1, (src, dst), got.append, kind="m")
    env.run()
    assert got == [("b", "a"), ("c", "a"), ("b", "c")]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(start_ms=5, end_ms=5, groups=(("a",), ("b",))), "end_ms > start_ms"),
        (dict(start_ms=0, end_ms=5, groups=(("a",), ("a", "b"))), "at most one group"),
        (dict(start_ms=0, end_ms=5, groups=(("a",),)), "two groups"),
    ],
)
def test_partition_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Partition(**kwargs)


def test_partition_with_unknown_server_refused():
    with pytest.raises(ValueError, match="unknown servers"):
        make_net(partitions=[Partition(0, 1, (("a",), ("zz",)))])


def test_down_servers():
    env, net, obs = make_net()
    got = []
    net.set_up("a", False)
    net.send("a", "b", 1, "x", got.append, kind="m")
    net.set_up("a", True)
    net.send("a", "b", 1, "y", got.append, kind="m")  # b goes down before arrival
    env.timeout(5).callbacks.append(lambda _: net.set_up("b", False))
    env.run()
    assert got == []
    assert [(r[0], r[1], r[7]) for r in obs.records] == [(0, 0, "src_down"), (0, 10.0, "dst_down")]
    assert not net.is_up("b")


def test_loss_is_recorded_with_would_be_arrival():
    env, net, obs = make_net(loss=BernoulliLoss(1.0))
    net.send("a", "b", 1, "x", lambda p: None, kind="m")
    env.run()
    assert obs.records == [(0, 10.0, "m", "a", "b", 1, False, "loss")]


def test_same_seed_same_records():
    def run(seed):
        env, net, obs = make_net(latency=UniformLatency(1, 100), loss=BernoulliLoss(0.3), seed=seed,
                                 upload_bps=1e6)
        for i in range(200):
            net.send("abc"[i % 3], "abc"[(i + 1) % 3], 100 + i, i, lambda p: None, kind="m")
        env.run()
        return obs.records

    assert run(7) == run(7)
    assert run(7) != run(8)


# ---- transport --------------------------------------------------------------


def echo(origin, kind, body):
    if body == "forbidden":
        raise MatrixError(M_FORBIDDEN, "not in room")
    return Response(200, {"echo": body, "from": origin}, 50)


def requester(env, tr, out, *args, **kw):
    def proc():
        res = yield tr.request(*args, **kw)
        out.append((env.now, res))
    env.process(proc())


def test_request_response_round_trip_and_error():
    env, net, obs = make_net()
    tr = Transport(env, net)
    tr.register("b", echo)
    out = []
    requester(env, tr, out, "a", "b", "get_missing_events", "q", 100, timeout_ms=1000)
    requester(env, tr, out, "a", "b", "state_ids", "forbidden", 100, timeout_ms=1000)
    env.run()
    assert out[0] == (20.0, Response(200, {"echo": "q", "from": "a"}, 50))
    t, err = out[1]
    assert err.status == 403 and err.body == {"errcode": "M_FORBIDDEN", "error": "not in room"}
    kinds = [r[2] for r in obs.records]
    assert "get_missing_events_response" in kinds and "state_ids_response" in kinds


def test_request_timeout_under_total_loss():
    env, net, _ = make_net(loss=BernoulliLoss(1.0))
    tr = Transport(env, net)
    tr.register("b", echo)
    out = []
    requester(env, tr, out, "a", "b", "k", "q", 10, timeout_ms=500)
    env.run()
    assert out == [(500, RequestFailed("timeout"))]


def test_request_from_down_server_fails_at_once_and_dst_down_times_out():
    env, net, _ = make_net()
    tr = Transport(env, net)
    tr.register("b", echo)
    out = []
    net.set_up("c", False)
    requester(env, tr, out, "c", "b", "k", "q", 10, timeout_ms=500)
    requester(env, tr, out, "a", "c", "k", "q", 10, timeout_ms=500)
    env.run()
    assert out == [(0, RequestFailed("connection")), (500, RequestFailed("timeout"))]


def test_deferred_handler_answers_later():
    env, net, _ = make_net()
    tr = Transport(env, net)

    def slow(origin, kind, body):
        def work():
            yield env.timeout(100)
            if body == "bad":
                raise MatrixError(M_FORBIDDEN, "no")
            return Response(200, "done", 10)
        return env.process(work())

    tr.register("b", slow)
    out = []
    requester(env, tr, out, "a", "b", "k", "ok", 10, timeout_ms=1000)
    requester(env, tr, out, "a", "b", "k", "bad", 10, timeout_ms=1000)
    env.run()
    assert out[0] == (120.0, Response(200, "done", 10))
    assert out[1][0] == 120.0 and out[1][1].status == 403


def test_rate_limit_answers_429_with_retry_after():
    env, net, _ = make_net(latency=ConstantLatency(0.0))
    tr = Transport(env, net, rate_limit=RateLimit(max_requests=3, window_ms=1000))
    tr.register("b", echo)
    out = []
    for i in range(4):
        env.timeout(100 * i).callbacks.append(
            lambda _, i=i: requester(env, tr, out, "a", "b", "k", i, 10, timeout_ms=50))
    requester(env, tr, out, "c", "b", "k", "other origin", 10, timeout_ms=50)
    env.timeout(1000).callbacks.append(lambda _: requester(env, tr, out, "a", "b", "k", "later", 10, timeout_ms=50))
    env.run()
    statuses = [(t, r.status) for t, r in out]
    assert statuses == [(0, 200), (0, 200), (100, 200), (200, 200), (300, 429), (1000, 200)]
    limited = out[4][1]
    assert limited.body["errcode"] == M_LIMIT_EXCEEDED and limited.body["retry_after_ms"] == 700


def test_rate_limit_exempt_kind():
    env, net, _ = make_net(latency=ConstantLatency(0.0))
    tr = Transport(env, net, rate_limit=RateLimit(max_requests=1, exempt_kinds=frozenset({"transaction"})))
    tr.register("b", echo)
    out = []
    for _ in range(3):
        requester(env, tr, out, "a", "b", "transaction", "t", 10, timeout_ms=50)
    env.run()
    assert [r.status for _, r in out] == [200, 200, 200]


def test_matrix_error_body():
    err = MatrixError(M_LIMIT_EXCEEDED, "slow down", retry_after_ms=100)
    assert err.http_status == 429
    assert err.body() == {"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 100}
    assert MatrixError("M_UNKNOWN", "busy", 429).http_status == 429
