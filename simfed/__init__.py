"""simfed: a discrete-event simulator of Matrix federation.

What a researcher touches, importable from here (loaded on first use):

- ``simfed.run(scenario_or_path, **overrides)``: run an experiment and get
  its tables, summary and plots (a ``RunResult``);
- ``simfed.simulate(scenario_or_path, **overrides)``: the simulation alone
  (a ``SimResult``);
- ``simfed.sweep(scenario, grid={...}, repeat=N)``: many runs, in parallel
  (a ``SweepResult`` with ``.runs`` and ``.summary``);
- ``simfed.load_scenario(path_or_toml_or_dict)`` and ``simfed.Scenario``.

``simfed.protocol`` holds the Matrix logic (events, auth, state resolution).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version
from typing import Any

try:
    __version__ = _version("simfed")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

_LAZY = {
    "run": ("simfed.api", "run"),
    "load_results": ("simfed.api", "load_results"),
    "RunResult": ("simfed.experiment.results", "RunResult"),
    "simulate": ("simfed.api", "simulate"),
    "sweep": ("simfed.experiment.sweep", "sweep"),
    "load_sweep": ("simfed.experiment.sweep", "load_sweep"),
    "SweepResult": ("simfed.experiment.sweep", "SweepResult"),
    "load_scenario": ("simfed.experiment.scenario", "load_scenario"),
    "Scenario": ("simfed.config", "Scenario"),
    "ScenarioError": ("simfed.experiment.scenario", "ScenarioError"),
    "SimfedError": ("simfed.errors", "SimfedError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'simfed' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value
