"""The DAG view: what a run saves, ``simfed dag``, ``RunResult.plot_dag`` and the
round trip of an export through ``simfed resolve``.

One real run of ``scenarios/partition-heal.toml`` (about a second): its two
halves fork the DAG during the split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import simfed
from simfed.cli import main
from simfed.commands.resolve import resolve_file
from simfed.experiment.dag import DAG_TABLES, dag_layout, dag_tables, plot_dag, server_dag
from simfed.experiment.results import RunResult

ROOT = Path(__file__).resolve().parents[2]
PARTITION = ROOT / "scenarios" / "partition-heal.toml"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("partition")
    res = simfed.run(PARTITION, out_dir=out, plots=False)
    return res, out


def _grouped(state: dict) -> dict:
    out: dict = {}
    for (etype, skey), eid in sorted(state.items()):
        out.setdefault(etype, {})[skey] = eid
    return out


def test_a_run_saves_each_servers_stored_dag(run):
    res, out = run
    for name in DAG_TABLES:
        assert (out / f"{name}.parquet").is_file()
        assert name in res.summary["out_files"] or f"{name}.parquet" in res.summary["out_files"]
    dag, pdus = res.tables["dag"], res.tables["pdus"]
    assert list(dag.columns) == list(DAG_TABLES["dag"]) and list(pdus.columns) == list(DAG_TABLES["pdus"])
    assert pdus["event_id"].is_unique
    for server, hs in res.servers.items():
        room = hs.rooms[res.room_id]
        rows = dag[dag["server"] == server]
        assert set(rows["event_id"]) == set(room.graph.events) | set(room.graph.outliers)
        assert set(rows.loc[rows["extremity"], "event_id"]) == set(room.forward_extremities)
    # Every created event some server stores has its PDU, and the PDU reproduces its ID.
    ev = res.events.set_index("event_id")
    some = pdus.iloc[len(pdus) // 2]
    assert some["event_id"] in ev.index
    loaded = RunResult.load(out)
    pd.testing.assert_frame_equal(loaded.tables["dag"], dag)


def test_export_round_trips_through_simfed_resolve(run, tmp_path, capsys):
    res, out = run
    finals = res.sim.final_states()
    for server in ("hs0", "hs7"):
        path = tmp_path / f"{server}.json"
        rc = main(["dag", str(out), "--server", server, "--export", str(path), "--out", str(tmp_path / "d.png")])
        said = capsys.readouterr().out
        assert rc == 0 and "simfed resolve" in said
        pdus = json.loads(path.read_text())
        assert isinstance(pdus, list) and all("event_id" not in p for p in pdus)  # federation format
        ext = sorted(res.servers[server].rooms[res.room_id].forward_extremities)
        got = resolve_file(str(path), at=ext)
        assert got["state"] == _grouped(finals[server])
        # The command itself, as printed: exit 0, the same state.
        rc = main(["resolve", str(path), *(a for e in ext for a in ("--at", e))])
        printed = json.loads(capsys.readouterr().out)
        assert rc == 0 and printed["state"] == _grouped(finals[server])


def test_simfed_dag_draws_a_png_with_the_fork(run, tmp_path, capsys):
    res, out = run
    rc = main(["dag", str(out)])
    assert rc == 0 and "DAG of hs0" in capsys.readouterr().out
    assert (out / "dag-hs0.png").read_bytes()[:8] == PNG
    events = server_dag(res.tables, "hs0")
    pos = dag_layout(events)
    by_depth = events.groupby("depth")["event_id"].apply(list)
    forks = [ids for ids in by_depth if len(ids) > 1]
    assert forks, "the partition forks the DAG"
    assert all(len({pos[e][0] for e in ids}) == len(ids) for ids in forks)  # side by side, not on top
    assert all(pos[e][1] == d for d, ids in by_depth.items() for e in ids)
    fig = res.plot_dag("hs4", last=20)
    assert "last 20 of" in fig.axes[0].get_title() and "hs4" in fig.axes[0].get_title()


def test_bad_requests_exit_2(run, tmp_path, capsys):
    res, out = run
    assert main(["dag", str(out), "--server", "hs99"]) == 2
    err = capsys.readouterr().err
    assert "hs99" in err and "hs0" in err and "Traceback" not in err
    assert main(["dag", str(tmp_path / "nowhere")]) == 2
    assert "not a results directory" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text("{}")
    assert main(["dag", str(old)]) == 2
    assert "run the scenario again" in capsys.readouterr().err
    assert main(["dag", str(out), "--last", "-1"]) == 2


class _Room:
    def __init__(self, events, statuses, fwd):
        from simfed.protocol.room import Decision

        self.graph = type("G", (), {"events": events, "outliers": {}})()
        self.status = {e: Decision(s) for e, s in statuses.items()}
        self.rejected = {e: "x" for e, s in statuses.items() if s == "rejected"}
        self.forward_extremities = set(fwd)


def test_rejected_and_soft_failed_events_are_marked(run):
    res, _ = run
    room = res.servers["hs0"].rooms[res.room_id]
    events = dict(room.graph.events)
    last = sorted(events, key=lambda e: (events[e].depth, e))[-3:]
    statuses = {e: "accepted" for e in events}
    statuses[last[0]], statuses[last[1]] = "rejected", "soft_failed"
    hs = type("HS", (), {"rooms": {res.room_id: _Room(events, statuses, [last[2]])}})()
    tables = dag_tables(type("Sim", (), {"servers": {"hsX": hs}})(), "r")
    assert dict(zip(tables["dag"]["event_id"], tables["dag"]["status"]))[last[0]] == "rejected"
    fig = plot_dag(tables, "hsX", last=0)
    colls = fig.axes[0].collections
    def colours(c):
        return {tuple(x[:3]) for x in [*c.get_facecolors(), *c.get_edgecolors()]}

    marks = [c for c in colls if len(c.get_offsets()) == 1]
    red = [c for c in marks if (1.0, 0.0, 0.0) in colours(c)]
    dashed = [c for c in marks if c.get_linestyles()[0][1] is not None]
    assert len(red) == 1 and len(dashed) == 1
    assert tuple(red[0].get_offsets()[0]) != tuple(dashed[0].get_offsets()[0])
