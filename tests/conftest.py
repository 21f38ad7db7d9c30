"""Shared pytest fixtures.

Keep this file to fixtures that many test modules share; add new ones as
separate, self-contained sections.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Test helpers (oracle_client, roomgen, strategies) live next to this file.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


# -- Synapse oracle -----------------------------------------------------------


@pytest.fixture(scope="session")
def oracle():
    """The Synapse oracle driver (tests/oracle_client.py), one per session.

    Skips when the oracle venv is missing (create it with
    ``bash tests/oracle/setup.sh``, or set SIMFED_ORACLE_PYTHON to point
    elsewhere), except under CI=true, where a missing oracle is a failure.
    """
    from oracle_client import Oracle, oracle_python

    py = oracle_python()
    if not py.exists():
        msg = (
            f"Synapse oracle not installed: {py} does not exist. Create it with "
            "`bash tests/oracle/setup.sh` or set SIMFED_ORACLE_PYTHON."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    o = Oracle(py)
    try:
        yield o
    finally:
        o.close()
