#!/usr/bin/env python3
"""The reference oracle: asks Synapse's own code the questions simfed answers.

Runs with the interpreter of the oracle virtual environment (created by
``tests/oracle/setup.sh`` from the pins in ``requirements-oracle.txt``),
never with simfed's own. Used two ways:

* as a module, by ``tests/oracle_driver.py`` (one long-lived process for the
  differential tests) and ``benchmarks/_oracle_stateres.py``;
* as a command line, for one-off questions::

    PY=$(bash tests/oracle/setup.sh)
    $PY tests/oracle/synapse_oracle.py eventid --room-version 11 EVENT.json
    $PY tests/oracle/synapse_oracle.py resolve --room-version 11 IN.json
        IN.json = {"events": [PDU with event_id, ...],
                   "state_sets": [[event_id, ...], ...],
                   "rejected": {event_id: reason}}          (optional)
    $PY tests/oracle/synapse_oracle.py authcheck --room-version 11 IN.json
        IN.json = {"events": [PDU in processing order, optional "state_before": [ids]]}
    $PY tests/oracle/synapse_oracle.py sign --server-name S --key-seed B64 EVENT.json
    $PY tests/oracle/synapse_oracle.py verify --server-name S --public-key B64 EVENT.json
    $PY tests/oracle/synapse_oracle.py pubkey --key-seed B64

  Every input may be ``-`` for stdin; the answer is JSON on stdout.

The only logic of our own is the in-memory event store Synapse reads from
(:class:`EventStore`): which events exist, which were rejected, and the
auth-chain walks a database would answer. Everything Matrix-specific (IDs,
hashes, signatures, auth rules, state resolution) is Synapse's.
"""

from __future__ import annotations

# Import order matters in Synapse 1.163: synapse.state and synapse.event_auth
# import each other, and only this order completes.
import synapse.event_auth as event_auth  # noqa: I001

import argparse
import copy
import hashlib
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

import synapse
from signedjson.key import (
    decode_signing_key_base64,
    decode_verify_key_bytes,
    encode_verify_key_base64,
    get_verify_key,
)
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from synapse.api.errors import AuthError, EventSizeError, SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, EventFormatVersions, StateResolutionVersions
from synapse.crypto.event_signing import (
    add_hashes_and_signatures,
    compute_content_hash,
    compute_event_reference_hash,
)
from synapse.crypto.keyring import Keyring, VerifyJsonRequest
from synapse.events import EventBase, make_event_from_dict
from synapse.state import v1 as state_v1
from synapse.state import v2 as state_v2
from synapse.storage.databases.main.event_federation import StateDifference
from unpaddedbase64 import decode_base64, encode_base64

SYNAPSE_VERSION: str = synapse.__version__

__all__ = [
    "SYNAPSE_VERSION", "OracleError", "SynapseError", "EventSizeError", "Keyring", "VerifyJsonRequest",
    "compute_content_hash", "encode_base64", "event_auth", "room_version", "error_text", "run_sync",
    "has_explicit_event_id", "load_event", "load_events", "EventStore", "state_map_from_ids",
    "resolve_state", "triples", "event_ids_info", "signing_key_from_seed", "public_key",
    "sign_event_dict", "verify_event_dict", "auth_check_events",
]


class OracleError(Exception):
    """A question the oracle cannot put to Synapse (bad input), not Synapse's answer."""


# ---------------------------------------------------------------- small helpers


def room_version(identifier: str) -> Any:
    """Synapse's ``RoomVersion`` object for an identifier such as ``"11"``."""
    found = KNOWN_ROOM_VERSIONS.get(str(identifier))
    if found is None:
        raise OracleError(f"room version {identifier!r} is unknown to Synapse {SYNAPSE_VERSION} "
                          f"(known: {', '.join(sorted(KNOWN_ROOM_VERSIONS))})")
    return found


def error_text(exc: BaseException) -> str:
    """Synapse's errors carry their message in ``.msg``; others in ``str()``."""
    return getattr(exc, "msg", None) or str(exc)


def run_sync(coro: Any) -> Any:
    """Run a coroutine that never waits on anything (our store answers at once).

    Synapse's state and auth code is ``async`` only because its database is;
    with :class:`EventStore` no await really suspends, so one ``send`` runs it
    to the end. A coroutine that does suspend would need a reactor: refused.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise OracleError("a Synapse coroutine waited on something; the oracle has no reactor")


class _NoWaitClock:
    """State resolution v2 only sleeps to let a reactor breathe: do nothing."""

    async def sleep(self, duration: Any) -> None:
        return None


def has_explicit_event_id(rv: Any) -> bool:
    """Room versions 1 and 2 carry ``event_id`` in the PDU; later ones derive it."""
    return rv.event_format == EventFormatVersions.ROOM_V1_V2


def _without_id(pdu: dict, rv: Any) -> dict:
    out = dict(pdu)
    if not has_explicit_event_id(rv):
        out.pop("event_id", None)
    return out


def load_event(pdu: dict, rv: Any, rejected_reason: str | None = None) -> EventBase:
    """Synapse's event object for a federation PDU.

    In rooms whose IDs are hashes, a given ``event_id`` is not part of the
    PDU: it is removed before Synapse parses the event, and it must equal the
    ID Synapse computes (otherwise :class:`OracleError`), so that every later
    answer talks about the event the caller meant.
    """
    claimed = pdu.get("event_id")
    event = make_event_from_dict(_without_id(pdu, rv), rv, rejected_reason=rejected_reason)
    if claimed is not None and claimed != event.event_id:
        raise OracleError(f"event_id {claimed} does not match the {event.event_id} Synapse computes "
                          f"(type {pdu.get('type')!r}, sender {pdu.get('sender')!r})")
    return event


def load_events(pdus: Iterable[dict], rv: Any, rejected: dict[str, str] | None = None) -> list[EventBase]:
    """:func:`load_event` for each PDU; ``rejected`` maps event IDs to rejection reasons."""
    rejected = rejected or {}
    return [load_event(p, rv, rejected.get(p.get("event_id"))) for p in pdus]


def _as_rejected(event: EventBase, reason: str) -> EventBase:
    """A copy of ``event`` marked rejected (Synapse's events are immutable)."""
    return make_event_from_dict(_without_id(event.get_pdu_json(), event.room_version), event.room_version,
                                rejected_reason=reason)


# ---------------------------------------------------------------- the store


class EventStore:
    """The part of Synapse's database that state resolution and auth read.

    Holds events by ID; serves ``get_events`` (rejected events only when
    asked for) and answers the two graph questions Synapse's database
    answers with its chain-cover index:

    * the auth chain difference of some state sets: events in the auth
      chain of some set but not of all (a set's chain counts the set's own
      events, as Synapse's database does);
    * for state resolution v2.1, the conflicted subgraph: events that are
      auth ancestors of a conflicted event (or of an extra start event) and
      auth descendants of a conflicted event, the conflicted events included.

    Both are plain walks over ``auth_events``, the definitions themselves.
    """

    def __init__(self, events: Iterable[EventBase] = ()) -> None:
        self.events: dict[str, EventBase] = {e.event_id: e for e in events}

    def add(self, event: EventBase) -> None:
        self.events[event.event_id] = event

    async def get_events(self, event_ids: Iterable[str], allow_rejected: bool = False,
                         **_ignored: Any) -> dict[str, EventBase]:
        found = {}
        for eid in event_ids:
            event = self.events.get(eid)
            if event is not None and (allow_rejected or event.rejected_reason is None):
                found[eid] = event
        return found

    async def get_events_allow_rejected(self, event_ids: Iterable[str]) -> dict[str, EventBase]:
        """What state resolution v1 reads events with."""
        return await self.get_events(event_ids, allow_rejected=True)

    def _parents(self, eid: str) -> list[str]:
        event = self.events.get(eid)
        return list(event.auth_event_ids()) if event is not None else []

    def auth_closure(self, start: Iterable[str]) -> set[str]:
        """``start`` and every event reachable from it through ``auth_events``."""
        closure: set[str] = set()
        todo = list(start)
        while todo:
            eid = todo.pop()
            if eid not in closure:
                closure.add(eid)
                todo.extend(self._parents(eid))
        return closure

    def _descending_from(self, targets: set[str], within: set[str]) -> set[str]:
        """The events of ``within`` with an auth path (possibly empty) to one of ``targets``."""
        children: dict[str, list[str]] = {}
        for eid in within:
            for parent in self._parents(eid):
                children.setdefault(parent, []).append(eid)
        found: set[str] = set()
        todo = [t for t in targets if t in within]
        while todo:
            eid = todo.pop()
            if eid not in found:
                found.add(eid)
                todo.extend(children.get(eid, ()))
        return found

    async def get_auth_chain_difference(self, room_id: str, state_sets: list[set[str]],
                                        conflicted_state: set[str] | None = None,
                                        additional_backwards_reachable_conflicted_events: set[str] | None = None,
                                        ) -> StateDifference:
        chains = [self.auth_closure(s) for s in state_sets]
        difference = set().union(*chains) - set.intersection(*chains) if chains else set()
        subgraph = None
        if conflicted_state is not None:
            starts = set(conflicted_state) | set(additional_backwards_reachable_conflicted_events or ())
            subgraph = self._descending_from(set(conflicted_state), self.auth_closure(starts))
        return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)


# ---------------------------------------------------------------- state resolution


def state_map_from_ids(event_ids: Iterable[str], by_id: dict[str, EventBase]) -> dict[tuple[str, str], str]:
    """A state set given as event IDs, as Synapse's ``{(type, state_key): event_id}``."""
    state: dict[tuple[str, str], str] = {}
    for eid in event_ids:
        event = by_id.get(eid)
        if event is None:
            raise OracleError(f"a state set names {eid}, which is not among the events given")
        if not event.is_state():
            raise OracleError(f"a state set names {eid}, which is not a state event")
        key = (event.type, event.state_key)
        if state.get(key, eid) != eid:
            raise OracleError(f"a state set holds both {state[key]} and {eid} for {key}")
        state[key] = eid
    return state


def resolve_state(rv: Any, events: list[EventBase], state_sets: list[dict], mode: str = "persisted") -> dict:
    """Synapse's ``resolve_events_with_store`` for the room version's algorithm.

    ``mode="persisted"`` (as in production, where the events are in the
    database): Synapse reads every event from :class:`EventStore` and asks it
    for the auth chain difference. ``mode="unpersisted"``: every event is
    handed over in ``event_map``, so Synapse walks the auth chains itself (its
    path for events not yet stored; slow on deep auth graphs).
    """
    if mode not in ("persisted", "unpersisted"):
        raise OracleError(f"mode {mode!r} is not persisted or unpersisted")
    store = EventStore(events)
    room_id = next((store.events[eid].room_id for s in state_sets for eid in s.values() if eid in store.events),
                   None)
    if room_id is None:
        return {}
    event_map = dict(store.events) if mode == "unpersisted" else None
    if rv.state_res == StateResolutionVersions.V1:
        coro = state_v1.resolve_events_with_store(room_id, rv, state_sets, event_map,
                                                  store.get_events_allow_rejected)
    else:
        coro = state_v2.resolve_events_with_store(_NoWaitClock(), room_id, rv, state_sets, event_map, store)
    return dict(run_sync(coro))


def triples(state: dict) -> list[list[str]]:
    """A state map as sorted ``[type, state_key, event_id]`` rows (JSON-friendly)."""
    return sorted([typ, key, eid] for (typ, key), eid in state.items())


# ---------------------------------------------------------------- IDs, hashes, signatures


def event_ids_info(pdu: dict, rv: Any) -> dict:
    """Event ID, reference hash and content hash of a PDU as Synapse computes them."""
    event = make_event_from_dict(_without_id(pdu, rv), rv)
    _, reference = compute_event_reference_hash(event)
    algorithm, content = compute_content_hash(event.get_pdu_json(), hashlib.sha256)
    claimed_id = pdu.get("event_id")
    claimed_hash = (pdu.get("hashes") or {}).get(algorithm)
    return {
        "event_id": event.event_id,
        "given_event_id": claimed_id,
        "event_id_matches": None if claimed_id is None else claimed_id == event.event_id,
        "reference_hash": encode_base64(reference),
        "reference_hash_urlsafe": encode_base64(reference, urlsafe=True),
        "content_hash": {algorithm: encode_base64(content)},
        "content_hash_matches": None if claimed_hash is None else claimed_hash == encode_base64(content),
    }


def signing_key_from_seed(seed_b64: str, key_id: str = "ed25519:1") -> Any:
    """The ed25519 signing key with this (unpadded base64) seed and ``algorithm:version`` ID."""
    algorithm, _, version = key_id.partition(":")
    return decode_signing_key_base64(algorithm, version, seed_b64)


def public_key(seed_b64: str, key_id: str = "ed25519:1") -> str:
    """The unpadded base64 public key of a seed."""
    return encode_verify_key_base64(get_verify_key(signing_key_from_seed(seed_b64, key_id)))


def sign_event_dict(pdu: dict, rv: Any, server_name: str, key: Any, federation_format: bool = True) -> dict:
    """The PDU with Synapse's content hash and ``server_name``'s signature added.

    ``federation_format=False`` adds the derived ``event_id`` back for rooms
    whose IDs are hashes (as a client-side view would show it).
    """
    signed = _without_id(copy.deepcopy(pdu), rv)
    add_hashes_and_signatures(rv, signed, server_name, key)
    if not federation_format and not has_explicit_event_id(rv):
        signed["event_id"] = make_event_from_dict(dict(signed), rv).event_id
    return signed


def verify_event_dict(pdu: dict, rv: Any, server_name: str, verify_key: Any) -> dict:
    """Whether ``server_name``'s signature on the PDU holds, checked as Synapse's federation does
    (on the redacted event, through ``Keyring.process_json``)."""
    answer: dict[str, Any] = {"server_name": server_name}
    try:
        event = load_event(pdu, rv)
    except (OracleError, SynapseError) as exc:
        return {**answer, "signature_valid": False, "error": error_text(exc)}
    answer["event_id"] = event.event_id
    answer["content_hash_matches"] = event_ids_info(pdu, rv)["content_hash_matches"]
    request = VerifyJsonRequest.from_event(server_name, event, 0)
    try:
        run_sync(Keyring.process_json(None, verify_key, request))  # does not use its instance
    except SynapseError as exc:
        return {**answer, "signature_valid": False, "error": error_text(exc)}
    return {**answer, "signature_valid": True}


# ---------------------------------------------------------------- authorisation


def _auth_event_ids_for_state(event: EventBase, state: dict) -> list[str]:
    """Which events of ``state`` Synapse authorises ``event`` against.

    ``synapse.handlers`` only imports after ``synapse.rest`` (an import
    cycle), and both are slow: imported on first use.
    """
    import synapse.rest  # noqa: F401
    from synapse.handlers.event_auth import EventAuthHandler

    return EventAuthHandler.compute_auth_events(None, event, state, for_verification=True)  # self unused


def _check_one(event: EventBase, pdu: dict, store: EventStore, skip_validate: bool) -> tuple[str | None, str | None]:
    """``(None, None)`` if Synapse accepts the event, else ``(stage, reason)``."""
    stage = "validate"
    try:
        if not skip_validate:
            event_auth.validate_event_for_room_version(event)
        stage = "state_independent"
        unknown = [a for a in event.auth_event_ids() if a not in store.events]
        if unknown:
            raise OracleError(f"unknown auth events {unknown}")
        run_sync(event_auth.check_state_independent_auth_rules(store, event))
        stage = "state_dependent"
        event_auth.check_state_dependent_auth_rules(event, [store.events[a] for a in event.auth_event_ids()])
        if "state_before" in pdu:
            stage = "state_before"
            state = state_map_from_ids(pdu["state_before"], store.events)
            chosen = _auth_event_ids_for_state(event, state)
            event_auth.check_state_dependent_auth_rules(event, [store.events[a] for a in chosen])
    except (AuthError, EventSizeError) as exc:
        return stage, error_text(exc)
    except (OracleError, SynapseError, RuntimeError, AssertionError, KeyError) as exc:
        return stage, f"{type(exc).__name__}: {error_text(exc)}"
    return None, None


def auth_check_events(rv: Any, pdus: list[dict], skip_validate: bool = False) -> list[dict]:
    """Each PDU, in order, through the checks Synapse makes on a received PDU.

    ``validate_event_for_room_version`` (unless ``skip_validate``), the
    state-independent rules, and the state-dependent rules against the
    event's own ``auth_events``; with a ``state_before`` list of IDs, also
    the rules against the auth events Synapse picks from that state. A
    rejected event stays in the store, marked rejected, so events citing it
    fare as they would in Synapse. One result per PDU: ``accepted``, the
    ``stage`` that refused it and Synapse's ``reason``.
    """
    store = EventStore()
    results = []
    for pdu in pdus:
        result: dict[str, Any] = {k: pdu.get(k) for k in ("event_id", "type", "state_key", "sender")}
        try:
            event = load_event({k: v for k, v in pdu.items() if k != "state_before"}, rv)
        except (OracleError, SynapseError, ValueError) as exc:
            results.append({**result, "accepted": False, "stage": "parse", "reason": error_text(exc)})
            continue
        result["event_id"] = event.event_id
        stage, reason = _check_one(event, pdu, store, skip_validate)
        store.add(event if reason is None else _as_rejected(event, "auth_error"))
        results.append({**result, "accepted": reason is None, "stage": stage, "reason": reason})
    return results


# ---------------------------------------------------------------- command line


def _read_json(path: str) -> Any:
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _each(value: Any, fn: Any) -> Any:
    """``fn`` over a list (or ``{"events": [...]}``), or on a single object."""
    if isinstance(value, dict) and "events" in value and "type" not in value:
        value = value["events"]
    return [fn(v) for v in value] if isinstance(value, list) else fn(value)


def _cmd_resolve(a: argparse.Namespace) -> Any:
    rv = room_version(a.room_version)
    data = _read_json(a.input)
    events = load_events(data["events"], rv, data.get("rejected"))
    by_id = {e.event_id: e for e in events}
    sets = [state_map_from_ids(s, by_id) for s in data["state_sets"]]
    started = time.perf_counter()
    try:
        state = resolve_state(rv, events, sets, mode=a.mode)
    except SynapseError as exc:
        raise OracleError(f"Synapse's state resolution raised {type(exc).__name__}: {error_text(exc)}") from exc
    return {"resolved": triples(state), "room_version": rv.identifier, "mode": a.mode,
            "synapse_version": SYNAPSE_VERSION, "elapsed_s": round(time.perf_counter() - started, 6)}


def _cmd_eventid(a: argparse.Namespace) -> Any:
    rv = room_version(a.room_version)
    return _each(_read_json(a.input), lambda p: event_ids_info(p, rv))


def _cmd_sign(a: argparse.Namespace) -> Any:
    key = signing_key_from_seed(a.key_seed, a.key_id)
    data = _read_json(a.input)
    if a.plain:
        return sign_json(data, a.server_name, key)
    rv = room_version(a.room_version)
    return _each(data, lambda p: sign_event_dict(p, rv, a.server_name, key, a.federation_format))


def _cmd_verify(a: argparse.Namespace) -> Any:
    vkey = decode_verify_key_bytes(a.key_id, decode_base64(a.public_key))
    data = _read_json(a.input)
    if a.plain:
        try:
            verify_signed_json(data, a.server_name, vkey)
        except SignatureVerifyException as exc:
            return {"signature_valid": False, "error": str(exc)}
        return {"signature_valid": True}
    rv = room_version(a.room_version)
    return _each(data, lambda p: verify_event_dict(p, rv, a.server_name, vkey))


def _cmd_pubkey(a: argparse.Namespace) -> Any:
    return {"key_id": a.key_id, "public_key": public_key(a.key_seed, a.key_id)}


def _cmd_authcheck(a: argparse.Namespace) -> Any:
    rv = room_version(a.room_version)
    data = _read_json(a.input)
    results = auth_check_events(rv, data if isinstance(data, list) else data["events"], a.skip_validate)
    accepted = sum(r["accepted"] for r in results)
    return {"results": results, "accepted": accepted, "rejected": len(results) - accepted,
            "room_version": rv.identifier, "synapse_version": SYNAPSE_VERSION}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Any, *, rv: bool = True, signer: bool = False, plain: bool = False):
        s = sub.add_parser(name)
        if rv:
            s.add_argument("--room-version", default="11")
        if signer:
            s.add_argument("--server-name", required=True)
            s.add_argument("--key-id", default="ed25519:1")
        if plain:
            s.add_argument("--plain", action="store_true", help="arbitrary JSON, not an event")
        s.set_defaults(fn=fn)
        return s

    s = command("resolve", _cmd_resolve)
    s.add_argument("--mode", choices=["persisted", "unpersisted"], default="persisted")
    s.add_argument("input")
    command("eventid", _cmd_eventid).add_argument("input")
    s = command("sign", _cmd_sign, signer=True, plain=True)
    s.add_argument("--key-seed", required=True, help="unpadded base64 ed25519 seed")
    s.add_argument("--federation-format", action="store_true", help="leave derived event IDs out")
    s.add_argument("input")
    s = command("verify", _cmd_verify, signer=True, plain=True)
    s.add_argument("--public-key", required=True, help="unpadded base64 ed25519 public key")
    s.add_argument("input")
    s = command("pubkey", _cmd_pubkey, rv=False)
    s.add_argument("--key-seed", required=True)
    s.add_argument("--key-id", default="ed25519:1")
    s = command("authcheck", _cmd_authcheck)
    s.add_argument("--skip-validate", action="store_true", help="skip validate_event_for_room_version")
    s.add_argument("input")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        answer = args.fn(args)
    except OracleError as exc:
        print(f"oracle: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer, indent=1, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
