"""FederationSender: batching, one in flight, retries, backoff, catch-up, crash."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import simpy

from simfed.sim.federation import TXN_KIND, FederationConfig, FederationSender
from simfed.sim.latency import ConstantLatency, UniformLatency
from simfed.sim.loss import BernoulliLoss
from simfed.sim.network import Network, Partition
from simfed.sim.transport import Response, Transport

MIN = 60_000.0


@dataclass(frozen=True)
class Pdu:
    event_id: str
    room_id: str
    size_bytes: int = 500


class HalfRng:
    """A stub generator: every U(0,1) draw is 0.5, so every jitter is x1.1."""

    def random(self):
        return 0.5


class Receiver:
    """A fake destination: records transactions, deduplicates by txn_id."""

    def __init__(self, env, status=200):
        self.env = env
        self.status = status
        self.txns = []
        self.seen = set()

    def __call__(self, origin, kind, body):
        assert kind == TXN_KIND
        if self.status != 200:
            return Response(self.status, {"errcode": "M_UNKNOWN", "error": "x"}, 50)
        if body["txn_id"] not in self.seen:
            self.seen.add(body["txn_id"])
            self.txns.append((self.env.now, body))
        return Response(200, {"pdus": {}}, 50)

    @property
    def pdus(self):
        return [p for _, body in self.txns for p in body["pdus"]]


class Events:
    def __init__(self):
        self.events = []
        self.messages = []

    def sender_event(self, t, origin, destination, what, info):
        self.events.append((t, destination, what, dict(info)))

    def message(self, *record):
        self.messages.append(record)

    def what(self, name):
        return [e for e in self.events if e[2] == name]


def world(config=None, *, latency=None, loss=None, partitions=(), rng=None, provider=None, seed=0):
    env = simpy.Environment()
    obs = Events()
    net = Network(env, ["a", "b"], latency=latency or ConstantLatency(10.0), loss=loss,
                  rng=np.random.default_rng(seed), partitions=partitions, observer=obs)
    tr = Transport(env, net)
    recv = Receiver(env)
    tr.register("b", recv)
    sender = FederationSender(env, "a", tr, rng if rng is not None else np.random.default_rng(seed + 1),
                              config, catchup_provider=provider, observer=obs)
    return env, net, sender, recv, obs


def pdus(n, room="!r", prefix="$e"):
    return [Pdu(f"{prefix}{i}", room) for i in range(n)]


def test_batches_at_most_50_and_one_in_flight():
    env, net, sender, recv, obs = world()
    for p in pdus(120):
        sender.send_pdu("b", p, p.room_id)
    env.run()
    assert [len(body["pdus"]) for _, body in recv.txns] == [50, 50, 20]
    assert [p.event_id for p in recv.pdus] == [f"$e{i}" for i in range(120)]
    txn_msgs = [m for m in obs.messages if m[2] in (TXN_KIND, TXN_KIND + "_response")]
    kinds = [m[2] for m in sorted(txn_msgs, key=lambda m: (m[0], m[1]))]
    assert kinds == [TXN_KIND, TXN_KIND + "_response"] * 3
    # each transaction leaves only after the previous response arrived
    sends = [m[0] for m in txn_msgs if m[2] == TXN_KIND]
    acks = [m[1] for m in txn_msgs if m[2] != TXN_KIND]
    assert all(s >= a for s, a in zip(sends[1:], acks))
    assert not sender.is_sending("b") and sender.pending_pdus("b") == 0
    assert recv.txns[0][1]["origin"] == "a" and "origin_server_ts" in recv.txns[0][1]
    assert all(t[1]["edus"] == [] for t in recv.txns)


def test_transaction_size_and_edus():
    env, net, sender, recv, obs = world()
    sender.send_pdu("b", Pdu("$x", "!r", 1000), "!r")
    sender.send_pdu("b", "raw", "!r", size_bytes=300)
    for i in range(150):
        sender.send_edu("b", {"edu_type": "m.x", "n": i}, size_bytes=10)
    sender.send_edu("b", {"edu_type": "m.typing", "v": 1}, key=("typing", "!r", "@u"))
    sender.send_edu("b", {"edu_type": "m.typing", "v": 2}, key=("typing", "!r", "@u"))
    env.run()
    sizes = [m[5] for m in obs.messages if m[2] == TXN_KIND]
    cfg = FederationConfig()
    assert sizes[0] == cfg.txn_overhead_bytes + 1300 + 100 * 10
    assert [len(b["edus"]) for _, b in recv.txns] == [100, 51]
    typing = [e for _, b in recv.txns for e in b["edus"] if e["edu_type"] == "m.typing"]
    assert typing == [{"edu_type": "m.typing", "v": 2}]
    with pytest.raises(TypeError, match="size_bytes"):
        sender.send_pdu("b", object(), "!r")


def test_retry_schedule_and_backoff_follow_synapse_constants():
    cfg = FederationConfig(request_timeout_ms=1000.0)
    env, net, sender, recv, obs = world(cfg, rng=HalfRng(), provider=lambda d, rooms: [(r, [Pdu("$1", r)]) for r in rooms])
    net.set_up("b", False)
    sender.send_pdu("b", Pdu("$1", "!r"), "!r")
    env.run(until=200 * MIN)
    sends = [m[0] for m in obs.messages if m[2] == TXN_KIND]
    first_attempt = sends[:11]
    gaps = np.diff(first_attempt)
    expected = [1000 + min(4**k, 60) * 1000 * 1.1 for k in range(1, 11)]
    assert gaps == pytest.approx(expected)
    backoffs = [e[3]["interval_ms"] for e in obs.what("backoff")]
    assert backoffs[:3] == pytest.approx([10 * MIN, 10 * MIN * 2.2, 10 * MIN * 2.2**2])
    # the next attempt starts at the first sweep after the backoff has ended
    fail_t = obs.what("txn_failed")[0][0]
    second_start = sends[11]
    assert fail_t + 10 * MIN <= second_start < fail_t + 10 * MIN + cfg.catchup_sweep_ms + 1


def test_backoff_cap_and_pre_1_90_multiplier():
    cfg = FederationConfig()
    x = 0.0
    for _ in range(40):
        x = cfg.next_backoff_ms(x, 1.0)
    assert x == 7 * 24 * 60 * MIN
    old = FederationConfig.pre_1_90()
    assert old.next_backoff_ms(10 * MIN, 0.0) == pytest.approx(10 * MIN * 5 * 0.8)
    assert old.backoff_max_ms is None
    assert cfg.next_backoff_ms(0.0, 0.9) == 10 * MIN
    assert cfg.retry_delay_ms(1, 0.0) == 4000 * 0.8 and cfg.retry_delay_ms(5, 1.0) == 60_000 * 1.4


def test_non_retryable_4xx_fails_without_backoff():
    env, net, sender, recv, obs = world(FederationConfig(catchup_after_any_failure=False))
    recv.status = 400
    sender.send_pdu("b", Pdu("$1", "!r"), "!r")
    env.run(until=10 * MIN)
    sends = [m[0] for m in obs.messages if m[2] == TXN_KIND]
    # no retry inside the attempt; the sweep tries again a minute later
    assert len(sends) >= 2 and min(np.diff(sends)) >= FederationConfig().catchup_sweep_ms
    assert obs.what("backoff") == [] and sender.retry_interval_ms("b") == 0
    assert sender.pending_pdus("b") == 1


def test_exactly_once_in_order_after_partition_heals():
    part = Partition(0, 30 * MIN, (("a",), ("b",)))
    cfg = FederationConfig(catchup_after_any_failure=False)
    env, net, sender, recv, obs = world(cfg, partitions=[part], latency=UniformLatency(5, 50))
    sent = []

    def workload():
        for i in range(80):
            p = Pdu(f"$e{i}", "!r")
            sent.append(p.event_id)
            sender.send_pdu("b", p, p.room_id)
            yield env.timeout(30_000)

    env.process(workload())
    env.run(until=300 * MIN)
    assert [p.event_id for p in recv.pdus] == sent
    assert obs.what("backoff") and obs.what("catchup_start") == []
    assert all(len(b["pdus"]) <= 50 for _, b in recv.txns)
    assert sender.undelivered_rooms("b") == ()


def test_default_catchup_sends_only_newest_per_room():
    newest = {"!r1": Pdu("$r1-9", "!r1"), "!r2": Pdu("$r2-4", "!r2")}
    calls = []

    def provider(destination, room_ids):
        calls.append((destination, tuple(room_ids)))
        return [(r, [newest[r]]) for r in room_ids]

    env, net, sender, recv, obs = world(provider=provider)
    net.set_up("b", False)
    for i in range(10):
        sender.send_pdu("b", Pdu(f"$r1-{i}", "!r1"), "!r1")
    for i in range(5):
        sender.send_pdu("b", Pdu(f"$r2-{i}", "!r2"), "!r2")
    env.timeout(30 * MIN).callbacks.append(lambda _: net.set_up("b", True))
    env.run(until=120 * MIN)
    assert obs.what("catchup_start")
    assert calls == [("b", ("!r1", "!r2"))]
    assert [p.event_id for p in recv.pdus] == ["$r1-9", "$r2-4"]
    assert len(recv.txns) == 1
    assert not sender.is_catching_up("b") and sender.undelivered_rooms("b") == ()


def test_after_restart_a_destination_never_reached_still_gets_new_pdus():
    """A restarted sender catches up every destination with undelivered PDUs;
    one it never reached has nothing to catch up from (Synapse: no last
    successful stream ordering), so a PDU sent meanwhile is queued, not left
    to a catch-up that sends nothing."""
    env, net, sender, recv, obs = world(provider=lambda destination, room_ids: [])
    sender.crash()
    sender.send_pdu("b", Pdu("$while-down", "!r"), "!r")
    sender.restart()
    assert sender.is_catching_up("b")
    sender.send_pdu("b", Pdu("$new", "!r"), "!r")
    env.run(until=10 * MIN)
    assert [p.event_id for p in recv.pdus] == ["$new"]


def test_crash_drops_queue_and_restart_catches_up_newest():
    calls = []

    def provider(destination, room_ids):
        calls.append(tuple(room_ids))
        return [(r, [Pdu(f"{r}-newest", r)]) for r in room_ids]

    env, net, sender, recv, obs = world(FederationConfig(request_timeout_ms=1000.0), provider=provider)
    net.set_up("b", False)
    for i in range(5):
        sender.send_pdu("b", Pdu(f"$a{i}", "!a"), "!a")
    for i in range(3):
        sender.send_pdu("b", Pdu(f"$b{i}", "!b"), "!b")
    sender.send_edu("b", {"edu_type": "m.presence"})

    def script():
        yield env.timeout(500)  # the first transaction is in flight
        sender.crash()
        assert sender.pending_pdus("b") == 0 and sender.pending_edus("b") == 0
        yield env.timeout(500)
        net.set_up("b", True)
        sender.restart()

    env.process(script())
    env.run(until=5 * MIN)
    assert calls == [("!a", "!b")]
    assert [p.event_id for p in recv.pdus] == ["!a-newest", "!b-newest"]
    assert recv.txns[0][0] >= 1000 + FederationConfig().catchup_startup_delay_ms
    # the pre-crash attempt was abandoned: it never retried
    assert obs.what("txn_failed") == []


def test_long_outage_without_any_failure_catchup_drops_queue_after_threshold():
    cfg = FederationConfig(catchup_after_any_failure=False, request_timeout_ms=1000.0)
    env, net, sender, recv, obs = world(cfg, provider=lambda d, rooms: [(r, [Pdu("$last", r)]) for r in rooms])
    net.set_up("b", False)
    sender.send_pdu("b", Pdu("$1", "!r"), "!r")
    sender.send_edu("b", {"edu_type": "m.typing"})
    env.timeout(8 * 60 * MIN).callbacks.append(lambda _: net.set_up("b", True))
    env.run(until=24 * 60 * MIN)
    starts = obs.what("catchup_start")
    assert starts
    t_catchup = starts[0][0]
    intervals_before = [e[3]["interval_ms"] for e in obs.what("backoff") if e[0] <= t_catchup]
    assert intervals_before[-1] > cfg.catchup_threshold_ms
    assert [p.event_id for p in recv.pdus] == ["$last"]


def test_on_contact_resets_backoff_and_wakes():
    cfg = FederationConfig(request_timeout_ms=1000.0, max_retries=0)
    env, net, sender, recv, obs = world(cfg, provider=lambda d, rooms: [(r, [Pdu("$new", r)]) for r in rooms])
    net.set_up("b", False)
    sender.send_pdu("b", Pdu("$1", "!r"), "!r")

    def script():
        yield env.timeout(2000)
        assert sender.is_backing_off("b")
        net.set_up("b", True)
        yield env.timeout(1000)
        assert recv.txns == []
        sender.on_contact("b")
        assert not sender.is_backing_off("b")

    env.process(script())
    env.run(until=4000)
    assert [p.event_id for p in recv.pdus] == ["$new"]
    assert recv.txns[0][0] < 3100


def test_same_seed_same_records():
    def run(seed):
        env, net, sender, recv, obs = world(
            FederationConfig(request_timeout_ms=2000.0), latency=UniformLatency(5, 80),
            loss=BernoulliLoss(0.2), seed=seed,
            provider=lambda d, rooms: [(r, [Pdu(f"{r}-n", r)]) for r in rooms])

        def workload():
            for i in range(60):
                sender.send_pdu("b", Pdu(f"$e{i}", f"!r{i % 3}"), f"!r{i % 3}")
                yield env.timeout(700)

        env.process(workload())
        env.run(until=60 * MIN)
        return obs.messages, obs.events

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_newest_per_room_and_undelivered_rooms_across_one_and_two_rooms():
    """The newest PDU is kept as a pair while one room has any, then a
    dict; nothing undelivered is one shared empty mapping."""
    env, net, sender, recv, obs = world()
    assert sender.catchup_hints("b") == (None, {}) and sender.undelivered_rooms("b") == ()
    net.set_up("b", False)
    sender.send_pdu("b", Pdu("$r1-0", "!r1"), "!r1")
    sender.send_pdu("b", Pdu("$r1-1", "!r1"), "!r1")
    assert sender.catchup_hints("b") == (None, {"!r1": Pdu("$r1-1", "!r1")})
    sender.send_pdu("b", Pdu("$r2-0", "!r2"), "!r2")
    sender.send_pdu("b", Pdu("$r1-2", "!r1"), "!r1")
    assert sender.catchup_hints("b")[1] == {"!r1": Pdu("$r1-2", "!r1"), "!r2": Pdu("$r2-0", "!r2")}
    assert sender.undelivered_rooms("b") == ("!r2", "!r1")
    net.set_up("b", True)
    env.run(until=5 * MIN)
    sender.send_pdu("b", Pdu("$r2-1", "!r2"), "!r2")
    env.run(until=10 * MIN)
    assert sender.undelivered_rooms("b") == ()
    last, newest = sender.catchup_hints("b")
    assert last is not None and newest == {"!r1": Pdu("$r1-2", "!r1"), "!r2": Pdu("$r2-1", "!r2")}
