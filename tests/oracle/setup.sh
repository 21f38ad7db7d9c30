#!/usr/bin/env bash
# Installs the reference homeserver (Synapse, pinned in requirements-oracle.txt)
# into its own virtual environment and prints that environment's python.
#
#   bash tests/oracle/setup.sh                  # -> <repo>/.oracle-venv/bin/python
#   ORACLE_VENV=/elsewhere bash tests/oracle/setup.sh
#
# The tests find <repo>/.oracle-venv by themselves (or $SIMFED_ORACLE_PYTHON).
# Re-running is cheap: an environment that already imports synapse is kept.
# Installing needs network access to PyPI (about half a minute).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${ORACLE_VENV:-$repo/.oracle-venv}"
python="${PYTHON:-python3}"
if ! "$venv/bin/python" -c "import synapse" >/dev/null 2>&1; then
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$here/requirements-oracle.txt" >&2
fi
"$venv/bin/python" -c "import synapse" >&2
echo "$venv/bin/python"
