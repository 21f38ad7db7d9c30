"""The spec's public test vectors (protocol.md §9), round trips and tamper detection."""

from __future__ import annotations

import copy

import pytest

from simfed.protocol import (
    Event,
    SignatureError,
    SigningKey,
    check_event,
    content_hash,
    derive_server_key,
    event_id,
    redact,
    reference_hash,
    sign_event,
    sign_json,
    verify_json,
)

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
PUBLIC = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.from_seed(SEED)


def test_public_key_from_seed(key):
    assert key.public_key_base64 == PUBLIC
    assert key.key_id == "ed25519:1"
    assert key.verify_key.public_key_base64 == PUBLIC


def test_json_signing_vector_empty(key):
    assert sign_json({}, "domain", key) == {"signatures": {"domain": {"ed25519:1": (
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ")}}}


def test_json_signing_vector_object(key):
    signed = sign_json({"one": 1, "two": "Two"}, "domain", key)
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw")
    verify_json(signed, "domain", key.verify_key)


EVENT_1 = {"room_id": "!x:domain", "sender": "@a:domain", "origin": "domain", "origin_server_ts": 1000000,
           "signatures": {}, "hashes": {}, "type": "X", "content": {}, "prev_events": [], "auth_events": [],
           "depth": 3, "unsigned": {"age_ts": 1000000}}
EVENT_2 = {"content": {"body": "Here is the message content"}, "event_id": "$0:domain", "origin": "domain",
           "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
           "signatures": {}, "unsigned": {"age_ts": 1000000}}


@pytest.mark.parametrize("pdu,sha,sig", [
    (EVENT_1, "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
     "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"),
    (EVENT_2, "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
     "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"),
])
def test_event_signing_vectors_room_v10(key, pdu, sha, sig):
    signed = sign_event(copy.deepcopy(pdu), "domain", key, "10")
    assert signed["hashes"] == {"sha256": sha}
    assert signed["signatures"] == {"domain": {"ed25519:1": sig}}
    assert signed["unsigned"] == pdu["unsigned"]
    assert content_hash(signed) == sha
    # every other field unchanged
    for k, v in pdu.items():
        if k not in ("hashes", "signatures"):
            assert signed[k] == v


def test_v11_strips_origin_so_vector_signature_differs(key):
    signed = sign_event(copy.deepcopy(EVENT_1), "domain", key, "11")
    assert signed["hashes"]["sha256"] == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    assert signed["signatures"]["domain"]["ed25519:1"] != (
        "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg")


def test_sign_json_keeps_other_signatures_and_ignores_unsigned(key):
    other = derive_server_key(1, "other")
    a = sign_json({"x": 1, "unsigned": {"age": 5}}, "other", other)
    b = sign_json(a, "domain", key)
    assert set(b["signatures"]) == {"other", "domain"}
    b["unsigned"]["age"] = 99
    verify_json(b, "domain", key.verify_key)
    verify_json(b, "other", other.verify_key)
    assert "signatures" not in {"x": 1}  # the input is not modified
    assert a is not b


def test_verify_json_errors(key):
    signed = sign_json({"x": 1}, "domain", key)
    with pytest.raises(SignatureError, match="no signature from 'nobody'"):
        verify_json(signed, "nobody", key.verify_key)
    tampered = dict(signed, x=2)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_json(tampered, "domain", key.verify_key)
    with pytest.raises(ValueError):
        verify_json({"x": 1}, "domain", key.verify_key)


def _message(server: str = "a.example", **extra) -> dict:
    pdu = {"room_id": "!r:a.example", "sender": f"@u:{server}", "type": "m.room.message",
           "content": {"body": "hi", "msgtype": "m.text"}, "prev_events": ["$p"], "auth_events": ["$c"],
           "depth": 5, "origin_server_ts": 1234}
    pdu.update(extra)
    return pdu


def test_event_id_round_trip_and_interning():
    k = derive_server_key(7, "a.example")
    ev = Event.create(_message(), "a.example", k)
    again = Event.from_pdu(ev.pdu())
    assert again is ev
    assert ev.event_id == event_id(ev.pdu(), "11")
    assert ev.event_id.startswith("$") and len(ev.event_id) == 44
    assert "+" not in ev.event_id and "/" not in ev.event_id
    assert Event.from_pdu(ev.pdu_with_id()) is ev
    with pytest.raises(ValueError, match="does not match"):
        Event.from_pdu(dict(ev.pdu(), event_id="$wrong"))
    with pytest.raises(AttributeError):
        ev.type = "x"  # type: ignore[misc]


def test_reference_hash_ignores_signatures_and_unsigned():
    k = derive_server_key(7, "a.example")
    pdu = sign_event(_message(), "a.example", k)
    h = reference_hash(pdu)
    pdu2 = dict(pdu, signatures={}, unsigned={"age": 1})
    assert reference_hash(pdu2) == h
    # ...but depends on the content hash, which covers the content
    assert reference_hash(dict(pdu, hashes={"sha256": "x"})) != h


KEYS = {"a.example": {"ed25519:1": derive_server_key(7, "a.example").verify_key}}


def test_check_event_accepts_valid():
    pdu = sign_event(_message(), "a.example", derive_server_key(7, "a.example"))
    res = check_event(pdu, "11", KEYS)
    assert res.status == "ok" and res.event is not None and res.ok


@pytest.mark.parametrize("field", ["room_id", "sender", "type", "content", "prev_events", "auth_events",
                                   "depth", "origin_server_ts", "hashes"])
def test_tampering_any_field_is_caught(field):
    pdu = sign_event(_message(state_key=""), "a.example", derive_server_key(7, "a.example"))
    bad = copy.deepcopy(pdu)
    if field == "content":
        bad["content"]["body"] = "changed"
    elif field in ("prev_events", "auth_events"):
        bad[field] = ["$other"]
    elif field in ("depth", "origin_server_ts"):
        bad[field] += 1
    elif field == "hashes":
        bad["hashes"]["sha256"] = "A" * 43
    elif field == "sender":
        bad["sender"] = "@mallory:a.example"
    else:
        bad[field] = bad[field] + "x"
    res = check_event(bad, "11", KEYS)
    if field == "content":
        # content is not signed: the hash mismatch is caught and the event redacted
        assert res.status == "redacted"
        assert dict(res.event.content) == {}
        assert res.event.event_id == Event.from_pdu(pdu).event_id
    else:
        assert res.status == "rejected", field
        assert res.code.value == "bad_signature"


def test_check_event_rejections():
    k = derive_server_key(7, "a.example")
    good = sign_event(_message(), "a.example", k)
    assert check_event(good, "11", {}).code.value == "unknown_key"
    assert check_event(dict(good, signatures={}), "11", KEYS).code.value == "missing_signature"
    forged = sign_event(_message(server="evil.example"), "a.example", k)
    assert check_event(forged, "11", KEYS).code.value == "missing_signature"
    too_many = sign_event(_message(prev_events=[f"$p{i}" for i in range(21)]), "a.example", k)
    assert check_event(too_many, "11", KEYS).code.value == "too_many_prev_events"
    many_auth = sign_event(_message(auth_events=[f"$a{i}" for i in range(11)]), "a.example", k)
    assert check_event(many_auth, "11", KEYS).code.value == "too_many_auth_events"
    with pytest.raises(ValueError, match="depth"):
        sign_event(_message(depth=2**53), "a.example", k)
    assert check_event(dict(good, depth=2**53), "11", KEYS).code.value == "not_canonical"
    assert check_event(dict(good, depth=-1), "11", KEYS).code.value == "bad_depth"
    big = sign_event(_message(content={"body": "x" * 70000}), "a.example", k)
    assert check_event(big, "11", KEYS).code.value == "too_large"
    assert check_event(dict(good, depth=1.5), "11", KEYS).code.value == "malformed"
    floaty = sign_event(_message(), "a.example", k)
    floaty["content"] = {"n": 1.5}
    assert check_event(floaty, "11", KEYS).code.value == "not_canonical"
    long_type = sign_event(_message(type="t" * 256), "a.example", k)
    assert check_event(long_type, "11", KEYS).code.value == "field_too_long"
    assert check_event("nope", "11", KEYS).code.value == "malformed"  # type: ignore[arg-type]
    for missing in ("sender", "content", "hashes"):
        bad = {k2: v for k2, v in good.items() if k2 != missing}
        r = check_event(bad, "11", KEYS)
        assert r.status == "rejected" and missing in r.reason


def test_size_limit_is_measured_as_the_reference_server_does():
    """65,536 bytes of canonical JSON including signatures, measured with
    ``unsigned`` reduced to the keys a receiver keeps (an empty object when
    there are none, ``age`` not counted)."""
    from simfed.protocol import canonical_json
    from simfed.protocol.checks import MAX_PDU_SIZE

    k = derive_server_key(7, "a.example")
    base = sign_event(_message(content={"body": ""}), "a.example", k)
    pad = MAX_PDU_SIZE - len(canonical_json(dict(base, unsigned={})))
    at_limit = sign_event(_message(content={"body": "x" * pad}), "a.example", k)
    assert len(canonical_json(dict(at_limit, unsigned={}))) == MAX_PDU_SIZE
    assert check_event(at_limit, "11", KEYS).status == "ok"
    assert check_event(dict(at_limit, unsigned={"age": 5, "junk": "y" * 100}), "11", KEYS).status == "ok"
    over = sign_event(_message(content={"body": "x" * (pad + 1)}), "a.example", k)
    assert check_event(over, "11", KEYS).code.value == "too_large"


@pytest.mark.parametrize("rv", ["10", "11"])
def test_redaction_rules(rv):
    pl = {"type": "m.room.power_levels", "state_key": "", "content": {"ban": 50, "invite": 0, "users": {}, "x": 1},
          "unsigned": {"a": 1}, "origin": "x", "room_id": "!r:x", "sender": "@u:x"}
    r = redact(pl, rv)
    assert "unsigned" not in r
    assert ("origin" in r) == (rv == "10")
    assert ("invite" in r["content"]) == (rv == "11")
    assert "x" not in r["content"]
    create = {"type": "m.room.create", "content": {"creator": "@u:x", "room_version": rv, "m.federate": True}}
    assert redact(create, rv)["content"] == (create["content"] if rv == "11" else {"creator": "@u:x"})
    red = {"type": "m.room.redaction", "content": {"redacts": "$e", "reason": "r"}}
    assert redact(red, rv)["content"] == ({"redacts": "$e"} if rv == "11" else {})
    member = {"type": "m.room.member", "content": {"membership": "join", "displayname": "d",
                                                   "join_authorised_via_users_server": "@a:x",
                                                   "third_party_invite": {"signed": {"t": 1}, "display_name": "x"}}}
    kept = redact(member, rv)["content"]
    assert kept["membership"] == "join" and "displayname" not in kept
    assert ("third_party_invite" in kept) == (rv == "11")
    if rv == "11":
        assert kept["third_party_invite"] == {"signed": {"t": 1}}
    jr = {"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": [], "x": 1}}
    assert redact(jr, rv)["content"] == {"join_rule": "restricted", "allow": []}


def test_unknown_room_version_is_a_clear_error():
    with pytest.raises(ValueError, match="room_version='9' is not supported"):
        event_id(_message(), "9")


def test_derive_server_key_is_deterministic_and_distinct():
    assert derive_server_key(1, "a").public_key_base64 == derive_server_key(1, "a").public_key_base64
    assert derive_server_key(1, "a").public_key_base64 != derive_server_key(1, "b").public_key_base64
    assert derive_server_key(1, "a").public_key_base64 != derive_server_key(2, "a").public_key_base64
