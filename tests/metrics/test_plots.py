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


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_every_perturbation_is_labelled_with_its_detail():
    r = run()
    r.perturbation(1100.0, "crash", "b")
    r.perturbation(1150.0, "crash", "c")  # the same kind again: labelled too, naming the server
    fig = plot_divergence(r.tables())
    texts = _texts(fig)
    assert "crash b" in texts and "crash c" in texts
    assert "partition start a|c" in texts and "partition heal a|c" in texts
    from simfed.plots import perturbation_label

    long = perturbation_label("partition_start", "hs0,hs1,hs2,hs3 | hs4,hs5,hs6,hs7,hs8,hs9")
    assert long.endswith("…") and len(long) < 50


def test_backlog_axis_only_when_there_is_a_backlog():
    t = run().tables()
    with_backlog = plot_extremities(t)
    assert len(with_backlog.axes) == 2
    r = Recorder()
    for s in ("a", "b"):
        r.server_info(s, True, None)
        r.membership(0.0, s, R, True)
        r.state_sample(0.0, s, R, True, 1, "h0", 1, 0, state=H0)
        r.state_sample(1000.0, s, R, True, 2, "h0", 1, 0, state=H0)
    zero = plot_extremities(r.tables())
    assert len(zero.axes) == 1  # no right-hand 0-0.05 axis for a backlog that stays 0
    assert "missing-event backlog: 0 throughout" in [x.get_text() for x in zero.legends[0].get_texts()]


def test_ecdf_panels_have_y_labels_and_service_figures_need_data():
    from simfed.plots import has_data, plot_convergence_cdf, plot_services

    t = run().tables()
    assert plot_convergence_cdf(t).axes[0].get_ylabel()
    assert all(ax.get_ylabel() for ax in plot_services(t).axes)
    assert not has_data("plot_edus", t) and not has_data("plot_services", t)  # services off
    assert has_data("plot_traffic", t)
    r = run()
    r.edu(10.0, "a", "b", "m.typing", 1, 120)
    assert has_data("plot_edus", r.tables())
