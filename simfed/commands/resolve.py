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


def _loads(text: str, where: str) -> Any:
    """``json.loads`` with every failure as one InputError line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise InputError(f"{where}: invalid JSON: {e}") from None


def _read_text(path: str, what: str) -> str:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def _read_pdus(path: str) -> list[Any]:
    text = _read_text(path, "events")
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{path}: no events")
    if stripped.startswith("["):
        data = _loads(stripped, path)
        if not data:
            raise InputError(f"{path}: no events (an empty array)")
        return data
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        out.append(_loads(line, f"{path}: line {n}"))
    return out


_KEYS_SHAPE = '{"server": {"ed25519:1": "<public key base64>"}}'


def _read_keys(path: str) -> dict[str, dict[str, VerifyKey]]:
    raw = _loads(_read_text(path, "keys"), path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected {_KEYS_SHAPE}, got a JSON {type(raw).__name__}")
    keys: dict[str, dict[str, VerifyKey]] = {}
    for server, v in raw.items():
        entries = v.get("verify_keys", v) if isinstance(v, dict) else {"ed25519:1": v}
        if not isinstance(entries, dict):
            raise InputError(f"{path}: keys of {server!r}: expected an object of key ID to key, got {type(entries).__name__}")
        keys[server] = {}
        for kid, k in entries.items():
            k = k.get("key") if isinstance(k, dict) else k
            if not isinstance(k, str):
                raise InputError(f"{path}: key {server}/{kid}: expected base64 text, got {type(k).__name__}")
            try:
                keys[server][kid] = VerifyKey(k, kid)
            except ValueError as e:
                raise InputError(f"{path}: bad key {server}/{kid}: {e}") from None
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
    except (InputError, ValueError) as e:
        # One line, printable whatever the input held (lone surrogates included).
        line = " ".join(str(e).split()).encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"simfed resolve: {line}", file=sys.stderr)
        return EXIT_INVALID
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
