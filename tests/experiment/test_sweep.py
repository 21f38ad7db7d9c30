"""Sweeps: the grid, seeds, the plan, resuming, failures, executors, statistics, the CLI.

Runs use ``scenarios/baseline.toml`` shrunk to 3-4 servers, 90 simulated
seconds and 30 s of traffic (a quarter of a second each). Most sweeps run in
this process (``workers=0``), where monkeypatching reaches the runner; the
executor tests run through real process pools and a Dask ``LocalCluster``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simfed.cli
from simfed.experiment import runner
from simfed.experiment.scenario import ScenarioError, load_scenario
from simfed.experiment.sweep_stats import _T975
from simfed.experiment.sweep import (
    HEADLINE_COLUMNS,
    SUMMARY_METRICS,
    ManifestMismatch,
    SweepResult,
    derive_seed,
    load_sweep,
    mean_ci,
    parse_grid,
    parse_grid_item,
    plan_runs,
    summarise_runs,
    sweep,
    t_quantile_975,
)

MODULE = "simfed.experiment.cli_sweep"
ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "scenarios" / "baseline.toml"
TINY_SET = ["servers.count=3", "simulation.duration=90s", "workload.stop=30s"]
TINY = {"servers__count": 3, "simulation__duration": "90s", "workload__stop": "30s"}
GRID = {"network.loss": [0, 0.1], "servers.count": [3, 4]}


@pytest.fixture
def main(monkeypatch):
    """simfed.cli.main with ``sweep`` registered (whether or not cli.py lists it yet)."""
    modules = tuple(dict.fromkeys((*simfed.cli.COMMAND_MODULES, MODULE)))
    monkeypatch.setattr(simfed.cli, "COMMAND_MODULES", modules)
    return simfed.cli.main


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="wall_time_s"), b.drop(columns="wall_time_s"))


# -- the grid ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("network.loss=0,0.1,0.3", "network.loss", [0, 0.1, 0.3]),
        ("servers.count=10,50", "servers.count", [10, 50]),
        ("simulation.state_resolution=v2,v1,naive", "simulation.state_resolution", ["v2", "v1", "naive"]),
        ("federation.x=true,false", "federation.x", [True, False]),
        ("simulation.duration=90s,2m", "simulation.duration", ["90s", "2m"]),
        ('a.b="x,y",z', "a.b", ["x,y", "z"]),
        ("a.b=[1, 2],[3]", "a.b", [[1, 2], [3]]),
        ('network.latency={ model = "constant", ms = 80 },50ms', "network.latency",
         [{"model": "constant", "ms": 80}, "50ms"]),
        (" a.b = 1 , 2 ", "a.b", [1, 2]),
    ],
)
def test_grid_item_values_are_typed(text, key, values):
    k, v = parse_grid_item(text)
    assert k == key
    assert v == values
    assert [type(x) for x in v] == [type(x) for x in values]


@pytest.mark.parametrize("text", ["network.loss", "=1,2", "network.loss=", "network.loss=0,,1"])
def test_grid_item_malformed(text):
    with pytest.raises(ScenarioError):
        parse_grid_item(text)


def test_grid_key_given_twice_is_refused():
    with pytest.raises(ScenarioError, match="given twice"):
        parse_grid(["a.b=1", "a.b=2"])


def test_grid_values_must_be_distinct_lists_and_not_the_seed():
    base = load_scenario(BASELINE)
    with pytest.raises(ScenarioError, match="twice"):
        plan_runs(base, {"network.loss": [0.1, 0.1]}, 1)
    with pytest.raises(ScenarioError, match="not a list"):
        plan_runs(base, {"network.loss": 0.1}, 1)
    with pytest.raises(ScenarioError, match="simulation.seed"):
        plan_runs(base, {"simulation.seed": [1, 2]}, 1)
    with pytest.raises(ScenarioError, match="--repeat"):
        plan_runs(base, {}, 0)


def test_bad_grid_key_or_value_names_it(tmp_path):
    base = load_scenario(BASELINE)
    with pytest.raises(ScenarioError) as err:
        plan_runs(base, {"network.losss": [0, 0.1], "network.loss": [0, 1.5]}, 2)
    paths = {p.path for p in err.value.problems}
    assert paths == {"network.losss", "network.loss"}
    assert len(err.value.problems) == 2  # one line per problem, not one per grid point


@pytest.mark.parametrize(("grid", "named"), [("network.losss=0,0.1", "network.losss"),
                                             ("network.loss=0,1.5", "network.loss")])
def test_cli_bad_grid_exits_2_naming_it(main, tmp_path, capsys, grid, named):
    out = tmp_path / "out"
    rc = main(["sweep", str(BASELINE), "--grid", grid, "--out", str(out), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert named in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


# -- seeds and the plan -----------------------------------------------------------


def test_seed_scheme_is_the_documented_hash():
    blob = '{"base_seed":7,"params":[["a.b",0.1],["c",10]],"repetition":3}'
    expected = int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big") >> 1
    assert derive_seed(7, {"c": 10, "a.b": 0.1}, 3) == expected
    assert derive_seed(7, {"a.b": 0.1, "c": 10}, 3) == expected  # key order does not matter
    assert derive_seed(7, {"a.b": 0.1, "c": 10.0}, 3) == expected  # 10.0 is 10
    assert derive_seed(7, {"a.b": 0.1, "c": 10}, 2) != expected
    assert derive_seed(8, {"a.b": 0.1, "c": 10}, 3) != expected


def test_seeds_deterministic_and_distinct():
    base = load_scenario(BASELINE)
    grid = {"network.loss": [0, 0.01, 0.1], "servers.count": [3, 5]}
    a = plan_runs(base, grid, 10)
    b = plan_runs(base, dict(reversed(grid.items())), 10)
    seeds = [s.seed for s in a]
    assert len(set(seeds)) == len(seeds) == 60
    assert all(0 <= s < 2**63 for s in seeds)
    assert {(s.run_id, s.seed) for s in a} == {(s.run_id, s.seed) for s in b}
    assert len({s.run_id for s in a}) == 60
    # Each run's scenario carries its own seed; another base seed gives other seeds.
    assert all(s.scenario["simulation"]["seed"] == s.seed for s in a)
    other = plan_runs(load_scenario(BASELINE, overrides=["simulation.seed=2"]), grid, 10)
    assert not set(seeds) & {s.seed for s in other}


def test_plan_is_the_product_times_repeat():
    base = load_scenario(BASELINE)
    grid = {"network.loss": [0, 0.01, 0.1], "servers.count": [3, 5]}
    specs = plan_runs(base, grid, 4)
    assert len(specs) == 3 * 2 * 4
    assert {(s.point, s.repetition) for s in specs} == {(p, r) for p in range(6) for r in range(4)}
    combos = {(s.params["network.loss"], s.params["servers.count"]) for s in specs}
    assert combos == {(l, c) for l in (0, 0.01, 0.1) for c in (3, 5)}
    for s in specs:
        assert s.scenario["servers"]["count"] == s.params["servers.count"]
    assert len(plan_runs(base, {}, 3)) == 3  # no grid: repetitions of the base scenario


# -- statistics -----------------------------------------------------------------


def test_mean_ci_on_known_numbers():
    n, mean, lo, hi = mean_ci([1, 2, 3, 4, 5])
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert (n, mean) == (5, 3.0)
    assert lo == pytest.approx(3 - half) and hi == pytest.approx(3 + half)
    assert lo == pytest.approx(1.036756, abs=1e-6)
    assert mean_ci([2.0, None, float("nan"), 4.0, pd.NA]) == pytest.approx((2, 3.0, 3 - 12.706204736, 3 + 12.706204736))
    n, mean, lo, hi = mean_ci([7.0])
    assert (n, mean) == (1, 7.0) and math.isnan(lo) and math.isnan(hi)
    n, mean, lo, hi = mean_ci([])
    assert n == 0 and math.isnan(mean)
    assert mean_ci([4, 4, 4]) == (3, 4.0, 4.0, 4.0)


def test_mean_ci_is_clipped_to_the_range_of_the_quantity():
    # The case: two runs, p95 far apart; t(0.975, 1) = 12.7 gave a negative bound.
    n, mean, lo, hi = mean_ci([1_500.0, 34_360.0], (0.0, math.inf))
    assert n == 2 and lo == 0.0 and hi == pytest.approx(mean + 12.706204736 * np.std([1500, 34360], ddof=1) / math.sqrt(2))
    n, mean, lo, hi = mean_ci([0, 1], (0.0, 1.0))
    assert (lo, hi) == (0.0, 1.0)
    assert mean_ci([10.0, 10.5, 11.0], (0.0, math.inf))[2] == pytest.approx(10.5 - 4.302652730 * 0.5 / math.sqrt(3))


def test_state_never_converged_is_excluded_and_counted():
    runs = pd.DataFrame({
        "point": [0, 0, 0], "status": ["ok", "ok", "ok"],
        "state_convergence_ms": [1000.0, np.nan, 3000.0],
        # The third run says its state did not converge, whatever time it reports.
        "state_converged": pd.array([True, None, False], dtype="boolean"),
    })
    s = summarise_runs(runs, [])
    r = s.iloc[0]
    assert r["n_excluded"] == 2 and r["state_convergence_ms_n"] == 1 and r["state_convergence_ms_mean"] == 1000.0
    res = SweepResult(runs=runs, summary=s, manifest={"grid": {}, "repeat": 3, "base_seed": 1})
    assert "state 1.0 s (2 of 3 runs excluded: state never converged)" in res.report()


def test_report_uses_readable_units_and_no_negative_bounds():
    row = {"point": 0, "runs": 2, "ok": 2, "errors": 0, "n_excluded": 0}
    for prefix, (mean, lo, hi) in {
        "event_convergence_ms_p50": (850.0, 610.0, 1090.0),
        "event_convergence_ms_p95": (17_930.0, 0.0, 237_500.0),
        "state_convergence_ms": (185_000.0, 120_000.0, 250_000.0),
        "events_lost": (12_345.0, 0.0, 40_000.5),
        "converged_rate": (0.5, 0.0, 1.0),
    }.items():
        row.update({f"{prefix}_mean": mean, f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi})
    res = SweepResult(runs=pd.DataFrame({"status": []}), summary=pd.DataFrame([row]),
                      manifest={"grid": {}, "repeat": 2, "base_seed": 1})
    text = res.report()
    assert "p50 850 [610, 1,090] ms" in text
    assert "p95 17.9 [0.0, 237.5] s" in text
    assert "state 3.1 [2.0, 4.2] min" in text
    assert "lost 12,345 [0, 40,000]" in text  # counts: plain digits, thousands separated
    assert "e+" not in text and "[-" not in text


def test_t_quantiles():
    # The table against a numerical integral of Student's t density: P(T > t) = 0.025.
    for df in (1, 2, 5, 10, 30):
        t = t_quantile_975(df)
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        u = np.linspace(0.0, 1.0, 400_001)[1:]  # x = t / u maps (t, inf) to (0, 1)
        x = t / u
        tail = np.trapezoid(c * (1 + x * x / df) ** (-(df + 1) / 2) * t / u**2, u)
        assert tail == pytest.approx(0.025, abs=2e-6)
    # Above the table: the Cornish-Fisher expansion (continuous with it, and exact values).
    assert t_quantile_975(31) < _T975[-1]
    assert t_quantile_975(40) == pytest.approx(2.021075, abs=1e-6)
    assert t_quantile_975(120) == pytest.approx(1.979930, abs=1e-6)
    assert t_quantile_975(10**6) == pytest.approx(1.959966, abs=1e-6)


def test_summary_table_per_grid_point():
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e"],
        "point": [0, 0, 0, 1, 1],
        "network.loss": [0.0, 0.0, 0.0, 0.1, 0.1],
        "status": ["ok", "ok", "ok", "ok", "error"],
        "event_convergence_ms_p50": [100.0, 200.0, 300.0, 50.0, np.nan],
        "event_convergence_ms_p95": [1.0, 1.0, 1.0, 2.0, np.nan],
        "state_convergence_ms": [10.0, np.nan, 30.0, 5.0, np.nan],
        "events_lost": pd.array([0, 1, 2, 3, None], dtype="Int64"),
        "messages_total": pd.array([10, 20, 30, 40, None], dtype="Int64"),
        "converged": pd.array([True, False, True, False, None], dtype="boolean"),
    })
    s = summarise_runs(runs, ["network.loss"])
    assert s["network.loss"].tolist() == [0.0, 0.1]
    assert s["runs"].tolist() == [3, 2] and s["ok"].tolist() == [3, 1] and s["errors"].tolist() == [0, 1]
    r0 = s.iloc[0]
    assert r0["event_convergence_ms_p50_mean"] == 200.0
    half = 4.302652730 * 100 / math.sqrt(3)
    assert 200 - half < 0  # a time: the interval is clipped at 0, never negative
    assert r0["event_convergence_ms_p50_ci_low"] == 0.0
    assert r0["event_convergence_ms_p50_ci_high"] == pytest.approx(200 + half)
    assert r0["state_convergence_ms_n"] == 2 and r0["state_convergence_ms_mean"] == 20.0
    assert r0["n_excluded"] == 1 and s.iloc[1]["n_excluded"] == 0
    assert 0.0 <= r0["converged_rate_ci_low"] and r0["converged_rate_ci_high"] <= 1.0
    assert r0["converged_rate_mean"] == pytest.approx(2 / 3)
    assert r0["events_lost_mean"] == 1.0 and r0["messages_total_mean"] == 20.0
    r1 = s.iloc[1]
    assert r1["event_convergence_ms_p50_n"] == 1 and math.isnan(r1["event_convergence_ms_p50_ci_low"])
    for prefix in SUMMARY_METRICS.values():
        for stat in ("n", "mean", "ci_low", "ci_high"):
            assert f"{prefix}_{stat}" in s.columns


# -- sweeps ----------------------------------------------------------------------


def test_sweep_in_memory_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = sweep(BASELINE, GRID, 2, workers=0, keep_tables=True, **TINY)
    assert list(tmp_path.iterdir()) == []
    assert isinstance(res, SweepResult) and res.out_dir is None
    assert len(res.runs) == 8 and res.complete and res.computed == 8
    expected = ["run_id", "point", "repetition", "seed", "network.loss", "servers.count",
                "status", "error", "wall_time_s", *HEADLINE_COLUMNS]
    assert list(res.runs.columns) == expected
    assert (res.runs["status"] == "ok").all()
    assert res.runs["servers.count"].dtype == "int64" and res.runs["network.loss"].dtype == "float64"
    assert len(res.summary) == 4 and (res.summary["runs"] == 2).all()
    rid = res.runs["run_id"].iloc[0]
    s = res.run_summary(rid)
    assert s["sweep"]["run_id"] == rid and s["seed"] == res.runs["seed"].iloc[0]
    assert set(res.tables[rid]) >= {"events", "deliveries", "state", "traffic"}
    assert (res.tables[rid]["deliveries"]["run_id"] == rid).all()
    assert "network.loss=0" in res.report()


def test_resume_skips_finished_runs_and_recomputes_a_deleted_one(tmp_path):
    out = tmp_path / "sweep"
    first = sweep(BASELINE, GRID, 1, workers=0, out_dir=out, **TINY)
    assert (first.computed, first.skipped) == (4, 0)
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["grid"] == {"network.loss": [0, 0.1], "servers.count": [3, 4]}
    assert manifest["repeat"] == 1 and manifest["base_seed"] == 1 and manifest["simfed_version"]
    assert manifest["scenario"]["servers"]["count"] == 3
    # The grid in another order, 0.0 for 0: the same sweep.
    again = sweep(BASELINE, {"servers.count": [4, 3], "network.loss": [0.0, 0.1]}, 1, workers=0, out_dir=out,
                  **TINY)
    assert (again.computed, again.skipped) == (0, 4)
    # Same runs (the grid's order numbers the points differently, not the runs).
    def by_id(df):
        return df.drop(columns="point").sort_values("run_id").reset_index(drop=True)

    _same_table(by_id(first.runs), by_id(again.runs[first.runs.columns]))
    victim = first.runs["run_id"].iloc[2]
    (out / "runs" / victim / "summary.json").unlink()
    third = sweep(BASELINE, GRID, 1, workers=0, out_dir=out, **TINY)
    assert (third.computed, third.skipped) == (1, 3)
    _same_table(first.runs, third.runs)
    loaded = load_sweep(out)
    assert isinstance(loaded, SweepResult) and loaded.complete and loaded.grid == manifest["grid"]
    _same_table(first.runs, loaded.runs)
    pd.testing.assert_frame_equal(third.summary, loaded.summary)


def test_summary_of_another_run_is_not_taken_as_finished(tmp_path):
    out = tmp_path / "sweep"
    first = sweep(BASELINE, GRID, 1, workers=0, out_dir=out, **TINY)
    a, b = first.runs["run_id"].iloc[:2]
    (out / "runs" / a / "summary.json").write_bytes((out / "runs" / b / "summary.json").read_bytes())
    again = sweep(BASELINE, GRID, 1, workers=0, out_dir=out, **TINY)
    assert (again.computed, again.skipped) == (1, 3)
    _same_table(first.runs, again.runs)


def test_more_repetitions_extend_a_sweep_computing_only_the_new_runs(main, tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = {"network.loss": [0, 0.1]}
    two = sweep(BASELINE, grid, 2, workers=0, out_dir=out, **TINY)
    assert two.computed == 4
    rc = main(["sweep", str(BASELINE), "--grid", "network.loss=0,0.1", "--repeat", "3", "--workers", "0",
               "--out", str(out), *(a for s in TINY_SET for a in ("--set", s))])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "6 runs (2 grid points x 3); 2 computed, 4 already done" in captured.out
    three = load_sweep(out)
    assert three.repeat == 3 and three.planned == 6 and three.complete
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["repeat"] == 3 and manifest["runs"] == 6
    # The first two repetitions are the very same runs (same IDs, seeds, figures).
    first = three.runs[three.runs["repetition"] < 2].reset_index(drop=True)
    _same_table(two.runs, first)
    assert set(three.runs[three.runs["repetition"] == 2]["seed"]).isdisjoint(two.runs["seed"])
    # The same as a sweep of 3 from scratch.
    fresh = sweep(BASELINE, grid, 3, workers=0, **TINY)
    _same_table(fresh.runs, three.runs)
    # Fewer repetitions than there: refused, naming repeat.
    with pytest.raises(ManifestMismatch, match="fewer repetitions"):
        sweep(BASELINE, grid, 1, workers=0, out_dir=out, **TINY)


def test_sweep_files_get_the_mode_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "sweep"
        sweep(BASELINE, {"network.loss": [0]}, 1, workers=0, out_dir=out, **TINY)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"sweep.json", "runs.parquet", "sweep_summary.csv", "summary.json"}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}


def test_a_refused_scheduler_leaves_nothing_behind(main, tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["sweep", str(BASELINE), "--grid", "network.loss=0", "--scheduler", "nonsense://x:1",
               "--out", str(out), *(a for s in TINY_SET for a in ("--set", s))])
    err = capsys.readouterr().err
    assert rc in (1, 2) and "--scheduler" in err and "Traceback" not in err
    assert not out.exists()


def test_resume_into_another_sweep_is_refused(main, tmp_path, capsys):
    out = tmp_path / "sweep"
    sweep(BASELINE, {"network.loss": [0]}, 1, workers=0, out_dir=out, **TINY)
    with pytest.raises(ManifestMismatch, match="grid"):
        sweep(BASELINE, {"network.loss": [0, 0.1]}, 1, workers=0, out_dir=out, **TINY)
    with pytest.raises(ManifestMismatch, match="servers.count = 3 there, 4 now"):
        sweep(BASELINE, {"network.loss": [0]}, 1, workers=0, out_dir=out, **{**TINY, "servers__count": 4})
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ManifestMismatch, match="not a sweep directory"):
        sweep(BASELINE, {"network.loss": [0]}, 1, workers=0, out_dir=other, **TINY)
    rc = main(["sweep", str(BASELINE), "--grid", "network.loss=0", "--seed", "5", "--workers", "0",
               "--out", str(out), *(a for s in TINY_SET for a in ("--set", s))])
    err = capsys.readouterr().err
    assert rc == 2 and "base_seed" in err and "another --out" in err and "Traceback" not in err


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, monkeypatch):
    real = runner.run_scenario

    def flaky(scenario, **kwargs):
        if scenario.servers.count == 4 and scenario.network.loss.p == 0.1:
            raise RuntimeError("boom at this grid point")
        return real(scenario, **kwargs)

    monkeypatch.setattr(runner, "run_scenario", flaky)
    out = tmp_path / "sweep"
    res = sweep(BASELINE, GRID, 2, workers=0, out_dir=out, **TINY)
    assert len(res.runs) == 8 and res.computed == 8 and not res.complete
    bad = res.errors
    assert len(bad) == 2
    assert set(bad["servers.count"]) == {4} and set(bad["network.loss"]) == {0.1}
    assert bad["error"].str.contains("RuntimeError: boom at this grid point").all()
    assert bad["events_created"].isna().all()
    ok = res.runs[res.runs["status"] == "ok"]
    assert len(ok) == 6 and ok["error"].isna().all() and ok["events_created"].notna().all()
    assert res.summary.set_index("point").loc[3, "errors"] == 2
    err = json.loads((out / "runs" / bad["run_id"].iloc[0] / "error.json").read_text())
    assert "boom" in err["error"] and "Traceback" in err["traceback"]
    # Failed runs are tried again; finished ones are not.
    monkeypatch.setattr(runner, "run_scenario", real)
    again = sweep(BASELINE, GRID, 2, workers=0, out_dir=out, **TINY)
    assert (again.computed, again.skipped) == (2, 6) and again.complete
    assert not any((out / "runs").glob("*/error.json"))


def test_any_executor_gives_the_same_table(tmp_path):
    serial = sweep(BASELINE, GRID, 1, workers=0, **TINY)
    with ThreadPoolExecutor(2) as pool:
        threaded = sweep(BASELINE, GRID, 1, executor=pool, **TINY)
    _same_table(serial.runs, threaded.runs)
    pd.testing.assert_frame_equal(serial.summary, threaded.summary)


def test_local_processes_and_dask_give_identical_tables():
    pytest.importorskip("distributed")
    local = sweep(BASELINE, GRID, 1, workers=2, **TINY)
    dask = sweep(BASELINE, GRID, 1, scheduler="local:2", **TINY)
    _same_table(local.runs, dask.runs)
    pd.testing.assert_frame_equal(local.summary, dask.summary)
    assert "local processes" in local.executor and "Dask" in dask.executor


def test_a_user_dask_client_is_used_and_left_open():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        res = sweep(BASELINE, {"network.loss": [0, 0.1]}, 1, executor=client, **TINY)
        assert res.complete and len(res.runs) == 2
        assert client.status == "running"
        assert client.submit(lambda: 41 + 1).result() == 42
        # --scheduler ADDRESS: the sweep's own client to a running cluster, closed after; the cluster stays.
        by_address = sweep(BASELINE, {"network.loss": [0, 0.1]}, 1, scheduler=cluster.scheduler_address, **TINY)
        assert "Dask cluster at tcp://" in by_address.executor
        assert client.submit(lambda: 41 + 1).result() == 42
    serial = sweep(BASELINE, {"network.loss": [0, 0.1]}, 1, workers=0, **TINY)
    _same_table(serial.runs, res.runs)
    _same_table(serial.runs, by_address.runs)


def test_scheduler_and_executor_mistakes():
    from simfed.experiment.executors import ExecutorError, open_executor

    with pytest.raises(ExecutorError, match="local:N"):
        open_executor(scheduler="local:zero")
    with pytest.raises(ExecutorError, match="not both"):
        open_executor(scheduler="local:1", executor=ThreadPoolExecutor(1))
    with pytest.raises(ExecutorError, match="start method"):
        open_executor(workers=1, start_method="fork")


def test_dask_is_imported_only_when_used():
    code = ("import sys, simfed.experiment.sweep, simfed.experiment.executors, simfed.experiment.cli_sweep; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the command line ----------------------------------------------------------------


def _cli_args(out: Path, *extra: str) -> list[str]:
    return ["sweep", str(BASELINE), "--grid", "network.loss=0,0.1", "--grid", "servers.count=3,4",
            "--out", str(out), *(a for s in TINY_SET for a in ("--set", s)), *extra]


def test_cli_end_to_end(main, tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(_cli_args(out, "--workers", "2", "--keep-tables"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "4 runs (4 grid points x 1)" in captured.out and "4 computed" in captured.out
    assert "network.loss=0.1, servers.count=4" in captured.out
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 4 and (runs["status"] == "ok").all()
    assert {"run_id", "repetition", "seed", "network.loss", "servers.count", "status", "error",
            "wall_time_s", *HEADLINE_COLUMNS} <= set(runs.columns)
    summary = pd.read_parquet(out / "sweep_summary.parquet")
    csv = pd.read_csv(out / "sweep_summary.csv")
    assert len(summary) == len(csv) == 4
    assert list(csv.columns) == list(summary.columns)
    for rid in runs["run_id"]:
        d = out / "runs" / rid
        s = json.loads((d / "summary.json").read_text())
        assert s["sweep"]["run_id"] == rid and s["complete"]
        assert (d / "deliveries.parquet").exists()
    assert not list(out.rglob("*.tmp"))
    # Again: nothing to compute, same tables.
    rc = main(_cli_args(out, "--workers", "2", "--quiet"))
    captured = capsys.readouterr()
    assert rc == 0 and captured.out.strip() == str(out)
    _same_table(runs, pd.read_parquet(out / "runs.parquet"))


def test_cli_failing_runs_exit_1(main, tmp_path, capsys, monkeypatch):
    def broken(scenario, **kwargs):
        raise ValueError("no")

    monkeypatch.setattr(runner, "run_scenario", broken)
    rc = main(_cli_args(tmp_path / "s", "--workers", "0"))
    err = capsys.readouterr().err
    assert rc == 1 and "4 runs failed" in err and "ValueError: no" in err


def _subprocess_sweep(out: Path, *extra: str) -> subprocess.Popen:
    code = ("import sys, simfed.cli as c; "
            f"c.COMMAND_MODULES = tuple(dict.fromkeys((*c.COMMAND_MODULES, {MODULE!r}))); "
            "sys.exit(c.main(sys.argv[1:]))")
    args = ["sweep", str(BASELINE), "--grid", "network.loss=0,0.05,0.1", "--repeat", "4", "--out", str(out),
            *(a for s in TINY_SET for a in ("--set", s)), *extra]
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_runs(out: Path, n: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("runs/*/summary.json"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_or_killed_sweep_loses_no_finished_run(main, tmp_path, capsys, sig):
    out = tmp_path / "sweep"
    proc = _subprocess_sweep(out, "--workers", "2")
    try:
        _wait_for_runs(out, 2, proc)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the whole process group
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=600)  # a hang guard, not a speed test
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = {p.parent.name for p in out.glob("runs/*/summary.json")}
    assert 2 <= len(finished) < 12
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "resume" in err
        runs = pd.read_parquet(out / "runs.parquet")
        assert set(runs["run_id"]) == finished
    for rid in finished:
        json.loads((out / "runs" / rid / "summary.json").read_text())  # complete files only
    rc = main(["sweep", str(BASELINE), "--grid", "network.loss=0,0.05,0.1", "--repeat", "4", "--out", str(out),
               *(a for s in TINY_SET for a in ("--set", s)), "--workers", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"{12 - len(finished)} computed, {len(finished)} already done" in captured.out


def test_common_seeds_pair_points_that_differ_only_in_those_keys():
    base = load_scenario({"servers": {"count": 4}})
    grid = {"topology.strategy": ["full_mesh", "gossip"], "network.loss": [0, 0.1]}
    specs = plan_runs(base, grid, 3, common_seeds=["topology.strategy"])
    seeds = {(s.params["topology.strategy"], s.params["network.loss"], s.repetition): s.seed for s in specs}
    for loss in (0, 0.1):
        for rep in range(3):
            assert seeds[("full_mesh", loss, rep)] == seeds[("gossip", loss, rep)]
    assert seeds[("full_mesh", 0, 0)] != seeds[("full_mesh", 0.1, 0)]
    assert len({s.run_id for s in specs}) == len(specs)
    independent = plan_runs(base, grid, 3)
    assert {s.seed for s in independent} != {s.seed for s in specs}


def test_common_seeds_must_name_a_grid_key():
    base = load_scenario({"servers": {"count": 4}})
    with pytest.raises(ScenarioError) as err:
        plan_runs(base, {"network.loss": [0, 0.1]}, 1, common_seeds=["topology.strategy"])
    assert err.value.path == "--common-seeds"
