"""The functions a researcher calls from Python or a notebook.

Re-exported by :mod:`simfed`::

    import simfed
    res = simfed.run("scenarios/baseline.toml", network__loss=0.1, servers__count=20)
    res                        # headline figures (an HTML table in a notebook)
    res.deliveries.head()      # the tables, as pandas DataFrames
    res.plot_convergence_cdf()

This module imports nothing heavy at import time (no pandas, SimPy or
pydantic), so ``import simfed`` and ``simfed --help`` stay fast.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from simfed.config import Scenario
    from simfed.experiment.results import RunResult

__all__ = ["run", "simulate", "load_scenario", "load_results", "resolve_scenario"]


def _toml_value(value: Any, key: str) -> str:
    """A Python value as a TOML value (for ``dotted.key=value`` overrides)."""
    from simfed.experiment.scenario import ScenarioError

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ScenarioError(f"{value!r} is not a finite number", path=key, value=value)
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        return json.dumps(os.fspath(value))  # JSON strings are TOML basic strings
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v, key)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    if hasattr(value, "model_dump"):  # a config model, e.g. ConstantLatency(delay_ms=80)
        return _toml_value(value.model_dump(mode="json", by_alias=True), key)
    raise ScenarioError(
        f"{value!r} ({type(value).__name__}) cannot be a scenario value "
        "(expected a number, string, bool, list or dict)",
        path=key,
        value=value,
    )


def _override_strings(overrides: Mapping[str, Any], set: Iterable[str] | str | None) -> list[str]:  # noqa: A002
    out: list[str] = []
    if set is not None:
        out.extend([set] if isinstance(set, str) else list(set))
    for key, value in overrides.items():
        dotted = key.replace("__", ".")
        out.append(f"{dotted}={_toml_value(value, dotted)}")
    return out


def resolve_scenario(
    scenario_or_path: Scenario | Mapping[str, Any] | str | os.PathLike[str],
    *,
    set: Iterable[str] | str | None = None,  # noqa: A002 - the CLI's --set
    seed: int | None = None,
    **overrides: Any,
) -> Scenario:
    """A validated :class:`~simfed.config.Scenario` from any accepted form, overrides applied.

    ``scenario_or_path`` is a ``Scenario``, a dict, a path to a TOML file
    or TOML text. ``set`` holds ``"dotted.key=value"`` strings (as for
    ``simfed run --set``); each keyword override names a key with ``__``
    for the dots (``network__loss=0.1``) and takes a Python value. ``seed``
    is short for ``simulation__seed``. ``set`` is applied first.

    Raises :class:`~simfed.experiment.scenario.ScenarioError` (one line per
    problem) for anything invalid.
    """
    from simfed.config import Scenario
    from simfed.experiment.scenario import load_scenario as _load, scenario_to_dict

    if seed is not None:
        overrides = {**overrides, "simulation__seed": seed}
    items = _override_strings(overrides, set)
    if isinstance(scenario_or_path, Scenario):
        if not items:
            return scenario_or_path
        return _load(scenario_to_dict(scenario_or_path), overrides=items)
    return _load(scenario_or_path, overrides=items)


def run(
    scenario_or_path: Scenario | Mapping[str, Any] | str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    set: Iterable[str] | str | None = None,  # noqa: A002 - the CLI's --set
    seed: int | None = None,
    plots: bool = True,
    should_stop: Callable[[], bool] | None = None,
    **overrides: Any,
) -> RunResult:
    """Run a scenario and return its :class:`~simfed.experiment.results.RunResult`.

    Parameters
    ----------
    scenario_or_path:
        A ``Scenario``, a dict, a path to a TOML scenario file, or TOML text.
    out_dir:
        Write the Parquet tables, plots and ``summary.json`` there
        (default: write nothing; ``result.save(dir)`` can do it later).
    progress:
        Progress bar in simulated time: default when stderr is a terminal.
    set:
        ``"dotted.key=value"`` overrides, as for ``simfed run --set``.
    seed:
        Short for ``simulation__seed=...``.
    plots:
        With ``out_dir``, also write the PNG plots (default true).
    should_stop:
        Polled during the run; true stops it early (``complete`` false).
    **overrides:
        Scenario keys with ``__`` for dots, e.g. ``network__loss=0.1``,
        ``servers__count=20``, ``simulation__duration="2m"``.

    Ctrl-C stops the run at the simulator's next check and returns what was
    collected (``result.complete`` false, ``result.interrupted`` true).

    Examples
    --------
    >>> res = simfed.run("scenarios/baseline.toml", servers__count=4,
    ...                  simulation__duration="60s", workload__stop="40s")  # doctest: +SKIP
    >>> res.summary["converged"]                                             # doctest: +SKIP
    True
    """
    from simfed.experiment.runner import run_scenario

    scenario = resolve_scenario(scenario_or_path, set=set, seed=seed, **overrides)
    name = None
    if isinstance(scenario_or_path, (str, os.PathLike)) and _is_path(scenario_or_path):
        name = Path(scenario_or_path).stem
    return run_scenario(
        scenario,
        out_dir=None if out_dir is None else Path(out_dir),
        progress=progress,
        name=name,
        plots=plots,
        should_stop=should_stop,
    )


def _is_path(source: str | os.PathLike[str]) -> bool:
    if not isinstance(source, str):
        return True
    return "\n" not in source and ("=" not in source or os.path.exists(source))


def simulate(
    scenario_or_path: Scenario | Mapping[str, Any] | str | os.PathLike[str],
    *,
    set: Iterable[str] | str | None = None,  # noqa: A002 - the CLI's --set
    seed: int | None = None,
    recorder: Any = None,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **overrides: Any,
) -> Any:
    """The bare simulator (``simfed.sim.world.simulate``): a ``SimResult``, no tables or files.

    Takes the scenario in any form :func:`run` takes (a ``Scenario``, a dict,
    a path to a TOML file or TOML text) with the same ``set``, ``seed`` and
    ``**overrides``; ``recorder``, ``progress`` and ``should_stop`` go to the
    simulator unchanged.

    >>> res = simfed.simulate("scenarios/baseline.toml", servers__count=4)  # doctest: +SKIP
    >>> res.completed                                                        # doctest: +SKIP
    True
    """
    from simfed.sim.world import simulate as _simulate

    scenario = resolve_scenario(scenario_or_path, set=set, seed=seed, **overrides)
    return _simulate(scenario, recorder=recorder, progress=progress, should_stop=should_stop)


def load_scenario(source: Any, *, overrides: Iterable[str] = ()) -> Scenario:
    """Read and validate a scenario (see :func:`simfed.experiment.scenario.load_scenario`)."""
    from simfed.experiment.scenario import load_scenario as _load

    return _load(source, overrides=tuple(overrides))


def load_results(out_dir: str | os.PathLike[str]) -> RunResult:
    """Read a results directory written by ``simfed run`` or ``run(out_dir=...)``."""
    from simfed.experiment.results import RunResult

    return RunResult.load(out_dir)
