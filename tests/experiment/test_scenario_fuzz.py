"""Fuzzing scenario validation (issue 13): a scenario is valid or refused with
ScenarioError; ``simfed validate`` exits 0 or 2 with one line per problem."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simfed.cli
from simfed.config import Scenario
from simfed.experiment.scenario import ScenarioError, load_scenario

FAST, SLOW = 60, 3000
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)

KEYS = {
    "simulation": ["seed", "duration", "room_version", "state_resolution"],
    "servers": ["count", "names", "users_per_server", "regions", "clock_skew", "malicious", "cpu_cores",
                "processing"],
    "workload": ["messages_per_user_per_minute", "state_changes_per_minute", "profile_changes_per_user_per_hour",
                 "join_spread", "start", "stop", "state_change_mix"],
    "federation": ["max_pdus_per_txn", "request_timeout", "retry", "rate_limit", "internal_error_rate"],
    "homeserver": ["get_missing_events_limit", "prev_events_max", "request_timeout", "gap_fill_retries",
                   "history_backfill", "dummy_events"],
    "metrics": ["sample_interval"],
    "network": ["latency", "loss", "request_loss", "tcp", "bandwidth", "partitions"],
    "topology": ["fanout", "relay", "changes"],
    "faults": [],
}

scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, 2, 4, 10**8, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["10m", "1ms", "100000d", "0s", "-5s", "hs0", "hs1", "v2", "naive", "11", "normal",
                     "simblock-2019", "1e9", "20Mbit/s", ""]),
    st.text(max_size=6), st.booleans(),
)
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), c, max_size=3)),
                      max_leaves=10)


@st.composite
def scenario_dicts(draw: st.DrawFn) -> dict:
    out: dict = {}
    for section in draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=4, unique=True)):
        keys = KEYS[section]
        if section == "faults":
            out[section] = draw(st.lists(st.dictionaries(st.sampled_from(["kind", "server", "at", "restart"]),
                                                         values, max_size=4), max_size=2))
            continue
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
        out[section] = {k: draw(values) for k in chosen}
    if draw(st.integers(0, 9)) == 0:
        out["description"] = draw(values)
    return out


def _fuzz_scenarios(n: int) -> None:
    @settings(max_examples=n, **_SETTINGS)
    @given(data=scenario_dicts())
    def run(data):
        try:
            sc = load_scenario(data)
        except ScenarioError as e:
            assert str(e)
            return
        assert isinstance(sc, Scenario)

    run()


def test_fuzz_scenario_validation():
    _fuzz_scenarios(FAST)


@pytest.mark.slow
def test_fuzz_scenario_validation_thousands():
    _fuzz_scenarios(SLOW)


toml_texts = st.one_of(
    st.text(max_size=80),
    st.builds(lambda s, k, v: f"[{s}]\n{k} = {v}\n", st.sampled_from(sorted(KEYS)),
              st.sampled_from(sum(KEYS.values(), [])),
              st.sampled_from(["1", "-1", "1e400", "inf", "nan", '"10m"', "[" * 3000 + "]" * 3000,
                               "{ a = { b = { c = 1 } } }", '"\\ud800"', "99999999999999999999", "true"])),
)


def _fuzz_validate_cli(n: int, tmp_path, capsys) -> None:
    f = tmp_path / "s.toml"

    @settings(max_examples=n, **_SETTINGS)
    @given(text=toml_texts)
    def run(text):
        f.write_text(text, encoding="utf-8", errors="surrogatepass")
        code = simfed.cli.main(["validate", str(f)])
        out, err = capsys.readouterr()
        assert code in (0, 2)
        if code == 2:
            assert err.strip() and "Traceback" not in err

    run()


def test_fuzz_validate_cli(tmp_path, capsys):
    _fuzz_validate_cli(FAST, tmp_path, capsys)


@pytest.mark.slow
def test_fuzz_validate_cli_thousands(tmp_path, capsys):
    _fuzz_validate_cli(SLOW, tmp_path, capsys)
