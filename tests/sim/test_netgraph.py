"""The network as a graph: shortest-path latency, failures and recovery,
unreachable drops, determinism, and a federation running over a graph."""

from __future__ import annotations

import random
import time

import networkx as nx
import numpy as np
import pytest
import simpy
from pydantic import TypeAdapter

from simfed.config.netgraph import NetworkGraphConfig
from simfed.sim.latency import UniformLatency
from simfed.sim.netgraph import WEIGHT, GraphLatency, build_graph
from simfed.sim.network import DROP_REASONS, Network
from simfed.sim.world import World, simulate

from test_world import assert_converged, scenario

SERVERS = [f"hs{i}" for i in range(6)]


def cfg(**graph):
    return TypeAdapter(NetworkGraphConfig).validate_python(graph)


def weighted(edges) -> nx.Graph:
    g = nx.Graph()
    g.add_weighted_edges_from(edges, weight=WEIGHT)
    return g


def nx_latency(g: nx.Graph, a: str, b: str) -> float | None:
    if a not in g or b not in g or not nx.has_path(g, a, b):
        return None
    return nx.shortest_path_length(g, a, b, weight=WEIGHT)


#      a --1-- b --1-- c
#      |               |
#      5               1
#      |               |
#      e ------9------ d
DIAMOND = [("a", "b", 1.0), ("b", "c", 1.0), ("c", "d", 1.0), ("a", "e", 5.0), ("e", "d", 9.0)]


@pytest.fixture
def diamond() -> GraphLatency:
    return GraphLatency(weighted(DIAMOND), {"A": "a", "C": "c", "D": "d", "E": "e"})


# ---------------------------------------------------------------- latency


def test_latency_is_the_shortest_path(diamond):
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert diamond.sample("A", "D", rng) == 3.0
    assert diamond.sample("D", "A", rng) == 3.0
    assert diamond.sample("E", "C", rng) == 7.0
    assert rng.bit_generator.state == before  # no jitter: nothing drawn
    assert diamond.route("A", "D") == ["a", "b", "c", "d"]
    assert diamond.mean("A", "D") == 3.0


@pytest.mark.parametrize(
    "graph",
    [
        {"model": "waxman", "nodes": 20},
        {"model": "barabasi_albert", "nodes": 20, "m": 2, "edge_latency": {"model": "uniform", "low": 1, "high": 30}},
        {"model": "random_geometric", "nodes": 20, "radius": 0.4},
        {"model": "grid", "rows": 4, "cols": 5, "edge_latency": {"model": "lognormal", "median": 10, "sigma": 0.5}},
    ],
    ids=lambda g: g["model"],
)
def test_generated_graphs_agree_with_networkx(graph):
    gl = build_graph(cfg(**graph), SERVERS, np.random.default_rng(7))
    g = nx.Graph(gl.graph)
    assert g.number_of_nodes() == 20 and nx.is_connected(g)
    assert all(isinstance(n, str) for n in g)
    assert gl.placement == {s: str(i) for i, s in enumerate(SERVERS)}
    for a in SERVERS:
        for b in SERVERS:
            assert gl.path_latency(a, b) == pytest.approx(nx_latency(g, gl.node_of(a), gl.node_of(b)))


def test_grid_latency_is_manhattan_distance():
    gl = build_graph(cfg(model="grid", rows=3, cols=4, edge_latency="10ms"), ["x", "y", "z"], np.random.default_rng(0))
    assert sorted(gl.graph.nodes, key=int) == [str(i) for i in range(12)]
    assert gl.graph.has_edge("0", "4") and gl.graph.has_edge("3", "7") and not gl.graph.has_edge("3", "4")
    gl = GraphLatency(gl.graph, {"x": "0", "y": "11", "z": "5"})
    assert gl.path_latency("x", "y") == 50.0  # (2, 3) steps from (0, 0)
    assert gl.path_latency("x", "z") == 20.0


def test_geometric_edges_scale_with_distance():
    gl = build_graph(cfg(model="random_geometric", nodes=30, radius=0.3, ms_per_unit="200ms"), SERVERS,
                     np.random.default_rng(1))
    weights = [w for _, _, w in gl.graph.edges(data=WEIGHT)]
    assert weights and all(0 <= w <= 0.3 * 200 + 1e-9 for w in weights)
    assert len(set(weights)) > 1


def test_jitter_is_added_per_message():
    gl = GraphLatency(weighted(DIAMOND), {"A": "a", "D": "d"}, jitter=UniformLatency(0.0, 2.0))
    draws = [gl.sample("A", "D", np.random.default_rng(s)) for s in range(50)]
    assert all(3.0 <= d < 5.0 for d in draws) and len(set(draws)) == 50
    assert gl.mean("A", "D") == 4.0
    assert gl.path_latency("A", "D") == 3.0


def test_servers_may_share_a_node():
    gl = GraphLatency(weighted(DIAMOND), {"A": "a", "B": "a", "D": "d"})
    assert gl.path_latency("A", "B") == 0.0 and gl.reachable("A", "B")


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("placement", ["in_order", "random"])
def test_same_seed_same_graph(placement):
    c = cfg(model="waxman", nodes=25, placement=placement, jitter="1ms")

    def snapshot(seed):
        gl = build_graph(c, SERVERS, np.random.default_rng(seed))
        return sorted(gl.graph.edges(data=WEIGHT)), gl.placement

    assert snapshot(3) == snapshot(3)
    assert snapshot(3) != snapshot(4)


def test_random_placement_uses_distinct_nodes():
    gl = build_graph(cfg(model="barabasi_albert", nodes=40, placement="random"), SERVERS, np.random.default_rng(5))
    nodes = list(gl.placement.values())
    assert len(set(nodes)) == len(SERVERS) and nodes != [str(i) for i in range(len(SERVERS))]


def test_world_graph_is_deterministic_and_independent_of_regions():
    graph = {"model": "waxman", "nodes": 12}
    a = World(scenario(5, topology={"graph": graph})).graph
    b = World(scenario(5, topology={"graph": graph}, servers={"regions": "simblock-2019"})).graph
    assert sorted(a.graph.edges(data=WEIGHT)) == sorted(b.graph.edges(data=WEIGHT))
    assert World(scenario(5)).graph is None


def test_connected_redraws_or_refuses():
    sparse = {"model": "random_geometric", "nodes": 30, "radius": 0.25}  # 1 draw in 4 is connected
    gl = build_graph(cfg(**sparse), SERVERS, np.random.default_rng(0))
    assert nx.is_connected(gl.graph)
    kept = build_graph(cfg(**sparse, connected=False), SERVERS, np.random.default_rng(0))
    assert not nx.is_connected(kept.graph)
    with pytest.raises(ValueError, match="connected = false"):
        build_graph(cfg(model="random_geometric", nodes=30, radius=0.01), SERVERS, np.random.default_rng(0))


# ---------------------------------------------------------------- failures


def test_failed_edge_reroutes_and_recovers(diamond):
    diamond.fail_edge("c", "b")
    assert diamond.path_latency("A", "D") == 14.0 and diamond.route("A", "D") == ["a", "e", "d"]
    assert diamond.path_latency("A", "C") == 15.0
    diamond.fail_edge("b", "c")  # already down: nothing changes
    assert diamond.failed_edges == {frozenset(("b", "c"))}
    diamond.recover_edge("b", "c")
    assert diamond.path_latency("A", "D") == 3.0 and not diamond.failed_edges


def test_no_path_left_is_unreachable(diamond):
    diamond.fail_edge("b", "c")
    diamond.fail_edge("e", "d")
    assert not diamond.reachable("A", "D") and diamond.path_latency("A", "D") is None
    assert diamond.mean("A", "D") == float("inf")
    assert diamond.route("A", "D") is None
    assert diamond.reachable("C", "D") and diamond.reachable("A", "E")
    with pytest.raises(ValueError, match="no path up"):
        diamond.sample("A", "D", np.random.default_rng(0))
    diamond.recover_edge("e", "d")
    assert diamond.path_latency("A", "D") == 14.0


def test_failed_node_cuts_its_servers_and_routes_around(diamond):
    diamond.fail_node("b")
    assert diamond.path_latency("A", "D") == 14.0
    diamond.fail_node("d")
    assert not diamond.reachable("A", "D") and not diamond.reachable("D", "C")
    assert diamond.path_latency("A", "C") is None  # c only hangs on b and d
    diamond.recover_node("d")
    assert diamond.path_latency("A", "C") == 15.0
    diamond.recover_node("b")
    assert diamond.path_latency("A", "D") == 3.0 and not diamond.failed_nodes


def test_edge_failed_while_its_node_is_down_stays_down(diamond):
    diamond.fail_node("b")
    diamond.fail_edge("a", "b")
    diamond.recover_node("b")
    assert diamond.path_latency("A", "C") == 15.0  # a-b still failed
    diamond.recover_edge("a", "b")
    assert diamond.path_latency("A", "C") == 2.0


def test_unknown_edges_and_nodes_are_errors(diamond):
    with pytest.raises(ValueError, match="no edge 'a'-'c'"):
        diamond.fail_edge("a", "c")
    with pytest.raises(ValueError, match="no node 'z'"):
        diamond.fail_node("z")
    assert diamond.has_edge("d", "c") and not diamond.has_edge("a", "d")


@pytest.mark.parametrize("seed", range(5))
def test_cached_paths_match_a_fresh_computation_after_any_changes(seed):
    r = random.Random(seed)
    base = nx.gnm_random_graph(20, 36, seed=seed)
    g = weighted((str(u), str(v), float(r.choice([1, 2, 3, 5]))) for u, v in base.edges())
    g.add_nodes_from(str(i) for i in range(20))
    servers = {f"s{i}": str(i) for i in range(0, 20, 3)}
    gl = GraphLatency(g, servers)
    edges = list(g.edges())
    for _ in range(30):
        op = r.random()
        if op < 0.4:
            gl.fail_edge(*r.choice(edges))
        elif op < 0.7:
            gl.recover_edge(*r.choice(edges))
        elif op < 0.85:
            gl.fail_node(str(r.randrange(20)))
        else:
            gl.recover_node(str(r.randrange(20)))
        live = g.copy()
        live.remove_edges_from(tuple(e) for e in gl.failed_edges)
        live.remove_nodes_from(gl.failed_nodes)
        for a, na in servers.items():
            for b, nb in servers.items():
                assert gl.path_latency(a, b) == nx_latency(live, na, nb)


def test_two_hundred_servers_stay_fast():
    names = [f"hs{i}" for i in range(200)]
    t0 = time.perf_counter()
    gl = build_graph(cfg(model="waxman", nodes=250, alpha=0.15), names, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for _ in range(3):
        for a in names:
            for b in names:
                if a != b and gl.reachable(a, b):
                    gl.sample(a, b, rng)
        u, v = next(iter(gl.graph.edges()))
        gl.fail_edge(u, v)
    assert time.perf_counter() - t0 < 10.0


# ---------------------------------------------------------------- the network hook


class Log:
    def __init__(self):
        self.rows = []

    def message(self, t_sent, t_done, kind, src, dst, size_bytes, delivered, reason):
        self.rows.append((t_sent, t_done, src, dst, delivered, reason))


def test_network_drops_unreachable_at_send_and_at_arrival():
    assert "unreachable" in DROP_REASONS
    env = simpy.Environment()
    gl = GraphLatency(weighted(DIAMOND), {"A": "a", "D": "d"})
    log = Log()
    net = Network(env, ["A", "D"], latency=gl, rng=np.random.default_rng(0), observer=log, reachable=gl.reachable)
    got = []
    net.send("A", "D", 100, "first", got.append, kind="t")  # arrives at 3
    gl.fail_edge("a", "e")
    gl.fail_edge("b", "c")
    net.send("A", "D", 100, "cut", got.append, kind="t")  # no path: dropped at once
    gl.recover_edge("b", "c")
    net.send("D", "A", 100, "in flight", got.append, kind="t")  # the path fails before it arrives
    env.timeout(1).callbacks.append(lambda _e: gl.fail_node("b"))
    env.run(until=10)
    assert got == []
    assert log.rows == [(0, 0, "A", "D", False, "unreachable"), (0, 3.0, "A", "D", False, "unreachable"),
                        (0, 3.0, "D", "A", False, "unreachable")]


def test_network_delivers_over_the_rerouted_path():
    env = simpy.Environment()
    gl = GraphLatency(weighted(DIAMOND), {"A": "a", "D": "d"})
    log = Log()
    net = Network(env, ["A", "D"], latency=gl, rng=np.random.default_rng(0), observer=log, reachable=gl.reachable)
    got = []
    net.send("A", "D", 0, 1, got.append, kind="t")
    gl.fail_edge("b", "c")
    net.send("A", "D", 0, 2, got.append, kind="t")
    env.run(until=100)
    assert got == [1, 2]
    assert [r[1] for r in log.rows] == [3.0, 14.0]


# ---------------------------------------------------------------- a federation over a graph


def test_federation_over_a_generated_graph_converges():
    sc = scenario(2, topology={"graph": {"model": "waxman", "nodes": 15,
                                         "jitter": {"model": "uniform", "low": 0, "high": "5ms"}}})
    res = simulate(sc)
    assert_converged(res)
    traffic = res.recorder.tables()["traffic"]
    assert traffic["delivered"].all()


def test_federation_heals_after_a_node_failure():
    """hs2's node fails from 1m to 2m30s: its messages drop as unreachable,
    and once it is back every honest server ends with the same events."""
    from simfed.metrics import Recorder
    from simfed.sim.world import SimResult

    sc = scenario(1, topology={"graph": {"model": "barabasi_albert", "nodes": 12, "m": 2}})
    recorder = Recorder(run_id="graph")
    world = World(sc, recorder)
    node = world.graph.node_of("hs2")
    world.env.timeout(60_000).callbacks.append(lambda _e: world.graph.fail_node(node))
    world.env.timeout(150_000).callbacks.append(lambda _e: world.graph.recover_node(node))
    end_t, completed = world.run()
    res = SimResult(scenario=sc, recorder=recorder, end_t=end_t, completed=completed,
                    honest=frozenset(world.honest_servers()), room_id=world.room_id, servers=world.servers,
                    wall_time_s=0.0)
    traffic = recorder.tables()["traffic"]
    cut = traffic[traffic["reason"] == "unreachable"]
    assert len(cut) > 0
    assert ((cut["src"] == "hs2") | (cut["dst"] == "hs2")).all()
    assert cut["t_done"].between(60_000, 150_000).all()
    assert_converged(res)
