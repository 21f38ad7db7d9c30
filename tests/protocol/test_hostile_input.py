"""Regression corpus for issue 13: hostile input answers with data or ValueError.

Each case here once raised something else (UnicodeEncodeError, RecursionError,
TypeError) out of a protocol entry point, or handed out another copy's content.
"""

from __future__ import annotations

import copy
import json
import pickle
import sys

import pytest

from builders import RoomBuilder, worked_example
from simfed.protocol import (
    MAX_JSON_DEPTH,
    CanonicalJSONError,
    DropReason,
    Event,
    JSONTooDeepError,
    check_auth,
    check_canonical,
    check_event,
    derive_server_key,
    redact,
)

from test_auth_rules import ID_KEY, _signed_block, _tp_invite, _tp_room, no


def nested(levels: int, leaf: object = 1) -> object:
    """``levels`` arrays inside each other (the outermost counts as one)."""
    v: object = leaf
    for _ in range(levels):
        v = [v]
    return v


@pytest.fixture
def pdu() -> dict:
    return worked_example()["N1"].pdu()


def signed(pdu: dict, **content) -> dict:
    """``pdu`` with ``content`` merged in, re-hashed and re-signed by its sender's server."""
    fields = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures")}
    fields["content"] = {**fields["content"], **content}
    server = fields["sender"].partition(":")[2]
    return Event.create(fields, server, derive_server_key(0, server)).pdu()


# -- lone surrogates --------------------------------------------------------------


@pytest.mark.parametrize("where", ["value", "key", "sender", "unsigned"])
def test_lone_surrogate_is_not_canonical(pdu, where):
    if where == "value":
        pdu["content"]["body"] = "ok \ud800"
    elif where == "key":
        pdu["content"]["\udfff"] = "x"
    elif where == "sender":
        pdu["sender"] = "@\ud800:b"
    else:
        pdu["unsigned"] = {"age": 1, "invite_room_state": "\ud800"}
        pdu["type"] = "m.room.member"
    res = check_event(pdu)
    assert res.status == "rejected"
    assert res.code is DropReason.NOT_CANONICAL
    assert "surrogate" in res.reason


def test_lone_surrogate_refused_by_from_pdu_and_create(pdu):
    pdu["content"]["body"] = "\ud800"
    with pytest.raises(CanonicalJSONError, match=r"\$\.content\.body"):
        Event.from_pdu(pdu)
    fields = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures")}
    with pytest.raises(ValueError):
        Event.create(fields, "b", derive_server_key(0, "b"))


def test_paired_surrogates_and_non_ascii_are_fine(pdu):
    res = check_event(signed(pdu, body="\U0001f600 é 漢"))
    assert res.status == "ok"


# -- nesting depth ----------------------------------------------------------------


def test_deep_content_is_a_named_rejection(pdu):
    # ~1,000 levels is a 2 kB PDU: small enough to pass the size limit.
    pdu["content"]["x"] = nested(1000)
    res = check_event(pdu)
    assert res.status == "rejected"
    assert res.code is DropReason.TOO_DEEP
    with pytest.raises(JSONTooDeepError):
        Event.from_pdu(pdu)


def test_depth_limit_is_exact():
    # The value itself is level 1.
    check_canonical(nested(MAX_JSON_DEPTH))
    with pytest.raises(JSONTooDeepError, match=str(MAX_JSON_DEPTH)):
        check_canonical(nested(MAX_JSON_DEPTH + 1))
    check_canonical({"a": nested(3)}, max_depth=4)
    with pytest.raises(JSONTooDeepError):
        check_canonical({"a": nested(4)}, max_depth=4)


def _under_stack(frames: int, fn):
    """Call ``fn`` with ``frames`` extra Python frames on the stack."""
    if frames == 0:
        return fn()
    return _under_stack(frames - 1, fn)


def test_deepest_accepted_event_round_trips_on_a_busy_stack(pdu):
    # PDU (1) > content (2) > x: the deepest content an accepted event can carry.
    deep = signed(pdu, x=nested(MAX_JSON_DEPTH - 2))
    deeper = json.loads(json.dumps(deep))
    deeper["content"]["x"] = [deeper["content"]["x"]]
    assert check_event(deeper).code is DropReason.TOO_DEEP
    res = check_event(deep)
    assert res.status == "ok", res.reason
    ev = res.event
    stack_in_use = len(__import__("inspect").stack(0))
    frames = max(0, min(300, sys.getrecursionlimit() - MAX_JSON_DEPTH - stack_in_use - 150))

    def use():
        copy_ = ev.pdu()
        assert copy_ == ev.pdu() and copy_ is not ev.pdu()
        assert Event.from_pdu(copy_) is ev
        return len(ev.canonical_bytes)

    assert _under_stack(frames, use) > 2 * MAX_JSON_DEPTH
    assert pickle.loads(pickle.dumps(ev)) is ev


def test_pdu_copy_is_deep_and_independent(pdu):
    ev = Event.from_pdu(signed(pdu, x={"a": [1, {"b": [2, 3]}]}))
    out = ev.pdu()
    out["content"]["x"]["a"][1]["b"].append(4)
    assert ev.content["x"]["a"][1]["b"] == [2, 3]
    assert ev.pdu()["content"]["x"] == {"a": [1, {"b": [2, 3]}]}


# -- wrong types in Event.from_pdu ---------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("hashes", -1), ("hashes", [1]), ("signatures", [1]), ("signatures", {"b": 5}),
    ("signatures", -1), ("content", 5), ("prev_events", "x"), ("depth", "1"),
])
def test_from_pdu_wrong_types_are_value_errors(pdu, field, value):
    pdu[field] = value
    with pytest.raises(ValueError, match=field if field != "signatures" else "signatures"):
        Event.from_pdu(pdu)
    assert check_event(pdu).status == "rejected"


@pytest.mark.parametrize("value", [[1], 5, "x", None])
def test_from_pdu_non_object(value):
    with pytest.raises(ValueError, match="JSON object"):
        Event.from_pdu(value)  # type: ignore[arg-type]


# -- check_auth on hostile content ---------------------------------------------------------


@pytest.mark.parametrize("version", [[], {}, 11, None, ["11"]])
def test_create_with_non_string_room_version_is_rejected(version):
    b = RoomBuilder()
    create = b.add("C", "m.room.create", "@a:a", {"room_version": version}, state_key="")
    res = check_auth(create, {})
    assert not res.allowed and res.rule == "1.3"


@pytest.mark.parametrize("public_keys", [5, "abc", {"public_key": "x"}, [5, None, {"public_key": 5}]])
def test_third_party_invite_with_malformed_public_keys_is_rejected(public_keys):
    r = _tp_room(keys="none")
    content = {"display_name": "b...", "public_keys": public_keys}
    r.put("m.room.third_party_invite", "@alice:a", content, "tok123")
    no(r.check(_tp_invite(r, _signed_block())), "4.4.1")


def test_third_party_invite_still_accepts_a_valid_key_list():
    r = _tp_room(keys="none")
    content = {"display_name": "b...", "public_keys": [{"public_key": ID_KEY.public_key_base64}]}
    r.put("m.room.third_party_invite", "@alice:a", content, "tok123")
    assert r.check(_tp_invite(r, _signed_block())).allowed


# -- interning keyed by everything that matters --------------------------------------------


def test_forged_content_never_shares_an_object_with_the_redacted_copy(pdu):
    honest = Event.from_pdu(pdu)
    forged_pdu = copy.deepcopy(pdu)
    forged_pdu["content"]["body"] = "forged after signing"
    forged = Event.from_pdu(forged_pdu)  # built first, as a simulated attacker does
    assert forged.event_id == honest.event_id and forged is not honest
    assert not forged.content_hash_ok and honest.content_hash_ok

    res = check_event(forged_pdu)
    assert res.status == "redacted"
    kept = res.event
    assert kept is not forged and kept is not honest
    assert dict(kept.content) == {} and "body" not in kept.pdu()["content"]
    assert kept.pdu() == {k: v for k, v in redact(forged_pdu).items()}
    assert check_event(pdu).event is honest
    assert Event.interned(honest.event_id) is honest


def test_two_forged_contents_for_one_id_stay_apart(pdu):
    one, two = copy.deepcopy(pdu), copy.deepcopy(pdu)
    one["content"]["body"] = "one"
    two["content"]["body"] = "two"
    e1, e2 = Event.from_pdu(one), Event.from_pdu(two)
    assert e1.event_id == e2.event_id
    assert e1 is not e2
    assert e1.content["body"] == "one" and e2.content["body"] == "two"
    # Both checks keep the same redacted form, which is neither forged copy.
    r1, r2 = check_event(one).event, check_event(two).event
    assert r1 is r2 and r1 not in (e1, e2)


def test_same_pdu_is_one_object(pdu):
    assert Event.from_pdu(pdu) is Event.from_pdu(copy.deepcopy(pdu)) is check_event(pdu).event


def test_redacted_form_of_an_intact_event_is_its_own_object(pdu):
    honest = Event.from_pdu(pdu)
    red = Event.from_pdu(redact(pdu))
    assert red.event_id == honest.event_id and red is not honest
    assert not red.content_hash_ok


@pytest.mark.oracle
def test_create_with_non_string_room_version_is_rejected_by_synapse_too(oracle):
    b = RoomBuilder()
    creates = [b.add(f"C{i}", "m.room.create", "@a:a", {"room_version": v}, state_key="")
               for i, v in enumerate([[], {}, 11, None])]
    theirs = oracle.authcheck([[c.pdu_with_id()] for c in creates], "11")
    for c, [t] in zip(creates, theirs):
        assert t["accepted"] is False, t
        assert not check_auth(c, {}).allowed
