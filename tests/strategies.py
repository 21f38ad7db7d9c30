"""Random inputs for property and differential tests.

- :func:`random_pdu`: a random, well-formed (canonical) PDU from a
  ``random.Random``, covering the content shapes the redaction rules care
  about (members with third-party invites and authorisers, create/PL/join
  rules with extra keys, redactions, unicode and nested content, legacy
  top-level keys, ``unsigned``). Deterministic per RNG state, so large
  batches can be built fast and sent to the oracle in one request.
- Hypothesis strategies: :func:`pdus`, :func:`room_params`,
  :func:`json_values` (canonical-JSON edge cases: ints inside and outside
  the safe range, floats, nesting, unicode keys).
"""

from __future__ import annotations

import random
import string
from typing import Any

from hypothesis import strategies as st

MAX_SAFE = 2**53 - 1

SERVERS = ("a.test", "b.example", "hs3.org", "xn--ls8h.la", "[::1]:8448", "127.0.0.1:8008")
UNICODE = "éß漢字🙂\u200b\u00a0Ωж\"\\/\n\t\x01\x1f\u2028\U0001f600ﬁ"
_KEY_CHARS = string.ascii_letters + string.digits + "._-$@" + "é漢🙂 \"\\"

ROOM_TYPES = [
    "m.room.message", "m.room.member", "m.room.member", "m.room.member", "m.room.create",
    "m.room.power_levels", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility",
    "m.room.redaction", "m.room.topic", "m.room.name", "m.room.aliases",
    "m.room.third_party_invite", "m.room.guest_access", "m.room.encrypted", "org.example.custom",
    "m.room.canonical_alias", "m.room.tombstone", "m.room.server_acl", "m.reaction",
]


def _text(rng: random.Random, n: int | None = None, alphabet: str | None = None) -> str:
    n = rng.randint(0, 12) if n is None else n
    alphabet = alphabet or (string.ascii_letters + string.digits + " " + UNICODE)
    return "".join(rng.choice(alphabet) for _ in range(n))


def _int(rng: random.Random) -> int:
    return rng.choice([0, 1, -1, 50, 100, rng.randint(-1000, 1000), MAX_SAFE, -MAX_SAFE, rng.randint(-MAX_SAFE, MAX_SAFE)])


def _scalar(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.45:
        return _text(rng)
    if r < 0.75:
        return _int(rng)
    if r < 0.85:
        return rng.choice([True, False])
    if r < 0.9:
        return None
    return ""


def random_json(rng: random.Random, depth: int = 3) -> Any:
    """A random canonical-JSON-valid value (no floats, ints in the safe range)."""
    if depth <= 0 or rng.random() < 0.4:
        return _scalar(rng)
    if rng.random() < 0.6:
        return {_text(rng, rng.randint(0, 6), _KEY_CHARS): random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))}
    return [random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]


def _user(rng: random.Random) -> str:
    return "@%s:%s" % (_text(rng, rng.randint(1, 6), string.ascii_lowercase + string.digits + "._=-/"), rng.choice(SERVERS))


def _eid(rng: random.Random) -> str:
    return "$" + "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(43))


def _extras(rng: random.Random, content: dict, p: float = 0.4) -> dict:
    while rng.random() < p:
        content[_text(rng, rng.randint(1, 8), _KEY_CHARS)] = random_json(rng, 2)
    return content


def _member_content(rng: random.Random) -> dict:
    c: dict[str, Any] = {"membership": rng.choice(["join", "invite", "leave", "ban", "knock", "join", "custom"])}
    if rng.random() < 0.1:
        del c["membership"]
    if rng.random() < 0.3:
        c["displayname"] = _text(rng)
    if rng.random() < 0.2:
        c["avatar_url"] = "mxc://%s/%s" % (rng.choice(SERVERS), _text(rng, 8, string.ascii_letters))
    if rng.random() < 0.25:
        c["join_authorised_via_users_server"] = _user(rng)
    if rng.random() < 0.3:
        tpi: dict[str, Any] = {"display_name": _text(rng)}
        r = rng.random()
        if r < 0.6:
            tpi["signed"] = _extras(rng, {
                "mxid": _user(rng), "token": _text(rng, 8, string.ascii_letters),
                "signatures": {rng.choice(SERVERS): {"ed25519:0": _text(rng, 20, string.ascii_letters)}},
            })
        elif r < 0.7:
            tpi["signed"] = random_json(rng, 2)
        _extras(rng, tpi)
        c["third_party_invite"] = tpi if rng.random() < 0.9 else random_json(rng, 1)
    if rng.random() < 0.1:
        c["reason"] = _text(rng)
    return _extras(rng, c, 0.2)


def _pl_content(rng: random.Random) -> dict:
    c: dict[str, Any] = {}
    for k in ("ban", "kick", "redact", "invite", "state_default", "events_default", "users_default"):
        if rng.random() < 0.6:
            c[k] = rng.choice([0, 50, 100, -5, 75])
    if rng.random() < 0.8:
        c["users"] = {_user(rng): rng.choice([0, 50, 100, 99]) for _ in range(rng.randint(0, 4))}
    if rng.random() < 0.6:
        c["events"] = {rng.choice(ROOM_TYPES): rng.choice([0, 50, 100]) for _ in range(rng.randint(0, 4))}
    if rng.random() < 0.4:
        c["notifications"] = {"room": rng.choice([0, 50])}
    if rng.random() < 0.2:
        c["historical"] = 100
    return _extras(rng, c, 0.3)


def _content(rng: random.Random, etype: str, room_version: str) -> dict:
    if etype == "m.room.member":
        return _member_content(rng)
    if etype == "m.room.create":
        c: dict[str, Any] = {"room_version": rng.choice(["11", "10", "1", "9", "org.example.v"])}
        if rng.random() < 0.7:
            c["creator"] = _user(rng)
        if rng.random() < 0.3:
            c["m.federate"] = rng.choice([True, False])
        if rng.random() < 0.3:
            c["predecessor"] = {"room_id": "!old:a.test", "event_id": _eid(rng)}
        if rng.random() < 0.2:
            c["type"] = "m.space"
        return _extras(rng, c)
    if etype == "m.room.power_levels":
        return _pl_content(rng)
    if etype == "m.room.join_rules":
        c = {"join_rule": rng.choice(["public", "invite", "knock", "restricted", "knock_restricted", "private"])}
        if rng.random() < 0.5:
            c["allow"] = [{"type": "m.room_membership", "room_id": "!%s:%s" % (_text(rng, 5, string.ascii_letters), rng.choice(SERVERS))}
                          for _ in range(rng.randint(0, 3))]
        return _extras(rng, c)
    if etype == "m.room.history_visibility":
        return _extras(rng, {"history_visibility": rng.choice(["shared", "joined", "invited", "world_readable"])})
    if etype == "m.room.redaction":
        c = {}
        if rng.random() < 0.85:
            c["redacts"] = _eid(rng)
        if rng.random() < 0.3:
            c["reason"] = _text(rng)
        return _extras(rng, c, 0.2)
    if etype == "m.room.aliases":
        return _extras(rng, {"aliases": ["#%s:a.test" % _text(rng, 4, string.ascii_letters)]})
    if etype == "m.room.message":
        c = {"msgtype": "m.text", "body": _text(rng, rng.randint(0, 40))}
        if rng.random() < 0.3:
            c["format"] = "org.matrix.custom.html"
            c["formatted_body"] = "<b>%s</b>" % _text(rng)
        return _extras(rng, c)
    return _extras(rng, {k: random_json(rng, 3) for k in ("body", "name", "topic", "x") if rng.random() < 0.5})


def random_pdu(rng: random.Random, room_version: str = "11", *, etype: str | None = None) -> dict:
    """A random federation-format PDU, not hashed or signed (no event_id)."""
    etype = etype or rng.choice(ROOM_TYPES)
    server = rng.choice(SERVERS)
    sender = "@%s:%s" % (_text(rng, rng.randint(1, 8), string.ascii_lowercase + string.digits), server)
    pdu: dict[str, Any] = {
        "room_id": "!%s:%s" % (_text(rng, 10, string.ascii_letters), rng.choice(SERVERS)),
        "sender": sender,
        "type": etype,
        "content": _content(rng, etype, room_version),
        "prev_events": [_eid(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))],
        "auth_events": [_eid(rng) for _ in range(rng.randint(0, 4))],
        "depth": rng.choice([1, 2, rng.randint(1, 10**6), MAX_SAFE]),
        "origin_server_ts": rng.choice([0, 1, 1_700_000_000_000 + rng.randint(0, 10**9)]),
    }
    stateful = etype not in ("m.room.message", "m.room.redaction", "m.room.encrypted", "m.reaction")
    if stateful and rng.random() < 0.95 or rng.random() < 0.05:
        if etype == "m.room.member":
            pdu["state_key"] = rng.choice([sender, _user(rng)])
        else:
            pdu["state_key"] = rng.choice(["", "", "", _text(rng, 5), sender])
    if etype == "m.room.redaction" and (room_version != "11" or rng.random() < 0.3):
        pdu["redacts"] = _eid(rng)
    r = rng.random()
    if r < 0.5:
        pdu["unsigned"] = _extras(rng, {"age": rng.randint(0, 10**6)}, 0.5)
        if rng.random() < 0.3:
            pdu["unsigned"]["transaction_id"] = "m%d" % rng.randint(0, 999)
    if rng.random() < 0.15:
        pdu["origin"] = server
    if rng.random() < 0.08 and etype == "m.room.member":
        pdu["membership"] = pdu["content"].get("membership", "join")
    if rng.random() < 0.05:
        pdu["prev_state"] = []
    if rng.random() < 0.1:
        pdu[_text(rng, rng.randint(1, 6), string.ascii_lowercase + "_")] = random_json(rng, 2)
    return pdu


# -- hypothesis strategies ----------------------------------------------------

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def pdus(draw: st.DrawFn, room_version: str = "11") -> dict:
    """A random PDU (see :func:`random_pdu`), drawn from a seed so it shrinks by seed."""
    return random_pdu(random.Random(draw(seeds)), room_version)


@st.composite
def room_params(
    draw: st.DrawFn,
    *,
    min_events: int = 20,
    max_events: int = 120,
    max_servers: int = 4,
    max_users: int = 10,
) -> dict:
    """Keyword arguments for ``roomgen.generate_room`` (seed, sizes, fork/merge rates)."""
    return {
        "seed": draw(seeds),
        "n_events": draw(st.integers(min_events, max_events)),
        "n_servers": draw(st.integers(1, max_servers)),
        "n_users": draw(st.integers(2, max_users)),
        "fork_prob": draw(st.sampled_from([0.0, 0.1, 0.2, 0.35])),
        "merge_prob": draw(st.sampled_from([0.1, 0.3, 0.5])),
    }


_unicode_keys = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8
)


def json_values(*, canonical_only: bool = False, max_leaves: int = 20) -> st.SearchStrategy:
    """Random JSON values for canonical-JSON property tests.

    With ``canonical_only`` the values are all valid canonical JSON (safe-range
    ints, no floats); otherwise ints just outside the range, huge ints, floats
    (incl. -0.0, 1e300, integral floats like 1.0) appear too.
    """
    ints = st.one_of(
        st.integers(-(2**53) + 1, 2**53 - 1),
        st.sampled_from([0, -1, 2**53 - 1, -(2**53) + 1]),
    )
    scalars: list[st.SearchStrategy] = [
        st.none(), st.booleans(), ints,
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    ]
    if not canonical_only:
        scalars += [
            st.sampled_from([2**53, -(2**53), 2**63, -(2**63), 2**64 + 1, 10**30]),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([0.0, -0.0, 1.0, 1e300, 0.5, -2.5e-8]),
        ]
    return st.recursive(
        st.one_of(*scalars),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(_unicode_keys, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )
