"""Check that two results directories hold identical tables.

For a behaviour-preserving change: run the same scenario before and after
(``simfed run SCENARIO --no-plots --out DIR``) and compare every Parquet table
(events, deliveries, state, traffic, ...) exactly, and ``summary.json`` without
its wall-clock keys. Exits 1 naming the first difference.

    python benchmarks/same_results.py results/before results/after
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from simfed.experiment.results import WALL_CLOCK_KEYS


def differences(a: Path, b: Path) -> list[str]:
    """What differs between results directories ``a`` and ``b``."""
    out: list[str] = []
    ta = sorted(p.name for p in a.glob("*.parquet"))
    tb = sorted(p.name for p in b.glob("*.parquet"))
    if ta != tb:
        out.append(f"tables differ: {ta} vs {tb}")
    for name in sorted(set(ta) & set(tb)):
        da, db = pd.read_parquet(a / name), pd.read_parquet(b / name)
        try:
            pd.testing.assert_frame_equal(da, db, check_exact=True)
        except AssertionError as e:
            out.append(f"{name}: {str(e).splitlines()[0]} ({len(da)} vs {len(db)} rows)")
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for k in sorted(set(sa) | set(sb)):
        if k not in WALL_CLOCK_KEYS and sa.get(k) != sb.get(k):
            out.append(f"summary.json {k}: {sa.get(k)!r} vs {sb.get(k)!r}")
    return out


def main() -> None:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    diffs = differences(a, b)
    for d in diffs:
        print(d)
    n = len(list(a.glob("*.parquet")))
    print(f"{'DIFFERENT' if diffs else 'identical'}: {n} tables and summary.json of {a} and {b}")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
