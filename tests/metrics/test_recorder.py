"""Recorder: columns, dtypes, de-duplication, copies, Parquet round trips."""

import subprocess
import sys

import pandas as pd
import pytest

from simfed.metrics import Recorder, TABLE_COLUMNS, states_from_tables

ARCH_COLUMNS = {
    "events": ["run_id", "event_id", "room_id", "server", "sender", "type",
               "is_state", "created_at", "depth", "n_prev"],
    "deliveries": ["run_id", "event_id", "room_id", "server", "outcome", "t",
                   "via", "reason", "stage"],
    "state": ["run_id", "t", "server", "room_id", "up", "extremities",
              "state_hash", "state_size", "backlog"],
    "traffic": ["run_id", "t_sent", "t_done", "kind", "src", "dst",
                "size_bytes", "delivered", "reason", "retransmissions"],
}


def filled() -> Recorder:
    r = Recorder("run-7")
    r.server_info("a", True, "eu")
    r.server_info("m", False, None)
    r.membership(0.0, "a", "!r", True)
    r.event_created(1.0, "a", "$e1", "!r", "m.room.message", False, 3, 1, "@u:a")
    r.event_outcome(1.0, "a", "$e1", "!r", "accepted", "created")
    r.event_outcome(9.0, "b", "$e1", "!r", "rejected", "push", reason="auth")
    r.event_outcome(5.0, "c", "$e1", "!r", "dropped", "push", reason="bad_signature")
    r.message(1.0, 51.0, "transaction", "a", "b", 1234, True)
    r.message(1.0, 1.0, "transaction", "a", "c", 1234, False, reason="loss")
    r.state_sample(2.0, "a", "!r", True, 1, "h0", 2, 0,
                   state={("m.room.create", ""): "$c", ("m.room.member", "@u:a"): "$j"})
    r.perturbation(3.0, "partition_start", "a|b")
    return r


def test_core_tables_have_the_architecture_columns():
    t = filled().tables()
    for name, cols in ARCH_COLUMNS.items():
        assert list(t[name].columns) == cols, name
    assert set(t) == set(TABLE_COLUMNS)
    assert (t["events"]["run_id"] == "run-7").all()


def test_strings_are_categoricals_and_numbers_typed():
    t = filled().tables()
    ev = t["events"]
    for c in ("run_id", "event_id", "room_id", "server", "sender", "type"):
        assert isinstance(ev[c].dtype, pd.CategoricalDtype), c
    assert ev["created_at"].dtype == "float64"
    assert ev["depth"].dtype == "int64"
    assert ev["is_state"].dtype == bool
    d = t["deliveries"]
    assert d.loc[d["server"] == "b", "reason"].iloc[0] == "auth"
    assert pd.isna(d.loc[d["server"] == "a", "reason"].iloc[0])


def test_empty_recorder_gives_empty_typed_tables():
    t = Recorder().tables()
    for name, spec in TABLE_COLUMNS.items():
        assert list(t[name].columns) == list(spec)
        assert len(t[name]) == 0


def test_duplicate_outcomes_are_counted_not_stored():
    r = Recorder()
    r.event_outcome(1.0, "b", "$e", "!r", "accepted", "push")
    r.event_outcome(2.0, "b", "$e", "!r", "accepted", "get_missing_events")
    r.event_outcome(3.0, "b", "$e", "!r", "soft_failed", "push")
    d = r.tables()["deliveries"]
    assert len(d) == 2
    assert d.iloc[0]["t"] == 1.0
    assert r.duplicate_outcomes == 1


def test_an_outlier_entering_the_dag_later_gets_its_own_row():
    r = Recorder()
    r.event_outcome(1.0, "b", "$e", "!r", "accepted", "state_fetch", stage="outlier")
    r.event_outcome(2.0, "b", "$e", "!r", "accepted", "state_fetch", stage="outlier")
    r.event_outcome(5.0, "b", "$e", "!r", "accepted", "backfill")
    d = r.tables()["deliveries"]
    assert list(d["stage"].astype(object)) == ["outlier", "timeline"]
    assert list(d["t"]) == [1.0, 5.0]
    assert r.duplicate_outcomes == 1


def test_unknown_stage_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="stage='dag'.*outlier, timeline"):
        Recorder().event_outcome(1.0, "b", "$e", "!r", "accepted", "push", stage="dag")


def test_unknown_outcome_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="outcome='lost'.*accepted"):
        Recorder().event_outcome(1.0, "b", "$e", "!r", "lost", "push")


def test_state_is_copied_once_per_hash():
    r = Recorder()
    s = {("m.room.create", ""): "$c"}
    r.state_sample(1.0, "a", "!r", True, 1, "h0", 1, 0, state=s)
    s[("m.room.name", "")] = "$n"  # caller mutates later
    r.state_sample(2.0, "b", "!r", True, 1, "h0", 1, 0, state=s)
    assert r.states == {"h0": {("m.room.create", ""): "$c"}}
    assert states_from_tables(r.tables()) == r.states


@pytest.mark.parametrize("empty", [False, True])
def test_parquet_round_trip_of_every_table(tmp_path, empty):
    tables = (Recorder() if empty else filled()).tables()
    for name, df in tables.items():
        p = tmp_path / f"{name}.parquet"
        df.to_parquet(p, engine="pyarrow")
        back = pd.read_parquet(p, engine="pyarrow")
        assert list(back.columns) == list(df.columns)
        for c in df.columns:
            if isinstance(df[c].dtype, pd.CategoricalDtype):
                # categoricals survive as categoricals (dictionary columns)
                assert isinstance(back[c].dtype, pd.CategoricalDtype), (name, c)
                assert list(back[c].astype(object)) == list(df[c].astype(object)), (name, c)
            else:
                assert back[c].dtype == df[c].dtype, (name, c)
                assert back[c].tolist() == df[c].tolist(), (name, c)


def test_metrics_does_not_import_the_simulator_or_matplotlib():
    code = (
        "import sys, simfed.metrics\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('simpy', 'matplotlib')"
        " or m.startswith(('simfed.sim', 'simfed.experiment'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_non_string_identifiers_become_string_categories():
    r = Recorder()
    r.message(0.0, 1.0, "transaction", 1, 2, 10, True)
    tr = r.tables()["traffic"]
    assert list(tr["src"].cat.categories) == ["1"]
