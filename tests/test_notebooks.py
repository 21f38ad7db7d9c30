"""The notebooks in notebooks/ run top to bottom, and are committed without outputs.

Each notebook is executed with nbclient in a fresh ``python3`` kernel, with
``SIMFED_NOTEBOOK_SCALE=tiny`` (every notebook shrinks its scenario or sweep
then) and the notebooks/ folder as working directory, as Jupyter would use.
A failing cell fails the test with the cell's source and the traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError, CellTimeoutError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = [
    "01-quickstart",
    "02-partition-and-heal",
    "03-compare-state-resolution",
    "04-sweep-loss-and-latency",
    "05-topologies",
    "06-presence-and-services",
    "07-processing-costs",
    "08-forward-extremities",
    "09-room-size",
    "10-adversaries",
]
CELL_TIMEOUT_S = 120
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        f"cell {i}: {len(cell.get('outputs', []))} output(s), execution_count {cell.get('execution_count')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name} has outputs; clear them before committing "
        f"(jupyter nbconvert --clear-output --inplace {path.relative_to(NOTEBOOK_DIR.parent)}):\n"
        + "\n".join(dirty)
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_tiny_mode(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIMFED_NOTEBOOK_SCALE", "tiny")  # inherited by the kernel
    nb = nbformat.read(path, as_version=4)
    current: dict[str, int] = {}

    def on_cell_execute(cell, cell_index):
        current["index"] = cell_index

    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        on_cell_execute=on_cell_execute,
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        index = current.get("index", -1)
        source = nb.cells[index].source if index >= 0 else "?"
        what = f"timed out after {CELL_TIMEOUT_S} s" if isinstance(exc, CellTimeoutError) else "raised"
        pytest.fail(
            f"{path.name}: cell {index} {what}\n"
            f"---- source ----\n{source}\n"
            f"---- error ----\n{ANSI.sub('', str(exc))}",
            pytrace=False,
        )
    # The kernel saw the tiny scale (each notebook prints it in its first code cell).
    first = next(c for c in nb.cells if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in first.outputs if o.output_type == "stream")
    assert "scale: tiny" in printed, printed


def test_every_notebook_reads_the_scale_variable():
    for path in NOTEBOOKS:
        text = path.read_text(encoding="utf-8")
        assert "SIMFED_NOTEBOOK_SCALE" in text, path.name
