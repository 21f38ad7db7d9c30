"""The power-levels fast paths of ``check_auth`` (clean contents read and
compared as plain ints, memoised per event) give exactly the answers of the
rule-by-rule path: same allowed, rule and reason, on random power-levels
contents, clean or not, and on the events checked against them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfed.protocol import auth
from simfed.protocol.auth import check_auth, clear_auth_memo

from test_auth_rules import CREATE_K, JR_K, PL_K, A, B, C, D, Room, room

USERS = [A, B, C, A, B, C, "@x:y", "bad", "@nocolon"]
INT = st.sampled_from([-1, 0, 50, 51, 100, 101])  # few values: equal levels are frequent
LEVEL = st.one_of(INT, st.sampled_from([True, False, None, "50", " 7", "x", [1]]))
NAMES = list(auth._LEVEL_NAMES)


def pl_content(draw_levels) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {},
        optional={
            **{n: draw_levels for n in NAMES},
            "users": st.dictionaries(st.sampled_from(USERS), draw_levels, max_size=4),
            "events": st.dictionaries(st.sampled_from(["m.room.topic", "m.room.power_levels", "x"]),
                                      draw_levels, max_size=3),
            "notifications": st.dictionaries(st.just("room"), draw_levels, max_size=1),
        },
    )


CONTENT = st.one_of(pl_content(INT), pl_content(INT), pl_content(INT), pl_content(LEVEL))  # mostly clean


def slow(ev, state, compat):
    """check_auth with every fast path off (no memo, no clean contents)."""
    saved = auth._pl_clean, auth.AUTH_MEMO_MAX
    auth._pl_clean = lambda c: None
    auth.AUTH_MEMO_MAX = 0
    clear_auth_memo()
    try:
        return check_auth(ev, state, "11", compat=compat)
    finally:
        auth._pl_clean, auth.AUTH_MEMO_MAX = saved
        clear_auth_memo()


# Boundaries of each comparison (the random contents rarely meet all of a
# rule's conditions at once): (old, new, sender, sender level).
BOUNDARIES = [
    ({"users": {B: 100}}, {"users": {B: 50}}, A, 100),  # 9.8: another user at the sender's level
    ({"users": {B: 100}}, {"users": {}}, A, 100),  # ... removed
    ({"users": {}}, {"users": {A: 50}}, A, 100),  # the sender lowers itself
    ({"users": {B: 50}}, {"users": {B: 101}}, A, 100),  # 9.9: above the sender
    ({"users": {B: 50}}, {"users": {B: 100}}, A, 100),  # up to the sender's level
    ({"ban": 101}, {}, A, 100),  # 9.5: a named level above the sender removed
    ({"ban": 100}, {}, A, 100),
    ({}, {"kick": 101}, A, 100),
    ({"events": {"x": 101}}, {"events": {}}, A, 100),  # 9.6: an event level removed
    ({"events": {"x": 100}}, {"events": {}}, A, 100),
    ({"events": {"x": 101}}, {"events": {"x": 50}}, A, 100),  # ... lowered from above the sender
    ({"ban": 101}, {"ban": 50}, A, 100),
    ({"users": {B: 101}}, {"users": {B: 50}}, A, 100),
    ({"events": {}}, {"events": {"x": 101}}, A, 100),  # 9.7
    ({"users_default": 60}, {"users_default": 60, "users": {B: 0}}, A, None),  # sender at users_default
    ({"users_default": 49}, {"users_default": 49, "users": {B: 0}}, A, None),  # below state_default
    ({"state_default": 0, "users_default": 1}, {"state_default": 0}, B, None),
]


@pytest.mark.parametrize("old,new,sender,sender_level", BOUNDARIES)
@pytest.mark.parametrize("same_users", [False, True])
def test_power_levels_fast_path_boundaries(old, new, sender, sender_level, same_users):
    for compat in ("spec", "synapse"):
        test_power_levels_fast_path_is_exact.hypothesis.inner_test(old, new, sender, sender_level, compat, same_users)
        test_nonmember_checker_is_exact.hypothesis.inner_test(old, new, sender, sender_level, "join", None,
                                                              ("m.room.power_levels", ""), compat, same_users)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=CONTENT, new=CONTENT, sender=st.sampled_from([A, B, C]), sender_level=st.one_of(st.none(), INT),
       compat=st.sampled_from(["spec", "synapse"]), same_users=st.booleans())
def test_power_levels_fast_path_is_exact(old, new, sender, sender_level, compat, same_users):
    r = room(members={B: "join", C: "join"})
    if sender_level is not None:  # else the sender's level is users_default's
        old = {**old, "users": {**(old.get("users") or {}), sender: sender_level}}
    if same_users:  # changes outside users only (the shortcut for equal users maps)
        new = {**new, "users": old.get("users") or {}}
    r.put("m.room.power_levels", A, old)
    for ev in (r.new("m.room.power_levels", sender, new, ""),
               r.new("m.room.topic", sender, {"topic": "t"}, ""),
               r.new("m.room.message", sender, {"body": "b"}, None),
               r.new("x", sender, {}, "")):
        clear_auth_memo()
        fast = check_auth(ev, r.state, "11", compat=compat)
        again = check_auth(ev, r.state, "11", compat=compat)  # memoised
        assert fast == again == slow(ev, r.state, compat)


FEDERATE = st.sampled_from([None, True, False, 0, "yes"])  # None: no m.federate key
NONMEMBER = st.sampled_from([("m.room.power_levels", "")] * 5 + [("m.room.topic", ""), ("m.room.message", None),
                             ("m.room.third_party_invite", "tok"), ("x", "@alice:a"), ("x", "@bob:b"), ("x", "@x:y")])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=CONTENT, new=CONTENT, sender=st.sampled_from([A, B, C]), sender_level=st.one_of(st.none(), INT),
       membership=st.sampled_from(["join"] * 5 + ["leave", "invite", "ban"]), federate=FEDERATE,
       kind=NONMEMBER, compat=st.sampled_from(["spec", "synapse"]), same_users=st.booleans())
def test_nonmember_checker_is_exact(old, new, sender, sender_level, membership, federate, kind, compat, same_users):
    """``nonmember_checker`` (create, power levels and membership given as
    they are) answers as the rule-by-rule path on the same three events, and
    as ``check_auth`` on a fuller auth state."""
    create_content = {"room_version": "11"} if federate is None else {"room_version": "11", "m.federate": federate}
    r = room(members={B: "join", C: "join"}, create_content=create_content)
    if sender_level is not None:
        old = {**old, "users": {**(old.get("users") or {}), sender: sender_level}}
    if same_users:
        new = {**new, "users": old.get("users") or {}}
    pl = r.put("m.room.power_levels", A, old)
    member = r.put("m.room.member", sender, {"membership": membership}, sender)
    etype, state_key = kind
    ev = r.new(etype, sender, new if etype == "m.room.power_levels" else {"body": "b"}, state_key)
    three = {("m.room.create", ""): r.create, ("m.room.power_levels", ""): pl, ("m.room.member", sender): member}
    clear_auth_memo()
    allowed = auth.nonmember_checker("11", compat=compat)
    fast = allowed(ev, r.create, pl, member)
    assert fast == allowed(ev, r.create, pl, member)  # memoised
    assert fast == slow(ev, three, compat).allowed == check_auth(ev, r.state, "11", compat=compat).allowed


MEMBERSHIP = st.sampled_from(["join", "invite", "leave", "ban", "knock", None])  # None: no such event
JOIN_RULE = st.sampled_from([None, "public", "invite", "knock", "restricted", "knock_restricted", "private", 3])
EXTRA = st.sampled_from([{}, {}, {}, {"join_authorised_via_users_server": B},
                         {"join_authorised_via_users_server": None}, {"third_party_invite": None},
                         {"third_party_invite": {"signed": {"token": "t"}}}])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pl_content=st.one_of(st.none(), CONTENT), sender=st.sampled_from([A, B, C]), target=st.sampled_from([A, B, C]),
       sender_m=MEMBERSHIP, target_m=MEMBERSHIP, membership=st.sampled_from(["join", "invite", "leave", "ban", "knock"]),
       join_rule=JOIN_RULE, federate=FEDERATE, extra=EXTRA, first=st.booleans(),
       compat=st.sampled_from(["spec", "synapse"]))
def test_member_decider_is_exact(pl_content, sender, target, sender_m, target_m, membership, join_rule, federate,
                                 extra, first, compat):
    """``member_decider`` (the five entries given as they are) answers, when
    it answers, as the rule-by-rule path on those entries."""
    create_content = {"room_version": "11"} if federate is None else {"room_version": "11", "m.federate": federate}
    r = Room("11", create_content=create_content)
    state = {CREATE_K: r.create}
    pl = None
    if pl_content is not None:
        pl = state[PL_K] = r.new("m.room.power_levels", A, pl_content, "")
    jr = None
    if join_rule is not None:
        jr = state[JR_K] = r.new("m.room.join_rules", A, {"join_rule": join_rule}, "")
    members = {}
    for user, m in ((sender, sender_m), (target, target_m)):
        if m is not None and user not in members:
            members[user] = state[("m.room.member", user)] = r.new("m.room.member", user, {"membership": m}, user)
    ev = r.new("m.room.member", sender, {"membership": membership, **extra}, target,
               prev=["CREATE"] if first else None)
    decide = auth.member_decider("11", compat=compat)
    got = decide(ev, membership, r.create, pl, members.get(sender), members.get(target), jr)
    if got is not None:
        assert got == slow(ev, state, compat).allowed


def test_member_decider_decides_the_common_cases():
    """The cases the replay meets most are decided here, not handed on,
    including the boundaries of each comparison."""
    r = room(members={B: "join", C: "invite", D: "ban"}, users={B: 50, C: 50})
    decide = auth.member_decider("11", compat="synapse")
    s = r.state
    m = lambda u: s.get(("m.room.member", u))  # noqa: E731
    cases = [
        (r.member(C, "join"), True),
        (r.member(D, "join"), False),  # banned
        (r.member(B, "leave"), True),
        (r.member(D, "leave"), False),
        (r.member(A, "ban", B), True),
        (r.member(B, "ban", C), False),  # the same level
        (r.member(B, "ban", A), False),
        (r.member(A, "leave", B), True),
        (r.member(B, "leave", C), False),  # the same level
        (r.member(B, "leave", D), True),  # unban at the ban level
        (r.member(B, "invite", "@e:e"), True),
        (r.member(B, "invite", D), False),  # banned
        (r.member(C, "invite", "@e:e"), False),  # not joined
    ]
    for ev, want in cases:
        got = decide(ev, ev.membership, r.create, s[PL_K], m(ev.sender), m(ev.state_key), s[JR_K])
        assert got is want, ev.content
        assert got == slow(ev, s, "synapse").allowed
