"""``[topology.graph]``: the models, edge-list files, and errors with paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from simfed.config.netgraph import (
    BarabasiAlbertGraph,
    EdgeListError,
    EdgeListGraph,
    GridGraph,
    NetworkGraphConfig,
    RandomGeometricGraph,
    WaxmanGraph,
    graph_problems,
    read_edge_list,
)
from simfed.errors import SimfedError
from simfed.experiment.scenario import ScenarioError, load_scenario, scenario_to_dict
from simfed.sim.world import World, simulate

GRAPHS = Path(__file__).resolve().parents[2] / "scenarios" / "graphs"
SERVERS = tuple(f"hs{i}" for i in range(4))


def with_graph(graph: dict, **sections) -> dict:
    return {"servers": {"count": 4}, "topology": {"graph": graph}, **sections}


def error_of(source) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(source)
    return info.value


def check(err: ScenarioError, path: str, value_text: str | None, *words: str) -> None:
    """The error's first line names the path and the value."""
    line = str(err).splitlines()[0]
    assert err.path == path, str(err)
    assert line.startswith(f"{path}: "), line
    if value_text is not None:
        assert value_text in line, line
    for word in words:
        assert word in line, line
    assert isinstance(err, SimfedError) and isinstance(err, ValueError)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- good input


def test_no_graph_by_default():
    assert load_scenario({}).topology.graph is None


@pytest.mark.parametrize(
    ("graph", "cls"),
    [
        ({"model": "waxman", "nodes": 10, "alpha": 0.5, "beta": 0.3, "ms_per_unit": "80ms"}, WaxmanGraph),
        ({"model": "barabasi_albert", "nodes": 10, "m": 2, "edge_latency": "7ms"}, BarabasiAlbertGraph),
        ({"model": "random_geometric", "nodes": 10, "radius": 0.4}, RandomGeometricGraph),
        ({"model": "grid", "rows": 2, "cols": 3, "periodic": True}, GridGraph),
    ],
)
def test_generated_models(graph, cls):
    sc = load_scenario(with_graph(graph))
    assert isinstance(sc.topology.graph, cls)
    assert load_scenario(scenario_to_dict(sc)) == sc
    assert load_scenario(scenario_to_dict(sc, human=True)) == sc


def test_shorthands_and_defaults():
    g = load_scenario(with_graph({"model": "barabasi_albert", "nodes": 6, "edge_latency": "7ms",
                                  "jitter": "2ms"})).topology.graph
    assert g.edge_latency.model == "constant" and g.edge_latency.delay_ms == 7.0
    assert g.jitter.delay_ms == 2.0
    assert g.placement == "in_order" and g.m == 2
    w = load_scenario(with_graph({"model": "waxman", "nodes": 6})).topology.graph
    assert (w.alpha, w.beta, w.ms_per_unit_ms, w.connected, w.jitter) == (0.4, 0.4, 100.0, True, None)


def test_edge_list_whitespace_units_and_comments(tmp_path):
    path = write(tmp_path, "g.edges", "# a comment\n\na b 10\nb  c 2.5ms  # trailing\nc\td 1s\n")
    assert read_edge_list(path) == [("a", "b", 10.0), ("b", "c", 2.5), ("c", "d", 1000.0)]
    g = load_scenario(with_graph({"model": "edge_list", "path": str(path)})).topology.graph
    assert g.node_names() == ["a", "b", "c", "d"]


def test_edge_list_csv_with_header(tmp_path):
    path = write(tmp_path, "g.csv", "source,target,latency_ms\na, b, 10\nb,c,\"2.5\"\n")
    assert read_edge_list(path) == [("a", "b", 10.0), ("b", "c", 2.5)]


def test_relative_path_is_relative_to_the_scenario_file(tmp_path, monkeypatch):
    sub = tmp_path / "exp"
    (sub / "nets").mkdir(parents=True)
    write(sub / "nets", "ring.edges", "a b 5\nb c 5\nc d 5\nd a 5\n")
    scenario = write(sub, "ring.toml", '[servers]\ncount = 4\n\n[topology.graph]\nmodel = "edge_list"\n'
                                       'path = "nets/ring.edges"\n')
    monkeypatch.chdir(tmp_path)
    sc = load_scenario(scenario)
    assert Path(sc.topology.graph.path) == (sub / "nets" / "ring.edges").resolve()
    assert load_scenario(scenario_to_dict(sc)) == sc
    sc = load_scenario(Path("exp/ring.toml"), overrides=['topology.graph.path="nets/ring.edges"'])
    assert Path(sc.topology.graph.path) == (sub / "nets" / "ring.edges").resolve()


def test_relative_path_in_a_dict_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, "ring.edges", "a b 5\nb c 5\nc d 5\nd a 5\n")
    monkeypatch.chdir(tmp_path)
    assert load_scenario(with_graph({"model": "edge_list", "path": "ring.edges"})).topology.graph.path == "ring.edges"
    err = error_of(with_graph({"model": "edge_list", "path": "nets/ring.edges"}))
    check(err, "topology.graph.path", '"nets/ring.edges"', "no such file")


def test_shipped_graph_scenario_loads_and_runs():
    sc = load_scenario(GRAPHS / "isp12.toml")
    assert sc.topology.graph.model == "edge_list"
    assert len(read_edge_list(sc.topology.graph.path)) == 17
    world = World(sc)
    assert world.graph is not None and world.graph.node_of("hs0") == "bos"
    res = simulate(load_scenario(GRAPHS / "isp12.toml", overrides=["simulation.duration=150s", "workload.stop=60s"]))
    assert res.completed


# ---------------------------------------------------------------- bad input


def test_unknown_and_missing_model():
    err = error_of(with_graph({"model": "ring", "nodes": 4}))
    check(err, "topology.graph.model", '"ring"', '"waxman"', '"edge_list"')
    check(error_of(with_graph({"nodes": 4})), "topology.graph.model", None, "missing", '"barabasi_albert"')


def test_unknown_key_suggests():
    check(error_of(with_graph({"model": "waxman", "nodes": 6, "alfa": 0.3})), "topology.graph.alfa", None,
          'did you mean "alpha"')


@pytest.mark.parametrize(
    ("graph", "path", "value", "words"),
    [
        ({"model": "waxman", "nodes": 6, "alpha": 0}, "topology.graph.alpha", "0", ("greater than 0",)),
        ({"model": "waxman", "nodes": 6, "beta": 1.5}, "topology.graph.beta", "1.5", ("less than or equal to 1",)),
        ({"model": "waxman", "nodes": 0}, "topology.graph.nodes", "0", ("greater than or equal to 1",)),
        ({"model": "waxman", "nodes": 6, "ms_per_unit": "-1ms"}, "topology.graph.ms_per_unit", '"-1ms"',
         ("negative",)),
        ({"model": "random_geometric", "nodes": 6, "radius": 0}, "topology.graph.radius", "0", ("greater than 0",)),
        ({"model": "barabasi_albert", "nodes": 4, "m": 4}, "topology.graph.m", "4", ("not below nodes = 4",)),
        ({"model": "barabasi_albert", "nodes": 6, "edge_latency": "-3ms"}, "topology.graph.edge_latency", '"-3ms"',
         ("negative",)),
        ({"model": "grid", "rows": 0, "cols": 3}, "topology.graph.rows", "0", ("greater than or equal to 1",)),
        ({"model": "grid", "rows": 2, "cols": 2, "jitter": {"model": "uniform", "low": 5, "high": 1}},
         "topology.graph.jitter.high", None, ("below low",)),
        ({"model": "grid", "rows": 2, "cols": 2, "placement": {"hs0": "9", "hs1": "0", "hs2": "1", "hs3": "2"}},
         "topology.graph.placement.hs0", '"9"', ("not a node", "0, 1, 2, 3")),
        ({"model": "grid", "rows": 2, "cols": 2, "placement": "anywhere"}, "topology.graph.placement",
         '"anywhere"', ('"in_order", "random" or a table',)),
        ({"model": "grid", "rows": 2, "cols": 2, "placement": {"hs0": 1}}, "topology.graph.placement.hs0", "1",
         ("not a node name",)),
    ],
)
def test_bad_values_name_their_path(graph, path, value, words):
    check(error_of(with_graph(graph)), path, value, *words)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a b 5\nb c -4\n", ("line 2", '"-4" is negative')),
        ("a b 5\nb c\n", ("line 2", "2 fields")),
        ("a b 5\nb c fast\n", ("line 2", '"fast" is not a duration')),
        ("a b 5\nb b 1\n", ("line 2", "self-loop")),
        ("a b 5\nb a 1\n", ("line 2", "repeats the edge on line 1")),
        ("a b 5\nc d 1\n", ("disconnected", "2 components")),
        ("# nothing\n", ("no edges",)),
    ],
)
def test_bad_edge_lists(tmp_path, text, words):
    path = write(tmp_path, "g.edges", text)
    err = error_of(with_graph({"model": "edge_list", "path": str(path)}))
    check(err, "topology.graph.path", f'"{path}"', *words)
    with pytest.raises(EdgeListError):
        read_edge_list(path)


def test_every_bad_line_is_reported(tmp_path):
    path = write(tmp_path, "g.edges", "a b -1\nb c\nc c 1\n")
    err = error_of(with_graph({"model": "edge_list", "path": str(path)}))
    assert [p.message.split(": ", 1)[0].split()[-1] for p in err.problems] == ["1", "2", "3"]
    assert {p.path for p in err.problems} == {"topology.graph.path"}


def test_edge_list_placement_names_unknown_node(tmp_path):
    path = write(tmp_path, "g.edges", "a b 5\nb c 5\nc d 5\n")
    err = error_of(with_graph({"model": "edge_list", "path": str(path),
                               "placement": {"hs0": "a", "hs1": "b", "hs2": "c", "hs3": "x"}}))
    check(err, "topology.graph.placement.hs3", '"x"', "not a node of the graph", "a, b, c, d")


@pytest.mark.parametrize(
    ("graph", "path", "words"),
    [
        ({"model": "waxman", "nodes": 3}, ("nodes",), ("3 nodes, fewer than the 4 servers",)),
        ({"model": "grid", "rows": 1, "cols": 3}, ("rows",), ("1 x 3 = 3 nodes",)),
        ({"model": "grid", "rows": 2, "cols": 2, "placement": {"hs0": "0", "hs1": "1", "hs9": "2"}},
         ("placement", "hs9"), ('"hs9" is not a server',)),
        ({"model": "grid", "rows": 2, "cols": 2, "placement": {"hs0": "0", "hs1": "1", "hs2": "2"}},
         ("placement",), ("places no node for hs3",)),
    ],
)
def test_graph_must_fit_the_servers(graph, path, words):
    """Checked against the scenario's servers: by ``graph_problems`` (paths
    relative to ``topology.graph``), and at the latest when the world is built."""
    cfg = TypeAdapter(NetworkGraphConfig).validate_python(graph)
    problems = graph_problems(cfg, SERVERS)
    assert problems and problems[0][0] == path
    for word in words:
        assert word in problems[0][2]
    dotted = "topology.graph." + ".".join(path)
    with pytest.raises(ValueError, match=dotted):
        World(load_scenario(with_graph(graph)))


def test_edge_list_with_too_few_nodes(tmp_path):
    path = write(tmp_path, "g.edges", "a b 5\nb c 5\n")
    cfg = EdgeListGraph(path=str(path))
    [(where, value, message)] = graph_problems(cfg, SERVERS)
    assert where == ("path",) and value == str(path) and "3 nodes, fewer than the 4 servers" in message
