"""Scenario files: the config models, load_scenario, and `simfed validate` / `schema`."""

import json
from pathlib import Path

import pytest

import simfed.cli
from simfed.config import (
    BernoulliLoss,
    ConstantLatency,
    CrashFault,
    GilbertElliottLoss,
    LognormalLatency,
    NormalSkew,
    RegionsLatency,
    Scenario,
)
from simfed.errors import SimfedError
from simfed.experiment.scenario import (
    ScenarioError,
    apply_overrides,
    json_schema,
    load_scenario,
    scenario_to_dict,
)

DATA = Path(__file__).resolve().parent.parent / "data"
EXAMPLE = DATA / "example.toml"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def error_of(source, **kwargs) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(source, **kwargs)
    return info.value


# ---------------------------------------------------------------- good input


def test_example_is_accepted_as_is():
    s = load_scenario(EXAMPLE)
    assert s.simulation.seed == 7
    assert s.simulation.duration_ms == 600_000
    assert s.simulation.room_version == "11"
    assert s.simulation.state_resolution == "v2"
    assert s.servers.count == 12 and s.servers.users_per_server == 3
    assert s.server_names() == tuple(f"hs{i}" for i in range(12))
    assert s.servers.regions == "simblock-2019"
    assert s.servers.clock_skew == NormalSkew(mean_ms=0, sd_ms=20)
    assert s.network.latency == RegionsLatency(jitter="pareto")
    assert s.network.loss == BernoulliLoss(p=0.05)
    assert s.network.bandwidth_bps == 20e6
    (p,) = s.network.partitions
    assert (p.start_ms, p.end_ms, p.one_way) == (120_000, 300_000, False)
    assert p.groups[1][-1] == "hs11"
    assert s.workload.messages_per_user_per_minute == 2
    assert s.workload.stop_ms == 420_000 and s.workload_stop_ms == 420_000
    assert s.faults == (CrashFault(server="hs3", at_ms=360_000, restart_ms=390_000),)
    assert s.metrics.sample_interval_ms == 1000
    assert s.describe() == "12 servers, 10m, v2"


def test_empty_scenario_is_small_and_valid():
    s = load_scenario({})
    assert s == Scenario()
    assert s.servers.count == 4 and s.servers.users_per_server == 2
    assert s.simulation.duration_ms == 60_000
    assert s.server_names() == ("hs0", "hs1", "hs2", "hs3")
    assert s.workload_stop_ms == 60_000
    assert isinstance(s.network.latency, LognormalLatency)
    assert s.network.loss.p == 0
    assert s.network.bandwidth_bps == 100e6
    assert s.faults == ()


def test_federation_defaults_are_synapses():
    f = Scenario().federation
    assert (f.max_pdus_per_txn, f.max_edus_per_txn) == (50, 100)
    assert f.request_timeout_ms == 60_000
    assert f.retry.max_retries == 10 and f.retry.backoff_initial_ms == 600_000
    assert f.retry.backoff_multiplier == 2.0 and f.retry.backoff_max_ms == 7 * 86_400_000
    assert f.catchup_threshold_ms == 3_600_000
    rl = f.rate_limit  # Synapse's rc_federation
    assert rl.enabled and rl.window_ms == 1000 and rl.max_requests is None
    assert (rl.sleep_limit, rl.sleep_delay_ms, rl.reject_limit, rl.concurrent) == (10, 10 * 50, 50, 3)


def test_short_retry_mode_defaults_to_three_retries():
    s = load_scenario({"federation": {"retry": {"mode": "short"}}})
    assert s.federation.retry.max_retries == 3


def test_models_are_frozen():
    s = Scenario()
    with pytest.raises(Exception):
        s.simulation.seed = 3  # type: ignore[misc]


def test_shorthands_and_other_forms():
    s = load_scenario(
        {
            "servers": {"count": 3, "names": ["a.org", "b.org", "c.org"], "regions": {"a.org": "EU", "b.org": "NA", "c.org": "JP"}, "malicious": ["c.org"]},
            "network": {
                "latency": "80ms",
                "loss": {"model": "gilbert-elliott", "p_good_to_bad": 0.01, "p_bad_to_good": 0.3},
                "bandwidth_per_server": {"a.org": "1Mbit/s"},
                "partitions": [{"start": 0, "end": "1s", "groups": [["a.org"]], "one_way": True}],
            },
            "faults": [{"kind": "crash", "server": "b.org", "at": "10s"}],
        }
    )
    assert s.network.latency == ConstantLatency(delay_ms=80)
    assert isinstance(s.network.loss, GilbertElliottLoss) and s.network.loss.loss_bad == 1.0
    assert s.network.bandwidth_per_server == {"a.org": 1e6}
    assert s.faults[0].restart_ms is None
    assert s.server_names() == ("a.org", "b.org", "c.org")


def test_python_field_names_are_accepted_too():
    s = load_scenario({"simulation": {"duration_ms": 30_000}})
    assert s.simulation.duration_ms == 30_000


def test_room_version_as_integer():
    assert load_scenario({"simulation": {"room_version": 10}}).simulation.room_version == "10"


@pytest.mark.parametrize("human", [False, True])
def test_scenario_to_dict_round_trips(human):
    s = load_scenario(EXAMPLE)
    d = scenario_to_dict(s, human=human)
    json.dumps(d)  # JSON-able
    assert load_scenario(d) == s
    if human:
        assert d["simulation"]["duration"] == "10m" and d["network"]["bandwidth"] == "20Mbit/s"
    else:
        assert d["simulation"]["duration"] == 600_000 and d["network"]["bandwidth"] == 20e6


def test_toml_text_is_accepted():
    s = load_scenario('[servers]\ncount = 2\n')
    assert s.servers.count == 2


# ---------------------------------------------------------------- overrides


def test_overrides():
    s = load_scenario(
        EXAMPLE,
        overrides=[
            "network.loss=0.1",
            "servers.count=20",
            "simulation.duration=30s",
            "workload.stop=20s",
            "network.partitions[0].end=10s",
            "network.partitions[0].start=1s",
            "faults.0.at=5s",
            "faults[0].restart=6s",
            "simulation.state_resolution=v1",
            'network.latency={ model = "constant", ms = 80 }',
        ],
    )
    assert s.network.loss.p == 0.1
    assert s.servers.count == 20
    assert s.simulation.duration_ms == 30_000
    assert s.network.partitions[0].end_ms == 10_000
    assert s.faults[0].at_ms == 5000
    assert s.simulation.state_resolution == "v1"
    assert s.network.latency == ConstantLatency(delay_ms=80)


def test_override_creates_missing_tables():
    s = load_scenario({}, overrides=["federation.retry.max_retries=4"])
    assert s.federation.retry.max_retries == 4


def test_apply_overrides_does_not_touch_its_input():
    data = {"network": {"loss": 0.1}}
    assert apply_overrides(data, ["network.loss=0.2"]) == {"network": {"loss": 0.2}}
    assert data == {"network": {"loss": 0.1}}


@pytest.mark.parametrize("bad", ["network.loss", "=3", "a..b=1"])
def test_malformed_override(bad):
    err = error_of({}, overrides=[bad])
    assert err.path == "--set"
    assert bad in str(err)


def test_override_through_a_scalar():
    err = error_of(EXAMPLE, overrides=["network.loss.p=0.2"])
    assert err.path == "network.loss" and err.value == 0.05


def test_override_with_unknown_key_is_an_error():
    err = error_of(EXAMPLE, overrides=["network.los=0.2"])
    assert err.path == "network.los"
    assert 'did you mean "loss"' in str(err)


# ---------------------------------------------------------------- bad input


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


def test_unknown_top_level_key():
    err = error_of({"simulaton": {"seed": 1}})
    check(err, "simulaton", None, 'unknown key "simulaton"', 'did you mean "simulation"')


def test_unknown_nested_key():
    err = error_of({"network": {"latency": {"model": "constant", "msec": 5}}})
    check(err, "network.latency.msec", None, 'unknown key "msec"', 'did you mean "ms"')


def test_unknown_key_in_array_of_tables():
    err = error_of(EXAMPLE, overrides=["faults[0].restat=7m"])
    check(err, "faults[0].restat", None, 'did you mean "restart"')


def test_all_problems_are_reported_one_per_line():
    err = error_of({"foo": 1, "network": {"latncy": 1, "loss": 2}, "servers": {"count": 0}})
    lines = str(err).splitlines()
    assert len(lines) == len(err.problems) == 4
    assert {p.path for p in err.problems} == {"foo", "network.latncy", "network.loss", "servers.count"}


def test_wrong_type():
    err = error_of({"servers": {"count": "many"}})
    check(err, "servers.count", '"many"', "integer")
    assert err.value == "many"


def test_out_of_range():
    check(error_of({"servers": {"count": 0}}), "servers.count", "0", "greater than or equal to 1")


def test_negative_latency():
    err = error_of({"network": {"latency": {"model": "constant", "ms": "-5ms"}}})
    check(err, "network.latency.ms", '"-5ms"', "negative")
    err = error_of({"network": {"latency": {"model": "normal", "mean": -5, "sd": 1}}})
    check(err, "network.latency.mean", "-5", "negative")
    err = error_of({"network": {"latency": "-5ms"}})
    check(err, "network.latency", '"-5ms"', "negative")


def test_loss_out_of_range():
    err = error_of(EXAMPLE, overrides=["network.loss=1.5"])
    check(err, "network.loss", "1.5", "not a valid loss", "[0, 1]")
    assert err.value == 1.5
    err = error_of({"network": {"loss": {"model": "bernoulli", "p": 2}}})
    check(err, "network.loss.p", "2", "less than or equal to 1")


def test_unknown_latency_model():
    err = error_of({"network": {"latency": {"model": "psychic"}}})
    check(err, "network.latency.model", '"psychic"', '"lognormal"')
    err = error_of({"network": {"latency": {"ms": 5}}})
    check(err, "network.latency.model", None, "missing", '"constant"')


def test_partition_naming_an_unknown_server():
    err = error_of(EXAMPLE, overrides=['network.partitions[0].groups=[["hs0"], ["hs12"]]'])
    check(err, "network.partitions[0].groups[1][0]", '"hs12"', "not a server")


def test_partition_that_ends_before_it_starts():
    err = error_of(EXAMPLE, overrides=["network.partitions[0].end=1m"])
    check(err, "network.partitions[0].end", '"1m"', 'start = "2m"')


def test_server_in_two_groups():
    err = error_of(EXAMPLE, overrides=['network.partitions[0].groups=[["hs0", "hs1"], ["hs1"]]'])
    check(err, "network.partitions[0].groups[1][0]", '"hs1"', "groups[0]")


def test_fault_naming_an_unknown_server():
    err = error_of(EXAMPLE, overrides=["faults[0].server=hs30"])
    check(err, "faults[0].server", '"hs30"', "not a server", 'did you mean "hs3"')


def test_restart_before_crash():
    err = error_of(EXAMPLE, overrides=["faults[0].restart=1m"])
    check(err, "faults[0].restart", '"1m"', 'at = "6m"')


def test_unknown_fault_kind():
    check(error_of({"faults": [{"kind": "meteor"}]}), "faults[0].kind", '"meteor"', '"crash"')


def test_unknown_algorithm():
    err = error_of(EXAMPLE, overrides=["simulation.state_resolution=v9"])
    check(err, "simulation.state_resolution", '"v9"', '"v2"')


def test_unknown_room_version():
    check(error_of({"simulation": {"room_version": "12"}}), "simulation.room_version", '"12"', '"11"')


def test_bad_duration_string():
    err = error_of(EXAMPLE, overrides=["simulation.duration=10 minutes"])
    check(err, "simulation.duration", '"10 minutes"', "not a duration", "6m30s")
    check(error_of({"metrics": {"sample_interval": "0s"}}), "metrics.sample_interval", '"0s"', "longer than 0")


def test_bad_bandwidth():
    check(error_of({"network": {"bandwidth": "fast"}}), "network.bandwidth", '"fast"', "Mbit/s")


def test_workload_stop_after_the_end():
    err = error_of(EXAMPLE, overrides=["workload.stop=11m"])
    check(err, "workload.stop", '"11m"', "simulation.duration")


def test_names_and_count_disagree():
    check(error_of({"servers": {"count": 2, "names": ["a"]}}), "servers.names", None, "count = 2")


def test_bad_region():
    err = error_of({"servers": {"count": 1, "regions": {"hs0": "Mars"}}})
    check(err, "servers.regions.hs0", '"Mars"', "EU")
    check(error_of({"servers": {"regions": "atlas"}}), "servers.regions", '"atlas"', "simblock-2019")


def test_regions_latency_needs_regions():
    err = error_of({"network": {"latency": {"model": "regions"}}})
    check(err, "network.latency.model", '"regions"', "servers.regions")


def test_malicious_must_exist():
    check(error_of({"servers": {"malicious": ["hs9"]}}), "servers.malicious[0]", '"hs9"', "not a server")


def test_toml_syntax_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[network]\nloss = \n")
    err = error_of(path)
    assert "line 2" in str(err) and "column" in str(err)
    assert str(path) in str(err)


def test_missing_file(tmp_path):
    err = error_of(tmp_path / "nope.toml")
    assert "no such file" in str(err) and "nope.toml" in str(err)


# ---------------------------------------------------------------- schema


def test_schema_is_json_and_describes_the_sections():
    schema = json.loads(json.dumps(json_schema()))
    for section in Scenario.SECTIONS:
        assert section in schema["properties"]
    assert schema["additionalProperties"] is False
    network = schema["$defs"]["NetworkConfig"]["properties"]
    assert "bandwidth" in network and "latency" in network
    assert any(alt.get("type") == "number" for alt in network["loss"]["anyOf"])


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch, capsys):
    monkeypatch.setattr(simfed.cli, "COMMAND_MODULES", ("simfed.experiment.cli_scenario",))

    def run(*argv):
        code = simfed.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_validate_ok(cli):
    code, out, err = cli("validate", EXAMPLE)
    assert code == 0 and err == ""
    assert out.strip() == f"{EXAMPLE}: ok (12 servers, 10m, v2)"


def test_cli_validate_with_overrides(cli):
    code, out, _ = cli("validate", EXAMPLE, "--set", "servers.count=20", "--set", "simulation.duration=30s", "--set", "workload.stop=20s")
    assert code == 0 and "20 servers, 30s" in out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("network.loss=1.5", "network.loss: 1.5"),
        ("network.los=1", 'network.los: unknown key "los"'),
        ("faults[0].server=hs99", 'faults[0].server: "hs99"'),
        ("simulation.state_resolution=v9", 'simulation.state_resolution: "v9"'),
        ("simulation.duration=forever", 'simulation.duration: "forever"'),
        ("network.partitions[0].end=1m", "network.partitions[0].end"),
        ("servers.count=zero", 'servers.count: "zero"'),
        ("nonsense", "--set"),
    ],
)
def test_cli_validate_bad_input_exits_2(cli, override, expected):
    code, out, err = cli("validate", EXAMPLE, "--set", override)
    assert code == 2 and out == ""
    assert expected in err
    assert "Traceback" not in err


def test_cli_validate_syntax_error_and_missing_file(cli, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[simulation\n")
    code, _, err = cli("validate", broken)
    assert code == 2 and "line 1" in err and "Traceback" not in err
    code, _, err = cli("validate", tmp_path / "missing.toml")
    assert code == 2 and "no such file" in err and err.count("\n") == 1


def test_cli_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0
    assert "network" in json.loads(out)["properties"]


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path):
    load_scenario(path)


@pytest.mark.parametrize(("text", "ok"), [("6m30s", True), ("1h2m3.5s", True), ("250", True), ("7d", True), ("6x", False), ("m", False), ("", False)])
def test_schema_duration_pattern_agrees_with_the_parser(text, ok):
    import re

    pattern = json_schema()["$defs"]["SimulationConfig"]["properties"]["duration"]["anyOf"][1]["pattern"]
    assert bool(re.search(pattern, text)) is ok


def test_schema_lists_the_algorithms():
    prop = json_schema()["$defs"]["SimulationConfig"]["properties"]["state_resolution"]
    assert "v2" in prop["enum"]


def test_scenarios_are_hashable_even_with_mappings():
    data = {"servers": {"count": 2, "regions": {"hs0": "EU", "hs1": "NA"}}, "network": {"bandwidth_per_server": {"hs0": 1e6}}}
    assert hash(load_scenario(data)) == hash(load_scenario(data))
    assert len({load_scenario(data), load_scenario({})}) == 2
