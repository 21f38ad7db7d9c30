"""The result of one run: its tables, its summary, its figures.

A :class:`RunResult` is what :func:`simfed.run` returns and what
``simfed run`` writes to disk. It holds the recorder's tidy tables as pandas
DataFrames (``events``, ``deliveries``, ``state``, ``traffic`` and the
auxiliary ``membership``, ``perturbations``, ``server_info``,
``state_entries``), the ``summary`` dict that goes into ``summary.json``,
and -- for a run made in this process -- the simulator's own result
(``sim``, ``servers``) for looking inside the homeservers.

Life: built by :func:`simfed.experiment.runner.run_scenario` at the end of a
run (complete or stopped early), or read back from a results directory with
:meth:`RunResult.load` (then ``sim`` is ``None``). Everything derived
(``divergence``, ``event_convergence``) is computed on first use and cached;
the tables themselves are never modified.

Files of a results directory
----------------------------
``<table>.parquet``  one per table (pyarrow; categoricals round-trip), with
                     ``pdus`` and ``dag`` (each server's stored DAG, see
                     :mod:`simfed.experiment.dag`)
``summary.json``     the scenario as resolved, seed, versions, wall time,
                     ``complete`` and the headline figures (see
                     :mod:`simfed.metrics.summary`); written last
``*.png``            convergence CDF, divergence, extremities, traffic,
                     delivery delay; EDUs and services only when the run
                     recorded any (:func:`plot_files`)
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from simfed.experiment.dag import DAG_TABLES
from simfed.metrics import TABLE_COLUMNS, states_from_tables

if TYPE_CHECKING:  # pragma: no cover
    from simfed.config import Scenario

__all__ = ["RunResult", "TABLE_FILES", "PLOT_FILES", "SUMMARY_FILE", "format_ms", "headline_lines", "plot_files"]

#: Table name -> file name, in the order they are written (the recorder's, then the DAG's).
TABLE_FILES: dict[str, str] = {name: f"{name}.parquet" for name in (*TABLE_COLUMNS, *DAG_TABLES)}
#: Plot method -> file name.
PLOT_FILES: dict[str, str] = {
    "plot_convergence_cdf": "convergence_cdf.png",
    "plot_divergence": "divergence.png",
    "plot_extremities": "extremities.png",
    "plot_traffic": "traffic.png",
    "plot_delivery_delay": "delivery_delay.png",
    "plot_edus": "edus.png",
    "plot_services": "services.png",
}
SUMMARY_FILE = "summary.json"


def plot_files(tables: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """The plots :meth:`RunResult.save` writes for these tables: all of
    :data:`PLOT_FILES` but ``edus.png`` and ``services.png`` when the run
    recorded no EDUs / no service observations (``[services]`` off)."""
    from simfed.plots import has_data

    return {m: f for m, f in PLOT_FILES.items() if has_data(m, tables)}

#: Keys of ``summary.json`` that depend on the wall clock or the machine, not
#: on the scenario: leave them out when comparing two runs.
WALL_CLOCK_KEYS = ("wall_time_s", "sim_wall_time_s", "sim_cpu_time_s", "peak_rss_mb", "versions", "out_dir", "out_files")


def format_ms(ms: Any) -> str:
    """``212 ms``, ``3.4 s``, ``2m 05s``; ``-`` for None/NaN."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "-"
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    m, s = divmod(ms / 1000, 60)
    return f"{int(m)}m {s:04.1f}s"


def _format_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _throughput(result: "RunResult") -> str:
    """``", 1,234 deliveries/s, peak memory 210 MiB"`` for the run line."""
    s = result.summary
    parts = []
    wall = s.get("sim_wall_time_s")
    deliveries = result.tables.get("deliveries")
    if wall and deliveries is not None:
        parts.append(f"{len(deliveries) / wall:,.0f} deliveries/s")
    if s.get("peak_rss_mb") is not None:
        parts.append(f"peak memory {s['peak_rss_mb']:,.0f} MiB")
    return "".join(f", {p}" for p in parts)


class RunResult:
    """One run's tables, summary and (when run here) simulator state.

    Attributes
    ----------
    events, deliveries, state, traffic : pandas.DataFrame
        The tables described in :mod:`simfed.metrics.recorder`.
    membership, perturbations, server_info, state_entries : pandas.DataFrame
        The auxiliary tables (``server_info`` is the recorder's ``servers``
        table: server, honest, region).
    tables : dict[str, pandas.DataFrame]
        All of them, keyed by the recorder's table names.
    summary : dict
        What ``summary.json`` holds.
    scenario : simfed.config.Scenario
        The scenario as run.
    sim : SimResult or None
        The simulator's result (``None`` when loaded from disk).
    out_dir : pathlib.Path or None
        Where the files were written (``None`` if nowhere yet).
    interrupted : bool
        The run was stopped by Ctrl-C (``summary["complete"]`` is false).
    """

    def __init__(
        self,
        *,
        scenario: Scenario,
        tables: Mapping[str, pd.DataFrame],
        summary: dict[str, Any],
        sim: Any = None,
        states: Mapping[str, Mapping[tuple[str, str], str]] | None = None,
        out_dir: Path | None = None,
        interrupted: bool = False,
    ) -> None:
        self.scenario = scenario
        self.tables: dict[str, pd.DataFrame] = dict(tables)
        self.summary = summary
        self.sim = sim
        self._states = states
        self.out_dir = out_dir
        self.interrupted = interrupted

    # -- tables ----------------------------------------------------------
    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"]

    @property
    def deliveries(self) -> pd.DataFrame:
        return self.tables["deliveries"]

    @property
    def state(self) -> pd.DataFrame:
        return self.tables["state"]

    @property
    def traffic(self) -> pd.DataFrame:
        return self.tables["traffic"]

    @property
    def membership(self) -> pd.DataFrame:
        return self.tables["membership"]

    @property
    def perturbations(self) -> pd.DataFrame:
        return self.tables["perturbations"]

    @property
    def server_info(self) -> pd.DataFrame:
        return self.tables["servers"]

    @property
    def state_entries(self) -> pd.DataFrame:
        return self.tables["state_entries"]

    # EDUs and services (simfed.metrics.services; empty when [services] is off)
    @property
    def edus(self) -> pd.DataFrame:
        return self.tables["edus"]

    @property
    def presence(self) -> pd.DataFrame:
        return self.tables["presence"]

    @property
    def profiles(self) -> pd.DataFrame:
        return self.tables["profiles"]

    @property
    def directory(self) -> pd.DataFrame:
        return self.tables["directory"]

    @property
    def identity(self) -> pd.DataFrame:
        return self.tables["identity"]

    @cached_property
    def presence_staleness(self) -> pd.DataFrame:
        """Episodes of outdated presence (see :func:`simfed.metrics.services.presence_staleness`)."""
        from simfed.metrics.services import presence_staleness

        return presence_staleness(self.tables, self.end_t)

    @cached_property
    def identity_replication(self) -> pd.DataFrame:
        """Per 3PID record: replication to every identity server (see :mod:`simfed.metrics.services`)."""
        from simfed.metrics.services import identity_replication

        return identity_replication(self.tables)

    # -- the run ---------------------------------------------------------
    @property
    def complete(self) -> bool:
        """The run reached ``simulation.duration`` (not stopped early)."""
        return bool(self.summary.get("complete", False))

    @property
    def end_t(self) -> float:
        """Simulated ms at which the run ended."""
        return float(self.summary.get("sim_end_ms") or 0.0)

    @property
    def honest(self) -> frozenset[str]:
        """Names of the honest servers."""
        if self.sim is not None:
            return frozenset(self.sim.honest)
        info = self.server_info
        return frozenset(str(s) for s, h in zip(info["server"], info["honest"]) if h)

    @property
    def servers(self) -> dict[str, Any]:
        """The simulated homeservers by name (``name -> Homeserver``).

        Only for a run made in this process; a result loaded from disk has
        its tables but not the servers.
        """
        if self.sim is None:
            raise AttributeError(
                "servers: this result was loaded from disk and has no live servers "
                "(run the scenario with simfed.run(...) to inspect them)"
            )
        return self.sim.servers

    @property
    def room_id(self) -> str | None:
        """The room's ID (from the simulator, else the events table)."""
        if self.sim is not None:
            return self.sim.room_id
        rooms = self.events["room_id"].dropna().unique()
        return str(rooms[0]) if len(rooms) else None

    @property
    def states(self) -> dict[str, dict[tuple[str, str], str]]:
        """Each distinct recorded state: ``{state_hash: {(type, state_key): event_id}}``."""
        if self._states is None:
            self._states = states_from_tables(self.tables)
        return dict(self._states)

    # -- derived ---------------------------------------------------------
    @cached_property
    def divergence(self) -> pd.DataFrame:
        """State divergence among up honest servers over time (see
        :func:`simfed.metrics.divergence.divergence`)."""
        from simfed.metrics import divergence

        return divergence(self.tables, self.states, honest=self.honest, end_t=self.end_t)

    @cached_property
    def event_convergence(self) -> pd.DataFrame:
        """Per event: expected holders, when it converged, whether it was lost."""
        from simfed.metrics import event_convergence

        return event_convergence(self.tables, self.honest, self.end_t)

    @property
    def security(self) -> dict[str, Any]:
        """``summary["security"]``: the security measures (see :mod:`simfed.metrics.security`)."""
        return dict(self.summary.get("security") or {})

    def headline(self) -> dict[str, Any]:
        """The headline figures of ``summary`` (a copy)."""
        return {k: self.summary[k] for k in HEADLINE_KEYS if k in self.summary}

    # -- figures ---------------------------------------------------------
    def _marks(self, fig):
        from simfed import plots

        if not self.divergence.empty:
            plots._mark_perturbations(fig.axes[0], self.tables)
        return fig

    def plot_convergence_cdf(self, path: str | os.PathLike[str] | None = None):
        """ECDF of event convergence time and per-server delivery latency."""
        from simfed.plots import plot_convergence_cdf

        return plot_convergence_cdf(self.tables, honest=self.honest, end_t=self.end_t, path=path)

    def plot_divergence(self, path: str | os.PathLike[str] | None = None):
        """Distinct states and largest pairwise state difference over time."""
        from simfed.plots import _finish, plot_divergence

        return _finish(self._marks(plot_divergence(self.divergence)), path)

    def plot_extremities(self, path: str | os.PathLike[str] | None = None):
        """Forward extremities and missing-event backlog over time."""
        from simfed.plots import _finish, plot_extremities

        return _finish(self._marks(plot_extremities(self.divergence)), path)

    def plot_edus(self, path: str | os.PathLike[str] | None = None):
        """EDUs received by type, and presence amplification."""
        from simfed.plots import plot_edus

        return plot_edus(self.tables, path=path)

    def plot_services(self, path: str | os.PathLike[str] | None = None):
        """Presence/profile staleness, lookup latencies, identity replication (ECDFs)."""
        from simfed.plots import plot_services

        return plot_services(self.tables, end_t=self.end_t, path=path)

    def plot_dag(self, server: str | None = None, *, room_id: str | None = None, last: int | None = 300,
                 path: str | os.PathLike[str] | None = None):
        """The room DAG as ``server`` (default: the first) holds it; ``last`` events (0: all).

        See :mod:`simfed.experiment.dag` for what the marks mean.
        """
        from simfed.experiment.dag import plot_dag

        return plot_dag(self.tables, server, room_id=room_id, last=last, path=path)

    def export_dag(self, path: str | os.PathLike[str], server: str | None = None) -> list[str]:
        """Write ``server``'s PDUs as a JSON array for ``simfed resolve``; returns its forward extremities."""
        from simfed.experiment.dag import export_dag

        return export_dag(self.tables, path, server)

    def plot_traffic(self, path: str | os.PathLike[str] | None = None):
        """Messages and bytes by kind, delivered vs dropped."""
        from simfed.plots import plot_traffic

        return plot_traffic(self.tables, path=path)

    def plot_delivery_delay(self, path: str | os.PathLike[str] | None = None):
        """Delivery delay of messages, with and without TCP retransmissions."""
        from simfed.plots import plot_delivery_delay

        return plot_delivery_delay(self.tables, path=path)

    # -- files -----------------------------------------------------------
    def save(self, out_dir: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write the tables (Parquet), the plots (PNG) and ``summary.json``.

        ``summary.json`` is written last (atomically), so a directory with a
        summary has everything the summary lists in ``out_files``. Returns
        the paths written.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for name, fname in TABLE_FILES.items():
            p = out / fname
            self.tables[name].to_parquet(p, engine="pyarrow", index=False)
            written.append(p)
        if plots:
            import matplotlib.pyplot as plt

            for method, fname in plot_files(self.tables).items():
                p = out / fname
                fig = getattr(self, method)(path=p)
                plt.close(fig)
                written.append(p)
        summary_path = out / SUMMARY_FILE
        written.append(summary_path)
        self.summary["out_dir"] = str(out)
        self.summary["out_files"] = [p.name for p in written]
        tmp = summary_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, summary_path)
        self.out_dir = out
        return written

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> RunResult:
        """Read a results directory written by :meth:`save` (no live servers)."""
        from simfed.experiment.scenario import load_scenario

        out = Path(out_dir)
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
        tables = {}
        for name, fname in TABLE_FILES.items():
            p = out / fname
            tables[name] = _canonical(name, pd.read_parquet(p, engine="pyarrow")) if p.exists() else _empty_table(name)
        scenario = load_scenario(summary["scenario"])
        return cls(scenario=scenario, tables=tables, summary=summary, out_dir=out,
                   interrupted=not summary.get("complete", False))

    # -- display ---------------------------------------------------------
    def _name(self) -> str:
        return self.summary.get("name") or self.scenario.description or "run"

    def _lines(self) -> list[tuple[str, str]]:
        s = self.summary
        status = "complete" if self.complete else "INCOMPLETE (stopped early)"
        rows = [
            ("scenario", f"{self.scenario.describe()}, seed {s.get('seed')}"),
            ("run", f"{status}; {format_ms(s.get('sim_end_ms'))} simulated in "
                    f"{s.get('wall_time_s', 0):.1f} s wall{_throughput(self)}"),
        ]
        return rows + headline_lines(s) + _service_lines(s) + security_lines(s)

    def report(self, indent: str = "  ") -> str:
        """The headline figures as aligned text lines (what ``simfed run`` prints)."""
        lines = self._lines()
        width = max(len(k) for k, _ in lines)
        return "\n".join(f"{indent}{k:<{width}}  {v}" for k, v in lines)

    def __repr__(self) -> str:
        return f"<RunResult {self._name()}\n{self.report()}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._lines()
        )
        tables = ", ".join(f"<code>.{n}</code> ({len(self.tables[n])} rows)"
                           for n in ("events", "deliveries", "state", "traffic"))
        return (
            f"<div><b>RunResult</b> {html.escape(self._name())}"
            f"<table>{rows}</table><small>{tables}</small></div>"
        )


#: Faults listed one per line in the printed headline (the rest are counted).
MAX_FAULT_LINES = 12


def _censored_ms(block: Mapping[str, Any], key: str) -> str:
    """A censored percentile: ``lost`` when it falls on a lost event."""
    if key in (block.get("censored") or ()):
        return "lost"
    return format_ms(block.get(key))


def _agreement_text(ms: Any, row: Mapping[str, Any]) -> str:
    """How long after a fault the states agree again, or why they did not."""
    if ms is not None:
        return f"all agree after {format_ms(ms)}"
    n = row.get("distinct_states_at_end")
    where = "the next fault" if row.get("until") == "next_fault" else "the end"
    word = "NOT agreed" if row.get("until") == "next_fault" else "NEVER agreed again"
    return f"{word} before {where} at {format_ms(row.get('window_end'))} ({n} distinct states)"


def headline_lines(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The measured figures of a ``summary.json`` as (label, text) report lines."""
    ec = s.get("event_convergence_ms") or {}
    msgs = s.get("messages") or {}
    nbytes = s.get("bytes") or {}
    md = s.get("max_divergence") or {}
    lost = s.get("events_lost", 0)
    why = []
    if lost:
        why.append(f"{lost} events lost")
    if not s.get("state_converged"):
        why.append("states differ at the end")
    if s.get("auth_disagreements"):
        why.append(f"{s['auth_disagreements']} auth disagreements")
    gaps = s.get("events_lost_in_gaps") or 0
    in_gaps = f" ({gaps} of them only as outliers, in timeline gaps)" if gaps else ""
    rows = [
        ("events", f"{s.get('events_created', 0)} created, {lost} lost{in_gaps}"),
        ("converged", "yes" if s.get("converged") else "NO" + (f" ({'; '.join(why)})" if why else "")),
        ("event convergence", f"p50 {_censored_ms(ec, 'p50')}, p95 {_censored_ms(ec, 'p95')}, "
                              f"p99 {_censored_ms(ec, 'p99')}, max {_censored_ms(ec, 'max')} "
                              f"over {ec.get('events', 0)} events, {ec.get('events_lost', lost)} lost"),
    ]
    if "state_converged" not in s:  # a summary written before these keys existed
        state = f"legacy summary: state convergence {format_ms(s.get('state_convergence_ms'))}"
    elif s.get("state_converged"):
        state = f"all honest servers agree at the end (since {format_ms(s.get('state_agreed_since_ms'))})"
    else:
        state = f"NO: {md.get('distinct_states_at_end', '?')} distinct states at the end"
    rows.append(("state convergence", state))
    last = s.get("last_fault")
    faults = s.get("faults") or []
    if last is None:
        rows.append(("after last fault", "no faults in this run"))
    else:
        row = faults[-1] if faults else {}
        rows.append(("after last fault", f"{last['kind']} at {format_ms(last['t'])}: "
                     + _agreement_text(s.get("state_convergence_after_last_fault_ms"), row)))
    for f in faults[:MAX_FAULT_LINES]:
        detail = str(f.get("detail") or "")
        detail = f" ({detail[:37] + '...' if len(detail) > 40 else detail})" if detail else ""
        rows.append((f"  {f['kind']} at {format_ms(f['t'])}",
                     _agreement_text(f.get("agreement_ms"), f) + detail))
    if len(faults) > MAX_FAULT_LINES:
        rows.append(("  ...", f"{len(faults) - MAX_FAULT_LINES} more faults (summary.json: faults)"))
    rows += [
        ("max divergence", f"{md.get('distinct_states', '-')} distinct states during the run, "
                           f"{md.get('distinct_states_at_end', '-')} at the end"),
        ("decisions", f"{s.get('auth_disagreements', 0)} auth disagreements, "
                      f"{s.get('soft_fail_disagreements', 0)} soft-fail disagreements"),
        ("messages", f"{sum(msgs.values())} ({_format_bytes(sum(nbytes.values()))})"),
    ]
    if s.get("rejected"):
        rows.append(("rejected", ", ".join(f"{k}: {v}" for k, v in s["rejected"].items())))
    if s.get("soft_failed"):
        rows.append(("soft-failed", str(s["soft_failed"])))
    rd = s.get("readers") or {}
    if rd.get("pages"):
        rows.append(("readers", f"{rd['gaps']} gaps paged through: {rd['pages']} backfills, "
                                f"{rd['events_backfilled']} events"))
    return rows


def _service_lines(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Report lines for the services that ran (none when ``[services]`` is off)."""
    rows: list[tuple[str, str]] = []
    edus = s.get("edus") or {}
    if edus:
        rows.append(("EDUs received", ", ".join(f"{k} {v['messages']} ({_format_bytes(v['bytes'])})"
                                                for k, v in edus.items())))
    p = s.get("presence") or {}
    if p.get("updates"):
        st = p.get("staleness_ms") or {}
        rows.append(("presence", f"{p['updates']} updates, {p['edus_per_change']:.1f} servers each; "
                                 f"staleness p50 {format_ms(st.get('p50'))}, p95 {format_ms(st.get('p95'))}"))
    d = s.get("directory") or {}
    if d.get("queries"):
        rows.append(("directory", f"{d['queries']} lookups: " + ", ".join(f"{k} {v}" for k, v in d["outcomes"].items())))
    i = s.get("identity") or {}
    if i.get("binds") or i.get("lookups"):
        conv = i.get("convergence_ms") or {}
        rows.append(("identity", f"{i['binds']} binds, convergence p95 {format_ms(conv.get('p95'))}; "
                                 f"{i['lookups']} lookups: "
                                 + ", ".join(f"{k} {v}" for k, v in i["lookup_outcomes"].items())))
    return rows


def security_lines(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``security`` report line, for a run with adversaries (none otherwise)."""
    sec = s.get("security") or {}
    if not sec.get("adversary_servers"):
        return []
    div = sec.get("content_divergence")
    text = (f"{sec['adversarial_events']} adversarial events ({sec['illegitimate_sent']} illegitimate: "
            f"{sec['illegitimate_in_state']} in honest state, {sec['illegitimate_accepted']} accepted); "
            f"{sec['equivocations_seen']} equivocations seen, "
            f"{'?' if div is None else div} event IDs with diverging content; "
            f"{sec['requests_made'] + sec['requests_served']} honest requests")
    caused = sec.get("caused")
    if caused:
        amp = caused.get("work_amplification")
        text += (f"; vs paired baseline: requests {caused['requests']:+d}"
                 + (f" ({amp:+.1f} per adversarial event)" if amp is not None else "")
                 + f", honest events lost {caused['events_lost']:+d}, "
                 f"p95 convergence {_signed_ms(caused.get('p95_convergence_ms'))}")
    return [("security", text)]


def _signed_ms(ms: Any) -> str:
    if ms is None:
        return "n/a (censored)"
    return ("+" if ms >= 0 else "-") + format_ms(abs(ms))


#: The headline keys of ``summary.json`` (see :func:`simfed.metrics.headline`).
HEADLINE_KEYS = (
    "events_created",
    "events_lost",
    "converged",
    "event_convergence_ms",
    "state_converged",
    "state_agreed_since_ms",
    "state_convergence_after_last_fault_ms",
    "last_fault",
    "faults",
    "state_convergence_ms",
    "auth_disagreements",
    "soft_fail_disagreements",
    "max_divergence",
    "messages",
    "bytes",
    "rejected",
    "soft_failed",
    "topology",
    "edus",
    "presence",
    "profiles",
    "directory",
    "identity",
    "security",
)


def _empty_table(name: str) -> pd.DataFrame:
    from simfed.metrics.recorder import build_frame

    if name in DAG_TABLES:
        from simfed.experiment.dag import _frame

        return _frame(name, {c: [] for c in DAG_TABLES[name]})
    return build_frame(name, {c: [] for c in TABLE_COLUMNS[name]})


def _canonical(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """A table read from Parquet, with the recorder's dtypes where Parquet loses them.

    (An all-missing categorical comes back with ``object`` categories; the
    recorder gives it ``str`` ones.)
    """
    for col, kind in TABLE_COLUMNS.get(name, {}).items():
        if kind == "cat" and col in df and isinstance(df[col].dtype, pd.CategoricalDtype):
            if len(df[col].cat.categories) == 0:
                df[col] = pd.Categorical([None] * len(df), categories=pd.Index([], dtype="str"))
    return df
