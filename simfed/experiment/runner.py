"""Run one scenario: simulate, build the tables, measure, write the results.

:func:`run_scenario` is the one place a run happens; ``simfed run`` and
:func:`simfed.run` are thin layers over it.

Theory of operation
-------------------
1. A fresh :class:`~simfed.metrics.Recorder` is handed to the simulator
   (``simfed.sim.world.simulate``, imported when a run starts so that this
   module imports without SimPy). The recorder's ``run_id`` is a hash of the
   resolved scenario, so the same scenario and seed give the same tables,
   row for row, whatever machine or process runs them.
2. The simulator calls ``progress(t_ms)`` and ``should_stop()`` about every
   1% of the run. ``progress`` drives a tqdm bar in *simulated* seconds
   (only when stderr is a terminal, or ``progress=True``). ``should_stop``
   answers true after the first Ctrl-C: the runner turns SIGINT into a flag
   for the duration of the run, so the simulator stops at its next check
   and returns normally with ``completed=False``. A second Ctrl-C raises
   ``KeyboardInterrupt`` at once; the runner still builds the tables from
   whatever the recorder holds (it is our own object, not the simulator's).
   Either way what was collected is measured and written, with
   ``"complete": false`` in ``summary.json``, and the result says
   ``interrupted``. The handler stays while the tables are built and
   written: there a first Ctrl-C only says the results are on their way
   (a long run's results are not lost to one keypress), a second aborts.
3. ``recorder.tables()`` -> :func:`~simfed.metrics.headline` (with the
   simulator's honest set and end time) -> ``summary``.
4. The servers' storage at the end gives the ``pdus`` and ``dag`` tables
   (:mod:`simfed.experiment.dag`: every stored PDU once, and which server
   holds which event with what status), for ``simfed dag``.
5. With ``out_dir``, :meth:`RunResult.save` writes the Parquet tables, the
   plots and, last, ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from simfed.config import Scenario
from simfed.experiment.results import RunResult
from simfed.experiment.scenario import scenario_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from simfed.metrics import Recorder

__all__ = ["run_scenario", "run_id_for", "package_versions", "Simulator"]

#: ``simulate(scenario, *, recorder, progress, should_stop) -> SimResult``
Simulator = Callable[..., Any]

#: Distribution names whose versions go into ``summary.json``.
VERSIONED = {
    "simfed": "simfed",
    "simpy": "simpy",
    "numpy": "numpy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "pynacl": "PyNaCl",
    "canonicaljson": "canonicaljson",
    "pydantic": "pydantic",
    "matplotlib": "matplotlib",
}


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages a run depends on (None if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in VERSIONED.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def run_id_for(scenario: Scenario) -> str:
    """A short, stable ID of the resolved scenario (seed included)."""
    blob = json.dumps(scenario_to_dict(scenario), sort_keys=True, separators=(",", ":"))
    return "r" + hashlib.sha256(blob.encode()).hexdigest()[:12]


class _Interrupt:
    """Turns the first SIGINT of a run into a flag; the second raises.

    ``requested`` is set only by a Ctrl-C during the simulation (the run is
    then incomplete). After the simulation, while the tables are built and
    written, a first Ctrl-C only says that the results are being written
    (``after_simulation``); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.seen = False
        self.simulating = True

    def __call__(self) -> bool:
        return self.requested

    @contextmanager
    def installed(self, on_first: Callable[[], None], after_simulation: Callable[[], None]) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers only in the main thread; Ctrl-C raises there anyway
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            # Someone (a notebook kernel, a test harness) chose their own
            # handling: leave it alone; KeyboardInterrupt is still handled.
            yield
            return

        def handler(signum, frame):  # noqa: ARG001 - signal API
            if self.seen:
                raise KeyboardInterrupt
            self.seen = True
            if self.simulating:
                self.requested = True
                on_first()
            else:
                after_simulation()

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def peak_rss_mb() -> float | None:
    """The process's peak resident memory so far, in MiB (None where the
    platform does not say). It is the whole process's high-water mark: in a
    notebook or a sweep worker that ran several scenarios, the largest so far."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


class _Progress:
    """A tqdm bar in simulated seconds, with events and deliveries per
    wall-clock second as its postfix; or, with ``lines``, a plain line on
    stderr at every tenth of the simulated time (for logs); or nothing."""

    #: simulated-time fraction between two plain progress lines
    LINE_STEP = 0.1

    def __init__(self, duration_ms: float, enabled: bool, label: str, recorder: Recorder | None = None,
                 *, lines: bool = False) -> None:
        self.bar = None
        self._recorder = recorder
        self._t0 = time.perf_counter()
        self._label = label
        self._duration_ms = duration_ms
        self._next_line = self.LINE_STEP if lines and not enabled and duration_ms > 0 else None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=round(duration_ms / 1000.0, 3),
                unit="sim s",
                desc=label,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} sim s "
                "[{elapsed}<{remaining}]{postfix}",
            )

    def __call__(self, t_ms: float) -> None:
        if self._next_line is not None and t_ms >= self._next_line * self._duration_ms:
            self._line(t_ms)
        if self.bar is not None:
            n = min(round(t_ms / 1000.0, 3), self.bar.total)
            if n > self.bar.n:
                self.bar.update(n - self.bar.n)
                if self._recorder is not None:
                    self.bar.set_postfix_str(self._rates(), refresh=False)

    def _rates(self) -> str:
        rec = self._recorder
        wall = max(time.perf_counter() - self._t0, 1e-9)
        events, deliveries = rec.rows("events"), rec.rows("deliveries")
        return (f"{events:,} events ({events / wall:,.0f}/s), "
                f"{deliveries:,} deliveries ({deliveries / wall:,.0f}/s)")

    def _line(self, t_ms: float) -> None:
        done = min(t_ms / self._duration_ms, 1.0)
        while self._next_line is not None and self._next_line <= done + 1e-9:
            self._next_line = self._next_line + self.LINE_STEP if self._next_line < 1.0 - 1e-9 else None
        rates = f", {self._rates()}" if self._recorder is not None else ""
        print(f"{self._label}: {done:4.0%} ({t_ms / 1000:,.0f}/{self._duration_ms / 1000:,.0f} sim s) after "
              f"{time.perf_counter() - self._t0:,.1f} s{rates}, peak memory {peak_rss_mb()} MiB",
              file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        else:
            print(f"simfed: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_wanted(progress: bool | str | None) -> bool:
    if progress == "lines":
        return False
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def has_adversaries(scenario: Scenario) -> bool:
    """Whether the scenario has ``[[adversaries]]`` or ``servers.malicious``."""
    return bool(scenario.adversaries or scenario.servers.malicious)


def without_adversaries(scenario: Scenario) -> Scenario:
    """The same scenario (seed included) with every ``[[adversaries]]`` entry
    and ``servers.malicious`` removed: the paired baseline."""
    from simfed.experiment.scenario import load_scenario

    data = scenario_to_dict(scenario)
    data["adversaries"] = []
    data["servers"]["malicious"] = []
    return load_scenario(data)


def _security(scenario: Scenario, sim: Any, simulator: Any, tables: Any, recorder: Any, honest: frozenset[str],
              end_t: float, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary["security"]``: the run's security measures and, for a run
    with adversaries and ``metrics.paired_baseline``, what they caused
    against the paired baseline (see :mod:`simfed.metrics.security`)."""
    from simfed.metrics import Recorder, headline
    from simfed.metrics.security import caused_by_adversaries, content_versions, request_counts, security_measures

    versions = content_versions(sim.servers, honest, sim.room_id) if sim is not None else None
    sec = security_measures(tables, honest=honest, end_t=end_t, states=recorder.states, versions=versions)
    if sim is None or not summary.get("complete") or not has_adversaries(scenario) \
            or not scenario.metrics.paired_baseline:
        return sec
    base_rec = Recorder(run_id=f"{recorder.run_id}-baseline")
    base_sim = simulator(without_adversaries(scenario), recorder=base_rec)
    base_tables = base_rec.tables()
    base_end = float(base_sim.end_t)
    base = headline(base_tables, honest=honest, end_t=base_end, states=base_rec.states)
    return caused_by_adversaries(sec, summary, base, request_counts(base_tables, honest, base_end))


def run_scenario(
    scenario: Scenario,
    *,
    out_dir: str | Path | None,
    progress: bool | str | None = None,
    name: str | None = None,
    run_id: str | None = None,
    plots: bool = True,
    should_stop: Callable[[], bool] | None = None,
    simulator: Simulator | None = None,
) -> RunResult:
    """Run ``scenario`` and measure it; write the results when ``out_dir`` is given.

    Parameters
    ----------
    scenario:
        A validated scenario (see :func:`simfed.experiment.scenario.load_scenario`).
    out_dir:
        Directory for the Parquet tables, plots and ``summary.json``
        (created if needed); ``None`` writes nothing.
    progress:
        Show a progress bar in simulated time on stderr: ``None`` (default)
        when stderr is a terminal, ``True`` always, ``False`` never;
        ``"lines"``: no bar, a plain line at every tenth of the simulated
        time (time so far, events and deliveries per second, peak memory),
        for logs.
    name:
        A label for the progress bar and ``summary["name"]`` (default: the
        scenario's description, or ``"run"``).
    run_id:
        The ``run_id`` column of every table (default :func:`run_id_for`).
    plots:
        Write the PNG plots with the tables (default true): the files of
        :func:`simfed.experiment.results.plot_files` (``edus.png`` and
        ``services.png`` only when the run recorded service data).
    should_stop:
        Polled with the simulator's progress checks; true stops the run early
        as if Ctrl-C had been pressed (``complete`` false). For tests and
        time-boxed runs.
    simulator:
        The ``simulate`` function to use; default ``simfed.sim.world.simulate``.

    Returns
    -------
    RunResult
        Also when stopped early: ``result.interrupted`` tells whether Ctrl-C
        stopped it, ``result.complete`` whether it reached the end.
    """
    from simfed.metrics import Recorder

    if simulator is None:
        from simfed.sim.world import simulate as simulator

    label = name or scenario.description.split(":")[0].strip() or "run"
    rid = run_id or run_id_for(scenario)
    recorder = Recorder(run_id=rid)
    interrupt = _Interrupt()
    if progress not in (None, True, False, "lines"):
        raise ValueError(f"progress={progress!r}: choose None, True, False or 'lines'")
    bar = _Progress(scenario.simulation.duration_ms, _progress_wanted(progress), label, recorder,
                    lines=progress == "lines")

    def stop() -> bool:
        return interrupt() or bool(should_stop is not None and should_stop())

    sim = None
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    with interrupt.installed(
        lambda: bar.note("Ctrl-C: stopping, writing what was collected (Ctrl-C again to abort at once)"),
        lambda: print("simfed: Ctrl-C: the simulation is over, its results are being written "
                      "(Ctrl-C again to abort without them)", file=sys.stderr, flush=True),
    ):
        try:
            try:
                sim = simulator(scenario, recorder=recorder, progress=bar, should_stop=stop)
            except KeyboardInterrupt:
                interrupt.requested = True
        finally:
            bar.close()
            interrupt.simulating = False
        return _finish(scenario, recorder, sim, simulator, interrupt, rid, label, t_start, cpu_start,
                       out_dir, plots)


def _finish(scenario: Scenario, recorder: Recorder, sim: Any, simulator: Any, interrupt: _Interrupt, rid: str,
            label: str, t_start: float, cpu_start: float, out_dir: str | Path | None, plots: bool) -> RunResult:
    """Measure what the simulation left and, with ``out_dir``, write it."""
    from simfed.metrics import headline, jsonable
    from simfed.metrics.readers import readers_headline
    from simfed.metrics.services import services_headline
    from simfed.sim.defences import defence_totals

    sim_wall = time.perf_counter() - t_start
    sim_cpu = time.process_time() - cpu_start

    from simfed.experiment.dag import dag_tables

    tables = recorder.tables()
    tables.update(dag_tables(sim, rid))  # each server's stored DAG, for simfed dag (empty without servers)
    if sim is not None:
        honest = frozenset(sim.honest)
        end_t = float(sim.end_t)
        completed = bool(sim.completed) and not interrupt.requested
        sim_wall = float(getattr(sim, "wall_time_s", sim_wall))
    else:
        from simfed.metrics import honest_servers, infer_end_t

        honest = frozenset(honest_servers(tables))
        end_t = infer_end_t(tables)
        completed = False

    summary: dict[str, Any] = {
        "name": label,
        "run_id": rid,
        "description": scenario.description,
        "scenario": scenario_to_dict(scenario),
        "seed": scenario.simulation.seed,
        "versions": package_versions(),
        "complete": completed,
        "interrupted": interrupt.requested,
        "sim_end_ms": end_t,
        "sim_duration_ms": scenario.simulation.duration_ms,
        "honest_servers": sorted(honest),
    }
    summary.update(headline(tables, honest=honest, end_t=end_t, states=recorder.states))
    summary.update(services_headline(tables, end_t=end_t))
    counters = {n: getattr(hs, "counters", {}) for n, hs in (getattr(sim, "servers", None) or {}).items()}
    summary["defences"] = defence_totals(counters, sorted(honest))
    summary.update(readers_headline(tables))
    summary["security"] = jsonable(_security(scenario, sim, simulator, tables, recorder, honest, end_t, summary))
    summary["topology"] = {"strategy": scenario.topology.strategy, **summary["topology"]}
    result = RunResult(
        scenario=scenario,
        tables=tables,
        summary=summary,
        sim=sim,
        states=recorder.states,
        interrupted=interrupt.requested,
    )
    summary["sim_wall_time_s"] = sim_wall
    # CPU time of this process over the same span (steadier than wall time
    # on a shared machine; it includes the set-up of the servers' keys).
    summary["sim_cpu_time_s"] = sim_cpu
    summary["peak_rss_mb"] = peak_rss_mb()
    # Simulating and measuring; writing the files is not included.
    summary["wall_time_s"] = time.perf_counter() - t_start
    summary["out_dir"] = None
    summary["out_files"] = []
    if out_dir is not None:
        result.save(out_dir, plots=plots)
    return result
