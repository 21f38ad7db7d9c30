"""``simfed run``: exit codes, messages, the results directory.

Most tests replace the simulator by the fake of ``test_runner`` (fast,
exact); ``test_real_run`` runs the real one on a tiny scenario.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

import simfed.cli
from simfed.experiment.results import PLOT_FILES, TABLE_FILES

#: The plots of a run without [services] (edus.png and services.png are skipped).
CORE_PLOTS = {f for m, f in PLOT_FILES.items() if m not in ("plot_edus", "plot_services")}
from test_runner import TINY, fake_simulate

MODULE = "simfed.experiment.cli_run"


@pytest.fixture
def main(monkeypatch):
    """simfed.cli.main with ``run`` registered (whether or not cli.py lists it yet)."""
    modules = tuple(dict.fromkeys((*simfed.cli.COMMAND_MODULES, MODULE)))
    monkeypatch.setattr(simfed.cli, "COMMAND_MODULES", modules)
    return simfed.cli.main


@pytest.fixture
def fake_world(monkeypatch):
    """Make ``from simfed.sim.world import simulate`` give the fake simulator."""
    module = types.ModuleType("simfed.sim.world")
    module.simulate = fake_simulate
    monkeypatch.setitem(sys.modules, "simfed.sim.world", module)
    return module


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def test_run_writes_results_and_prints_headline(main, fake_world, tiny_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(tiny_file), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"results: {out}/" in captured.out
    for word in ("events", "120 created, 0 lost", "converged", "p50", "p95",
                 "state convergence", "messages"):
        assert word in captured.out, word
    names = {p.name for p in out.iterdir()}
    # No [services]: no EDUs or service observations, so no edus.png / services.png.
    assert names == {*TABLE_FILES.values(), *CORE_PLOTS, "summary.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["name"] == "tiny"


def test_default_out_dir_and_overrides(main, fake_world, tiny_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(tiny_file), "--seed", "5", "--set", "servers.count=3",
                 "--set", "network.loss=0.2", "--quiet", "--no-plots"])
    assert code == 0
    out = Path("results") / "tiny-seed5"
    assert capsys.readouterr().out.strip() == str(out)  # --quiet: only where the results went
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 5
    assert summary["scenario"]["servers"]["count"] == 3
    assert summary["scenario"]["network"]["loss"]["p"] == 0.2
    assert not list(out.glob("*.png"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "network.loss=1.5"], "network.loss: 1.5 is not a valid loss"),
        (["--set", "network.latncy=80ms"], 'did you mean "latency"'),
        (["--set", "nonsense"], "is not an override"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_overrides_exit_2(main, fake_world, tiny_file, tmp_path, capsys, args, expected):
    assert main(["run", str(tiny_file), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_scenario_files_exit_2(main, fake_world, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nloss = 2\n[servers]\ncount = 0\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: network.loss:" in err and f"{bad}: servers.count:" in err
    assert "2 problems" in err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[network\n")
    assert main(["run", str(broken)]) == 2
    assert "invalid TOML" in capsys.readouterr().err


def test_bad_scenario_never_a_traceback(tmp_path):
    """In a real process: stderr holds the problem lines and nothing else."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[simulation]\nduration = "1m"\n[workload]\nstop = "2m"\n')
    code = (
        "import sys, simfed.cli as c\n"
        f"c.COMMAND_MODULES = tuple(dict.fromkeys(c.COMMAND_MODULES + ({MODULE!r},)))\n"
        "sys.exit(c.main(sys.argv[1:]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "run", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f'{bad}: workload.stop: "2m" is after the end of the run (simulation.duration = "1m")'
    )
    assert not (tmp_path / "results").exists()


def test_unwritable_out_dir_exits_1(main, fake_world, tiny_file, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", str(tiny_file), "--out", str(blocker / "sub"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot write results" in err and "Traceback" not in err


def test_ctrl_c_exits_130_after_writing_partial_results(main, fake_world, tiny_file, tmp_path, capsys):
    calls = {"n": 0}

    def interrupting(scenario, *, recorder, progress=None, should_stop=None):
        def stop():
            calls["n"] += 1
            if calls["n"] == 30:
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends
            return should_stop()

        return fake_simulate(scenario, recorder=recorder, progress=progress, should_stop=stop)

    fake_world.simulate = interrupting
    out = tmp_path / "out"
    assert main(["run", str(tiny_file), "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.err and "partial results written" in captured.err
    assert "INCOMPLETE" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    assert 0 < summary["sim_end_ms"] < 20_000
    assert {p.name for p in out.iterdir()} >= {*TABLE_FILES.values(), "summary.json"}


def test_help_lists_options(main, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--out", "--seed", "--set", "--quiet", "SCENARIO"):
        assert opt in text


def test_real_run(main, tiny_file, tmp_path, capsys):
    out = tmp_path / "real"
    assert main(["run", str(tiny_file), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["events_created"] > 0
    assert {p.name for p in out.iterdir()} == {*TABLE_FILES.values(), *CORE_PLOTS, "summary.json"}


#: Ten servers chatting for ten simulated hours: about a minute of CPU, so a
#: run interrupted after its first 1% is nowhere near finishing, on any machine.
LONG = """
description = "long by construction: ten servers chatting for ten hours"
[simulation]
seed = 1
duration = "10h"
[servers]
count = 10
users_per_server = 2
[workload]
messages_per_user_per_minute = 2
stop = "10h"
"""


def test_real_ctrl_c_in_a_real_process(tmp_path):
    """SIGINT to a running ``simfed run``, sent once it says the simulation has
    started: exit 130, partial results on disk, no traceback."""
    from simfed.experiment.cli_run import STARTED_LINE

    scenario = tmp_path / "long.toml"
    scenario.write_text(LONG)
    out = tmp_path / "long"
    code = (
        "import sys, simfed.cli as c\n"
        f"c.COMMAND_MODULES = tuple(dict.fromkeys(c.COMMAND_MODULES + ({MODULE!r},)))\n"
        "sys.exit(c.main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "run", str(scenario), "--out", str(out), "--no-plots"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        seen = []
        for line in proc.stderr:  # wait for the run to say it is under way
            seen.append(line)
            if line.rstrip("\n") == STARTED_LINE:
                break
        assert seen and seen[-1].rstrip("\n") == STARTED_LINE, "".join(seen)
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["interrupted"] is True
    assert 0 < summary["sim_end_ms"] < summary["sim_duration_ms"]
    assert (out / "events.parquet").exists()
    assert "INCOMPLETE" in stdout


def test_started_line_only_without_a_terminal_and_not_quiet(main, fake_world, tiny_file, tmp_path, capsys):
    from simfed.experiment import cli_run

    assert main(["run", str(tiny_file), "--out", str(tmp_path / "a"), "--no-plots"]) == 0
    assert capsys.readouterr().err.splitlines().count(cli_run.STARTED_LINE) == 1
    assert main(["run", str(tiny_file), "--out", str(tmp_path / "b"), "--no-plots", "--quiet"]) == 0
    assert cli_run.STARTED_LINE not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("network.latncy=80ms", 'network.latncy: unknown key "latncy" (did you mean "latency"?'),
        ("network.loss=1.5", "network.loss: 1.5 is not a valid loss"),
        ("network.latency.model=warp", 'network.latency.model: "warp" is not a valid model'),
        ("network.loss.p=0.2", "network.loss: 0.05 is not a table"),
        ("faults[5].at=1m", "faults[5]: no item [5] to set"),
    ],
)
def test_bad_set_is_reported_against_the_option(main, fake_world, tiny_file, tmp_path, capsys, command, override,
                                                expected):
    """A bad value from ``--set`` names the option, not the scenario file it was not in."""
    tiny_file.write_text(TINY + "[network]\nloss = 0.05\n")
    extra = ["--out", str(tmp_path / "out")] if command == "run" else []
    assert main([command, str(tiny_file), "--set", override, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"--set {override}: {expected}"), err
    assert str(tiny_file) not in err


def test_bad_value_in_the_file_is_still_reported_against_the_file(main, tiny_file, capsys):
    tiny_file.write_text(TINY.replace("count = 4", "count = -1"))
    assert main(["validate", str(tiny_file), "--set", "network.loss=0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tiny_file}: servers.count: -1") and "--set" not in err


@pytest.mark.parametrize("text", ["", "# nothing here yet\n\n"])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_empty_scenario_file_runs_on_defaults_with_a_warning(main, fake_world, tmp_path, capsys, command, text):
    empty = tmp_path / "empty.toml"
    empty.write_text(text)
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if command == "run" else []
    assert main([command, str(empty), *extra]) == 0
    err = capsys.readouterr().err
    assert f"simfed: warning: {empty}: the scenario file is empty: every value is a default" in err
    assert "Warning" not in err  # one plain line, not Python's warning format


def test_non_empty_scenario_file_gives_no_warning(main, tiny_file, capsys):
    assert main(["validate", str(tiny_file)]) == 0
    assert capsys.readouterr().err == ""


def test_empty_scenario_file_warns_from_python_too(tmp_path):
    from simfed.experiment.scenario import ScenarioWarning, load_scenario

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.warns(ScenarioWarning, match="empty.toml: the scenario file is empty"):
        load_scenario(empty, overrides=["servers.count=3"])
