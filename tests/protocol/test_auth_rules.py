"""Behaviour tests for the authorisation rules (protocol.md §2.2, §2.3).

Every rule of §2.3 gets at least one accept and one reject case, asserting
both ``.allowed`` and ``.rule``. Events are real (hashed, signed) events from
:class:`builders.RoomBuilder`; the auth state is assembled directly as a map
``(type, state_key) → Event``, which is what :func:`check_auth` takes.
"""

from __future__ import annotations

import itertools

import pytest

from builders import RoomBuilder
from simfed.protocol import (
    Event,
    SigningKey,
    auth_events_for,
    auth_types_for_event,
    canonical_json,
    check_auth,
    check_auth_events_sanity,
    derive_server_key,
    encode_base64,
    sign_event,
)

A, B, C, D = "@alice:a", "@bob:b", "@carol:c", "@dave:d"
A2 = "@alice2:a"  # a second user on the creator's server

CREATE_K = ("m.room.create", "")
PL_K = ("m.room.power_levels", "")
JR_K = ("m.room.join_rules", "")


def mk(t: str, sk: str = "") -> tuple[str, str]:
    return (t, sk)


class Room:
    """A room under construction plus an auth state we edit directly.

    ``put`` builds an event and places it in ``state``; ``new`` builds one
    without touching the state (the event under test).
    """

    def __init__(self, version: str = "11", *, creator: str = A, room_id: str = "!r:a",
                 create_content: dict | None = None) -> None:
        self.version = version
        self.b = RoomBuilder(room_id=room_id, room_version=version)
        self._n = itertools.count()
        content = {"room_version": version}
        if version == "10":
            content["creator"] = creator
        if create_content is not None:
            content = create_content
        self.create = self.b.add("CREATE", "m.room.create", creator, content, state_key="")
        self.state: dict[tuple[str, str], Event] = {CREATE_K: self.create}
        self.last = "CREATE"

    def new(self, type: str, sender: str, content: dict, state_key: str | None = None, *,
            prev: list[str] | None = None, auth: tuple[str, ...] = ()) -> Event:
        name = f"e{next(self._n)}"
        ev = self.b.add(name, type, sender, content, state_key=state_key,
                        prev=[self.last] if prev is None else prev, auth=auth)
        return ev

    def put(self, type: str, sender: str, content: dict, state_key: str | None = "", **kw) -> Event:
        ev = self.new(type, sender, content, state_key, **kw)
        self.last = self._name(ev)
        self.state[(ev.type, ev.state_key)] = ev
        return ev

    def _name(self, ev: Event) -> str:
        return next(n for n, e in self.b.by_name.items() if e is ev)

    def member(self, sender: str, membership: str, target: str | None = None, *, put: bool = False,
               extra: dict | None = None, **kw) -> Event:
        content = {"membership": membership, **(extra or {})}
        if put:
            return self.put("m.room.member", sender, content, target or sender, **kw)
        return self.new("m.room.member", sender, content, target or sender, **kw)

    def check(self, ev: Event, *, compat: str = "spec", version: str | None = None):
        return check_auth(ev, self.state, version or self.version, compat=compat)


def room(*, users: dict | None = None, join_rule: str | None = "public", members: dict | None = None,
         pl_extra: dict | None = None, version: str = "11", pl: bool = True, **kw) -> Room:
    """create, alice's join, PL (alice 100 + ``users``), join rules, then
    ``members`` (user → membership) placed straight into the state."""
    r = Room(version, **kw)
    r.member(A, "join", put=True, prev=["CREATE"])
    if pl:
        content = {"users": {A: 100, **(users or {})}, **(pl_extra or {})}
        r.put("m.room.power_levels", A, content)
    if join_rule is not None:
        r.put("m.room.join_rules", A, {"join_rule": join_rule})
    for user, m in (members or {}).items():
        # Sender does not matter to check_auth for a state entry: only content.
        sender = user if m in ("join", "leave", "knock") else A
        r.member(sender, m, user, put=True)
    return r


def ok(res, rule: str) -> None:
    assert res.allowed, res
    assert res.rule == rule, res


def no(res, rule: str) -> None:
    assert not res.allowed, res
    assert res.rule == rule, res


# -- rule 1: m.room.create -----------------------------------------------------


class TestRule1Create:
    def test_1_1_prev_events_rejected(self):
        r = Room()
        ev = r.b.add("C2", "m.room.create", A, {"room_version": "11"}, state_key="", prev=["CREATE"])
        no(check_auth(ev, {}, "11"), "1.1")

    def test_1_2_room_server_must_be_sender_server(self):
        b = RoomBuilder(room_id="!r:a")
        ev = b.add("C", "m.room.create", B, {"room_version": "11"}, state_key="")
        no(check_auth(ev, {}, "11"), "1.2")

    def test_1_3_unknown_room_version_rejected(self):
        b = RoomBuilder()
        ev = b.add("C", "m.room.create", A, {"room_version": "99"}, state_key="")
        no(check_auth(ev, {}, "11"), "1.3")

    @pytest.mark.parametrize("content", [{"room_version": "11"}, {"room_version": "1"}, {}])
    def test_1_3_known_or_absent_room_version_accepted(self, content):
        # Absent is treated as "1", which is a version the server knows.
        ev = RoomBuilder().add("C", "m.room.create", A, content, state_key="")
        res = check_auth(ev, {}, "11")
        assert res.allowed
        # v11 accepts at step 1.4 of §2.3; simfed labels the v11 accept "1".
        assert res.rule in ("1", "1.4")

    def test_1_4_v10_requires_creator(self):
        b = RoomBuilder(room_version="10")
        ev = b.add("C", "m.room.create", A, {"room_version": "10"}, state_key="")
        no(check_auth(ev, {}, "10"), "1.4")
        ok(check_auth(Room("10").create, {}, "10"), "1.4")

    def test_1_4_v11_does_not_require_creator(self):
        ev = RoomBuilder().add("C", "m.room.create", A, {"room_version": "11"}, state_key="")
        assert check_auth(ev, {}, "11").allowed

    def test_create_checked_without_any_auth_state(self):
        r = room()
        assert check_auth(r.create, r.state, "11").allowed


# -- rule 2: auth-event sanity -------------------------------------------------


class TestRule2Sanity:
    def setup_method(self):
        self.r = r = room(members={C: "join"})
        self.pl = r.state[PL_K]
        self.jr = r.state[JR_K]

    def test_accept(self):
        r = self.r
        ev = r.member(B, "join")
        res = check_auth_events_sanity(ev, [r.create, self.pl, self.jr])
        ok(res, "2")

    def test_create_event_is_exempt(self):
        assert check_auth_events_sanity(self.r.create, []).allowed

    def test_2_1_duplicate_key(self):
        r = self.r
        pl_b = r.new("m.room.power_levels", A, {"users": {A: 100, C: 1}}, "")
        ev = r.new("m.room.message", A, {"body": "x"})
        no(check_auth_events_sanity(ev, [r.create, self.pl, pl_b, r.state[mk("m.room.member", A)]]), "2.1")

    def test_2_2_unexpected_key(self):
        r = self.r
        ev = r.new("m.room.message", A, {"body": "x"})
        # join_rules is only cited by join/invite/knock memberships
        no(check_auth_events_sanity(ev, [r.create, self.pl, self.jr]), "2.2")
        # another user's membership is not citable by a message
        no(check_auth_events_sanity(ev, [r.create, r.state[mk("m.room.member", C)]]), "2.2")

    def test_2_2_non_state_auth_event(self):
        r = self.r
        msg = r.new("m.room.message", A, {"body": "x"})
        ev = r.new("m.room.message", A, {"body": "y"})
        no(check_auth_events_sanity(ev, [r.create, msg]), "2.2")

    def test_2_3_rejected_auth_event(self):
        r = self.r
        ev = r.new("m.room.message", A, {"body": "x"})
        no(check_auth_events_sanity(ev, [r.create, self.pl], rejected={self.pl.event_id}), "2.3")
        no(check_auth_events_sanity(ev, [r.create, self.pl], rejected=[self.pl.event_id]), "2.3")
        ok(check_auth_events_sanity(ev, [r.create, self.pl], rejected=["$other"]), "2")

    def test_2_4_no_create(self):
        r = self.r
        ev = r.new("m.room.message", A, {"body": "x"})
        no(check_auth_events_sanity(ev, [self.pl, r.state[mk("m.room.member", A)]]), "2.4")
        # check_auth itself also refuses an auth state without a create event
        st = {k: v for k, v in r.state.items() if k != CREATE_K}
        no(check_auth(ev, st, "11"), "2.4")

    def test_2_5_other_room(self):
        r = self.r
        other = room(room_id="!other:a")
        ev = r.new("m.room.message", A, {"body": "x"})
        no(check_auth_events_sanity(ev, [r.create, other.state[PL_K]]), "2.5")

    def test_unknown_auth_event(self):
        r = self.r
        ev = r.new("m.room.message", A, {"body": "x"})
        no(check_auth_events_sanity(ev, [r.create, None]), "2")

    def test_member_may_cite_target_join_rules_and_authoriser(self):
        r = self.r
        ev = r.member(B, "join", extra={"join_authorised_via_users_server": C})
        res = check_auth_events_sanity(ev, [r.create, self.pl, self.jr, r.state[mk("m.room.member", C)]])
        ok(res, "2")
        kick = r.member(A, "leave", C)
        ok(check_auth_events_sanity(kick, [r.create, self.pl, r.state[mk("m.room.member", A)],
                                           r.state[mk("m.room.member", C)]]), "2")
        # ... but a kick does not cite the join rules
        no(check_auth_events_sanity(kick, [r.create, self.jr]), "2.2")


# -- rule 3: m.federate ----------------------------------------------------------


class TestRule3Federate:
    def make(self):
        r = Room(create_content={"room_version": "11", "m.federate": False})
        r.member(A, "join", put=True, prev=["CREATE"])
        r.put("m.room.join_rules", A, {"join_rule": "public"})
        return r

    def test_remote_sender_rejected(self):
        r = self.make()
        r.member(B, "join", put=True)  # even if (somehow) joined
        no(r.check(r.new("m.room.message", B, {"body": "x"})), "3")
        no(r.check(r.member(B, "join")), "3")

    def test_local_sender_accepted(self):
        r = self.make()
        ok(r.check(r.member(A2, "join")), "4.3.6")
        ok(r.check(r.new("m.room.message", A, {"body": "x"})), "10")

    def test_federate_true_allows_remote(self):
        r = Room(create_content={"room_version": "11", "m.federate": True})
        r.member(A, "join", put=True, prev=["CREATE"])
        r.put("m.room.join_rules", A, {"join_rule": "public"})
        ok(r.check(r.member(B, "join")), "4.3.6")

    @pytest.mark.parametrize("value", [0, "false", None, "yes"])
    def test_spec_only_literal_false_disables_federation(self, value):
        r = Room(create_content={"room_version": "11", "m.federate": value})
        r.member(A, "join", put=True, prev=["CREATE"])
        r.put("m.room.join_rules", A, {"join_rule": "public"})
        ok(r.check(r.member(B, "join")), "4.3.6")

    @pytest.mark.parametrize("value", [0, "false", None])
    def test_synapse_non_true_federate_is_unfederated(self, value):
        r = Room(create_content={"room_version": "11", "m.federate": value})
        r.member(A, "join", put=True, prev=["CREATE"])
        r.put("m.room.join_rules", A, {"join_rule": "public"})
        no(r.check(r.member(B, "join"), compat="synapse"), "3")

    def test_target_spec_vs_synapse(self):
        # protocol.md §8 item 6: Synapse also checks a membership's target.
        r = self.make()
        inv = r.member(A, "invite", B)
        ok(r.check(inv), "4.4.4")
        no(r.check(inv, compat="synapse"), "3")
        # a local target is fine for both
        ok(r.check(r.member(A, "invite", A2), compat="synapse"), "4.4.4")


# -- rule 4: m.room.member ---------------------------------------------------------


class TestRule4_1:
    def test_missing_membership(self):
        r = room()
        ev = r.new("m.room.member", B, {"displayname": "b"}, B)
        no(r.check(ev), "4.1")

    def test_missing_state_key(self):
        r = room()
        ev = r.new("m.room.member", B, {"membership": "join"}, None)
        no(r.check(ev), "4.1")

    def test_present(self):
        r = room()
        ok(r.check(r.member(B, "join")), "4.3.6")


def _cosigned_join(r: Room, sender: str, authoriser_server: str, *, membership: str = "join",
                   via: str, ts: int = 10_000, target: str | None = None) -> Event:
    """A membership event signed by the sender's server and the authoriser's."""
    fields = {
        "room_id": r.b.room_id, "sender": sender, "type": "m.room.member",
        "state_key": target or sender,
        "content": {"membership": membership, "join_authorised_via_users_server": via},
        "prev_events": [r.b.id(r.last)], "auth_events": [], "depth": 50, "origin_server_ts": ts,
    }
    co = sign_event(fields, authoriser_server, derive_server_key(0, authoriser_server), r.version)
    co.pop("hashes")
    ev = Event.create(co, sender.partition(":")[2], derive_server_key(0, sender.partition(":")[2]), r.version)
    assert set(ev.signatures) == {sender.partition(":")[2], authoriser_server}
    return ev


class TestRule4_2Authoriser:
    def test_unsigned_by_authoriser_rejected(self):
        r = room(join_rule="restricted", members={C: "join"})
        ev = r.member(B, "join", extra={"join_authorised_via_users_server": C})
        no(r.check(ev), "4.2")
        no(r.check(ev, compat="synapse"), "4.2")

    def test_signed_by_authoriser_accepted(self):
        r = room(join_rule="restricted", members={C: "join"})
        ev = _cosigned_join(r, B, "c", via=C)
        ok(r.check(ev), "4.3.5")

    def test_authoriser_is_not_a_user_id(self):
        r = room(join_rule="restricted", members={C: "join"})
        ev = r.member(B, "join", extra={"join_authorised_via_users_server": "nobody"})
        no(r.check(ev), "4.2")

    def test_non_join_spec_vs_synapse(self):
        # §8 item 7: the spec checks the authoriser's signature on any
        # membership; Synapse only on joins.
        r = room(members={B: "join"})
        leave = r.member(B, "leave", extra={"join_authorised_via_users_server": C})
        no(r.check(leave), "4.2")
        ok(r.check(leave, compat="synapse"), "4.5.1")
        inv = r.member(A, "invite", D, extra={"join_authorised_via_users_server": C})
        no(r.check(inv), "4.2")
        ok(r.check(inv, compat="synapse"), "4.4.4")


class TestRule4_3Join:
    def test_4_3_1_creator_first_join(self):
        r = Room()
        ev = r.member(A, "join", prev=["CREATE"])
        ok(r.check(ev), "4.3.1")

    def test_4_3_1_not_creator(self):
        r = Room()
        no(r.check(r.member(B, "join", prev=["CREATE"])), "4.3.7")

    def test_4_3_1_creator_not_directly_after_create(self):
        r = Room()
        r.member(A, "join", put=True, prev=["CREATE"])
        r.member(A, "leave", put=True)
        # The creator's later re-join has a prev other than the create event
        # and no join rules exist: rejected (spec).
        no(r.check(r.member(A, "join")), "4.3.7")

    def test_4_3_2_join_for_someone_else(self):
        r = room()
        no(r.check(r.member(A, "join", B)), "4.3.2")

    def test_4_3_3_banned(self):
        r = room(members={B: "ban"})
        no(r.check(r.member(B, "join")), "4.3.3")

    @pytest.mark.parametrize("rule", ["invite", "knock"])
    @pytest.mark.parametrize("current", ["invite", "join"])
    def test_4_3_4_invite_or_knock_with_invite(self, rule, current):
        r = room(join_rule=rule, members={B: current})
        ok(r.check(r.member(B, "join")), "4.3.4")

    @pytest.mark.parametrize("rule", ["invite", "knock"])
    @pytest.mark.parametrize("current", [None, "leave", "knock"])
    def test_4_3_4_invite_or_knock_uninvited(self, rule, current):
        r = room(join_rule=rule, members={B: current} if current else {})
        # protocol.md words this as falling through to 4.3.7; simfed labels
        # the rejection with the join-rule step 4.3.4.
        no(r.check(r.member(B, "join")), "4.3.4")

    @pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
    @pytest.mark.parametrize("current", ["invite", "join"])
    def test_4_3_5_restricted_with_invite(self, rule, current):
        r = room(join_rule=rule, members={B: current})
        ok(r.check(r.member(B, "join")), "4.3.5")

    @pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
    def test_4_3_5_restricted_authorised(self, rule):
        r = room(join_rule=rule, users={C: 50}, pl_extra={"invite": 50}, members={C: "join"})
        ok(r.check(_cosigned_join(r, B, "c", via=C)), "4.3.5")

    def test_4_3_5_restricted_no_authoriser(self):
        r = room(join_rule="restricted", members={C: "join"})
        no(r.check(r.member(B, "join")), "4.3.5")

    def test_4_3_5_authoriser_not_joined(self):
        r = room(join_rule="restricted", members={C: "leave"})
        no(r.check(_cosigned_join(r, B, "c", via=C)), "4.3.5")
        r2 = room(join_rule="restricted")  # no membership at all
        no(r2.check(_cosigned_join(r2, B, "c", via=C, ts=10_001)), "4.3.5")

    def test_4_3_5_authoriser_below_invite_level(self):
        r = room(join_rule="restricted", users={C: 10}, pl_extra={"invite": 50}, members={C: "join"})
        no(r.check(_cosigned_join(r, B, "c", via=C)), "4.3.5")

    def test_4_3_5_authoriser_does_not_bypass_ban(self):
        r = room(join_rule="restricted", members={C: "join", B: "ban"})
        no(r.check(_cosigned_join(r, B, "c", via=C)), "4.3.3")

    @pytest.mark.parametrize("current", [None, "leave", "invite", "join", "knock"])
    def test_4_3_6_public(self, current):
        r = room(members={B: current} if current else {})
        ok(r.check(r.member(B, "join")), "4.3.6")

    @pytest.mark.parametrize("rule", ["private", "unknown-rule"])
    def test_4_3_7_other_rules(self, rule):
        r = room(join_rule=rule, members={C: "invite"})
        no(r.check(r.member(B, "join")), "4.3.7")
        no(r.check(r.member(C, "join")), "4.3.7")  # even invited

    def test_4_3_7_no_join_rules_spec_vs_synapse(self):
        # §8 item 8: the spec rejects; Synapse assumes "invite".
        r = room(join_rule=None, members={B: "invite"})
        ev = r.member(B, "join")
        no(r.check(ev), "4.3.7")
        ok(r.check(ev, compat="synapse"), "4.3.4")
        uninvited = r.member(C, "join")
        no(r.check(uninvited), "4.3.7")
        no(r.check(uninvited, compat="synapse"), "4.3.4")


# -- third-party invites (4.4.1) -----------------------------------------------------

ID_KEY = SigningKey.from_seed(bytes(range(32)), "ed25519:0")
OTHER_KEY = SigningKey.from_seed(bytes(range(1, 33)), "ed25519:0")
TOKEN = "tok123"


def _signed_block(mxid: str = B, token: str = TOKEN, key: SigningKey = ID_KEY, **drop) -> dict:
    body = {"mxid": mxid, "token": token}
    sig = encode_base64(key.sign(canonical_json(body)))
    out = {**body, "signatures": {"id.example": {key.key_id: sig}}}
    for k in drop:
        out.pop(k, None)
    return out


def _tp_room(*, tp_sender: str = A, keys: str = "public_key", members: dict | None = None,
             with_tp: bool = True, users: dict | None = None, pl_extra: dict | None = None) -> Room:
    r = room(join_rule="invite", members={C: "join", **(members or {})}, users=users, pl_extra=pl_extra)
    if with_tp:
        pk = ID_KEY.public_key_base64
        content: dict = {"display_name": "b...", "key_validity_url": "https://id.example/isvalid"}
        if keys == "public_key":
            content["public_key"] = pk
        elif keys == "public_keys":
            content["public_keys"] = [{"public_key": OTHER_KEY.public_key_base64}, {"public_key": pk}]
        r.put("m.room.third_party_invite", tp_sender, content, TOKEN)
    return r


def _tp_invite(r: Room, signed, sender: str = A, target: str = B) -> Event:
    tpi = {"display_name": "b..."}
    if signed is not None:
        tpi["signed"] = signed
    return r.member(sender, "invite", target, extra={"third_party_invite": tpi})


class TestRule4_4_1ThirdPartyInvite:
    def test_signed_block_is_really_signed(self):
        from simfed.protocol import verify_json

        verify_json(_signed_block(), "id.example", ID_KEY.verify_key)

    @pytest.mark.parametrize("keys", ["public_key", "public_keys"])
    def test_accept(self, keys):
        r = _tp_room(keys=keys)
        ok(r.check(_tp_invite(r, _signed_block())), "4.4.1")

    def test_no_sender_membership_or_level_check(self):
        # carol made the m.room.third_party_invite, then left; invite level is
        # high: the third-party path still accepts.
        r = _tp_room(tp_sender=C, pl_extra={"invite": 100})
        r.member(C, "leave", put=True)
        ok(r.check(_tp_invite(r, _signed_block(), sender=C)), "4.4.1")

    def test_target_banned(self):
        r = _tp_room(members={B: "ban"})
        no(r.check(_tp_invite(r, _signed_block())), "4.4.1")

    def test_no_signed(self):
        r = _tp_room()
        no(r.check(_tp_invite(r, None)), "4.4.1")

    @pytest.mark.parametrize("missing", ["mxid", "token"])
    def test_signed_lacks_mxid_or_token(self, missing):
        r = _tp_room()
        no(r.check(_tp_invite(r, _signed_block(**{missing: True}))), "4.4.1")

    def test_mxid_not_state_key(self):
        r = _tp_room()
        no(r.check(_tp_invite(r, _signed_block(mxid=D))), "4.4.1")

    def test_no_third_party_invite_event(self):
        r = _tp_room(with_tp=False)
        no(r.check(_tp_invite(r, _signed_block())), "4.4.1")
        r2 = _tp_room()
        no(r2.check(_tp_invite(r2, _signed_block(token="other-token"))), "4.4.1")

    def test_sender_differs_from_tp_event_sender(self):
        r = _tp_room(tp_sender=C)
        no(r.check(_tp_invite(r, _signed_block(), sender=A)), "4.4.1")

    def test_wrong_key(self):
        r = _tp_room()
        no(r.check(_tp_invite(r, _signed_block(key=OTHER_KEY))), "4.4.1")

    def test_tampered_signed_block(self):
        r = _tp_room()
        signed = _signed_block()
        signed["extra"] = "added after signing"
        no(r.check(_tp_invite(r, signed)), "4.4.1")

    def test_no_signatures(self):
        r = _tp_room()
        signed = _signed_block()
        del signed["signatures"]
        no(r.check(_tp_invite(r, signed)), "4.4.1")

    def test_tp_invite_event_cited_by_auth_selection(self):
        r = _tp_room()
        inv = _tp_invite(r, _signed_block())
        keys = auth_types_for_event(inv.type, inv.state_key, inv.sender, inv.content)
        assert ("m.room.third_party_invite", TOKEN) in keys


# -- invites (4.4.2-4.4.4) -------------------------------------------------------------


class TestRule4_4Invite:
    def test_4_4_2_sender_not_joined(self):
        for m in (None, "invite", "leave", "ban", "knock"):
            r = room(join_rule="invite", members={C: m} if m else {})
            no(r.check(r.member(C, "invite", B)), "4.4.2")

    @pytest.mark.parametrize("target", ["join", "ban"])
    def test_4_4_3_target_joined_or_banned(self, target):
        r = room(join_rule="invite", members={B: target})
        no(r.check(r.member(A, "invite", B)), "4.4.3")

    @pytest.mark.parametrize("target", [None, "invite", "leave", "knock"])
    def test_4_4_4_accept(self, target):
        r = room(join_rule="invite", members={B: target} if target else {})
        ok(r.check(r.member(A, "invite", B)), "4.4.4")

    def test_4_4_4_level(self):
        r = room(join_rule="invite", users={C: 10}, pl_extra={"invite": 50}, members={C: "join"})
        no(r.check(r.member(C, "invite", B)), "4.4.4")
        r = room(join_rule="invite", users={C: 50}, pl_extra={"invite": 50}, members={C: "join"})
        ok(r.check(r.member(C, "invite", B)), "4.4.4")

    def test_default_invite_level_is_0(self):
        r = room(join_rule="invite", members={C: "join"})
        ok(r.check(r.member(C, "invite", B)), "4.4.4")


# -- leave / kick / unban (4.5) ------------------------------------------------------------


class TestRule4_5Leave:
    @pytest.mark.parametrize("current", ["invite", "join", "knock"])
    def test_4_5_1_self_leave_accept(self, current):
        r = room(members={B: current})
        ok(r.check(r.member(B, "leave")), "4.5.1")

    @pytest.mark.parametrize("current", [None, "leave", "ban"])
    def test_4_5_1_self_leave_reject(self, current):
        r = room(members={B: current} if current else {})
        no(r.check(r.member(B, "leave")), "4.5.1")

    @pytest.mark.parametrize("sender_m", [None, "invite", "leave", "ban", "knock"])
    def test_4_5_2_kicker_not_joined(self, sender_m):
        r = room(users={C: 100}, members={B: "join", **({C: sender_m} if sender_m else {})})
        no(r.check(r.member(C, "leave", B)), "4.5.2")

    def test_4_5_3_unban_needs_ban_level(self):
        r = room(users={C: 55}, pl_extra={"kick": 50, "ban": 60}, members={C: "join", B: "ban"})
        no(r.check(r.member(C, "leave", B)), "4.5.3")

    def test_4_5_4_kick(self):
        r = room(users={C: 50}, members={C: "join", B: "join"})
        ok(r.check(r.member(C, "leave", B)), "4.5.4")

    def test_4_5_4_unban(self):
        r = room(users={C: 60}, pl_extra={"kick": 50, "ban": 60}, members={C: "join", B: "ban"})
        ok(r.check(r.member(C, "leave", B)), "4.5.4")

    def test_4_5_4_kick_invited_or_absent(self):
        # kicking also rescinds invites, and works on an absent target
        r = room(members={B: "invite"})
        ok(r.check(r.member(A, "leave", B)), "4.5.4")
        ok(r.check(r.member(A, "leave", D)), "4.5.4")

    def test_4_5_5_below_kick_level(self):
        r = room(users={C: 49}, members={C: "join", B: "join"})
        no(r.check(r.member(C, "leave", B)), "4.5.5")

    def test_4_5_5_target_not_below(self):
        r = room(users={C: 50, B: 50}, members={C: "join", B: "join"})
        no(r.check(r.member(C, "leave", B)), "4.5.5")
        r = room(users={C: 50, B: 70}, members={C: "join", B: "join"})
        no(r.check(r.member(C, "leave", B)), "4.5.5")


# -- ban (4.6) -----------------------------------------------------------------------------


class TestRule4_6Ban:
    @pytest.mark.parametrize("target", [None, "join", "invite", "leave", "knock", "ban"])
    def test_accept_any_target_state(self, target):
        r = room(members={B: target} if target else {})
        ok(r.check(r.member(A, "ban", B)), "4.6")

    def test_sender_not_joined(self):
        r = room(users={C: 100}, members={C: "leave", B: "join"})
        no(r.check(r.member(C, "ban", B)), "4.6")

    def test_below_ban_level(self):
        r = room(users={C: 40}, pl_extra={"ban": 50}, members={C: "join", B: "join"})
        no(r.check(r.member(C, "ban", B)), "4.6")

    def test_target_not_below(self):
        r = room(users={C: 50, B: 50}, members={C: "join", B: "join"})
        no(r.check(r.member(C, "ban", B)), "4.6")

    def test_self_ban_impossible(self):
        r = room()
        no(r.check(r.member(A, "ban", A)), "4.6")


# -- knock (4.7) ---------------------------------------------------------------------------


class TestRule4_7Knock:
    @pytest.mark.parametrize("rule", ["public", "invite", "restricted", "private"])
    def test_4_7_1_wrong_join_rule(self, rule):
        r = room(join_rule=rule)
        no(r.check(r.member(B, "knock")), "4.7.1")

    def test_4_7_1_no_join_rules(self):
        r = room(join_rule=None)
        no(r.check(r.member(B, "knock")), "4.7.1")
        # Synapse assumes "invite": still no knocking
        no(r.check(r.member(B, "knock"), compat="synapse"), "4.7.1")

    def test_4_7_2_on_behalf(self):
        r = room(join_rule="knock")
        no(r.check(r.member(A, "knock", B)), "4.7.2")

    @pytest.mark.parametrize("rule", ["knock", "knock_restricted"])
    @pytest.mark.parametrize("current", [None, "leave", "knock"])
    def test_4_7_3_accept(self, rule, current):
        r = room(join_rule=rule, members={B: current} if current else {})
        ok(r.check(r.member(B, "knock")), "4.7.3")

    @pytest.mark.parametrize("current", ["ban", "invite", "join"])
    def test_4_7_3_reject(self, current):
        r = room(join_rule="knock", members={B: current})
        no(r.check(r.member(B, "knock")), "4.7.3")

    def test_invited_knock_spec(self):
        r = room(join_rule="knock", members={B: "invite"})
        no(r.check(r.member(B, "knock")), "4.7.3")

    def test_banned_or_joined_knock_refused_by_both(self):
        for m in ("ban", "join"):
            r = room(join_rule="knock", members={B: m})
            no(r.check(r.member(B, "knock")), "4.7.3")
            no(r.check(r.member(B, "knock"), compat="synapse"), "4.7.3")

    def test_invited_knock_synapse_matches_synapse(self):
        r = room(join_rule="knock", members={B: "invite"})
        no(r.check(r.member(B, "knock"), compat="synapse"), "4.7.3")


class TestRule4_8:
    @pytest.mark.parametrize("m", ["foo", "JOIN", ""])
    def test_unknown_membership(self, m):
        r = room()
        no(r.check(r.member(B, m)), "4.8")

    def test_non_string_membership(self):
        r = room()
        ev = r.new("m.room.member", B, {"membership": 5}, B)
        no(r.check(ev), "4.8")


# -- rules 5-8, 10 ----------------------------------------------------------------------------


class TestRule5Membership:
    @pytest.mark.parametrize("m", [None, "invite", "leave", "ban", "knock"])
    def test_non_member_rejected(self, m):
        r = room(members={B: m} if m else {})
        no(r.check(r.new("m.room.message", B, {"body": "x"})), "5")
        no(r.check(r.new("m.room.topic", B, {"topic": "x"}, "")), "5")

    def test_member_accepted(self):
        r = room(members={B: "join"})
        ok(r.check(r.new("m.room.message", B, {"body": "x"})), "10")


class TestRule6ThirdPartyInviteEvent:
    def test_accept(self):
        r = room(members={B: "join"})
        ok(r.check(r.new("m.room.third_party_invite", B, {"public_key": "x"}, "t")), "6")

    def test_reject_below_invite_level(self):
        r = room(pl_extra={"invite": 50}, members={B: "join"})
        no(r.check(r.new("m.room.third_party_invite", B, {"public_key": "x"}, "t")), "6")

    def test_non_member(self):
        r = room()
        no(r.check(r.new("m.room.third_party_invite", B, {"public_key": "x"}, "t")), "5")

    def test_ignores_send_level(self):
        # rule 6 decides before rule 7: a high events[] level does not matter
        r = room(pl_extra={"events": {"m.room.third_party_invite": 100}}, members={B: "join"})
        ok(r.check(r.new("m.room.third_party_invite", B, {}, "t")), "6")


class TestRule7SendLevel:
    def test_state_default_50(self):
        r = room(members={B: "join"})
        no(r.check(r.new("m.room.topic", B, {"topic": "x"}, "")), "7")
        ok(r.check(r.new("m.room.topic", A, {"topic": "x"}, "")), "10")

    def test_events_override(self):
        r = room(pl_extra={"events": {"m.room.topic": 0, "m.room.message": 20}}, members={B: "join"})
        ok(r.check(r.new("m.room.topic", B, {"topic": "x"}, "")), "10")
        no(r.check(r.new("m.room.message", B, {"body": "x"})), "7")

    def test_events_default(self):
        r = room(users={B: 9}, pl_extra={"events_default": 10}, members={B: "join"})
        no(r.check(r.new("m.room.message", B, {"body": "x"})), "7")
        r = room(users={B: 10}, pl_extra={"events_default": 10}, members={B: "join"})
        ok(r.check(r.new("m.room.message", B, {"body": "x"})), "10")

    def test_state_default_set(self):
        r = room(users={B: 5}, pl_extra={"state_default": 5}, members={B: "join"})
        ok(r.check(r.new("org.example.x", B, {}, "k")), "10")

    def test_users_default(self):
        r = room(pl_extra={"users_default": 50}, members={B: "join"})
        ok(r.check(r.new("m.room.topic", B, {"topic": "x"}, "")), "10")

    def test_redaction_uses_send_level_not_redact_level(self):
        r = room(pl_extra={"redact": 100}, members={B: "join"})
        ok(r.check(r.new("m.room.redaction", B, {"redacts": "$x"})), "10")
        r = room(pl_extra={"events": {"m.room.redaction": 60}}, members={B: "join"})
        no(r.check(r.new("m.room.redaction", B, {"redacts": "$x"})), "7")

    def test_no_power_levels_event(self):
        r = room(pl=False, members={B: "join"})
        ok(r.check(r.new("m.room.topic", A, {"topic": "x"}, "")), "10")  # creator 100
        no(r.check(r.new("m.room.topic", B, {"topic": "x"}, "")), "7")  # state 50 > 0
        ok(r.check(r.new("m.room.message", B, {"body": "x"})), "10")  # message 0


class TestRule8StateKeyUser:
    def test_other_user_key(self):
        r = room()
        no(r.check(r.new("org.example.x", A, {}, B)), "8")

    def test_own_key(self):
        r = room()
        ok(r.check(r.new("org.example.x", A, {}, A)), "10")
        ok(r.check(r.new("org.example.x", A, {}, "not-a-user")), "10")


# -- rule 9: power levels ---------------------------------------------------------------------


def _pl_room(old: dict | None, **kw) -> Room:
    """alice 100, bob 50 by default, both joined; ``old`` replaces PL content."""
    r = room(users={B: 50}, members={B: "join", C: "join"}, **kw)
    if old is not None:
        r.put("m.room.power_levels", A, old)
    return r


def _pl(r: Room, sender: str, content: dict) -> Event:
    return r.new("m.room.power_levels", sender, content, "")


BASE = {"users": {A: 100, B: 50}}


class TestRule9PowerLevels:
    @pytest.mark.parametrize("version", ["10", "11"])
    @pytest.mark.parametrize("name", ["users_default", "events_default", "state_default", "ban", "redact",
                                      "kick", "invite"])
    @pytest.mark.parametrize("bad", ["50", None, True, [50], {"v": 50}])
    def test_9_1_non_integer_levels(self, version, name, bad):
        r = _pl_room(None, version=version)
        no(r.check(_pl(r, A, {**BASE, name: bad})), "9.1")

    @pytest.mark.parametrize("field,bad", [
        ("events", {"m.room.name": "50"}),
        ("events", []),
        ("notifications", {"room": "x"}),
        ("notifications", 5),
    ])
    def test_9_2_maps_of_integers(self, field, bad):
        r = _pl_room(None)
        no(r.check(_pl(r, A, {**BASE, field: bad})), "9.2")

    @pytest.mark.parametrize("users", [{"not-a-user": 10}, {B: "10"}, {B: None}, [A], 3])
    def test_9_3_users(self, users):
        r = _pl_room(None)
        no(r.check(_pl(r, A, {"users": users})), "9.3")

    def test_9_3_missing_users_accepted(self):
        # Synapse accepts a missing users object; first PL → 9.4
        r = room(pl=False)
        ok(r.check(_pl(r, A, {"ban": 50})), "9.4")

    def test_9_4_first_power_levels(self):
        r = room(pl=False)
        ok(r.check(_pl(r, A, {"users": {A: 100, B: 100}, "kick": 0})), "9.4")

    def test_9_4_first_pl_still_needs_send_level(self):
        r = room(pl=False, members={B: "join"})
        no(r.check(_pl(r, B, {"users": {B: 100}})), "7")

    @pytest.mark.parametrize("name", ["users_default", "events_default", "state_default", "ban", "redact",
                                      "kick", "invite"])
    def test_9_5_new_value_above_sender(self, name):
        r = _pl_room(dict(BASE))
        no(r.check(_pl(r, B, {**BASE, name: 51})), "9.5")
        ok(r.check(_pl(r, B, {**BASE, name: 50})), "9.10")

    def test_9_5_old_value_above_sender(self):
        r = _pl_room({**BASE, "kick": 60})
        no(r.check(_pl(r, B, {**BASE, "kick": 10})), "9.5")  # changed
        no(r.check(_pl(r, B, dict(BASE))), "9.5")  # removed
        # unchanged high values are fine
        ok(r.check(_pl(r, B, {**BASE, "kick": 60, "ban": 20})), "9.10")

    def test_9_6_events_old_value_above_sender(self):
        r = _pl_room({**BASE, "events": {"m.room.name": 75}})
        no(r.check(_pl(r, B, {**BASE, "events": {"m.room.name": 10}})), "9.6")
        no(r.check(_pl(r, B, {**BASE, "events": {}})), "9.6")
        ok(r.check(_pl(r, B, {**BASE, "events": {"m.room.name": 75, "m.room.topic": 50}})), "9.10")

    def test_9_6_notifications_old_value(self):
        r = _pl_room({**BASE, "notifications": {"room": 75}})
        no(r.check(_pl(r, B, {**BASE, "notifications": {"room": 0}})), "9.6")

    def test_9_7_events_new_value_above_sender(self):
        r = _pl_room(dict(BASE))
        no(r.check(_pl(r, B, {**BASE, "events": {"m.room.name": 51}})), "9.7")
        no(r.check(_pl(r, B, {**BASE, "notifications": {"room": 60}})), "9.7")
        ok(r.check(_pl(r, B, {**BASE, "notifications": {"room": 40}})), "9.10")

    def test_9_8_change_peer_or_higher(self):
        r = _pl_room({"users": {A: 100, B: 50, C: 50}})
        no(r.check(_pl(r, B, {"users": {A: 100, B: 50, C: 10}})), "9.8")  # equal peer
        no(r.check(_pl(r, B, {"users": {A: 100, B: 50}})), "9.8")  # remove peer
        no(r.check(_pl(r, B, {"users": {A: 10, B: 50, C: 50}})), "9.8")  # demote higher

    def test_9_8_change_lower_user(self):
        r = _pl_room({"users": {A: 100, B: 50, C: 40}})
        ok(r.check(_pl(r, B, {"users": {A: 100, B: 50, C: 10}})), "9.10")
        ok(r.check(_pl(r, B, {"users": {A: 100, B: 50}})), "9.10")

    def test_9_9_new_value_above_sender(self):
        r = _pl_room(dict(BASE))
        no(r.check(_pl(r, B, {"users": {A: 100, B: 50, D: 51}})), "9.9")
        ok(r.check(_pl(r, B, {"users": {A: 100, B: 50, D: 50}})), "9.10")

    def test_9_10_accept(self):
        r = _pl_room(dict(BASE))
        ok(r.check(_pl(r, A, {"users": {A: 100, B: 0}, "ban": 100, "events": {"m.room.name": 100}})), "9.10")


class TestRule10:
    def test_accept(self):
        r = room()
        ok(r.check(r.new("m.room.message", A, {"body": "x"})), "10")
        ok(r.check(r.new("org.example.state", A, {}, "")), "10")


# -- room version 10 -----------------------------------------------------------------------------


class TestRoomVersion10:
    """v10: the creator is ``content.creator``, not the create event's sender."""

    def make(self) -> Room:
        r = Room("10", create_content={"room_version": "10", "creator": "@zed:a"})
        return r

    def test_first_join_by_content_creator(self):
        r = self.make()
        ok(r.check(r.member("@zed:a", "join", prev=["CREATE"])), "4.3.1")
        no(r.check(r.member(A, "join", prev=["CREATE"])), "4.3.7")

    def test_v11_uses_sender(self):
        r = Room("11", create_content={"room_version": "11", "creator": "@zed:a"})
        ok(r.check(r.member(A, "join", prev=["CREATE"])), "4.3.1")
        no(r.check(r.member("@zed:a", "join", prev=["CREATE"])), "4.3.7")

    def test_creator_level_without_power_levels(self):
        r = self.make()
        r.member("@zed:a", "join", put=True, prev=["CREATE"])
        r.member(A, "join", put=True)  # placed directly into the auth state
        ok(r.check(r.new("m.room.topic", "@zed:a", {"topic": "t"}, "")), "10")
        no(r.check(r.new("m.room.topic", A, {"topic": "t"}, "")), "7")

    def test_v10_rules_otherwise_as_v11(self):
        r = room(version="10", members={B: "join"})
        ok(r.check(r.member(B, "leave")), "4.5.1")
        no(r.check(r.new("m.room.topic", B, {"topic": "t"}, "")), "7")


# -- compat switches -------------------------------------------------------------------------------


def test_compat_switches_summary():
    """One spec-vs-synapse pair per switch in auth.py's docstring."""
    # item 8: no join_rules → invite
    r = room(join_rule=None, members={B: "invite"})
    j = r.member(B, "join")
    assert (r.check(j).allowed, r.check(j, compat="synapse").allowed) == (False, True)
    # item 6: m.federate target
    r = Room(create_content={"room_version": "11", "m.federate": False})
    r.member(A, "join", put=True, prev=["CREATE"])
    inv = r.member(A, "invite", B)
    assert (r.check(inv).allowed, r.check(inv, compat="synapse").allowed) == (True, False)
    # item 7: authoriser signature only for joins
    r = room(members={B: "join"})
    lv = r.member(B, "leave", extra={"join_authorised_via_users_server": C})
    assert (r.check(lv).allowed, r.check(lv, compat="synapse").allowed) == (False, True)
    # Synapse refuses a knock from an invited user, as the spec does
    # (TestRule4_7Knock.test_invited_knock_synapse_matches_synapse).


def test_unknown_compat_raises():
    r = room()
    with pytest.raises(ValueError):
        check_auth(r.member(B, "join"), r.state, "11", compat="synpase")


# -- "Consequences worth testing" (§2.3) --------------------------------------------------------


class TestConsequences:
    def test_non_member_actions_in_public_room(self):
        r = room(users={B: 100}, members={C: "join"})
        # bob has level 100 in the PL but no membership
        outcomes = {
            "join": r.check(r.member(B, "join")).allowed,
            "message": r.check(r.new("m.room.message", B, {"body": "x"})).allowed,
            "state": r.check(r.new("m.room.topic", B, {"topic": "x"}, "")).allowed,
            "invite": r.check(r.member(B, "invite", D)).allowed,
            "kick": r.check(r.member(B, "leave", C)).allowed,
            "ban": r.check(r.member(B, "ban", C)).allowed,
            "leave": r.check(r.member(B, "leave")).allowed,
            "pl": r.check(_pl(r, B, {"users": {B: 100}})).allowed,
        }
        assert outcomes == {"join": True, "message": False, "state": False, "invite": False,
                            "kick": False, "ban": False, "leave": False, "pl": False}

    def test_non_member_may_join_restricted_with_authoriser(self):
        r = room(join_rule="restricted", members={C: "join"})
        assert not r.check(r.member(B, "join")).allowed
        assert r.check(_cosigned_join(r, B, "c", via=C, ts=20_000)).allowed

    def test_invited_user_may_accept_or_reject(self):
        r = room(join_rule="invite", members={B: "invite"})
        assert r.check(r.member(B, "join")).allowed
        assert r.check(r.member(B, "leave")).allowed
        assert not r.check(r.new("m.room.message", B, {"body": "x"})).allowed

    @pytest.mark.parametrize("kick,ban,sender,target", [
        (k, b, s, t) for k in (30, 60) for b in (30, 60) for s in (29, 30, 60, 61) for t in (0, 30, 60)
    ])
    def test_unban_needs_kick_ban_and_above_target(self, kick, ban, sender, target):
        r = room(users={C: sender, B: target}, pl_extra={"kick": kick, "ban": ban},
                 members={C: "join", B: "ban"})
        expected = sender >= kick and sender >= ban and sender > target
        assert r.check(r.member(C, "leave", B)).allowed is expected

    @pytest.mark.parametrize("level", [0, 50, 100])
    def test_no_kick_or_ban_of_equal_level(self, level):
        r = room(users={C: level, B: level}, pl_extra={"kick": 0, "ban": 0},
                 members={C: "join", B: "join"})
        assert not r.check(r.member(C, "leave", B)).allowed
        assert not r.check(r.member(C, "ban", B)).allowed
        # an absent user is at users_default (0): bannable only from above
        assert r.check(r.member(C, "ban", D)).allowed is (level > 0)

    def test_absent_user_at_equal_level(self):
        r = room(users={C: 0}, pl_extra={"kick": 0, "ban": 0}, members={C: "join"})
        assert not r.check(r.member(C, "ban", D)).allowed

    @pytest.mark.parametrize("new", [0, 10, 49, 50, 51, 100])
    def test_may_lower_not_raise_own_level(self, new):
        r = _pl_room(dict(BASE))
        res = r.check(_pl(r, B, {"users": {A: 100, B: new}}))
        assert res.allowed is (new <= 50)
        if not res.allowed:
            assert res.rule == "9.9"

    def test_creator_may_lower_own_level(self):
        r = _pl_room(dict(BASE))
        ok(r.check(_pl(r, A, {"users": {A: 10, B: 50}})), "9.10")


# -- auth events selection (§2.2) -----------------------------------------------------------------


class TestAuthSelection:
    M = "m.room.member"

    def test_create(self):
        assert auth_types_for_event("m.room.create", "", A, {}) == []

    def test_message(self):
        assert auth_types_for_event("m.room.message", None, B, {"body": "x"}) == [CREATE_K, PL_K, (self.M, B)]

    def test_plain_state(self):
        assert auth_types_for_event("m.room.topic", "", B, {}) == [CREATE_K, PL_K, (self.M, B)]

    @pytest.mark.parametrize("m", ["join", "knock"])
    def test_self_membership_listed_once(self, m):
        keys = auth_types_for_event(self.M, B, B, {"membership": m})
        assert keys == [CREATE_K, PL_K, (self.M, B), JR_K]

    def test_self_leave(self):
        assert auth_types_for_event(self.M, B, B, {"membership": "leave"}) == [CREATE_K, PL_K, (self.M, B)]

    def test_invite(self):
        keys = auth_types_for_event(self.M, B, A, {"membership": "invite"})
        assert keys == [CREATE_K, PL_K, (self.M, A), (self.M, B), JR_K]

    @pytest.mark.parametrize("m", ["leave", "ban"])
    def test_kick_and_ban_do_not_cite_join_rules(self, m):
        keys = auth_types_for_event(self.M, B, A, {"membership": m})
        assert keys == [CREATE_K, PL_K, (self.M, A), (self.M, B)]

    def test_third_party_invite(self):
        content = {"membership": "invite", "third_party_invite": {"signed": {"mxid": B, "token": "t"}}}
        keys = auth_types_for_event(self.M, B, A, content)
        assert ("m.room.third_party_invite", "t") in keys
        # not for a join, and not without a token
        content_j = {"membership": "join", "third_party_invite": {"signed": {"mxid": B, "token": "t"}}}
        assert ("m.room.third_party_invite", "t") not in auth_types_for_event(self.M, B, B, content_j)
        bad = {"membership": "invite", "third_party_invite": {"signed": {"mxid": B}}}
        assert not any(k[0] == "m.room.third_party_invite" for k in auth_types_for_event(self.M, B, A, bad))

    def test_authoriser(self):
        keys = auth_types_for_event(self.M, B, B, {"membership": "join", "join_authorised_via_users_server": C})
        assert keys == [CREATE_K, PL_K, (self.M, B), JR_K, (self.M, C)]
        # only for joins
        keys = auth_types_for_event(self.M, B, B, {"membership": "knock", "join_authorised_via_users_server": C})
        assert (self.M, C) not in keys
        # not listed twice when the authoriser is the joiner
        keys = auth_types_for_event(self.M, B, B, {"membership": "join", "join_authorised_via_users_server": B})
        assert keys.count((self.M, B)) == 1

    def test_auth_events_for_picks_from_state(self):
        state = {CREATE_K: "$c", PL_K: "$pl", JR_K: "$jr", (self.M, A): "$a", ("m.room.topic", ""): "$t"}
        assert auth_events_for("m.room.message", None, A, {}, state) == ["$c", "$pl", "$a"]
        # bob has no membership yet: omitted, not an error
        assert auth_events_for(self.M, B, B, {"membership": "join"}, state) == ["$c", "$pl", "$jr"]
        assert auth_events_for("m.room.create", "", A, {}, state) == []
        assert auth_events_for("m.room.message", None, A, {}, {}) == []

    def test_auth_events_for_built_events_pass_sanity(self):
        r = room(members={B: "invite"})
        ids = {k: v.event_id for k, v in r.state.items()}
        ev_fields = ("m.room.member", B, B, {"membership": "join"})
        chosen = auth_events_for(*ev_fields, ids)
        by_id = {e.event_id: e for e in r.state.values()}
        ev = r.member(B, "join")
        res = check_auth_events_sanity(ev, [by_id[i] for i in chosen])
        ok(res, "2")
        assert {(by_id[i].type, by_id[i].state_key) for i in chosen} == {CREATE_K, PL_K, JR_K, (self.M, B)}
