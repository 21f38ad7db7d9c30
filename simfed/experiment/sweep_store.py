"""The files of a sweep directory: atomic writes, the per-run store and the
manifest that says which sweep a directory holds.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from simfed.experiment.grid import RunSpec, _canonical, _key

from simfed.errors import SimfedError

MANIFEST_FILE = "sweep.json"
RUNS_FILE = "runs.parquet"
SUMMARY_PARQUET = "sweep_summary.parquet"
SUMMARY_CSV = "sweep_summary.csv"
RUNS_DIR = "runs"
ERROR_FILE = "error.json"


class ManifestMismatch(SimfedError, ValueError):
    """``DIR/sweep.json`` describes another sweep than the one asked for."""


# --------------------------------------------------------------------------
# Files


def _file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then move it into place.

    ``mkstemp`` makes the file private (0600); it gets the mode a plain
    ``open`` would give (0644 under the usual umask), like a run's files.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, data: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    _atomic_write(path, write)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class _Store:
    """A sweep directory: manifest, one folder per run, the tables."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dir(self, run_id: str) -> Path:
        return self.root / RUNS_DIR / run_id

    def check_manifest(self, manifest: dict[str, Any]) -> bool:
        """Whether ``manifest`` may use this directory; raises :class:`ManifestMismatch` if not.

        Writes nothing (see :meth:`write_manifest`). True when the manifest
        must be (re)written: a new sweep, or more repetitions of the sweep
        there (``--repeat 3`` over 2 extends it; seeds do not depend on
        ``repeat``, so the runs already there are the first ones of the
        new plan).
        """
        path = self.root / MANIFEST_FILE
        old = _read_json(path) if path.exists() else None
        if path.exists() and not isinstance(old, dict):
            raise ManifestMismatch(f"{path}: unreadable sweep manifest; use another --out directory")
        if old is None:
            if self.root.is_dir() and any(self.root.iterdir()):
                raise ManifestMismatch(
                    f"{self.root}: not empty and not a sweep directory (no {MANIFEST_FILE}); "
                    "choose a new or empty --out directory"
                )
            return True
        differ = [k for k in _MANIFEST_KEYS if _manifest_value(old, k) != _manifest_value(manifest, k)]
        if differ == ["repeat"] and isinstance(old.get("repeat"), int) and manifest["repeat"] > old["repeat"]:
            return True
        if differ:
            fewer = ("; fewer repetitions than there: load the sweep and select repetitions instead"
                     if differ == ["repeat"] else "")
            raise ManifestMismatch(
                f"{path}: this directory holds another sweep ({', '.join(differ)} differ"
                f"{_manifest_hint(old, manifest, differ)}{fewer}); resume or extend (a larger --repeat) only "
                f"with the same scenario, grid, seed and simfed version, or choose another --out directory"
            )
        return False

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Create the directory and write ``sweep.json``."""
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(self.root / MANIFEST_FILE, manifest)

    def finished(self, spec: RunSpec) -> dict[str, Any] | None:
        """The run's summary if it finished with this run's parameters, else None."""
        s = _read_json(self.run_dir(spec.run_id) / "summary.json")
        if not isinstance(s, dict):
            return None
        info = s.get("sweep") or {}
        if (info.get("seed") != spec.seed or info.get("params") != spec.params
                or s.get("scenario") != spec.scenario or not s.get("complete")):
            return None
        return s

    def failed(self, spec: RunSpec) -> dict[str, Any] | None:
        e = _read_json(self.run_dir(spec.run_id) / ERROR_FILE)
        return e if isinstance(e, dict) and e.get("seed") == spec.seed else None

    def write_ok(self, spec: RunSpec, summary: dict[str, Any], tables: Mapping[str, pd.DataFrame] | None) -> None:
        d = self.run_dir(spec.run_id)
        d.mkdir(parents=True, exist_ok=True)
        files = []
        for name, df in (tables or {}).items():
            p = d / f"{name}.parquet"
            _atomic_write(p, lambda tmp, df=df: df.to_parquet(tmp, engine="pyarrow", index=False))
            files.append(p.name)
        summary["out_dir"] = str(d)
        summary["out_files"] = [*files, "summary.json"]
        _write_json(d / "summary.json", summary)  # last: its presence means finished
        (d / ERROR_FILE).unlink(missing_ok=True)

    def write_error(self, spec: RunSpec, outcome: Mapping[str, Any]) -> None:
        d = self.run_dir(spec.run_id)
        d.mkdir(parents=True, exist_ok=True)
        _write_json(d / ERROR_FILE, {
            "run_id": spec.run_id, "point": spec.point, "repetition": spec.repetition, "seed": spec.seed,
            "params": spec.params, "error": outcome.get("error"), "traceback": outcome.get("traceback"),
            "wall_time_s": outcome.get("wall_time_s"),
        })

    def write_tables(self, runs: pd.DataFrame, summary: pd.DataFrame) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / RUNS_FILE, lambda tmp: runs.to_parquet(tmp, engine="pyarrow", index=False))
        _atomic_write(self.root / SUMMARY_PARQUET,
                      lambda tmp: summary.to_parquet(tmp, engine="pyarrow", index=False))
        _atomic_write(self.root / SUMMARY_CSV, lambda tmp: summary.to_csv(tmp, index=False))


_MANIFEST_KEYS = ("scenario", "grid", "repeat", "base_seed", "seed_scheme", "common_seeds", "simfed_version")


def _manifest_value(m: Mapping[str, Any], key: str) -> Any:
    v = m.get(key)
    if key == "common_seeds":
        return sorted(v or [])
    if key == "grid" and isinstance(v, Mapping):  # the order of keys and values does not matter
        return {k: sorted(_key(x) for x in vals) for k, vals in v.items()}
    return v


def _manifest_hint(old: Mapping[str, Any], new: Mapping[str, Any], differ: Sequence[str]) -> str:
    hints = []
    for k in differ:
        if k in ("repeat", "base_seed", "simfed_version"):
            hints.append(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now")
        elif k == "grid":
            hints.append(f"grid: {_canonical(old.get(k))} there, {_canonical(new.get(k))} now")
        elif k == "scenario":
            diff = _first_difference(old.get(k), new.get(k))
            if diff:
                hints.append(f"scenario: {diff}")
    return ": " + "; ".join(hints) if hints else ""


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    if a != b:
        return f"{path} = {_canonical(a)} there, {_canonical(b)} now"
    return None
