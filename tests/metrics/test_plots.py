"""Plots are written as non-empty PNG files and return Figures."""

import pytest

pytest.importorskip("matplotlib")

from simfed.metrics import Recorder, divergence  # noqa: E402
from simfed.plots import (  # noqa: E402
    plot_convergence_cdf,
    plot_divergence,
    plot_extremities,
    plot_traffic,
    save_all,
)

R = "!room"
H0 = {("m.room.create", ""): "$c"}
H1 = {**H0, ("m.room.name", ""): "$n"}


def run() -> Recorder:
    r = Recorder()
    for s in ("a", "b", "c"):
        r.server_info(s, True, None)
        r.membership(0.0, s, R, True)
        r.state_sample(0.0, s, R, True, 1, "h0", 1, 0, state=H0)
    for i in range(20):
        t = 100.0 * i
        r.event_created(t, "a", f"$e{i}", R, "m.room.message", False, i, 1, "@u:a")
        r.event_outcome(t, "a", f"$e{i}", R, "accepted", "created")
        r.event_outcome(t + 40 + i, "b", f"$e{i}", R, "accepted", "push")
        if i != 7:
            r.event_outcome(t + 90 + 3 * i, "c", f"$e{i}", R, "accepted", "push")
        r.message(t, t + 40, "transaction", "a", "b", 800, True)
        r.message(t, t, "transaction", "a", "c", 800, i % 3 != 0, None if i % 3 else "loss")
    r.perturbation(500.0, "partition_start", "a|c")
    r.perturbation(900.0, "partition_heal", "a|c")
    r.state_sample(600.0, "a", R, True, 2, "h1", 2, 1, state=H1)
    r.state_sample(1000.0, "b", R, True, 1, "h1", 2, 0, state=H1)
    r.state_sample(1200.0, "c", R, True, 3, "h1", 2, 2, state=H1)
    return r


def test_save_all_writes_non_empty_pngs(tmp_path):
    paths = save_all(run().tables(), tmp_path / "plots")
    assert len(paths) == 4
    for p in paths:
        assert p.exists() and p.suffix == ".png"
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 5000


def test_each_function_returns_a_figure_and_saves(tmp_path):
    import matplotlib.pyplot as plt

    t = run().tables()
    figs = [
        plot_convergence_cdf(t, path=tmp_path / "cdf.png"),
        plot_divergence(t, path=tmp_path / "div.png"),
        plot_divergence(divergence(t)),          # precomputed frame works too
        plot_extremities(t, path=tmp_path / "ext.png"),
        plot_traffic(t, path=tmp_path / "tr.png"),
    ]
    for f in figs:
        assert f.axes and f.axes[0].get_title() or f.get_suptitle()
        plt.close(f)
    for name in ("cdf", "div", "ext", "tr"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    xlabel = figs[1].axes[0].get_xlabel()
    assert "simulated" in xlabel and "(s)" in xlabel


def test_empty_run_still_plots(tmp_path):
    paths = save_all(Recorder().tables(), tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
