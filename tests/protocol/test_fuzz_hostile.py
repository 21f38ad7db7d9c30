"""Fuzzing the protocol's entry points with hostile input (issue 13).

Each fuzz runs a moderate number of examples in the fast suite and thousands
in a ``slow`` variant. The property is always the same: an answer (data, or
the documented ``ValueError``), never another exception.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import worked_example
from simfed.cli import main
from simfed.protocol import (
    AuthResult,
    CheckResult,
    Event,
    check_auth,
    check_event,
    derive_server_key,
    process_room,
)
from strategies import random_pdu

FAST, SLOW = 60, 3000
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)

# Anything JSON text can hold, plus what it cannot but a Python caller may pass.
_strings = st.one_of(
    st.text(max_size=8),  # lone surrogates included
    st.sampled_from(["", "\ud800", "a\udfffb", "@u:a", "!r:a", "$e", "m.room.member", "ed25519:1"]),
)
_scalars = st.one_of(
    st.none(), st.booleans(), _strings,
    st.integers(-(2**60), 2**60), st.sampled_from([2**53, -(2**53), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
)
hostile_json = st.recursive(
    _scalars,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_strings, c, max_size=3)),
    max_leaves=12,
)


def _deep(levels: int) -> list:
    v: list = []
    for _ in range(levels):
        v = [v]
    return v


FIELDS = ("room_id", "sender", "type", "state_key", "content", "prev_events", "auth_events", "depth",
          "origin_server_ts", "hashes", "signatures", "unsigned", "event_id", "redacts")


@st.composite
def hostile_pdus(draw: st.DrawFn) -> object:
    """A real PDU with hostile values put in (mostly where the shape checks let
    them through: content, identifiers, unsigned), or fields replaced or
    removed; now and then any JSON value at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(hostile_json)
    base = worked_example() if draw(st.booleans()) else None
    pdu = base["PL2"].pdu() if base else random_pdu(random.Random(draw(st.integers(0, 2**32))))
    pdu.setdefault("hashes", {"sha256": "x"})
    pdu.setdefault("signatures", {"a": {"ed25519:1": "x"}})
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.integers(0, 9))
        if action <= 3:
            value = _deep(draw(st.sampled_from([5, 510, 600, 1200]))) if action == 0 else draw(hostile_json)
            if not isinstance(pdu.get("content"), dict):
                pdu["content"] = {}
            pdu["content"][draw(_strings)] = value
        elif action <= 5:
            f = draw(st.sampled_from(("room_id", "sender", "type", "state_key", "redacts")))
            pdu[f] = draw(_strings)
        elif action == 6:
            pdu["unsigned"] = {draw(st.sampled_from(["age", "invite_room_state", "x"])): draw(hostile_json)}
        elif action == 7:
            pdu.pop(draw(st.sampled_from(FIELDS)), None)
        else:
            pdu[draw(st.sampled_from(FIELDS))] = draw(hostile_json)
    return pdu


def _fuzz_receive(n: int) -> None:
    @settings(max_examples=n, **_SETTINGS)
    @given(pdu=hostile_pdus(), version=st.sampled_from(["10", "11"]), keyed=st.booleans())
    def run(pdu, version, keyed):
        keys = {"a": {"ed25519:1": derive_server_key(0, "a").verify_key}} if keyed else None
        res = check_event(copy.deepcopy(pdu) if not isinstance(pdu, dict) else pdu, version, keys)
        assert isinstance(res, CheckResult)
        assert (res.event is None) == (res.status == "rejected")
        try:
            ev = Event.from_pdu(pdu, version)
        except ValueError:
            return
        ev.pdu()
        assert ev.canonical_bytes

    run()


def test_fuzz_receive_path():
    _fuzz_receive(FAST)


@pytest.mark.slow
def test_fuzz_receive_path_thousands():
    _fuzz_receive(SLOW)


# -- auth ----------------------------------------------------------------------------------

TYPES = ("m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
         "m.room.third_party_invite", "m.room.message", "m.room.redaction")
canonical_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1),
              st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
              st.sampled_from(["join", "invite", "leave", "ban", "knock", "public", "@a:a", "@b:b", "11"])),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
        st.sampled_from(["membership", "users", "events", "users_default", "ban", "kick", "invite", "redact",
                         "state_default", "events_default", "notifications", "room_version", "creator",
                         "join_rule", "allow", "third_party_invite", "signed", "mxid", "token", "signatures",
                         "public_key", "public_keys", "join_authorised_via_users_server", "m.federate",
                         "@a:a", "@b:b", "x"]), c, max_size=4)),
    max_leaves=14,
)


def _event(type_: str, sender: str, content: dict, state_key: str | None, prev: list, auth: list) -> Event:
    fields = {"room_id": "!r:a", "sender": sender, "type": type_, "content": content,
              "prev_events": [p.event_id for p in prev], "auth_events": [a.event_id for a in auth],
              "depth": len(prev) + 1, "origin_server_ts": 1}
    if state_key is not None:
        fields["state_key"] = state_key
    server = sender.partition(":")[2]
    return Event.create(fields, server, derive_server_key(0, server))


@st.composite
def hostile_rooms(draw: st.DrawFn) -> list[Event]:
    """A create event (itself fuzzed half the time) and a few events with fuzzed content."""
    create_content = draw(st.dictionaries(st.sampled_from(["room_version", "creator", "m.federate", "x"]),
                                          canonical_json_values, max_size=3)) if draw(st.booleans()) else {}
    events = [_event("m.room.create", "@a:a", create_content, "", [], [])]
    for _ in range(draw(st.integers(1, 6))):
        t = draw(st.sampled_from(TYPES[1:]))
        content = draw(canonical_json_values)
        content = content if isinstance(content, dict) else {"v": content}
        sender = draw(st.sampled_from(["@a:a", "@b:b"]))
        sk = None if t in ("m.room.message", "m.room.redaction") else draw(st.sampled_from(["", "@a:a", "@b:b", "tok"]))
        auth = draw(st.lists(st.sampled_from(events), max_size=4, unique_by=lambda e: e.event_id))
        events.append(_event(t, sender, content, sk, [events[-1]], auth))
    return events


def _fuzz_auth(n: int) -> None:
    @settings(max_examples=n, **_SETTINGS)
    @given(events=hostile_rooms(), compat=st.sampled_from(["spec", "synapse"]), version=st.sampled_from(["10", "11"]))
    def run(events, compat, version):
        state = {(e.type, e.state_key): e for e in events if e.state_key is not None}
        for ev in events:
            assert isinstance(check_auth(ev, state, version, compat=compat), AuthResult)
        try:
            res = process_room(events, version, compat=compat)
        except ValueError:
            return
        res.resolve_at(res.forward_extremities)

    run()


def test_fuzz_auth():
    _fuzz_auth(FAST)


@pytest.mark.slow
def test_fuzz_auth_thousands():
    _fuzz_auth(SLOW)


# -- the resolve CLI's input ----------------------------------------------------------------


@st.composite
def resolve_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(hostile_json), allow_nan=True).encode("utf-8", "surrogatepass")
    pdus = [e.pdu_with_id() for e in worked_example().by_name.values()]
    if kind == 2:
        i = draw(st.integers(0, len(pdus) - 1))
        pdus[i] = draw(hostile_pdus())
    text = "\n".join(json.dumps(p, allow_nan=True) for p in pdus) if draw(st.booleans()) else json.dumps(pdus)
    return text.encode("utf-8", "surrogatepass")


def _fuzz_resolve(n: int, tmp_path, capsys) -> None:
    f = tmp_path / "in.json"

    @settings(max_examples=n, **_SETTINGS)
    @given(data=resolve_inputs(), args=st.sampled_from([[], ["--algorithm", "v1"], ["--compat", "spec"]]))
    def run(data, args):
        f.write_bytes(data)
        code = main(["resolve", str(f), *args])
        out, err = capsys.readouterr()
        assert code in (0, 2)
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("simfed resolve: "), err
        else:
            assert set(json.loads(out)) == {"state", "rejected", "forward_extremities"}

    run()


def test_fuzz_resolve_cli(tmp_path, capsys):
    _fuzz_resolve(FAST, tmp_path, capsys)


@pytest.mark.slow
def test_fuzz_resolve_cli_thousands(tmp_path, capsys):
    _fuzz_resolve(SLOW, tmp_path, capsys)
