"""Parameter sweeps: a grid of scenario values times repetitions, run in parallel.

:func:`sweep` is what ``simfed sweep`` and :func:`simfed.sweep` call.

Theory of operation
-------------------
1. **Plan.** The base scenario is resolved once (file, ``--set``
   overrides, ``--seed``). The grid (``{"network.loss": [0, 0.1],
   "servers.count": [10, 50]}``) gives the cartesian product of its
   values, in the order the keys were given: the *grid points*. Every point
   is validated up front, so a bad key or value is refused (exit 2, naming
   the TOML path) before anything runs. Each point runs ``repeat`` times.
2. **Seeds.** Run ``(point, repetition)`` gets the seed

   ``int.from_bytes(sha256(J).digest()[:8], "big") >> 1``  (63 bits)

   where ``J`` is the compact, key-sorted JSON text of
   ``{"base_seed": S, "params": [[key, value], ...] (sorted by key),
   "repetition": r}``, integral floats written as integers (so ``0``
   on the command line and ``0.0`` in Python are the same value). It
   depends only on the base seed, the run's grid values and its
   repetition index: not on the order of ``--grid`` options, the
   executor, the worker or Python's ``hash()`` (randomised per process).
   Every run therefore has its own seed, and the same command gives the
   same seeds anywhere. Grid keys named in ``common_seeds``
   (``--common-seeds``) are left out of ``params``: points differing only
   in them share seeds, for paired comparisons on the same traffic. The run's ID is ``"r"`` and 12 hex
   digits of the same digest (bytes 8-13): stable, so a resumed sweep finds
   its runs whatever order the grid was written in.
3. **Execute.** A run is a pure function of its resolved scenario
   (:func:`execute_run`: build the world from the scenario and seed,
   simulate, measure). It returns its ``summary`` (and, with
   ``keep_tables``, its tables); it never writes files, so remote Dask
   workers need no shared disk. A run that raises comes back as an
   ``"error"`` outcome with the error text; the sweep goes on. Each run is
   one task of the executor. At most twice as many runs as the executor has
   workers are in flight; the rest wait here, so Ctrl-C has little to
   cancel. On Dask the workers are counted again whenever a run finishes
   (and every 2 s), so workers that join a cluster during the sweep get
   runs too.
4. **Record.** This process writes each finished run as it arrives:
   ``DIR/runs/<run_id>/summary.json`` (the run's summary plus a ``sweep``
   block: run_id, point, repetition, params, seed), written to a temporary
   file in the same directory and moved into place with ``os.replace``;
   with ``keep_tables`` its Parquet tables first. A failed run leaves
   ``error.json`` instead. A run is *finished* when its ``summary.json``
   exists and its scenario, seed and params are this run's: a later
   invocation skips it. Failed runs are tried again. Killing the process at
   any moment loses no finished run.
5. **Tables.** At the end (also after Ctrl-C) the ``runs`` table is built
   from the records of every planned run and the ``summary`` table from it,
   and written as ``runs.parquet``, ``sweep_summary.parquet`` and
   ``sweep_summary.csv`` (atomically too). ``DIR/sweep.json`` (the
   manifest: the scenario as resolved, grid, repeat, base seed, seed
   scheme, simfed version) is written before the first run, once the
   executor is up (a refused ``--scheduler`` leaves nothing behind); a
   sweep into a directory whose manifest differs is refused
   (:class:`ManifestMismatch`), except for a larger ``repeat``: seeds do
   not depend on ``repeat``, so ``--repeat 3`` over a sweep of 2 extends
   it, computing only the third repetition, and rewrites the manifest.
   Files get the mode a plain ``open`` gives (0644 under umask 022).

Confidence intervals are Student-t 95% intervals of the mean over the
runs of a grid point where the figure is defined (``n`` counts them: a
state that never converged has no ``state_convergence_ms``; ``n_excluded``
says how many ok runs were left out for that):
``mean ± t(0.975, n-1) · sd / sqrt(n)``, with ``sd`` the sample standard
deviation, clipped to the range of the figure (0 and above for times and
counts, [0, 1] for rates and shares; see :mod:`simfed.experiment.sweep_stats`
for why clipping rather than a bootstrap or logs); ``n = 1`` has no
interval (NaN). The quantiles come from a table
(df 1-30) and the Cornish-Fisher expansion above it (error < 1e-6), so no
SciPy is needed. ``converged_rate`` is the same interval on 0/1 values (a
Wald-type interval: crude for rates near 0 or 1 with few runs).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simfed.experiment.scenario import load_scenario, scenario_to_dict

from simfed.experiment.runner import _progress_wanted
from simfed.experiment.grid import SEED_SCHEME, RunSpec, derive_seed, normalise_grid, parse_grid, parse_grid_item, plan_runs
from simfed.experiment.sweep_stats import (
    HEADLINE_COLUMNS, SUMMARY_METRICS, _isnan, _record, flatten_summary, mean_ci, runs_frame, summarise_runs,
    t_quantile_975,
)
from simfed.experiment.sweep_store import (
    MANIFEST_FILE, RUNS_DIR, RUNS_FILE, SUMMARY_PARQUET, ManifestMismatch, _Store,
)

__all__ = [
    "sweep",
    "load_sweep",
    "SweepResult",
    "RunSpec",
    "ManifestMismatch",
    "parse_grid",
    "parse_grid_item",
    "derive_seed",
    "plan_runs",
    "execute_run",
    "flatten_summary",
    "summarise_runs",
    "mean_ci",
    "t_quantile_975",
    "HEADLINE_COLUMNS",
    "SUMMARY_METRICS",
    "SEED_SCHEME",
]


# --------------------------------------------------------------------------
# One run (in a worker)


@dataclass(frozen=True)
class RunTask:
    """What a worker needs: the scenario as data, the run's labels."""

    run_id: str
    scenario: dict[str, Any]
    name: str
    sweep_info: dict[str, Any]
    keep_tables: bool = False


def execute_run(task: RunTask) -> dict[str, Any]:
    """Run one scenario; never raises for a failing run.

    Returns ``{"run_id", "status": "ok"|"error"|"interrupted", "error",
    "traceback", "wall_time_s", "summary", "tables"}``. Runs in a worker
    process (or thread, or this process); writes nothing.
    """
    from simfed.experiment import runner

    t0 = time.perf_counter()
    out: dict[str, Any] = {"run_id": task.run_id, "status": "ok", "error": None, "traceback": None,
                           "summary": None, "tables": None}
    try:
        scenario = load_scenario(task.scenario)
        result = runner.run_scenario(scenario, out_dir=None, progress=False, name=task.name,
                                     run_id=task.run_id, plots=False)
        if result.interrupted or not result.complete:
            out["status"] = "interrupted"
        else:
            summary = dict(result.summary)
            summary["sweep"] = task.sweep_info
            out["summary"] = summary
            if task.keep_tables:
                out["tables"] = result.tables
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        out.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    out["wall_time_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------
# The result


class SweepResult:
    """The outcome of a sweep.

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per recorded run: run_id, point, repetition, seed, one
        column per grid key, status (``ok``/``error``), error, wall_time_s
        (the run's simulate-and-measure time in its worker, as in its
        ``summary.json``; for a failed run, the time until it failed) and
        the headline figures (:data:`HEADLINE_COLUMNS`, missing for a
        failed run).
    summary : pandas.DataFrame
        One row per grid point: the grid values, runs, ok, errors,
        n_excluded (ok runs whose state never converged, left out of the
        ``state_convergence_ms`` mean), and ``<figure>_n``, ``_mean``,
        ``_ci_low``, ``_ci_high`` (95%, Student t, clipped to the figure's
        range) for each of :data:`SUMMARY_METRICS`.
    grid, repeat, base_seed, manifest
        What was asked for.
    computed, skipped : int
        Runs computed by this call, and runs found finished in ``out_dir``.
    interrupted : bool
        Ctrl-C stopped the sweep; ``runs`` holds what finished.
    out_dir : pathlib.Path or None
        The sweep directory (None: everything stayed in memory).
    run_summaries, tables : dict
        In memory (no ``out_dir``): each run's summary, and with
        ``keep_tables`` its tables, by run_id.
    """

    def __init__(self, *, runs: pd.DataFrame, summary: pd.DataFrame, manifest: dict[str, Any],
                 computed: int = 0, skipped: int = 0, interrupted: bool = False,
                 out_dir: Path | None = None, run_summaries: dict[str, dict[str, Any]] | None = None,
                 tables: dict[str, dict[str, pd.DataFrame]] | None = None, planned: int | None = None,
                 executor: str | None = None, wall_time_s: float | None = None) -> None:
        self.runs = runs
        self.summary = summary
        self.manifest = manifest
        self.computed = computed
        self.skipped = skipped
        self.interrupted = interrupted
        self.out_dir = out_dir
        self.run_summaries = run_summaries or {}
        self.tables = tables or {}
        self.planned = len(runs) if planned is None else planned
        self.executor = executor
        self.wall_time_s = wall_time_s

    @property
    def grid(self) -> dict[str, list[Any]]:
        return self.manifest["grid"]

    @property
    def repeat(self) -> int:
        return int(self.manifest["repeat"])

    @property
    def base_seed(self) -> int:
        return int(self.manifest["base_seed"])

    @property
    def errors(self) -> pd.DataFrame:
        """The runs that raised (run_id, params, error)."""
        return self.runs[self.runs["status"] == "error"]

    @property
    def complete(self) -> bool:
        """Every planned run is recorded and none failed."""
        return len(self.runs) == self.planned and not len(self.errors)

    def run_summary(self, run_id: str) -> dict[str, Any]:
        """One run's ``summary.json`` (from memory or from ``out_dir``)."""
        if run_id in self.run_summaries:
            return self.run_summaries[run_id]
        if self.out_dir is None:
            raise KeyError(run_id)
        return json.loads((self.out_dir / RUNS_DIR / run_id / "summary.json").read_text(encoding="utf-8"))

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> SweepResult:
        """Read a sweep directory written by ``simfed sweep`` or ``sweep(out_dir=...)``."""
        d = Path(out_dir)
        manifest = json.loads((d / MANIFEST_FILE).read_text(encoding="utf-8"))
        runs = pd.read_parquet(d / RUNS_FILE, engine="pyarrow")
        summary = pd.read_parquet(d / SUMMARY_PARQUET, engine="pyarrow")
        planned = int(manifest["repeat"]) * math.prod(len(v) for v in manifest["grid"].values())
        return cls(runs=runs, summary=summary, manifest=manifest, out_dir=d, planned=planned)

    def report(self) -> str:
        """The summary table as text: grid values, runs, and the main means with their 95% intervals.

        Times in ms, s, min or h (the unit chosen by the mean), counts in
        plain digits with thousands separators; never scientific notation.
        Runs whose state never converged are left out of the state
        convergence mean, and the line says how many.
        """
        keys = list(self.grid)
        lines = []
        for r in self.summary.to_dict("records"):
            where = ", ".join(f"{k}={r[k]}" for k in keys) or "(no grid)"
            lines.append(
                f"  {where}: {r['ok']}/{r['runs']} ok; converged {_fmt_rate(r)}; "
                f"p50 {_fmt_ci(r, 'event_convergence_ms_p50', 'ms')}; "
                f"p95 {_fmt_ci(r, 'event_convergence_ms_p95', 'ms')}; "
                f"state {_fmt_ci(r, 'state_convergence_ms', 'ms')}{_fmt_excluded(r)}; "
                f"lost {_fmt_ci(r, 'events_lost', 'count')}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "interrupted" if self.interrupted else f"{len(self.runs)}/{self.planned} runs"
        return f"<SweepResult {state}, {len(self.errors)} errors\n{self.report()}>"

    def _repr_html_(self) -> str:
        return (f"<div><b>SweepResult</b>: {len(self.runs)}/{self.planned} runs, "
                f"{len(self.errors)} errors{' (interrupted)' if self.interrupted else ''}"
                f"{self.summary.to_html(index=False, float_format=lambda x: f'{x:.4g}')}</div>")


def load_sweep(out_dir: str | os.PathLike[str]) -> SweepResult:
    """Read a sweep directory (``runs.parquet``, ``sweep_summary.parquet``, ``sweep.json``)."""
    return SweepResult.load(out_dir)


#: Time units of the printed table: (unit, ms per unit, used from this many ms on).
_TIME_UNITS = (("h", 3_600_000.0, 7_200_000.0), ("min", 60_000.0, 120_000.0), ("s", 1000.0, 1000.0),
               ("ms", 1.0, 0.0))


def _time_unit(ms: float) -> tuple[str, float]:
    """The unit to print a time of ``ms`` milliseconds in (ms, s, min or h)."""
    for unit, scale, start in _TIME_UNITS:
        if abs(ms) >= start:
            return unit, scale
    return "ms", 1.0


def _num(x: float, digits: int) -> str:
    """Plain decimal notation, thousands separated, ``digits`` after the point."""
    return f"{x:,.{digits}f}"


def _fmt_ci(row: Mapping[str, Any], prefix: str, kind: str) -> str:
    """``mean [low, high]`` in readable units: ``kind`` is ``"ms"`` (a time) or ``"count"``."""
    mean, lo, hi = row[f"{prefix}_mean"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    if _isnan(mean):
        return "-"
    if kind == "ms":
        unit, scale = _time_unit(mean)
        digits = 0 if unit == "ms" or mean / scale >= 100 else 1
        suffix = f" {unit}"
    else:
        scale, suffix = 1.0, ""
        digits = 0 if (abs(mean) >= 100 or float(mean).is_integer()) else 1
    text = _num(mean / scale, digits)
    if not _isnan(lo):
        text += f" [{_num(lo / scale, digits)}, {_num(hi / scale, digits)}]"
    return text + suffix


def _fmt_excluded(row: Mapping[str, Any]) -> str:
    k = int(row.get("n_excluded", 0) or 0)
    return f" ({k} of {row['ok']} runs excluded: state never converged)" if k else ""


def _fmt_rate(row: Mapping[str, Any]) -> str:
    mean = row["converged_rate_mean"]
    return "-" if _isnan(mean) else f"{100 * mean:.0f}%"


# --------------------------------------------------------------------------
# The sweep


class _Bar:
    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="run", desc="sweep", file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, errors: int) -> None:
        if self.bar is not None:
            if errors:
                self.bar.set_postfix_str(f"{errors} errors", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _simfed_version() -> str:
    from simfed import __version__

    return __version__


def sweep(
    scenario_or_path: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    repeat: int = 1,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    keep_tables: bool = False,
    seed: int | None = None,
    set: Iterable[str] | str | None = None,  # noqa: A002 - the CLI's --set
    start_method: str = "spawn",
    common_seeds: Sequence[str] = (),
    **overrides: Any,
) -> SweepResult:
    """Run every point of ``grid`` ``repeat`` times and tabulate the headline figures.

    Parameters
    ----------
    scenario_or_path:
        A ``Scenario``, a dict, a path to a TOML file, or TOML text.
    grid:
        ``{"network.loss": [0, 0.1, 0.3], "servers.count": [10, 50]}``:
        dotted scenario keys (``network__loss`` also accepted) to lists of
        values. The sweep runs the cartesian product.
    repeat:
        Runs per grid point, each with its own derived seed (see the module
        docstring for the scheme).
    workers:
        Local worker processes (default: one per CPU; ``0``: run in this
        process, one at a time).
    scheduler:
        ``"tcp://host:8786"``: a running Dask cluster; ``"local:N"``: start
        a Dask ``LocalCluster`` with N single-threaded worker processes.
    executor:
        Your own ``concurrent.futures.Executor`` or ``dask.distributed.Client``
        (not shut down by the sweep).
    out_dir:
        The sweep directory (manifest, per-run ``summary.json``, Parquet
        tables); resumable. ``None`` keeps everything in memory.
    progress:
        One progress bar over runs on stderr (default: when stderr is a terminal).
    keep_tables:
        Also keep each run's tables (Parquet files per run, or
        ``result.tables`` in memory).
    seed, set, **overrides:
        Applied to the base scenario, as for :func:`simfed.run`; ``seed``
        is the base seed the runs' seeds derive from.
    start_method:
        ``"spawn"`` (default) or ``"forkserver"`` for the local process pool.
    common_seeds:
        Grid keys left out of the seed derivation, so that grid points which
        differ only in them run with the same seeds (a paired comparison,
        e.g. ``("topology.strategy",)``: every strategy sees the same traffic).

    Raises
    ------
    ScenarioError
        A bad scenario, grid key or value (before anything runs).
    ManifestMismatch
        ``out_dir`` holds a different sweep.

    Ctrl-C stops the sweep: what finished is kept and tabulated, and the
    result says ``interrupted``; the same call resumes it.

    Examples
    --------
    >>> res = simfed.sweep("scenarios/baseline.toml", {"network.loss": [0, 0.1]}, repeat=5,
    ...                    servers__count=4)                                   # doctest: +SKIP
    >>> res.summary[["network.loss", "event_convergence_ms_p50_mean"]]         # doctest: +SKIP
    """
    from simfed.api import _is_path, resolve_scenario
    from simfed.experiment.executors import open_executor

    t_start = time.perf_counter()
    base = resolve_scenario(scenario_or_path, set=set, seed=seed, **overrides)
    grid = normalise_grid(grid)
    specs = plan_runs(base, grid, repeat, common_seeds)
    name = "sweep"
    source = None
    if isinstance(scenario_or_path, (str, os.PathLike)) and _is_path(scenario_or_path):
        name, source = Path(scenario_or_path).stem, str(scenario_or_path)
    manifest = {
        "simfed_version": _simfed_version(),
        "scenario": scenario_to_dict(base),
        "source": source,
        "grid": grid,
        "repeat": repeat,
        "base_seed": int(base.simulation.seed),
        "seed_scheme": SEED_SCHEME,
        "common_seeds": sorted(k.replace("__", ".") for k in common_seeds),
        "runs": len(specs),
    }
    store = _Store(Path(out_dir)) if out_dir is not None else None
    new_manifest = store.check_manifest(manifest) if store is not None else False

    records: dict[str, dict[str, Any]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    todo = []
    for spec in specs:
        s = store.finished(spec) if store is not None else None
        if s is not None:
            records[spec.run_id] = _record(spec, "ok", None, s.get("wall_time_s"), s)
        else:
            todo.append(spec)
            e = store.failed(spec) if store is not None else None
            if e is not None:  # shown until recomputed
                records[spec.run_id] = _record(spec, "error", e.get("error"), e.get("wall_time_s"), None)
    skipped = len(specs) - len(todo)
    computed = 0
    interrupted = False
    description = None
    broken: BaseException | None = None
    errors = sum(r["status"] == "error" for r in records.values())

    def handle(spec: RunSpec, outcome: dict[str, Any] | None, exc: BaseException | None) -> None:
        nonlocal computed, errors, interrupted
        if exc is not None:  # the executor failed, not the run (worker died, pickling, ...)
            outcome = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": None,
                       "wall_time_s": None}
        assert outcome is not None
        if outcome["status"] == "interrupted":
            interrupted = True
            return
        computed += 1
        if outcome["status"] == "ok":
            summary = outcome["summary"]
            if store is not None:
                store.write_ok(spec, summary, outcome.get("tables"))
            else:
                summaries[spec.run_id] = summary
                if outcome.get("tables") is not None:
                    tables[spec.run_id] = outcome["tables"]
            records[spec.run_id] = _record(spec, "ok", None, outcome["wall_time_s"], summary)
        else:
            errors += 1
            if store is not None:
                store.write_error(spec, outcome)
            records[spec.run_id] = _record(spec, "error", outcome["error"], outcome["wall_time_s"], None)

    if todo:
        # Repetition-major: early results (and an interrupted sweep) cover every point.
        queue = sorted(todo, key=lambda s: (s.repetition, s.point))
        # The executor first: a refused --scheduler leaves no directory behind.
        ex = open_executor(workers=workers, scheduler=scheduler, executor=executor,
                           start_method=start_method, max_runs=len(todo))
        if new_manifest:
            assert store is not None
            try:
                store.write_manifest(manifest)
            except BaseException:
                ex.close(cancel=True)
                raise
        bar = _Bar(len(specs), skipped, _progress_wanted(progress))
        description = ex.description
        pending: dict[cf.Future, RunSpec] = {}
        cancel = False
        try:
            it = iter(queue)
            while True:
                limit = 2 * ex.current_slots()  # a Dask cluster's workers may join during the sweep
                while len(pending) < limit and not interrupted and broken is None:
                    spec = next(it, None)
                    if spec is None:
                        break
                    task = RunTask(spec.run_id, spec.scenario, name, {
                        "run_id": spec.run_id, "point": spec.point, "repetition": spec.repetition,
                        "params": spec.params, "base_seed": int(base.simulation.seed), "seed": spec.seed,
                        "seed_scheme": SEED_SCHEME,
                    }, keep_tables)
                    try:
                        pending[ex.executor.submit(execute_run, task)] = spec
                    except (cf.BrokenExecutor, RuntimeError) as exc:  # a dead pool, a closed client
                        broken = exc
                        break
                if not pending:
                    break
                # The timeout only lets workers that joined meanwhile get runs (see current_slots).
                done, _ = cf.wait(list(pending), timeout=2.0, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    spec = pending.pop(fut)
                    exc = fut.exception()
                    handle(spec, None if exc else fut.result(), exc)
                    bar.update(errors)
                if interrupted:
                    cancel = True
                    break
        except KeyboardInterrupt:
            interrupted = cancel = True
        finally:
            if cancel:
                # Keep what finished meanwhile; drop the rest.
                for fut, spec in list(pending.items()):
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        try:
                            handle(spec, fut.result(), None)
                        except KeyboardInterrupt:
                            break
                    else:
                        fut.cancel()
            bar.close()
            ex.close(cancel=cancel)

    elif new_manifest:
        assert store is not None
        store.write_manifest(manifest)

    runs = runs_frame(specs, grid, records)
    summary = summarise_runs(runs, list(grid))
    if store is not None:
        store.write_tables(runs, summary)
    result = SweepResult(
        runs=runs, summary=summary, manifest=manifest, computed=computed, skipped=skipped,
        interrupted=interrupted, out_dir=store.root if store is not None else None,
        run_summaries=summaries, tables=tables, planned=len(specs), executor=description,
        wall_time_s=time.perf_counter() - t_start,
    )
    if broken is not None and not interrupted:
        from simfed.experiment.executors import ExecutorError

        from simfed.experiment.executors import SCRIPT_GUARD_HINT

        missing = len(specs) - len(runs)
        hint = ""
        if isinstance(broken, cf.BrokenExecutor) and "local processes" in (description or ""):
            hint = f" (a worker process died; if it failed to start: {SCRIPT_GUARD_HINT})"
        err = ExecutorError(
            f"the executor ({description}) stopped working: {type(broken).__name__}: {broken}{hint}; "
            f"{missing} runs were not run" + (f"; run the same command to resume into {out_dir}" if store else "")
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result
