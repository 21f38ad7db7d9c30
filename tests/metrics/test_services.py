"""Measures of EDUs and services, on hand-made tables."""

from __future__ import annotations

import math

import pytest

from simfed.metrics import Recorder
from simfed.metrics.services import (
    SERVICE_KEYS,
    directory_lookups,
    edu_traffic,
    identity_replication,
    presence_amplification,
    presence_staleness,
    services_headline,
)


def test_edu_traffic_and_amplification():
    r = Recorder()
    r.presence(0, "hs0", "@a:hs0", "online", True, 0, "local", 3, "change")
    r.presence(10, "hs0", "@a:hs0", "online", False, 60_000, "local", 3, "activity")
    r.edu(5, "hs0", "hs1", "m.presence", 1, 150)
    r.edu(5, "hs0", "hs2", "m.presence", 1, 150)
    r.edu(6, "hs0", "hs1", "m.typing", 1, 170)
    t = edu_traffic(r.tables())
    assert t.loc["m.presence"].tolist() == [2, 2, 300] and t.loc["m.typing"].tolist() == [1, 1, 170]
    a = presence_amplification(r.tables())
    assert a["updates"] == 2 and a["state_changes"] == 1 and a["entries_queued"] == 6
    assert a["edus_per_change"] == 3.0 and a["edus_received_per_change"] == 1.0


def test_presence_staleness_episodes():
    r = Recorder()
    local = lambda t, s: r.presence(t, "hs0", "@a:hs0", s, False, 0, "local", 2, "change")  # noqa: E731
    remote = lambda t, srv, s: r.presence(t, srv, "@a:hs0", s, False, 0, "remote", 0, "edu")  # noqa: E731
    local(0, "online")
    remote(100, "hs1", "online")      # hs1 learns (before that it showed nothing: not an episode)
    local(1_000, "unavailable")       # hs1 now outdated ...
    remote(1_250, "hs1", "unavailable")   # ... for 250 ms
    local(2_000, "offline")           # outdated again ...
    local(2_500, "online")            # ... the truth changes again, still differs (offline -> online)
    remote(2_600, "hs2", "online")    # hs2 is right the first time it shows anything
    local(3_000, "unavailable")       # hs1 (showing unavailable) is right again; hs2 is now outdated
    st = presence_staleness(r.tables(), end_t=5_000)
    rows = sorted(zip(st["server"], st["start"], st["end"], st["open"]))
    assert rows == [("hs1", 1_000, 1_250, False), ("hs1", 2_000, 3_000, False), ("hs2", 3_000, 5_000, True)]


def test_presence_staleness_truth_changing_back_ends_the_episode():
    r = Recorder()
    r.presence(0, "hs0", "@a:hs0", "online", False, 0, "local", 1, "change")
    r.presence(10, "hs1", "@a:hs0", "online", False, 0, "remote", 0, "edu")
    r.presence(100, "hs0", "@a:hs0", "unavailable", False, 0, "local", 1, "change")
    r.presence(400, "hs0", "@a:hs0", "online", False, 0, "local", 1, "change")
    st = presence_staleness(r.tables())
    assert st[["server", "start", "end", "duration_ms"]].values.tolist() == [["hs1", 100.0, 400.0, 300.0]]


def test_identity_replication_convergence():
    r = Recorder()
    for node, t in (("is0", 10.0), ("is1", 30.0), ("is2", 90.0)):
        r.identity(t, node, "applied", "email", "a@x", "@a:hs0", "is0:1", 10.0, math.nan, "ok", None)
    for node, t in (("is1", 50.0), ("is0", 70.0)):   # never reached is2
        r.identity(t, node, "applied", "email", "b@x", "@b:hs0", "is1:1", 50.0, math.nan, "ok", None)
    rep = identity_replication(r.tables()).set_index("ref")
    assert rep.loc["is0:1", "convergence_ms"] == 80.0 and rep.loc["is0:1", "converged"]
    assert not rep.loc["is1:1", "converged"] and math.isnan(rep.loc["is1:1", "convergence_ms"])
    assert rep.loc["is1:1", "max_lag_ms"] == 20.0
    h = services_headline(r.tables())
    assert h["identity"]["unconverged_records"] == 1 and h["identity"]["convergence_ms"]["max"] == 80.0
    assert h["identity"]["replication_lag_ms"]["max"] == 80.0


def test_directory_lookups_and_headline():
    r = Recorder()
    r.directory(0, "hs0", "#a:hs0", "create", "!r:hs0", 0, math.nan, "ok", False, None)
    r.directory(5, "hs1", "#a:hs0", "query", "!r:hs0", 2, 40.0, "ok", False, None)
    r.directory(6, "hs1", "#a:hs0", "query", "!r:hs0", 2, 0.0, "stale", True, None)
    r.directory(7, "hs2", "#a:hs0", "query", None, 0, 60_000.0, "failed", False, "timeout")
    d = directory_lookups(r.tables())
    assert list(d["outcome"]) == ["ok", "stale", "failed"]
    h = services_headline(r.tables())["directory"]
    assert h["queries"] == 3 and h["cache_hits"] == 1 and h["outcomes"] == {"failed": 1, "ok": 1, "stale": 1}
    assert h["latency_ms"]["max"] == 40.0 and h["creates"] == 1
    assert h["stale_fraction"] == pytest.approx(1 / 3)


def test_headline_of_empty_tables_has_every_key():
    h = services_headline(Recorder().tables())
    assert tuple(h) == SERVICE_KEYS
    assert h["presence"]["edus_per_change"] is None and h["edus"] == {}
    assert h["identity"]["convergence_ms"]["p50"] is None


def test_plots_draw_with_and_without_data(tmp_path):
    from simfed.plots import plot_edus, plot_services

    empty = Recorder().tables()
    plot_edus(empty, path=tmp_path / "e.png")
    plot_services(empty, path=tmp_path / "s.png")
    r = Recorder()
    r.edu(5, "hs0", "hs1", "m.presence", 3, 400)
    r.presence(0, "hs0", "@a:hs0", "online", True, 0, "local", 1, "change")
    r.identity(10, "is0", "applied", "email", "a@x", "@a:hs0", "is0:1", 10.0, math.nan, "ok", None)
    r.identity(30, "is1", "applied", "email", "a@x", "@a:hs0", "is0:1", 10.0, math.nan, "ok", None)
    assert plot_edus(r.tables(), path=tmp_path / "e2.png").axes
    assert plot_services(r.tables(), path=tmp_path / "s2.png").axes
    assert (tmp_path / "s2.png").stat().st_size > 0
