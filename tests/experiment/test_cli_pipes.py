"""Every ``simfed`` command that prints copes with a reader that went away
(``simfed schema | head -1``): exit 141, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simfed.exitcodes import EXIT_BROKEN_PIPE
from test_runner import TINY

DATA = Path(__file__).resolve().parents[1] / "data"


def run_into_closed_pipe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m simfed ARGS`` with stdout a pipe whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "simfed", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=cwd, check=False)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", ["schema", "validate", "resolve", "run", "sweep"])
def test_closed_stdout_ends_quietly(command, tmp_path):
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    args = {
        "schema": ["schema"],
        "validate": ["validate", str(scenario)],
        "resolve": ["resolve", str(DATA / "worked_example.jsonl")],
        "run": ["run", str(scenario), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
        "sweep": ["sweep", str(scenario), "--grid", "network.loss=0,0.1", "--out", str(tmp_path / "sweep"),
                  "--workers", "0"],
    }[command]
    proc = run_into_closed_pipe(*args, cwd=tmp_path)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr


def test_head_reads_the_first_line_of_the_schema(tmp_path):
    """The shell case from the issue, through a real ``head``."""
    simfed = f"{sys.executable} -m simfed"
    proc = subprocess.run(["sh", "-c", f"{simfed} schema | head -1"], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0 and proc.stdout == "{\n"
    assert proc.stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch):
    import simfed.cli

    def breaks(args):
        raise BrokenPipeError("a worker's pipe")

    monkeypatch.setattr(simfed.cli, "_dispatch", breaks)
    with pytest.raises(BrokenPipeError):
        simfed.cli.main(["schema"])
