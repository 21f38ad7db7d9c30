"""run_scenario / RunResult / simfed.run: files written, summary keys, determinism, Ctrl-C.

Most tests use a small fake simulator (``fake_simulate``) that pushes a
seeded, hand-made observation stream into the recorder, so they check the
runner's own job (measure, write, stop) quickly and exactly. The tests at
the end run the real simulator on a tiny scenario.
"""

from __future__ import annotations

import json
import math
import re
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import simfed.api as api
from simfed.config import Scenario
from simfed.experiment.results import PLOT_FILES, TABLE_FILES, WALL_CLOCK_KEYS, RunResult

#: The plots of a run without [services] (edus.png and services.png are skipped).
CORE_PLOTS = [f for m, f in PLOT_FILES.items() if m not in ("plot_edus", "plot_services")]
from simfed.experiment.runner import run_id_for, run_scenario
from simfed.experiment.scenario import ScenarioError, load_scenario, scenario_to_dict

ROOM = "!room:hs0"
TINY = """
description = "tiny: 4 servers"
[simulation]
seed = 3
duration = "20s"
[servers]
count = 4
[workload]
messages_per_user_per_minute = 6
stop = "12s"
[metrics]
sample_interval = "1s"
"""


def fake_simulate(scenario, *, recorder, progress=None, should_stop=None):
    """Pushes a seeded observation stream: events every ~100 ms by random
    servers, pushed to every other server after a random delay, state samples
    every ``metrics.sample_interval``; stops early when ``should_stop``."""
    rng = np.random.default_rng(scenario.simulation.seed)
    names = scenario.server_names()
    end = scenario.simulation.duration_ms
    stop_work = scenario.workload_stop_ms
    step = end / 100.0
    for s in names:
        recorder.server_info(s, True, None)
        recorder.membership(0.0, s, ROOM, True)
    last_held: dict[str, float] = {s: 0.0 for s in names}
    pending: list[tuple[float, str, str]] = []
    state = {("m.room.create", ""): "$create"}
    t, k, next_sample, completed = 0.0, 0, 0.0, True
    while t < end:
        if should_stop is not None and should_stop():
            completed = False
            break
        if progress is not None:
            progress(t)
        t_next = min(t + step, end)
        while t < t_next:
            if t < stop_work:
                k += 1
                eid = f"$e{k}"
                src = names[int(rng.integers(len(names)))]
                recorder.event_created(t, src, eid, ROOM, "m.room.message", False, k, 1, f"@u:{src}")
                recorder.event_outcome(t, src, eid, ROOM, "accepted", "created")
                for dst in names:
                    if dst != src:
                        delay = float(rng.lognormal(np.log(50), 0.5))
                        lost = rng.random() < 0.05
                        recorder.message(t, t + delay, "transaction", src, dst, 900, not lost,
                                         "loss" if lost else None)
                        pending.append((t + (delay if not lost else delay + 1000.0), dst, eid))
            due = [p for p in pending if p[0] <= t]
            pending = [p for p in pending if p[0] > t]
            for td, dst, eid in due:
                recorder.event_outcome(td, dst, eid, ROOM, "accepted", "push")
            while next_sample <= t:
                for s in names:
                    recorder.state_sample(next_sample, s, ROOM, True, 1 + int(rng.integers(2)),
                                          "h0", 1, 0, state=state)
                next_sample += scenario.metrics.sample_interval_ms
            t += 100.0
    end_t = t if not completed else end
    return SimpleNamespace(
        scenario=scenario, recorder=recorder, end_t=end_t, completed=completed,
        honest=frozenset(names), room_id=ROOM, servers={}, wall_time_s=0.01,
    )


@pytest.fixture
def tiny() -> Scenario:
    return load_scenario(TINY)


def frames_equal(a: RunResult, b: RunResult) -> None:
    for name in TABLE_FILES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)


def assert_same_values(back: pd.DataFrame, df: pd.DataFrame) -> None:
    """A table read back from Parquet: same columns, dtypes (categoricals stay
    categorical) and values."""
    assert list(back.columns) == list(df.columns)
    assert len(back) == len(df)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            assert isinstance(back[c].dtype, pd.CategoricalDtype), c
            assert list(back[c].astype(object)) == list(df[c].astype(object)), c
        else:
            assert back[c].dtype == df[c].dtype, c
            assert back[c].tolist() == df[c].tolist(), c


# ------------------------------------------------------------------ files


def test_writes_every_table_summary_and_plot(tiny, tmp_path):
    res = run_scenario(tiny, out_dir=tmp_path / "out", simulator=fake_simulate, progress=False)
    out = tmp_path / "out"
    for fname in [*TABLE_FILES.values(), *CORE_PLOTS, "summary.json"]:
        assert (out / fname).is_file(), fname
    assert not (out / "edus.png").exists() and not (out / "services.png").exists()  # no [services]
    for fname in CORE_PLOTS:
        data = (out / fname).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(out.glob("*.tmp"))
    assert sorted(res.summary["out_files"]) == sorted(p.name for p in out.iterdir())
    assert res.out_dir == out


def test_parquet_round_trip_of_every_table(tiny, tmp_path):
    res = run_scenario(tiny, out_dir=tmp_path, simulator=fake_simulate, progress=False)
    assert len(res.events) and len(res.deliveries) and len(res.state) and len(res.traffic)
    for name, fname in TABLE_FILES.items():
        assert_same_values(pd.read_parquet(tmp_path / fname), res.tables[name])
    loaded = RunResult.load(tmp_path)
    frames_equal(loaded, res)
    assert loaded.scenario == tiny
    assert loaded.summary == res.summary
    assert loaded.sim is None
    with pytest.raises(AttributeError, match="loaded from disk"):
        loaded.servers
    # Derived measures agree after the round trip.
    pd.testing.assert_frame_equal(loaded.divergence, res.divergence)


SUMMARY_KEYS = {
    "scenario", "seed", "versions", "wall_time_s", "complete", "events_created", "events_lost",
    "converged", "event_convergence_ms", "state_convergence_ms", "max_divergence", "messages",
    "bytes", "rejected", "soft_failed", "sim_end_ms", "out_files",
}


def test_summary_json(tiny, tmp_path):
    run_scenario(tiny, out_dir=tmp_path, simulator=fake_simulate, progress=False, plots=False)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["scenario"] == scenario_to_dict(tiny)
    assert load_scenario(s["scenario"]) == tiny
    assert s["seed"] == 3
    assert set(s["versions"]) >= {"simfed", "python", "simpy", "numpy", "pandas", "pyarrow",
                                  "pynacl", "canonicaljson"}
    assert all(s["versions"][k] for k in ("python", "numpy", "pandas", "pyarrow", "pynacl"))
    assert s["complete"] is True and s["sim_end_ms"] == 20_000.0
    assert set(s["event_convergence_ms"]) == {"p50", "p95", "p99", "max", "censored", "events", "events_lost"}
    assert s["event_convergence_ms"]["events_lost"] == 0 and s["event_convergence_ms"]["censored"] == []
    assert s["events_created"] == 120 and s["events_lost"] == 0 and s["converged"] is True
    assert s["messages"]["transaction"] == 120 * 3
    assert s["wall_time_s"] > 0
    assert s["run_id"] == run_id_for(tiny)


def test_no_out_dir_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_scenario(tiny, out_dir=None, simulator=fake_simulate, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert res.summary["out_files"] == [] and res.out_dir is None
    written = res.save(tmp_path / "later", plots=False)
    assert {p.name for p in written} == {*TABLE_FILES.values(), "summary.json"}


# ------------------------------------------------------------------ determinism


def test_same_scenario_and_seed_identical_tables(tiny):
    a = run_scenario(tiny, out_dir=None, simulator=fake_simulate, progress=False)
    b = run_scenario(tiny, out_dir=None, simulator=fake_simulate, progress=False)
    frames_equal(a, b)
    strip = lambda s: {k: v for k, v in s.items() if k not in WALL_CLOCK_KEYS}  # noqa: E731
    assert strip(a.summary) == strip(b.summary)
    c = run_scenario(tiny.model_copy(update={"simulation": tiny.simulation.model_copy(update={"seed": 4})}),
                     out_dir=None, simulator=fake_simulate, progress=False)
    assert not a.events.equals(c.events)


# ------------------------------------------------------------------ stopping early


def flips_after(n: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n

    return should_stop


def test_should_stop_writes_partial_results(tiny, tmp_path):
    res = run_scenario(tiny, out_dir=tmp_path, simulator=fake_simulate, progress=False,
                       should_stop=flips_after(30))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["complete"] is False and res.complete is False
    assert 0 < s["sim_end_ms"] < 20_000
    assert s["events_created"] > 0
    for fname in [*TABLE_FILES.values(), *CORE_PLOTS]:
        assert (tmp_path / fname).stat().st_size > 0
    assert len(pd.read_parquet(tmp_path / "events.parquet")) == s["events_created"]


def test_ctrl_c_stops_cleanly_and_writes_partial_results(tiny, tmp_path):
    """SIGINT during the run (as Ctrl-C sends it) stops it through should_stop."""
    calls = {"n": 0}

    def interrupting(scenario, *, recorder, progress=None, should_stop=None):
        def stop():
            calls["n"] += 1
            if calls["n"] == 25:
                signal.raise_signal(signal.SIGINT)  # the runner's handler sets the flag
            return should_stop()

        return fake_simulate(scenario, recorder=recorder, progress=progress, should_stop=stop)

    before = signal.getsignal(signal.SIGINT)
    res = run_scenario(tiny, out_dir=tmp_path, simulator=interrupting, progress=False, plots=False)
    assert signal.getsignal(signal.SIGINT) is before
    assert res.interrupted and not res.complete
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["complete"] is False and s["interrupted"] is True
    assert 0 < s["sim_end_ms"] < 20_000


def test_ctrl_c_while_writing_a_finished_run_still_writes_it(tiny, tmp_path, monkeypatch, capsys):
    """A first Ctrl-C after the simulation (while the tables are built) does
    not lose the run: it says so, and the complete results are written."""
    import simfed.experiment.dag as dag

    real = dag.dag_tables

    def interrupted_tables(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(dag, "dag_tables", interrupted_tables)
    before = signal.getsignal(signal.SIGINT)
    res = run_scenario(tiny, out_dir=tmp_path, simulator=fake_simulate, progress=False, plots=False)
    assert signal.getsignal(signal.SIGINT) is before
    assert "results are being written" in capsys.readouterr().err
    assert res.complete and not res.interrupted
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["complete"] is True and s["interrupted"] is False


def test_second_ctrl_c_while_writing_aborts(tiny, tmp_path, monkeypatch):
    import simfed.experiment.dag as dag

    real = dag.dag_tables

    def interrupted_twice(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(dag, "dag_tables", interrupted_twice)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(tiny, out_dir=tmp_path, simulator=fake_simulate, progress=False, plots=False)
    assert signal.getsignal(signal.SIGINT) is before
    assert not (tmp_path / "summary.json").exists()


def test_keyboard_interrupt_inside_simulator_still_writes(tiny, tmp_path):
    """A KeyboardInterrupt the simulator doesn't catch (a second Ctrl-C):
    the tables are built from the runner's own recorder."""

    def raising(scenario, *, recorder, progress=None, should_stop=None):
        fake_simulate(scenario, recorder=recorder, progress=progress, should_stop=flips_after(40))
        raise KeyboardInterrupt

    res = run_scenario(tiny, out_dir=tmp_path, simulator=raising, progress=False, plots=False)
    assert res.interrupted and res.sim is None
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["complete"] is False and s["events_created"] > 0
    assert s["sim_end_ms"] == pytest.approx(res.events["created_at"].max(), abs=1000)


# ------------------------------------------------------------------ RunResult


def test_run_result_api(tiny):
    import matplotlib.pyplot as plt

    res = run_scenario(tiny, out_dir=None, simulator=fake_simulate, progress=False)
    for method in PLOT_FILES:
        fig = getattr(res, method)()
        assert fig.axes
        plt.close(fig)
    assert {"t", "n_distinct_states", "max_extremities"} <= set(res.divergence.columns)
    assert res.servers == {} and res.room_id == ROOM
    assert res.honest == frozenset(tiny.server_names())
    text = repr(res)
    assert "120 created, 0 lost" in text and "converged" in text and "p95" in text
    html = res._repr_html_()
    assert html.startswith("<div>") and "event convergence" in html
    assert res.headline()["events_created"] == 120


def test_progress_bar_in_simulated_time(tiny, capsys):
    run_scenario(tiny, out_dir=None, simulator=fake_simulate, progress=True)
    err = capsys.readouterr().err
    assert "sim s" in err and "20/20" in err


def test_progress_shows_event_and_delivery_rates_and_the_run_its_peak_memory(tiny, capsys):
    res = run_scenario(tiny, out_dir=None, simulator=fake_simulate, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"[0-9,]+ events \([0-9,]+/s\), [0-9,]+ deliveries \([0-9,]+/s\)", err)
    assert res.summary["peak_rss_mb"] > 0
    assert re.search(r"deliveries/s, peak memory [0-9,]+ MiB", res.report())


def test_progress_lines_for_logs_at_every_tenth_of_the_simulated_time(tiny, capsys):
    run_scenario(tiny, out_dir=None, progress="lines", name="tiny")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    done = [int(re.match(r"tiny: +([0-9]+)%", line).group(1)) for line in lines]
    assert all(10 * i <= p < 10 * i + 10 for i, p in enumerate(done[:-1], start=1)) and done[-1] == 100
    assert all(re.search(r"[0-9,]+ events \([0-9,]+/s\), [0-9,]+ deliveries .* peak memory [0-9.,]+ MiB$", line)
               for line in lines)


def test_progress_mode_must_be_known(tiny):
    with pytest.raises(ValueError, match="progress='bar'"):
        run_scenario(tiny, out_dir=None, progress="bar")


def test_quiet_when_not_a_tty(tiny, capsys):
    run_scenario(tiny, out_dir=None, simulator=fake_simulate)  # stderr is captured: not a TTY
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ simfed.api.run


def test_api_overrides(tmp_path, monkeypatch):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    seen = {}

    def capture(scenario, **kw):
        seen["scenario"] = scenario
        return fake_simulate(scenario, **kw)

    import simfed.experiment.runner as runner

    monkeypatch.setattr(runner, "run_scenario",
                        lambda s, **kw: run_scenario(s, simulator=capture, **kw))
    res = api.run(path, network__loss=0.1, servers__count=5, set=["simulation.duration=30s"],
                  workload__stop="25s", seed=9, progress=False)
    s = seen["scenario"]
    assert s.network.loss.p == 0.1 and s.servers.count == 5
    assert s.simulation.duration_ms == 30_000 and s.workload.stop_ms == 25_000
    assert s.simulation.seed == 9
    assert res.summary["name"] == "tiny"
    # A Scenario, a dict and TOML text all work.
    for source in (load_scenario(path), scenario_to_dict(load_scenario(path)), TINY):
        api.run(source, servers__count=3, progress=False)
        assert seen["scenario"].servers.count == 3
    api.run(load_scenario(path), network__latency={"model": "constant", "ms": 80}, progress=False)
    assert seen["scenario"].network.latency.delay_ms == 80


def test_api_bad_override_is_a_scenario_error():
    with pytest.raises(ScenarioError, match="network.loss"):
        api.resolve_scenario(TINY, network__loss=1.5)
    with pytest.raises(ScenarioError, match="latncy"):
        api.resolve_scenario(TINY, network__latncy="80ms")
    with pytest.raises(ScenarioError):
        api.resolve_scenario(TINY, network__loss=math.inf)


# ------------------------------------------------------------------ the real simulator


def test_real_run_writes_and_is_deterministic(tiny, tmp_path):
    a = run_scenario(tiny, out_dir=tmp_path, progress=False)
    b = run_scenario(tiny, out_dir=None, progress=False)
    frames_equal(a, b)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["complete"] is True and s["events_created"] > 0
    assert a.servers and a.room_id in next(iter(a.servers.values())).rooms
    for name, fname in TABLE_FILES.items():
        assert_same_values(pd.read_parquet(tmp_path / fname), a.tables[name])


def test_real_run_stopped_early(tiny, tmp_path):
    res = run_scenario(tiny, out_dir=tmp_path, progress=False, should_stop=flips_after(20))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["complete"] is False and res.complete is False
    assert s["sim_end_ms"] < tiny.simulation.duration_ms
    assert (tmp_path / "events.parquet").exists()


def test_simulate_takes_a_path_text_dict_or_scenario(tmp_path):
    """``simfed.simulate`` accepts what ``simfed.run`` accepts, overrides included."""
    import simfed

    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    by_path = simfed.simulate(str(path), servers__count=3)
    by_pathlike = simfed.simulate(path, set=["servers.count=3"])
    by_text = simfed.simulate(TINY, servers__count=3)
    by_scenario = simfed.simulate(load_scenario(TINY, overrides=["servers.count=3"]))
    for res in (by_path, by_pathlike, by_text, by_scenario):
        assert res.completed and sorted(res.servers) == ["hs0", "hs1", "hs2"]
    ids = [sorted(r.recorder.tables()["events"]["event_id"]) for r in (by_path, by_pathlike, by_text, by_scenario)]
    assert ids[0] and all(i == ids[0] for i in ids)
    with pytest.raises(ScenarioError, match="no such file"):
        simfed.simulate(str(tmp_path / "missing.toml"))
