"""The Synapse oracle comes with the repository: pinned, installed by
``tests/oracle/setup.sh``, and the one the differential tests talk to."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ORACLE_DIR = Path(__file__).resolve().parent / "oracle"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([0-9][A-Za-z0-9_.+-]*)$")


def pins() -> dict[str, str]:
    lines = (ORACLE_DIR / "requirements-oracle.txt").read_text().splitlines()
    found = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            match = PIN.match(line.strip())
            assert match, f"not an exact pin: {line!r}"
            found[match.group(1).lower()] = match.group(2)
    return found


def test_every_oracle_requirement_is_pinned():
    assert "matrix-synapse" in pins()


def test_setup_needs_nothing_beside_the_repository():
    script = (ORACLE_DIR / "setup.sh").read_text()
    assert "requirements-oracle.txt" in script and "shared" not in script
    ci = (ORACLE_DIR.parent.parent / ".ci" / "run").read_text()
    assert "tests/oracle/setup.sh" in ci and "../shared" not in ci


@pytest.mark.oracle
def test_the_tests_talk_to_the_pinned_synapse_through_our_wrapper(oracle):
    info = oracle.request({"op": "ping"})
    assert info["synapse_version"].split()[0] == pins()["matrix-synapse"]
    expected = Path(os.environ.get("SIMFED_ORACLE_DIR") or ORACLE_DIR).resolve()
    assert Path(info["oracle_dir"]).resolve() == expected
