"""Scenario bounds (issue 13): every scenario that validates is a finite run."""

from __future__ import annotations

import pytest

import simfed.cli
from simfed.config import bounds
from simfed.experiment.scenario import ScenarioError, load_scenario

REFUSED = {
    "servers": ("[servers]\ncount = 100000000\n", "servers.count"),
    "users": ("[servers]\ncount = 10000\nusers_per_server = 1000\n", "100,000 users"),
    "all_malicious": ('[servers]\ncount = 2\nmalicious = ["hs0", "hs1"]\n', "every server is malicious"),
    "duration": ('[simulation]\nduration = "100000d"\n', "longer than"),
    "rate": ("[workload]\nmessages_per_user_per_minute = 1e12\n", "messages_per_user_per_minute"),
    "service_rate": ("[services.presence]\nenabled = true\nsessions_per_user_per_hour = 1e300\n",
                     "sessions_per_user_per_hour"),
    "events": ('[simulation]\nduration = "100d"\n[workload]\nmessages_per_user_per_minute = 100\n', "events"),
    "copies": ('[servers]\ncount = 10000\n[simulation]\nduration = "10m"\n', "copies"),
    "samples": ('[simulation]\nduration = "300d"\n[metrics]\nsample_interval = "1ms"\n'
                "[workload]\nmessages_per_user_per_minute = 0\nstate_changes_per_minute = 0\n", "state samples"),
    "skew": ('[servers.clock_skew]\ndistribution = "normal"\nmean = "1000000d"\n', "clock skew"),
    "deep_toml": ("description = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_out_of_bounds_scenarios_are_refused_naming_the_field(name):
    text, needle = REFUSED[name]
    with pytest.raises(ScenarioError, match=needle.replace(".", r"\.")):
        load_scenario(text)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_validate_exits_2_with_one_line(name, tmp_path, capsys):
    text, needle = REFUSED[name]
    f = tmp_path / "s.toml"
    f.write_text(text)
    assert simfed.cli.main(["validate", str(f)]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], lines


def test_largest_allowed_values_still_validate():
    sc = load_scenario(
        f"[servers]\ncount = {bounds.MAX_SERVERS}\nusers_per_server = 10\nmalicious = [\"hs1\"]\n"
        f"[simulation]\nduration = \"365d\"\n[metrics]\nsample_interval = \"1h\"\n"
        "[workload]\nmessages_per_user_per_minute = 0\nstate_changes_per_minute = 0\n"
    )
    assert sc.servers.count == bounds.MAX_SERVERS
    assert bounds.expected_events(sc) == 0


def test_expected_events_counts_every_kind_over_the_window():
    sc = load_scenario('[servers]\ncount = 3\nusers_per_server = 2\n[simulation]\nduration = "20m"\n'
                       '[workload]\nmessages_per_user_per_minute = 2\nstate_changes_per_minute = 1\n'
                       'profile_changes_per_user_per_hour = 6\nstart = "5m"\nstop = "15m"\n')
    assert bounds.expected_events(sc) == pytest.approx(10 * (6 * 2 + 1 + 6 * 6 / 60))
