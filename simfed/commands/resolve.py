"""``simfed resolve``: authorise a room's PDUs and resolve its state offline."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..exitcodes import EXIT_INVALID
from ..protocol import (
    Event,
    RoomInputError,
    VerifyKey,
    available_algorithms,
    check_event,
    get_room_version,
    process_room,
)

HELP = """Read the PDUs of one room (Matrix federation format, a JSON array or
JSON Lines, any order, with or without event_id fields), authorise each event
against its auth events and the state before it, compute the state after
every event, and print the state resolved at --at events (default: the
forward extremities) as JSON:
{"state": {type: {state_key: event_id}}, "rejected": {event_id: reason},
 "forward_extremities": [...]}.

--compat synapse (the default here) reproduces the reference homeserver where
it departs from the spec (see README, "Spec or Synapse"), so the state printed
is the state real servers hold; --compat spec follows the spec text."""


class InputError(Exception):
    """One clear line about bad input; exit code 2."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resolve", help="resolve the state of a room's PDUs offline",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="PDUs: a JSON array or JSON Lines ('-' for stdin)")
    p.add_argument("--algorithm", default="v2", help="state resolution algorithm: %(default)s (also v1, naive)")
    p.add_argument("--at", action="append", default=[], metavar="EVENT_ID",
                   help="resolve at these events (repeatable; default: forward extremities)")
    p.add_argument("--room-version", default="11", help="room version (10 or 11; default %(default)s)")
    p.add_argument("--compat", choices=("synapse", "spec"), default="synapse",
                   help="where Synapse and the spec differ, follow which (default %(default)s)")
    p.add_argument("--keys", metavar="KEYS.json",
                   help='verify signatures with {"server": {"ed25519:1": "<public key base64>"}}')
    p.set_defaults(func=run)


def _read_pdus(path: str) -> list[Any]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{path}: no events")
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        return data
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {n}: invalid JSON: {e.msg}") from None
    return out


def _read_keys(path: str) -> dict[str, dict[str, VerifyKey]]:
    try:
        raw = json.load(open(path, encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read keys: {e}") from None
    keys: dict[str, dict[str, VerifyKey]] = {}
    if not isinstance(raw, dict):
        raise InputError(f'{path}: expected {{"server": {{"ed25519:1": "<base64>"}}}}')
    for server, v in raw.items():
        entries = v.get("verify_keys", v) if isinstance(v, dict) else {"ed25519:1": v}
        try:
            keys[server] = {
                kid: VerifyKey(k["key"] if isinstance(k, dict) else k, kid) for kid, k in entries.items()
            }
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{path}: bad key for {server}: {e}") from None
    return keys


def _label(i: int, pdu: Any) -> str:
    if isinstance(pdu, dict):
        bits = [str(pdu[k]) for k in ("event_id", "type") if isinstance(pdu.get(k), str)]
        if bits:
            return f"event #{i} ({', '.join(bits)})"
    return f"event #{i}"


def load_events(pdus: list[Any], room_version: str, keys: dict | None) -> list[Event]:
    events: list[Event] = []
    seen: dict[str, int] = {}
    for i, pdu in enumerate(pdus):
        res = check_event(pdu, room_version, keys)
        if res.status == "rejected":
            raise InputError(f"{_label(i, pdu)}: {res.reason}")
        ev = res.event
        assert ev is not None
        given = pdu.get("event_id")
        if given is not None and given != ev.event_id:
            raise InputError(f"{_label(i, pdu)}: event_id {given} does not match the computed ID {ev.event_id}")
        if ev.event_id in seen:
            continue
        seen[ev.event_id] = i
        events.append(ev)
    return events


def resolve_file(path: str, *, algorithm: str = "v2", at: list[str] | None = None,
                 room_version: str = "11", compat: str = "synapse", keys_path: str | None = None) -> dict:
    """What ``simfed resolve`` prints, as a dict (raises InputError)."""
    try:
        get_room_version(room_version)
    except ValueError as e:
        raise InputError(str(e)) from None
    if algorithm not in available_algorithms():
        raise InputError(f"--algorithm {algorithm!r}: choose one of {', '.join(available_algorithms())}")
    pdus = _read_pdus(path)
    if not isinstance(pdus, list):
        raise InputError(f"{path}: expected a JSON array of PDUs or JSON Lines")
    keys = _read_keys(keys_path) if keys_path else None
    events = load_events(pdus, room_version, keys)
    try:
        result = process_room(events, room_version, algorithm=algorithm, compat=compat)
    except RoomInputError as e:
        raise InputError(str(e)) from None
    ats = at or result.forward_extremities
    for a in ats:
        if a not in result.room.graph:
            raise InputError(f"--at {a}: no such event in {path}")
    state = result.resolve_at(ats)
    grouped: dict[str, dict[str, str]] = {}
    for (etype, skey), eid in sorted(state.items()):
        grouped.setdefault(etype, {})[skey] = eid
    return {
        "state": grouped,
        "rejected": dict(sorted(result.rejected.items())),
        "forward_extremities": result.forward_extremities,
    }


def run(args: argparse.Namespace) -> int:
    try:
        out = resolve_file(args.file, algorithm=args.algorithm, at=args.at, room_version=args.room_version,
                           compat=args.compat, keys_path=args.keys)
    except InputError as e:
        print(f"simfed resolve: {e}", file=sys.stderr)
        return EXIT_INVALID
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
