"""Assemble a simulated federation from a scenario and run it.

``simulate(scenario)`` builds the network, the transport, one homeserver
(with its federation sender) per server, the workload and the faults, runs
SimPy to the end of the scenario and returns a :class:`SimResult`. All
randomness comes from the scenario seed, one independent stream per named
component (``SeedSequence`` with a key derived from the component's name),
so adding a server does not change what the others draw.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import simpy

from ..config import Scenario
from ..protocol import Event, derive_server_key
from ..protocol.checks import CheckResult, check_event
from ..protocol.room import SharedStateMemo
from .adversary import attach as attach_adversaries
from .adversary.forging import forged_event
from .changes import check_changes, schedule_changes
from .fanout import FanOut, make_fanout
from .gctune import fewer_collections
from .federation import FederationConfig, FederationSender
from .homeserver import Homeserver, HomeserverConfig, state_digest
from .latency import (
    ConstantLatency, LogNormalLatency, NormalLatency, RegionLatency, UniformLatency,
    assign_regions, load_simblock_regions,
)
from .loss import BernoulliLoss, GilbertElliottLoss, NoLoss, WindowedLoss
from .netgraph import GraphLatency, build_graph
from .network import Network, Partition
from .processing import Cpu, cost_table, work_done
from .streamorder import StreamOrder
from .streams import Streams, stream
from .tcp import TcpModel, TcpParams
from .services import Services, identity_node_names
from .services.common import HostedLatency, hosts_for
from .defences import FederationRateLimiter, RateLimitSettings
from .transport import RateLimit, Transport
from .workload import Workload

__all__ = ["SimResult", "World", "component_rng", "preflight", "simulate"]

EPOCH_MS = 1_700_000_000_000


@dataclass
class SimResult:
    """What a run leaves behind: the servers (with their rooms) and the observations."""

    scenario: Scenario
    recorder: Any
    end_t: float
    completed: bool
    honest: frozenset[str]
    room_id: str
    servers: dict[str, Homeserver]
    wall_time_s: float
    regions: dict[str, str] = field(default_factory=dict)

    def final_states(self) -> dict[str, dict]:
        """Each server's current resolved state of the room (servers in it)."""
        return {n: dict(s.rooms[self.room_id].current_state()) for n, s in self.servers.items()
                if self.room_id in s.rooms}

    def counters(self) -> dict[str, dict[str, int]]:
        return {n: dict(s.counters) for n, s in self.servers.items()}


def _latency(sc: Scenario, names: tuple[str, ...], rng: np.random.Generator) -> tuple[Any, dict[str, str]]:
    """The latency model and each server's region. With ``[topology.graph]``
    the model is a ``GraphLatency`` built from a child stream of ``rng`` (so
    the regions draw the same either way) and ``network.latency`` is unused."""
    lat = sc.network.latency
    regions: dict[str, str] = {}
    graph_rng = rng.spawn(1)[0]
    if sc.servers.regions is not None:
        table = load_simblock_regions(2019)
        if isinstance(sc.servers.regions, str):
            regions = assign_regions(names, table.node_shares, rng)
        else:
            regions = dict(sc.servers.regions)
    if sc.topology.graph is not None:
        return build_graph(sc.topology.graph, names, graph_rng), regions
    if lat.model == "constant":
        return ConstantLatency(lat.delay_ms), regions
    if lat.model == "uniform":
        return UniformLatency(lat.low_ms, lat.high_ms), regions
    if lat.model == "normal":
        return NormalLatency(lat.mean_ms, lat.sd_ms), regions
    if lat.model == "lognormal":
        return LogNormalLatency(lat.median_ms, lat.sigma), regions
    return RegionLatency.from_table(load_simblock_regions(2019), regions, jitter=lat.jitter), regions


def _with_rest(groups: tuple[tuple[str, ...], ...], names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Scenario semantics: servers listed in no group form one more group."""
    listed = {s for g in groups for s in g}
    rest = tuple(n for n in names if n not in listed)
    return tuple(groups) + ((rest,) if rest else ())


def _loss(sc: Scenario, env: simpy.Environment, loss: Any) -> Any:
    """The loss model of ``loss`` (``network.loss`` or ``network.request_loss``),
    limited to ``network.loss_window``."""
    if loss.model == "bernoulli":
        model = NoLoss() if loss.p == 0 else BernoulliLoss(loss.p)
    else:
        model = GilbertElliottLoss(loss.p_good_to_bad, loss.p_bad_to_good, loss.loss_good, loss.loss_bad)
    w = sc.network.loss_window
    if w is not None and not isinstance(model, NoLoss):
        model = WindowedLoss(model, w.start_ms, w.end_ms, lambda: env.now)
    return model


def _tcp(sc: Scenario, env: simpy.Environment, latency: Any) -> TcpModel | None:
    """The TCP model fed with the packet loss ``network.loss`` (None when off)."""
    t = sc.network.tcp
    if not t.enabled:
        return None
    params = TcpParams(mss=t.mss, rto=t.rto, rto_min_ms=t.rto_min_ms, rto_max_ms=t.rto_max_ms,
                       syn_rto_ms=t.syn_rto_ms, syn_retries=t.syn_retries, data_retries=t.data_retries,
                       tls_rtts=t.tls_rtts, keepalive=t.keepalive, idle_timeout_ms=t.idle_timeout_ms,
                       mathis=t.mathis)
    return TcpModel(params, _loss(sc, env, sc.network.loss), lambda a, b: latency.mean(a, b) + latency.mean(b, a))


def component_rng(seed: int, name: str) -> np.random.Generator:
    """The independent stream of the component ``name`` in a run seeded ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),)))


def preflight(scenario: Scenario) -> None:
    """Build what a run derives from its seed before it starts (the network
    graph) and check that the scenario fits it, without running anything.
    Raises :class:`~simfed.errors.ScenarioMismatch` (a disconnected
    generated graph, a link change on an edge the graph does not have)."""
    latency, _ = _latency(scenario, scenario.server_names(), component_rng(scenario.simulation.seed, "regions"))
    check_changes(scenario.topology, latency if isinstance(latency, GraphLatency) else None)


class World:
    """Everything one run shares: clock, network, servers, caches, recorder."""

    def __init__(self, scenario: Scenario, recorder: Any = None) -> None:
        self.scenario = sc = scenario
        self.env = simpy.Environment()
        self.recorder = recorder
        self.epoch_ms = EPOCH_MS
        self.seed = sc.simulation.seed
        names = sc.server_names()
        latency, self.regions = _latency(sc, names, self.rng("regions"))
        self.graph: GraphLatency | None = latency if isinstance(latency, GraphLatency) else None
        # Identity servers ([services.identity]) are network nodes too, placed at a homeserver.
        id_nodes = identity_node_names(sc)
        reachable = self.graph.reachable if self.graph is not None else None
        if id_nodes:
            hosts = hosts_for(id_nodes, names)
            latency = HostedLatency(latency, hosts)
            if reachable is not None:
                reachable = lambda s, d, f=reachable, h=hosts: f(h.get(s, s), h.get(d, d))  # noqa: E731
        self.network = Network(
            self.env, names + id_nodes, latency=latency, loss=_loss(sc, self.env, sc.network.request_loss),
            tcp=_tcp(sc, self.env, latency), rng_for=Streams(self.seed), reachable=reachable,
            upload_bps={n: sc.network.bandwidth_per_server.get(n, sc.network.bandwidth_bps) for n in names},
            partitions=[Partition(p.start_ms, p.end_ms, _with_rest(p.groups, names + id_nodes), p.one_way)
                        for p in sc.network.partitions],
            observer=recorder,
        )
        rl = sc.federation.rate_limit
        self.transport = Transport(
            self.env, self.network,
            rate_limit=RateLimit(rl.max_requests, rl.window_ms, exempt_kinds=frozenset({"transaction"}))
            if rl.enabled and rl.max_requests is not None else None,
            internal_error_rate=sc.federation.internal_error_rate, rng=self.rng("transport"),
            limiter=FederationRateLimiter(
                self.env, RateLimitSettings(rl.window_ms, rl.sleep_limit, rl.sleep_delay_ms, rl.reject_limit,
                                            rl.concurrent), names, on_count=self._count,
            ) if rl.enabled else None,
        )
        check_changes(sc.topology, self.graph)
        self._latency_model = latency
        self._fanout_rngs: dict[str, np.random.Generator] = {}
        self.fanout = self.make_fanout(sc.topology.strategy)
        self.anti_entropy_possible = any(
            self.make_fanout(s).anti_entropy_ms > 0
            for s in {sc.topology.strategy} | {c.strategy for c in sc.topology.changes if c.kind == "strategy"})
        self._memos: dict[str, SharedStateMemo] = {}
        self._checks: dict[Event, CheckResult] = {}
        self._digests: dict[int, tuple[dict, str]] = {}
        #: digests by content (the map's (key, event) pairs), for equal maps
        #: that are distinct objects (servers resolving the same state apart)
        self._digests_by_content: dict[frozenset, str] = {}
        self._last_digest: dict[str, tuple[dict, str]] = {}
        self.server_in_room: dict[tuple[str, str], bool] = {}
        malicious = set(sc.servers.malicious) | {a.server for a in sc.adversaries}
        keys = {n: derive_server_key(self.seed, n) for n in names}
        self.keys = {n: {k.key_id: k.verify_key} for n, k in keys.items()}
        f = sc.federation
        fed_cfg = FederationConfig(
            max_pdus_per_txn=f.max_pdus_per_txn, max_edus_per_txn=f.max_edus_per_txn,
            request_timeout_ms=f.request_timeout_ms, max_retries=f.retry.max_retries,
            backoff_initial_ms=f.retry.backoff_initial_ms, backoff_multiplier=f.retry.backoff_multiplier,
            backoff_max_ms=f.retry.backoff_max_ms, catchup_threshold_ms=f.catchup_threshold_ms,
        )
        hs_cfg = HomeserverConfig(
            room_version=sc.simulation.room_version, algorithm=sc.simulation.state_resolution,
            compat=sc.simulation.compat, **sc.homeserver.homeserver_kwargs(),
        )
        skew_rng = self.rng("clock_skew")
        costs = cost_table(sc.servers.processing)
        self.servers: dict[str, Homeserver] = {}
        self.stream_order = StreamOrder()
        for n in names:
            users = [f"@u{i}:{n}" for i in range(sc.servers.users_per_server)]
            hs = None

            def provider(dest: str, rooms: Any, _n: str = n) -> Any:
                return self.servers[_n].catchup_events(dest, rooms)

            # the sender draws only random(): a compact stream (the same draws
            # as self.rng's Generator, ~150 bytes instead of ~1.2 KB a server)
            sender = FederationSender(self.env, n, self.transport, stream(self.seed, f"sender/{n}"), fed_cfg,
                                      catchup_provider=provider)
            hs = Homeserver(self, n, key=keys[n], rng=self.rng(f"server/{n}"), users=users, config=hs_cfg,
                            sender=sender, honest=n not in malicious, clock_skew_ms=self._skew(skew_rng))
            self.servers[n] = hs
            if costs is not None:
                hs.cpu = Cpu(self.env, sc.servers.cpu_cores, costs, lambda hs=hs: work_done(hs))
            if recorder is not None:
                recorder.server_info(n, n not in malicious, self.regions.get(n))
        self.adversaries = attach_adversaries(self)
        self.workload = Workload(self, self.rng("workload"))
        self.room_id = self.workload.room_id
        self.services = Services(self)
        for node, handler in self.services.nodes().items():
            self.transport.register(node, handler)

    def _count(self, server: str, what: str) -> None:
        """Count ``what`` at homeserver ``server`` (defences outside it)."""
        self.servers[server].counters[what] += 1

    # -- shared, content-keyed caches ---------------------------------------------------

    def rng(self, name: str) -> np.random.Generator:
        """An independent stream for the component ``name``."""
        return component_rng(self.seed, name)

    def fanout_rng(self, name: str) -> np.random.Generator:
        """The stream of fan-out decisions named ``name`` (one per server and purpose)."""
        rng = self._fanout_rngs.get(name)
        if rng is None:
            rng = self._fanout_rngs[name] = self.rng(f"fanout/{name}")
        return rng

    def make_fanout(self, strategy: str) -> FanOut:
        """The fan-out strategy ``strategy`` with this scenario's parameters."""
        return make_fanout(strategy, self.scenario.topology, servers=self.scenario.server_names(),
                           rng_for=lambda server: self.fanout_rng(f"gossip/{server}"),
                           expected_latency=self._latency_model.mean)

    def shared_memo(self, room_id: str) -> SharedStateMemo:
        memo = self._memos.get(room_id)
        if memo is None:
            memo = self._memos[room_id] = SharedStateMemo()
        return memo

    def check(self, ev: Event) -> CheckResult:
        """check_event of a PDU, memoised by the (interned, immutable) event."""
        hit = self._checks.get(ev)
        if hit is None:
            hit = self._checks[ev] = check_event(ev._pdu, self.scenario.simulation.room_version, self.keys, memo=True)
        return hit

    #: state maps whose digest is kept (oldest dropped first): a cache,
    #: bounded so that it does not keep maps alive (each server's last
    #: sampled map is kept too, in ``_last_digest``)
    MAX_DIGESTS = 256

    def digest(self, state: dict, server: str | None = None, room_id: str | None = None) -> str:
        """The state's digest (``state_digest``), cached by the map's
        identity and, with ``room_id``, by its content (the room's shared
        pair sets: a set of pairs is far cheaper to make than the digest)."""
        last = self._last_digest.get(server) if server is not None else None
        if last is not None and last[0] is state:
            return last[1]
        digests = self._digests
        hit = digests.get(id(state))
        if hit is None or hit[0] is not state:
            hit = digests[id(state)] = (state, self._digest_of_content(state, room_id))
            if len(digests) > self.MAX_DIGESTS:
                del digests[next(iter(digests))]
        if server is not None:
            self._last_digest[server] = hit
        return hit[1]

    def _digest_of_content(self, state: dict, room_id: str | None) -> str:
        if room_id is None:
            return state_digest(state)
        pairs = self.shared_memo(room_id).items(state)
        by_content = self._digests_by_content
        found = by_content.get(pairs)
        if found is None:
            found = by_content[pairs] = state_digest(state)
            if len(by_content) > self.MAX_DIGESTS:
                del by_content[next(iter(by_content))]
        return found

    def honest_servers(self) -> list[str]:
        return [n for n, s in self.servers.items() if s.honest]

    def _skew(self, rng: np.random.Generator) -> float:
        sk = self.scenario.servers.clock_skew
        if sk.distribution == "normal":
            return float(rng.normal(sk.mean_ms, sk.sd_ms))
        if sk.distribution == "uniform":
            return float(rng.uniform(sk.low_ms, sk.high_ms))
        return 0.0

    # -- misbehaviour ----------------------------------------------------------------------

    def forge(self, hs: Homeserver, room_id: str, n: int) -> None:
        """A ``servers.malicious`` server pushes an event it has no right to,
        in turn: one claiming a user of another server, one whose signature
        was broken by changing a signed field after signing, and one
        correctly signed that the auth rules reject (its user raises its own
        power level without the power to)."""
        room = hs.rooms.get(room_id)
        if room is None or not room.forward_extremities:
            return
        victims = [s for s in self.honest_servers() if s != hs.name]
        kind = ("forge_user", "signature", "unauthorised")[n % 3 if victims else 1 + n % 2]
        ev = forged_event(hs, room, kind, victim=victims[n % len(victims)] if victims else None, n=n)
        hs.counters["forged"] += 1
        dests = sorted(hs.joined_servers(room) - {hs.name})
        for dest in dests:
            hs.sender.send_pdu(dest, ev, room_id)
        if self.recorder is not None:
            self.recorder.adversary_action(self.env.now, hs.name, "malicious", kind, ev.event_id, ",".join(dests), True)

    # -- running ---------------------------------------------------------------------------

    def _sampler(self) -> Any:
        rid = self.room_id
        rec = self.recorder
        interval = self.scenario.metrics.sample_interval_ms
        while True:
            t = self.env.now
            for name, hs in self.servers.items():
                room = hs.rooms.get(rid)
                if room is None:
                    continue
                st = room.current_state()
                rec.state_sample(t, name, rid, hs.up, len(room.forward_extremities), self.digest(st, name, rid),
                                 len(st), hs.backlog(rid), state=st)
            yield self.env.timeout(interval)

    def _schedule_faults(self) -> None:
        rec = self.recorder
        for p in self.scenario.network.partitions:
            self._at(p.start_ms, lambda p=p: rec and rec.perturbation(self.env.now, "partition_start",
                                                                      " | ".join(",".join(g) for g in p.groups)))
            self._at(p.end_ms, lambda p=p: rec and rec.perturbation(self.env.now, "partition_heal", ""))
        for f in self.scenario.faults:
            if f.kind == "crash":
                hs = self.servers[f.server]
                self._at(f.at_ms, lambda hs=hs: (hs.crash(), rec and rec.perturbation(self.env.now, "crash", hs.name)))
                if f.restart_ms is not None:
                    self._at(f.restart_ms,
                             lambda hs=hs: (hs.restart(), rec and rec.perturbation(self.env.now, "restart", hs.name)))

    def _at(self, t: float, fn: Callable[[], Any]) -> None:
        self.env.timeout(max(0.0, t - self.env.now)).callbacks.append(lambda _e: fn())

    def run(self, *, progress: Callable[[float], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[float, bool]:
        self.workload.start()
        self.services.start()
        for adversary in self.adversaries:
            adversary.start()
        for hs in self.servers.values():
            hs.start_loops()
        self._schedule_faults()
        schedule_changes(self)
        if self.recorder is not None:
            self.env.process(self._sampler())
        end = self.scenario.simulation.duration_ms
        step = end / 100.0
        t = 0.0
        while t < end:
            t = min(end, t + step)
            self.env.run(until=t)
            if progress is not None:
                progress(t)
            if should_stop is not None and should_stop():
                self.services.finish()
                return t, False
        self.services.finish()
        return end, True


def simulate(
    scenario: Scenario,
    *,
    recorder: Any = None,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SimResult:
    """Run ``scenario`` and return the servers and observations.

    ``recorder``: where observations go (a fresh
    :class:`simfed.metrics.Recorder` if omitted); ``progress`` is called with
    the simulated time about every 1% of the run; ``should_stop`` is polled
    at the same points and ends the run early when it returns True.
    """
    if recorder is None:
        from ..metrics import Recorder

        recorder = Recorder(run_id=f"seed{scenario.simulation.seed}")
    t0 = time.perf_counter()
    with fewer_collections():
        world = World(scenario, recorder)
        end_t, completed = world.run(progress=progress, should_stop=should_stop)
    return SimResult(
        scenario=scenario, recorder=recorder, end_t=end_t, completed=completed,
        honest=frozenset(world.honest_servers()), room_id=world.room_id, servers=world.servers,
        wall_time_s=time.perf_counter() - t0, regions=world.regions,
    )
