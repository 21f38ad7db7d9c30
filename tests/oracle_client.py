"""Client for tests/oracle_driver.py: the Synapse oracle in a long-lived process.

>>> with Oracle() as o:                       # doctest: +SKIP
...     o.eventid([pdu], room_version="11")[0]["event_id"]

Every batch method takes a list of cases and returns a list of results in
the same order; a case the oracle could not handle gives ``{"error": ...}``
in its slot (use :func:`check` to turn that into an exception).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "oracle_driver.py"


def oracle_python() -> Path:
    """The oracle venv's interpreter: ``$SIMFED_ORACLE_PYTHON`` or ``<repo>/.oracle-venv``."""
    env = os.environ.get("SIMFED_ORACLE_PYTHON")
    return Path(env) if env else REPO / ".oracle-venv" / "bin" / "python"


class OracleError(RuntimeError):
    pass


def check(result: Any) -> Any:
    if isinstance(result, dict) and "error" in result and set(result) <= {"error", "traceback"}:
        raise OracleError(result["error"])
    return result


class Oracle:
    """A running oracle driver. Not thread-safe across concurrent calls (locked)."""

    def __init__(self, python: str | os.PathLike | None = None, *, timeout: float = 600.0) -> None:
        self.python = Path(python) if python else oracle_python()
        if not self.python.exists():
            raise FileNotFoundError(f"oracle python not found: {self.python}")
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [str(self.python), str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if not os.environ.get("SIMFED_ORACLE_STDERR") else None,
            text=True,
            encoding="utf-8",
            bufsize=1,
            cwd=str(REPO),
        )
        info = self.request({"op": "ping"})
        if "error" in info:
            self.close()
            raise OracleError(f"oracle driver did not start: {info['error']}")
        self.synapse_version: str = info["synapse_version"]

    # -- plumbing ---------------------------------------------------------

    def request(self, req: Mapping[str, Any]) -> dict:
        line = json.dumps(req, ensure_ascii=False)
        with self._lock:
            if self._proc.poll() is not None:
                raise OracleError(f"oracle driver exited with code {self._proc.returncode}")
            assert self._proc.stdin and self._proc.stdout
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            resp = self._proc.stdout.readline()
        if not resp:
            raise OracleError("oracle driver closed its output (crashed?)")
        return json.loads(resp)

    def _batch(self, op: str, cases: Sequence[Any], room_version: str = "11", **extra: Any) -> list:
        resp = self.request({"op": op, "room_version": room_version, "cases": list(cases), **extra})
        if "results" not in resp:
            raise OracleError(resp.get("error", repr(resp)))
        return resp["results"]

    def close(self) -> None:
        p = self._proc
        if p.poll() is None:
            try:
                assert p.stdin
                p.stdin.close()
                p.wait(timeout=10)
            except Exception:  # noqa: BLE001
                p.kill()
                p.wait()

    def __enter__(self) -> "Oracle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- ops --------------------------------------------------------------

    def eventid(self, pdus: Sequence[dict], room_version: str = "11") -> list[dict]:
        return self._batch("eventid", pdus, room_version)

    def redact(self, pdus: Sequence[dict], room_version: str = "11") -> list[dict]:
        return self._batch("redact", pdus, room_version)

    def sign(self, pdus: Sequence[dict], server_name: str, key_seed: str,
             room_version: str = "11", key_id: str = "ed25519:1") -> list[dict]:
        cases = [{"event": p, "server_name": server_name, "key_seed": key_seed, "key_id": key_id} for p in pdus]
        return self._batch("sign", cases, room_version)

    def sign_json(self, objs: Sequence[dict], server_name: str, key_seed: str,
                  key_id: str = "ed25519:1") -> list[dict]:
        cases = [{"json": o, "server_name": server_name, "key_seed": key_seed, "key_id": key_id} for o in objs]
        return self._batch("sign_json", cases)

    def pubkey(self, key_seed: str, key_id: str = "ed25519:1") -> str:
        return check(self._batch("pubkey", [{"key_seed": key_seed, "key_id": key_id}])[0])["public_key"]

    def verify(self, cases: Sequence[Mapping[str, Any]], room_version: str = "11") -> list[dict]:
        """cases: ``{"event", "server_name", "public_key", "key_id"?}``."""
        return self._batch("verify", cases, room_version)

    def receive(self, cases: Sequence[Mapping[str, Any]], room_version: str = "11") -> list[dict]:
        """Synapse's receive-side checks; cases: ``{"event", "keys": {server: {key_id: b64}}}``."""
        return self._batch("receive", cases, room_version)

    def canonical(self, values: Sequence[Any]) -> list[dict]:
        """``{"bytes": canonical JSON text or None, "valid": bool}`` per value."""
        return self._batch("canonical", values)

    def authcheck(self, rooms: Sequence[Sequence[dict]], room_version: str = "11", *,
                  skip_validate: bool = False) -> list[list[dict]]:
        """One result list per room; each room is a list of PDUs (with
        ``event_id``, optional ``state_before``) in processing order."""
        return self._batch("authcheck", [list(r) for r in rooms], room_version, skip_validate=skip_validate)

    def resolve(self, events: Iterable[dict], state_sets_list: Sequence[Sequence[Iterable[str]]],
                room_version: str = "11", *, rejected: Mapping[str, str] | None = None,
                mode: str = "persisted") -> list[dict]:
        """Resolve several cases over one event set; each case is a list of
        state sets (iterables of event IDs). Returns per case
        ``{"resolved": [[type, state_key, id], ...]}`` or ``{"error"}``."""
        cases = [{"state_sets": [sorted(s) for s in sets]} for sets in state_sets_list]
        return self._batch("resolve", cases, room_version, events=list(events),
                           rejected=dict(rejected or {}), mode=mode)


def resolved_map(result: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """``{(type, state_key): event_id}`` from a resolve result."""
    return {(t, sk): eid for t, sk, eid in check(result)["resolved"]}
