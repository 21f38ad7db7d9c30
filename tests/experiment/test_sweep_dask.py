"""Sweeps on Dask: one task per run, spread over every worker, the same tables as local processes.

Runs use ``scenarios/baseline.toml`` shrunk to 3-4 servers and 90 simulated
seconds (a quarter of a second each), as in ``test_sweep.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simfed.errors import SimfedWarning
from simfed.experiment.executors import DaskExecutor, open_executor
from simfed.experiment.sweep import sweep

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "scenarios" / "baseline.toml"
TINY = {"servers__count": 3, "simulation__duration": "90s", "workload__stop": "30s"}
GRID = {"network.loss": [0, 0.1], "servers.count": [3, 4]}


def _cluster(n_workers: int, threads: int = 1):
    """An in-process cluster (fast to start) on TCP, as a remote one would be reached."""
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=False,
                                    protocol="tcp", host="127.0.0.1", dashboard_address=None)


def _same_runs(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["run_id"]
    pd.testing.assert_frame_equal(a.drop(columns="wall_time_s").sort_values(key).reset_index(drop=True),
                                  b.drop(columns="wall_time_s").sort_values(key).reset_index(drop=True))


def test_local_scheduler_spreads_one_task_per_run_over_single_threaded_worker_processes():
    serial = sweep(BASELINE, GRID, 2, workers=0, **TINY)
    with open_executor(scheduler="local:2") as ex:
        client = ex.executor.client
        threads = client.nthreads()
        # Two worker processes (behind nannies), one thread each: runs never share a GIL.
        assert sorted(threads.values()) == [1, 1]
        assert all(type(w).__name__ == "Nanny" for w in ex.executor.cluster.workers.values())
        with distributed.get_task_stream(client) as stream:
            res = sweep(BASELINE, GRID, 2, executor=client, **TINY)
        tasks = [t for t in stream.data if t["key"].startswith("execute_run")]
        assert len({t["key"] for t in tasks}) == len(res.runs) == 8  # one task per run
        assert {t["worker"] for t in tasks} == set(threads)  # every worker ran some
    _same_runs(serial.runs, res.runs)
    pd.testing.assert_frame_equal(serial.summary, res.summary)


def test_workers_that_join_during_a_sweep_are_counted():
    with _cluster(1) as cluster, distributed.Client(cluster) as client:
        ex = open_executor(executor=client)
        assert ex.current_slots() == 1
        cluster.scale(3)
        client.wait_for_workers(3, timeout=30)
        assert ex.current_slots() == 3  # the sweep keeps 2 runs per worker in flight


def test_a_cluster_whose_workers_run_several_threads_is_warned_about():
    with _cluster(1, threads=2) as cluster, distributed.Client(cluster) as client:
        with pytest.warns(SimfedWarning, match="--nthreads 1"):
            ex = open_executor(executor=client)
        assert "1 workers, 2 threads" in ex.description
        with pytest.warns(SimfedWarning, match="share its GIL"):
            res = sweep(BASELINE, {"network.loss": [0, 0.1]}, 1, executor=client, **TINY)
        assert res.complete


def test_a_cluster_without_workers_is_warned_about_and_runs_once_they_join():
    with distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with pytest.warns(SimfedWarning, match="no workers yet"):
            ex = open_executor(scheduler=cluster.scheduler_address)
        assert isinstance(ex.executor, DaskExecutor) and ex.current_slots() == 1
        ex.close()
        cluster.scale(2)
        client.wait_for_workers(2, timeout=30)
        res = sweep(BASELINE, {"network.loss": [0, 0.1]}, 1, scheduler=cluster.scheduler_address, **TINY)
        assert res.complete and "2 workers, 2 threads" in res.executor


def test_workers_with_another_simfed_version_are_warned_about(monkeypatch):
    from simfed.experiment import executors

    monkeypatch.setattr(executors, "_worker_simfed_version", lambda: "0.0.0-elsewhere")
    with _cluster(1) as cluster, distributed.Client(cluster) as client:
        with pytest.warns(SimfedWarning, match="another simfed version.*0.0.0-elsewhere"):
            open_executor(executor=client)


def test_the_command_line_runs_a_sweep_on_a_running_cluster(tmp_path, capsys):
    import simfed.cli

    out = tmp_path / "sweep"
    with _cluster(2) as cluster:
        rc = simfed.cli.main(["sweep", str(BASELINE), "--grid", "network.loss=0,0.1", "--repeat", "2",
                              "--scheduler", cluster.scheduler_address, "--out", str(out),
                              *(a for s in ("servers.count=3", "simulation.duration=90s", "workload.stop=30s")
                                for a in ("--set", s))])
    printed = capsys.readouterr().out
    assert rc == 0 and f"Dask cluster at {cluster.scheduler_address}, 2 workers, 2 threads" in printed
    local = sweep(BASELINE, {"network.loss": [0, 0.1]}, 2, workers=0, **TINY)
    _same_runs(local.runs, pd.read_parquet(out / "runs.parquet"))


def test_workers_that_cannot_import_simfed_are_refused(monkeypatch, tmp_path):
    from simfed.experiment import executors

    def missing() -> str:
        raise ModuleNotFoundError("No module named 'simfed'")

    monkeypatch.setattr(executors, "_worker_simfed_version", missing)
    with _cluster(1) as cluster:
        with pytest.raises(executors.ExecutorError, match="cannot import simfed"):
            sweep(BASELINE, {"network.loss": [0]}, 1, scheduler=cluster.scheduler_address,
                  out_dir=tmp_path / "out", **TINY)
    assert not (tmp_path / "out").exists()  # refused before anything is written
