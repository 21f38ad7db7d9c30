"""Figures of one run, from the recorder's tables.

Every function returns a matplotlib ``Figure`` (Agg backend, no display
needed) and saves it as PNG when ``path`` is given. matplotlib is imported
lazily, so importing :mod:`simfed` never pulls it in. Times on the axes are
simulated seconds (the tables hold simulated milliseconds). Perturbations
(partitions, crashes, link changes) are dotted lines, each labelled with its
kind and detail. :func:`has_data` says whether a service figure has anything
to draw (the runner skips ``edus.png`` and ``services.png`` otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simfed.metrics.convergence import delivery_latency, event_convergence
from simfed.metrics.divergence import divergence, divergence_across_rooms
from simfed.metrics.traffic import traffic_by_kind

__all__ = [
    "plot_convergence_cdf",
    "plot_divergence",
    "plot_extremities",
    "plot_traffic",
    "plot_delivery_delay",
    "plot_edus",
    "plot_services",
    "save_all",
]

Tables = Mapping[str, pd.DataFrame]

#: Figures that exist only when ``[services]`` produced data: the tables each needs (one non-empty suffices).
SERVICE_FIGURES: dict[str, tuple[str, ...]] = {
    "plot_edus": ("edus",),
    "plot_services": ("presence", "profiles", "directory", "identity"),
}


def has_data(figure: str, tables: Tables) -> bool:
    """Whether ``figure`` (a ``plot_*`` name) has anything to draw; only the
    service figures can be empty (services off), the others always are drawn."""
    needs = SERVICE_FIGURES.get(figure)
    if needs is None:
        return True
    return any(tables.get(t) is not None and not tables[t].empty for t in needs)


def _figure(figsize: tuple[float, float]):
    """A figure outside pyplot: no backend is chosen or changed (a notebook's
    inline backend keeps working, a headless run needs no display), and
    nothing stays registered after the caller drops it."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _new(title: str, figsize=(7.0, 4.0)):
    fig = _figure(figsize)
    ax = fig.subplots()
    ax.set_title(title)
    return fig, ax


def _finish(fig, path: str | Path | None):
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=120)
    return fig


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center",
            transform=ax.transAxes)


#: Longest perturbation detail shown in a label (a partition's groups can be long).
_DETAIL_CHARS = 28


def perturbation_label(kind: str, detail: str) -> str:
    """``crash hs3``, ``partition start hs0,hs1 | hs2…``: what a marker line is labelled."""
    detail = " ".join(str(detail or "").split())
    if len(detail) > _DETAIL_CHARS:
        detail = detail[: _DETAIL_CHARS - 1] + "…"
    return f"{str(kind).replace('_', ' ')} {detail}".strip()


def _mark_perturbations(ax, tables: Tables) -> None:
    """A dotted line per perturbation, each labelled with its kind and detail
    (which server crashed), written downwards from just inside the top."""
    p = tables.get("perturbations")
    if p is None or p.empty:
        return
    details = p["detail"].astype(object) if "detail" in p else [""] * len(p)
    for t, kind, detail in zip(p["t"].to_numpy(dtype=float), p["kind"].astype(object), details):
        ax.axvline(t / 1000.0, color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(perturbation_label(kind, detail), (t / 1000.0, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-2, -3), textcoords="offset points", rotation=90, va="top", ha="right",
                    fontsize=7, color="dimgrey", annotation_clip=False,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})


def _ecdf(ax, values_ms: np.ndarray, label: str, n_lost: int = 0) -> None:
    """ECDF of the non-NaN values; ``n_lost`` more never arrived (censored:
    they count in the denominator, so the curve stays below 1)."""
    v = np.sort(values_ms[~np.isnan(values_ms)]) / 1000.0
    if v.size == 0:
        return
    n = v.size + n_lost
    y = np.arange(1, v.size + 1) / n
    lost = f", {n_lost} lost" if n_lost else ""
    ax.step(v, y, where="post", label=f"{label} (n={n}{lost})")


def plot_convergence_cdf(
    tables: Tables,
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    path: str | Path | None = None,
):
    """ECDF of event convergence time (honest-created events) and delivery latency."""
    fig, ax = _new("Event convergence")
    conv = event_convergence(tables, honest, end_t)
    conv = conv[conv["honest_creator"]]
    lat = delivery_latency(tables, end_t=end_t)
    c = conv["convergence_ms"].to_numpy(dtype=float)
    la = lat["latency_ms"].to_numpy(dtype=float)
    if np.isnan(c).all() and la.size == 0:
        _empty(ax, "deliveries")
    n_lost = int(conv["lost"].sum())
    _ecdf(ax, c, "event convergence (all expected servers)", n_lost)
    _ecdf(ax, la, "delivery latency (per server)")
    ax.set_xlabel("time after creation (simulated s)")
    ax.set_ylabel("fraction of events / deliveries")
    ax.set_ylim(0, 1.02)
    if n_lost:
        ax.text(0.98, 0.02, f"{n_lost} event(s) lost: the convergence CDF stops below 1", ha="right",
                va="bottom", transform=ax.transAxes, fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8)  # outside: never over a curve
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def _div_frame(data: Any, honest, end_t) -> tuple[pd.DataFrame, Tables | None]:
    if isinstance(data, pd.DataFrame):
        return data, None
    return divergence(data, honest=honest, end_t=end_t), data


def plot_divergence(
    data: Tables | pd.DataFrame,
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    path: str | Path | None = None,
):
    """Distinct states and largest pairwise state difference over time.

    ``data`` is the tables dict or a precomputed ``divergence`` frame.
    """
    div, tables = _div_frame(data, honest, end_t)
    fig, ax = _new("State divergence among up honest servers")
    if div.empty:
        _empty(ax, "state samples")
        return _finish(fig, path)
    agg = divergence_across_rooms(div)
    t = agg["t"].to_numpy() / 1000.0
    ax.step(t, agg["n_distinct_states"], where="post", color="C0",
            label="distinct states (max over rooms)")
    ax.set_ylabel("distinct states", color="C0")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax.get_legend_handles_labels()
    if agg["max_state_diff"].notna().any():
        ax2 = ax.twinx()
        ax2.step(t, agg["max_state_diff"], where="post", color="C3",
                 label="largest pairwise difference")
        ax2.set_ylabel("state entries differing (type, state_key)", color="C3")
        ax2.set_ylim(bottom=0)
        ax2.yaxis.get_major_locator().set_params(integer=True)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if tables is not None:
        _mark_perturbations(ax, tables)
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_extremities(
    data: Tables | pd.DataFrame,
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
    path: str | Path | None = None,
):
    """Forward extremities (mean, max) and missing-event backlog over time."""
    div, tables = _div_frame(data, honest, end_t)
    fig, ax = _new("Forward extremities and backlog (up honest servers)")
    if div.empty:
        _empty(ax, "state samples")
        return _finish(fig, path)
    agg = divergence_across_rooms(div)
    t = agg["t"].to_numpy() / 1000.0
    ax.step(t, agg["mean_extremities"], where="post", label="mean extremities")
    ax.step(t, agg["max_extremities"], where="post", label="max extremities")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("forward extremities per server")
    ax.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    if np.nansum(agg["backlog"].to_numpy(dtype=float)) > 0:
        ax2 = ax.twinx()
        ax2.step(t, agg["backlog"], where="post", color="C2", linestyle="--",
                 label="missing-event backlog (total)")
        ax2.set_ylabel("missing events (total)", color="C2")
        ax2.set_ylim(bottom=0)
        ax2.yaxis.get_major_locator().set_params(integer=True)
        h2, l2 = ax2.get_legend_handles_labels()
        h1, l1 = h1 + h2, l1 + l2
    else:  # no right-hand axis for a line that never leaves 0: say so in the legend
        from matplotlib.lines import Line2D

        h1.append(Line2D([], [], linestyle="none"))
        l1.append("missing-event backlog: 0 throughout")
    if tables is not None:
        _mark_perturbations(ax, tables)
    fig.legend(h1, l1, loc="outside lower center", ncols=3, fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_traffic(tables: Tables, *, path: str | Path | None = None):
    """Messages and bytes by kind, delivered vs dropped (stacked bars)."""
    fig = _figure((11.0, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    fig.suptitle("Traffic by message kind")
    tk = traffic_by_kind(tables)
    if tk.empty:
        _empty(ax1, "messages")
        _empty(ax2, "messages")
        return _finish(fig, path)
    kinds = list(tk.index)
    y = np.arange(len(kinds))
    for ax, (ok, bad), unit, scale in (
        (ax1, ("delivered", "dropped"), "messages", 1.0),
        (ax2, ("delivered_bytes", "dropped_bytes"), "kB", 1000.0),
    ):
        d = tk[ok].to_numpy() / scale
        x = tk[bad].to_numpy() / scale
        ax.barh(y, d, color="C0", label="delivered")
        ax.barh(y, x, left=d, color="C3", label="dropped")
        ax.set_yticks(y, kinds, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{unit} sent")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right")
    ax1.set_title("messages")
    ax2.set_title("bytes")
    return _finish(fig, path)


def save_all(
    tables: Tables,
    out_dir: str | Path,
    *,
    honest: Iterable[str] | None = None,
    end_t: float | None = None,
) -> list[Path]:
    """Write every figure as PNG into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    div = divergence(tables, honest=honest, end_t=end_t)
    jobs = [
        ("convergence_cdf.png",
         lambda p: plot_convergence_cdf(tables, honest=honest, end_t=end_t, path=p)),
        ("divergence.png", lambda p: _with_marks(plot_divergence, div, tables, p)),
        ("extremities.png", lambda p: _with_marks(plot_extremities, div, tables, p)),
        ("traffic.png", lambda p: plot_traffic(tables, path=p)),
    ]
    paths: list[Path] = []
    for name, job in jobs:
        p = out / name
        job(p)
        paths.append(p)
    return paths


def _with_marks(fn, div: pd.DataFrame, tables: Tables, path: Path):
    fig = fn(div)
    if not div.empty:
        _mark_perturbations(fig.axes[0], tables)
    return _finish(fig, path)


# -- EDUs and services (simfed.metrics.services) ---------------------------------------


def plot_edus(tables: Tables, *, path: str | Path | None = None):
    """EDUs received by type (messages, entries, bytes) and presence amplification."""
    from simfed.metrics.services import edu_traffic, presence_amplification

    fig = _figure((11.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2)
    fig.suptitle("EDU traffic by type (received)")
    et = edu_traffic(tables)
    if et.empty:
        _empty(ax1, "EDUs")
        _empty(ax2, "EDUs")
        return _finish(fig, path)
    kinds = list(et.index)
    y = np.arange(len(kinds))
    ax1.barh(y - 0.2, et["messages"], height=0.4, color="C0", label="EDUs")
    ax1.barh(y + 0.2, et["entries"], height=0.4, color="C1", label="entries (users / receipts)")
    ax1.set_yticks(y, kinds, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("count")
    ax1.legend(loc="lower right", fontsize=8)
    ax2.barh(y, et["bytes"] / 1000.0, color="C2")
    ax2.set_yticks(y, kinds, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("kB")
    amp = presence_amplification(tables)
    if amp["updates"]:
        ax2.set_title(f"presence: {amp['updates']} updates, {amp['edus_per_change']:.1f} entries queued "
                      f"and {amp['edus_received_per_change']:.1f} EDUs received per update", fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    return _finish(fig, path)


def plot_services(tables: Tables, *, end_t: float | None = None, path: str | Path | None = None):
    """ECDFs: presence staleness, profile staleness, directory and identity
    lookup latency, identity replication lag and convergence."""
    from simfed.metrics.services import (
        directory_lookups,
        identity_lags,
        identity_lookups,
        identity_replication,
        presence_staleness,
        profile_staleness,
    )

    fig = _figure((11.0, 7.0))
    (a1, a2), (a3, a4) = fig.subplots(2, 2)
    fig.suptitle("Services: staleness, lookup latency, replication")
    st = presence_staleness(tables, end_t)
    ps = profile_staleness(tables, end_t)
    a1.set_title("staleness (time a server shows an old value)", fontsize=9)
    _ecdf(a1, st["duration_ms"].to_numpy(float) if not st.empty else np.array([]), "presence state")
    _ecdf(a1, ps["stale_ms"].to_numpy(float) if not ps.empty else np.array([]), "display name")
    dl = directory_lookups(tables)
    a2.set_title("directory lookups (not from cache)", fontsize=9)
    remote = dl[~dl["cached"]]
    for outcome in sorted(set(remote["outcome"])):
        if outcome != "failed":
            _ecdf(a2, remote[remote["outcome"] == outcome]["latency_ms"].to_numpy(float), outcome)
    il = identity_lookups(tables)
    a3.set_title("identity lookups", fontsize=9)
    for outcome in sorted(set(il["outcome"])):
        if outcome != "failed":
            _ecdf(a3, il[il["outcome"] == outcome]["latency_ms"].to_numpy(float), outcome)
    rep = identity_replication(tables)
    a4.set_title("identity replication", fontsize=9)
    _ecdf(a4, identity_lags(tables), "lag per (record, server)")
    _ecdf(a4, rep["convergence_ms"].to_numpy(float) if not rep.empty else np.array([]),
          "convergence per record (all servers)")
    for ax in (a1, a2, a3, a4):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=7)
            ax.set_xscale("log")
        else:
            _empty(ax, "observations")
        ax.set_xlabel("simulated s")
        ax.set_ylabel("fraction of observations (ECDF)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    return _finish(fig, path)


# -- network: TCP delays (simfed.sim.tcp) ----------------------------------------------


def plot_delivery_delay(tables: Tables, *, path: str | Path | None = None):
    """ECDF of the one-way delay of delivered messages (``t_done - t_sent``:
    serialization, latency, TCP handshakes and retransmissions), split by
    whether TCP retransmitted anything; the added latency of packet loss."""
    fig, ax = _new("Message delivery delay")
    tr = tables.get("traffic")
    if tr is None or tr.empty or not tr["delivered"].any():
        _empty(ax, "delivered messages")
        return _finish(fig, path)
    d = tr[tr["delivered"]]
    delay = (d["t_done"] - d["t_sent"]).to_numpy(dtype=float)
    retrans = (d["retransmissions"].to_numpy() if "retransmissions" in d else np.zeros(len(d))) > 0
    _ecdf(ax, delay, "all delivered")
    if retrans.any():
        _ecdf(ax, delay[~retrans], "no retransmission")
        _ecdf(ax, delay[retrans], "with TCP retransmissions")
        ax.text(0.98, 0.02, f"{retrans.mean():.1%} of messages retransmitted; mean delay "
                f"{delay[~retrans].mean():.0f} ms without, {delay[retrans].mean():.0f} ms with",
                ha="right", va="bottom", transform=ax.transAxes, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("delivery delay (simulated s, log scale)")
    ax.set_ylabel("fraction of delivered messages")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, path)
