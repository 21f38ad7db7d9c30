"""Authorisation rules for room versions 10 and 11 (protocol.md §2).

Two entry points, split as real servers split them:

- :func:`check_auth_events_sanity`: rule 2, about the event's *own*
  ``auth_events`` (duplicates, unexpected keys, rejected or foreign events,
  no create event);
- :func:`check_auth`: rule 1 for create events, then the state-dependent
  rules 3-10 against an *auth state* (a map ``(type, state_key) → Event``).

Both return an :class:`AuthResult` with the rule that decided and a reason a
person can read; nothing here raises for a bad event.

``compat="synapse"`` selects the reference homeserver's behaviour where it
departs from the spec (protocol.md §8): no join_rules event means
``invite`` (item 8); the ``m.federate`` check also applies to a membership
event's target (item 6), and any value other than ``true`` counts as
unfederated (the spec says "is false"); the authoriser's signature is
required only for joins (item 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Callable

from .events import Event
from .roomversions import RoomVersion, get_room_version

__all__ = [
    "AuthResult",
    "COMPAT_MODES",
    "StateKey",
    "auth_checker",
    "auth_events_for",
    "auth_types_for_event",
    "check_auth",
    "member_decider",
    "nonmember_checker",
    "check_auth_events_sanity",
    "get_named_level",
    "get_send_level",
    "get_user_level",
]

StateKey = tuple[str, str]
COMPAT_MODES = ("spec", "synapse")

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"

CREATE_KEY: StateKey = (CREATE, "")
PL_KEY: StateKey = (POWER_LEVELS, "")
JR_KEY: StateKey = (JOIN_RULES, "")

#: Room versions a create event may name (rule 1.3): the versions Matrix
#: defines, as the reference homeserver knows them.
KNOWN_VERSION_IDS = frozenset(str(i) for i in range(1, 13))

_LEVEL_NAMES = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """``allowed`` plus the rule that decided (e.g. ``"4.3.7"``) and why."""

    allowed: bool
    rule: str
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


_ACCEPTED: dict[tuple[str, str], AuthResult] = {}


def _accept(rule: str, reason: str = "allowed") -> AuthResult:
    # Acceptances carry fixed texts, so each is built once and shared (the
    # result is immutable); this runs for most events a resolution replays.
    res = _ACCEPTED.get((rule, reason))
    if res is None:
        res = _ACCEPTED[(rule, reason)] = AuthResult(True, rule, reason)
    return res


# The acceptances most events end on, built once (``_accept`` would give
# these same objects, after a lookup).
_OK_10 = _accept("10")
_OK_9_10 = _accept("9.10")
_OK_4_3_4 = _accept("4.3.4")
_OK_4_3_6 = _accept("4.3.6")
_OK_4_4_4 = _accept("4.4.4")
_OK_4_5_1 = _accept("4.5.1")
_OK_4_5_4 = _accept("4.5.4")
_OK_4_6 = _accept("4.6")


def _reject(rule: str, reason: str) -> AuthResult:
    return AuthResult(False, rule, reason)


def _check_compat(compat: str) -> None:
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat={compat!r}: choose one of {COMPAT_MODES}")


# -- auth events selection (§2.2) --------------------------------------------


def auth_types_for_event(event_type: str, state_key: str | None, sender: str, content: Mapping[str, Any]) -> list[StateKey]:
    """The ``(type, state_key)`` keys a new event's auth events come from."""
    if event_type == CREATE:
        return []
    keys: list[StateKey] = [CREATE_KEY, PL_KEY, (MEMBER, sender)]
    if event_type == MEMBER and state_key is not None:
        if state_key != sender:  # (MEMBER, state_key) not yet among the keys
            keys.append((MEMBER, state_key))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            keys.append(JR_KEY)
        if membership == "invite":
            tpi = content.get("third_party_invite")
            if isinstance(tpi, Mapping):
                signed = tpi.get("signed")
                token = signed.get("token") if isinstance(signed, Mapping) else None
                if isinstance(token, str):
                    keys.append((THIRD_PARTY_INVITE, token))
        if membership == "join":
            via = content.get("join_authorised_via_users_server")
            if isinstance(via, str) and via != sender and via != state_key:  # (MEMBER, via) not yet among them
                keys.append((MEMBER, via))
    return keys


def auth_events_for(
    event_type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
    state: Mapping[StateKey, str],
) -> list[str]:
    """Auth event IDs for a new event, chosen from ``state`` (the state before it)."""
    out = []
    for k in auth_types_for_event(event_type, state_key, sender, content):
        eid = state.get(k)
        if eid is not None and eid not in out:
            out.append(eid)
    return out


# -- levels (§2.1) -----------------------------------------------------------


def _is_map(v: Any) -> bool:
    """``isinstance(v, Mapping)``, answered without the ABC machinery for the
    common case of a plain dict (every nested JSON object)."""
    return type(v) is dict or isinstance(v, Mapping)


def _int(v: Any, default: int) -> int:
    if type(v) is int:
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return default
    return default


def _creator(create: Event | None, rv: RoomVersion) -> str | None:
    if create is None:
        return None
    if rv.creator_is_sender:
        return create.sender
    c = create.content.get("creator")
    return c if isinstance(c, str) else None


def get_user_level(user_id: str, auth_state: Mapping[StateKey, Event], rv: RoomVersion) -> int:
    pl = auth_state.get(PL_KEY)
    if pl is not None:
        users = pl.content.get("users")
        if _is_map(users) and user_id in users:
            return _int(users[user_id], 0)
        return _int(pl.content.get("users_default", 0), 0)
    return 100 if _creator(auth_state.get(CREATE_KEY), rv) == user_id else 0


def get_named_level(auth_state: Mapping[StateKey, Event], name: str, default: int) -> int:
    pl = auth_state.get(PL_KEY)
    if pl is None:
        return default
    return _int(pl.content.get(name, default), default)


def get_send_level(event_type: str, state_key: str | None, pl: Event | None) -> int:
    content: Mapping[str, Any] = pl.content if pl is not None else {}
    events = content.get("events")
    if _is_map(events) and event_type in events:
        return _int(events[event_type], 0)
    if state_key is not None:
        return _int(content.get("state_default", 50), 50)
    return _int(content.get("events_default", 0), 0)


def _membership_of(auth_state: Mapping[StateKey, Event], user_id: str) -> str | None:
    ev = auth_state.get((MEMBER, user_id))
    return None if ev is None else ev.membership


# -- rule 2 --------------------------------------------------------------------


def check_auth_events_sanity(
    event: Event,
    auth_events: Iterable[Event | None],
    rejected: Iterable[str] | Mapping[str, Any] = (),
) -> AuthResult:
    """Rule 2: the event's own auth events are plausible.

    ``auth_events`` are the events ``event.auth_events`` names (``None`` for
    one not held: the caller decides whether absence drops the event).
    """
    if event.type == CREATE:
        return _accept("1", "create event")
    rejected_set = rejected if isinstance(rejected, (set, frozenset, Mapping)) else set(rejected)
    expected = set(auth_types_for_event(event.type, event.state_key, event.sender, event.content))
    seen: set[StateKey] = set()
    has_create = False
    for a in auth_events:
        if a is None:
            return _reject("2", "an auth event is not known")
        k = (a.type, a.state_key if a.state_key is not None else "")
        if a.state_key is None:
            return _reject("2.2", f"auth event {a.event_id} is not a state event")
        if k in seen:
            return _reject("2.1", f"two auth events for {k}")
        seen.add(k)
        if k not in expected:
            return _reject("2.2", f"auth event {a.event_id} for {k} is not one this event may cite")
        if a.event_id in rejected_set:
            return _reject("2.3", f"auth event {a.event_id} was rejected")
        if a.room_id != event.room_id:
            return _reject("2.5", f"auth event {a.event_id} is in another room ({a.room_id})")
        if k == CREATE_KEY:
            has_create = True
    if not has_create:
        return _reject("2.4", "no m.room.create among the auth events")
    return _accept("2", "auth events are sane")


# -- rules 1, 3-10 -------------------------------------------------------------


def _check_create(event: Event, rv: RoomVersion) -> AuthResult:
    if event.prev_events:
        return _reject("1.1", "a create event must have no prev_events")
    if event.room_id.partition(":")[2] != event.sender_server:
        return _reject("1.2", f"room {event.room_id} is not on the sender's server {event.sender_server}")
    version = event.content.get("room_version", "1")
    if not isinstance(version, str) or version not in KNOWN_VERSION_IDS:
        return _reject("1.3", f"unknown room version {version!r}")
    if not rv.creator_is_sender and "creator" not in event.content:
        return _reject("1.4", "create event has no content.creator")
    return _accept("1.4" if not rv.creator_is_sender else "1", "room created")


#: check_auth answers by (event, auth state items, room version, compat).
#: The answer is a pure function of those, and an interned :class:`Event`
#: object pins its content, so the memo is exact for every caller (state
#: resolutions at every server re-check the same events against the same
#: auth events). Cleared whole when it reaches ``AUTH_MEMO_MAX`` entries
#: (bounds memory: ~500 bytes an entry); ``AUTH_MEMO_MAX = 0`` turns it off.
AUTH_MEMO_MAX = 50_000
_auth_memo: dict[tuple, "AuthResult"] = {}


def clear_auth_memo() -> None:
    """Forget every memoised :func:`check_auth` answer (and what the
    power-levels rule memoises per event)."""
    _auth_memo.clear()
    _clean_memo.clear()
    _valid_uids.clear()


def check_auth(
    event: Event,
    auth_state: Mapping[StateKey, Event],
    room_version: str | RoomVersion = "11",
    *,
    compat: str = "spec",
) -> AuthResult:
    """Rule 1 (create), then rules 3-10 against ``auth_state`` (memoised by content)."""
    rv = get_room_version(room_version)
    if compat not in COMPAT_MODES:
        _check_compat(compat)
    if not AUTH_MEMO_MAX:
        return _check_auth(event, auth_state, rv, compat)
    try:
        key = (event, frozenset(auth_state.items()), rv.identifier, compat)
        hit = _auth_memo.get(key)
    except TypeError:  # an unhashable auth state: answer without the memo
        return _check_auth(event, auth_state, rv, compat)
    if hit is None:
        if len(_auth_memo) >= AUTH_MEMO_MAX:
            _auth_memo.clear()
        hit = _auth_memo[key] = _check_auth(event, auth_state, rv, compat)
    return hit


def auth_checker(room_version: str | RoomVersion = "11", *, compat: str = "spec") -> Callable[[Event, Mapping[StateKey, Event]], bool]:
    """``check_auth(event, auth_state, room_version, compat=compat).allowed``
    as a function of two arguments, for callers that check many events with
    the same version and compat (a state resolution), sharing the memo.

    The caller promises that every entry of an auth state is keyed by its
    event's own ``(type, state_key)``, as auth states built from events are:
    the events then pin the whole state, so the memo key is the flat tuple
    (event, version, compat, auth events...), one object instead of a
    frozenset of item pairs (fewer objects for the garbage collector to
    track in a resolution of thousands of events). Two orders of the same
    auth events are two keys of the same answer.
    """
    rv = get_room_version(room_version)
    _check_compat(compat)
    ident = rv.identifier

    def allowed(event: Event, auth_state: Mapping[StateKey, Event]) -> bool:
        if not AUTH_MEMO_MAX:
            return _check_auth(event, auth_state, rv, compat).allowed
        memo = _auth_memo
        key = (event, ident, compat, *auth_state.values())
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= AUTH_MEMO_MAX:
                memo.clear()
            hit = memo[key] = _check_auth(event, auth_state, rv, compat)
        return hit.allowed

    return allowed


def _clean_levels(c: Mapping[str, Any], users: Any, sender: str, etype: str, is_state: bool) -> tuple[int, int]:
    """The sender's level and the level to send ``etype`` from a clean
    power-levels content ``c`` (every level a plain int; ``users`` is its
    ``users`` entry): the rules' reading of them without the checks."""
    user_level = users.get(sender) if users else None
    if user_level is None:
        user_level = c.get("users_default", 0)
    levels = c.get("events")
    if levels and etype in levels:
        return user_level, levels[etype]
    return user_level, c.get("state_default", 50) if is_state else c.get("events_default", 0)


def nonmember_checker(room_version: str | RoomVersion = "11", *, compat: str = "spec") -> Callable[[Event, Event, Event, Event], bool]:
    """``allowed(event, create, pl, member)``: ``auth_checker``'s answer for
    a non-create, non-member event whose auth state is the create event,
    the power levels and the sender's membership, given as they are (no
    auth-state dict is built unless the rule-by-rule path needs one).

    Rules 1-10 read nothing else for such an event, so other entries of a
    fuller auth state could not change the answer. The happy path (room
    federated, sender joined, clean power levels, enough power, and for a
    power-levels event, changes within the sender's level) mirrors
    ``_check_auth`` line by line and is answered without the memo: it costs
    about what a memo lookup and entry would, and a resolution of thousands
    of events would leave thousands of entries for the garbage collector.
    Anything else goes through ``_check_auth``, memoised with the key
    (event, version, compat, create, pl, member).
    """
    rv = get_room_version(room_version)
    _check_compat(compat)
    ident = rv.identifier
    synapse = compat == "synapse"
    clean_get = _clean_memo.get

    def allowed(event: Event, create: Event, pl: Event, member: Event) -> bool:
        etype = event.type
        federate = create.content.get("m.federate", True)
        pl_top = clean_get(pl, _MISSING)
        if pl_top is _MISSING:
            pl_top = _pl_event_info(pl)
        if (member.membership == "join" and pl_top is not None and etype != THIRD_PARTY_INVITE
                and (federate is True or (federate is not False and not synapse)
                     or event.sender_server == create.sender_server)):
            sender = event.sender
            c = pl.content
            users = c.get("users")
            state_key = event.state_key
            user_level, send_level = _clean_levels(c, users, sender, etype, state_key is not None)
            if send_level <= user_level and (state_key is None or state_key == sender or not state_key.startswith("@")):
                if etype != POWER_LEVELS:
                    return True  # _OK_10
                new_top = clean_get(event, _MISSING)
                if new_top is _MISSING:
                    new_top = _pl_event_info(event)
                if new_top is not None:
                    new_c = event.content
                    if ((new_top <= user_level and pl_top <= user_level and new_c.get("users") == users)
                            or _pl_changes_allowed(sender, new_c, c, user_level)):
                        return True  # _OK_9_10
        memo = _auth_memo
        key = (event, ident, compat, create, pl, member)
        use_memo = AUTH_MEMO_MAX
        if use_memo:
            hit = memo.get(key)
            if hit is not None:
                return hit.allowed
        hit = _check_auth(event, {CREATE_KEY: create, PL_KEY: pl, (MEMBER, event.sender): member}, rv, compat)
        if use_memo:
            if len(memo) >= use_memo:
                memo.clear()
            memo[key] = hit
        return hit.allowed

    return allowed


def member_decider(room_version: str | RoomVersion = "11", *, compat: str = "spec") -> Callable[..., bool | None]:
    """``decide(event, membership, create, pl, sender_member, target_member,
    join_rules)``: ``check_auth``'s ``allowed`` for the membership event
    ``event`` (``membership`` is its ``membership``) against the auth state
    of those five entries (each an event or None; the target's membership
    is the sender's when they are the same user), or None when this quick
    reading cannot tell (the caller then asks the rule-by-rule path).

    Decides the common cases, each mirroring ``_check_membership`` (federated
    room; joins, leaves, invites, kicks and bans, with clean power levels
    where levels are read); a creator's first join, an authorising server
    (``join_authorised_via_users_server``), third-party invites and knocks
    are left to the rule-by-rule path. No memo: the answer costs less than
    a memo key would.
    """
    rv = get_room_version(room_version)
    _check_compat(compat)
    no_rule = "invite" if compat == "synapse" else None
    clean_get = _clean_memo.get

    def decide(event: Event, membership: str, create: Event | None, pl: Event | None, sender_m_ev: Event | None,
               target_m_ev: Event | None, jr: Event | None) -> bool | None:
        if create is None or create.content.get("m.federate", True) is not True:
            return None
        content = event.content
        target = event.state_key
        if target is None or "join_authorised_via_users_server" in content:
            return None
        sender = event.sender
        sender_m = None if sender_m_ev is None else sender_m_ev.membership
        if membership == "join":
            prev = event.prev_events
            if len(prev) == 1 and prev[0] == create.event_id:
                return None  # perhaps the creator's first join
            if target != sender or sender_m == "ban":
                return False
            join_rule = no_rule if jr is None else jr.content.get("join_rule")
            if join_rule == "public":
                return True
            if join_rule in ("invite", "knock", "restricted", "knock_restricted"):
                return sender_m in ("invite", "join")
            return False
        if membership == "leave":
            if target == sender:
                return sender_m in ("invite", "join", "knock")
        elif membership == "invite":
            if "third_party_invite" in content:
                return None
        elif membership != "ban":
            return None
        if sender_m != "join":
            return False
        target_m = None if target_m_ev is None else target_m_ev.membership
        if membership == "invite" and target_m in ("join", "ban"):
            return False
        if pl is None:
            return None
        top = clean_get(pl, _MISSING)
        if top is _MISSING:
            top = _pl_event_info(pl)
        if top is None:
            return None
        c = pl.content
        users = c.get("users")
        user_level = users.get(sender) if users else None
        if user_level is None:
            user_level = c.get("users_default", 0)
        if membership == "invite":
            return user_level >= c.get("invite", 0)
        target_level = users.get(target) if users else None
        if target_level is None:
            target_level = c.get("users_default", 0)
        if membership == "leave":
            if target_m == "ban" and user_level < c.get("ban", 50):
                return False
            return user_level >= c.get("kick", 50) and target_level < user_level
        return user_level >= c.get("ban", 50) and target_level < user_level

    return decide


def _check_auth(event: Event, auth_state: Mapping[StateKey, Event], rv: RoomVersion, compat: str) -> AuthResult:
    if event.type == CREATE:
        return _check_create(event, rv)
    create = auth_state.get(CREATE_KEY)
    if create is None:
        return _reject("2.4", "no m.room.create in the auth state")
    federate = create.content.get("m.federate", True)
    if federate is False or (compat == "synapse" and federate is not True):
        creator_server = create.sender_server
        if event.sender_server != creator_server:
            return _reject("3", "the room is not federated (m.federate is false)")
        if compat == "synapse" and event.type == MEMBER and event.state_key is not None:
            if event.state_key.partition(":")[2] != creator_server:
                return _reject("3", "the room is not federated and the target is remote")
    etype = event.type
    if etype == MEMBER:
        return _check_membership(event, auth_state, rv, compat)
    sender = event.sender
    sender_member = auth_state.get((MEMBER, sender))
    if sender_member is None or sender_member.membership != "join":
        return _reject("5", f"{event.sender} is not joined to the room")
    pl = auth_state.get(PL_KEY)
    pl_top = None if pl is None else _pl_event_info(pl)
    if pl_top is not None and etype != THIRD_PARTY_INVITE:
        # Every level in a clean content is a plain int: read them directly.
        c = pl.content
        user_level, send_level = _clean_levels(c, c.get("users"), sender, etype, event.state_key is not None)
    else:
        user_level = get_user_level(sender, auth_state, rv)
        if etype == THIRD_PARTY_INVITE:
            invite_level = get_named_level(auth_state, "invite", 0)
            if user_level >= invite_level:
                return _accept("6")
            return _reject("6", f"sender level {user_level} < invite level {invite_level}")
        send_level = get_send_level(etype, event.state_key, pl)
    if send_level > user_level:
        return _reject("7", f"sending {event.type} needs level {send_level}; {event.sender} has {user_level}")
    if event.state_key is not None and event.state_key.startswith("@") and event.state_key != event.sender:
        return _reject("8", f"state_key {event.state_key!r} names another user")
    if etype == POWER_LEVELS:
        if pl_top is not None:
            new_top = _pl_event_info(event)
            if new_top is not None and _pl_change_ok(sender, event.content, new_top, pl.content, pl_top, user_level):
                return _OK_9_10
        return _check_power_levels(event, auth_state, user_level, rv)
    return _OK_10


def _check_membership(event: Event, auth_state: Mapping[StateKey, Event], rv: RoomVersion, compat: str) -> AuthResult:
    target = event.state_key
    content = event.content
    membership = content.get("membership")
    if target is None or "membership" not in content:
        return _reject("4.1", "membership event without state_key or content.membership")
    via = content.get("join_authorised_via_users_server")
    if via is not None and (compat == "spec" or membership == "join"):
        via_server = via.partition(":")[2] if isinstance(via, str) else ""
        if not via_server or not event.signatures.get(via_server):
            return _reject("4.2", f"not signed by the authorising server of {via!r}")
    sender = event.sender
    get = auth_state.get
    m_event = get((MEMBER, sender))
    sender_m = None if m_event is None else m_event.membership
    m_event = m_event if target == sender else get((MEMBER, target))
    target_m = None if m_event is None else m_event.membership
    jr_event = get(JR_KEY)
    if jr_event is not None:
        join_rule = jr_event.content.get("join_rule")
    else:
        join_rule = "invite" if compat == "synapse" else None

    if membership == "join":
        create = auth_state.get(CREATE_KEY)
        if (
            create is not None
            and len(event.prev_events) == 1
            and event.prev_events[0] == create.event_id
            and target == _creator(create, rv)
        ):
            return _accept("4.3.1", "the creator's first join")
        if sender != target:
            return _reject("4.3.2", "cannot make another user join")
        if sender_m == "ban":
            return _reject("4.3.3", f"{sender} is banned")
        if join_rule in ("invite", "knock"):
            if sender_m in ("invite", "join"):
                return _OK_4_3_4
            return _reject("4.3.4", f"join rule is {join_rule} and {sender} is not invited")
        if join_rule in ("restricted", "knock_restricted"):
            if sender_m in ("invite", "join"):
                return _accept("4.3.5")
            if not isinstance(via, str):
                return _reject("4.3.5", "restricted join without join_authorised_via_users_server")
            if _membership_of(auth_state, via) != "join":
                return _reject("4.3.5", f"authorising user {via} is not joined")
            if get_user_level(via, auth_state, rv) < get_named_level(auth_state, "invite", 0):
                return _reject("4.3.5", f"authorising user {via} may not invite")
            return _accept("4.3.5", "restricted join authorised")
        if join_rule == "public":
            return _OK_4_3_6
        return _reject("4.3.7", f"join rule {join_rule!r} does not allow joining")

    if membership == "invite":
        tpi = event.content.get("third_party_invite")
        if tpi is not None:
            return _check_third_party_invite(event, tpi, target_m, auth_state)
        if sender_m != "join":
            return _reject("4.4.2", f"{sender} is not joined")
        if target_m in ("join", "ban"):
            return _reject("4.4.3", f"{target} is {'already joined' if target_m == 'join' else 'banned'}")
        user_level = get_user_level(sender, auth_state, rv)
        invite_level = get_named_level(auth_state, "invite", 0)
        if user_level >= invite_level:
            return _OK_4_4_4
        return _reject("4.4.4", f"sender level {user_level} < invite level {invite_level}")

    if membership == "leave":
        if sender == target:
            if sender_m in ("invite", "join", "knock"):
                return _OK_4_5_1
            return _reject("4.5.1", f"{sender} cannot leave from membership {sender_m!r}")
        if sender_m != "join":
            return _reject("4.5.2", f"{sender} is not joined")
        user_level = get_user_level(sender, auth_state, rv)
        if target_m == "ban" and user_level < get_named_level(auth_state, "ban", 50):
            return _reject("4.5.3", f"{sender} may not unban")
        kick_level = get_named_level(auth_state, "kick", 50)
        target_level = get_user_level(target, auth_state, rv)
        if user_level >= kick_level and target_level < user_level:
            return _OK_4_5_4
        return _reject("4.5.5", f"{sender} (level {user_level}) may not kick {target} (level {target_level}, kick {kick_level})")

    if membership == "ban":
        if sender_m != "join":
            return _reject("4.6", f"{sender} is not joined")
        user_level = get_user_level(sender, auth_state, rv)
        ban_level = get_named_level(auth_state, "ban", 50)
        target_level = get_user_level(target, auth_state, rv)
        if user_level >= ban_level and target_level < user_level:
            return _OK_4_6
        return _reject("4.6", f"{sender} (level {user_level}) may not ban {target} (level {target_level}, ban {ban_level})")

    if membership == "knock":
        if join_rule not in ("knock", "knock_restricted"):
            return _reject("4.7.1", f"join rule {join_rule!r} does not allow knocking")
        if sender != target:
            return _reject("4.7.2", "cannot knock on behalf of another user")
        if sender_m not in ("ban", "invite", "join"):
            return _accept("4.7.3")
        return _reject("4.7.3", f"{sender} cannot knock from membership {sender_m!r}")

    return _reject("4.8", f"unknown membership {membership!r}")


def _check_third_party_invite(event: Event, tpi: Any, target_m: str | None, auth_state: Mapping[StateKey, Event]) -> AuthResult:
    from .canonical import canonical_json, decode_base64
    from .crypto import VerifyKey

    if target_m == "ban":
        return _reject("4.4.1", "target is banned")
    signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
    if not isinstance(signed, Mapping):
        return _reject("4.4.1", "third_party_invite has no signed object")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        return _reject("4.4.1", "third_party_invite.signed lacks mxid or token")
    if mxid != event.state_key:
        return _reject("4.4.1", "third_party_invite mxid does not match state_key")
    tp_event = auth_state.get((THIRD_PARTY_INVITE, token))
    if tp_event is None:
        return _reject("4.4.1", f"no m.room.third_party_invite for token {token!r}")
    if tp_event.sender != event.sender:
        return _reject("4.4.1", "third-party invite was made by another user")
    keys = []
    if isinstance(tp_event.content.get("public_key"), str):
        keys.append(tp_event.content["public_key"])
    public_keys = tp_event.content.get("public_keys")
    for pk in public_keys if isinstance(public_keys, (list, tuple)) else ():
        if isinstance(pk, Mapping) and isinstance(pk.get("public_key"), str):
            keys.append(pk["public_key"])
    sigs = signed.get("signatures")
    if not isinstance(sigs, Mapping):
        return _reject("4.4.1", "third_party_invite.signed has no signatures")
    try:
        message = canonical_json({k: v for k, v in signed.items() if k not in ("signatures", "unsigned")})
    except ValueError:
        return _reject("4.4.1", "third_party_invite.signed is not canonical JSON")
    for server_sigs in sigs.values():
        if not isinstance(server_sigs, Mapping):
            continue
        for sig in server_sigs.values():
            for pk in keys:
                try:
                    if VerifyKey(pk).verify(message, decode_base64(sig)):
                        return _accept("4.4.1", "valid third-party invite")
                except ValueError:
                    continue
    return _reject("4.4.1", "no valid signature on the third-party invite")


_LEVEL_SET = frozenset(_LEVEL_NAMES)
_INT_ONLY = frozenset((int,))
_NO_LEVELS: Mapping[str, int] = MappingProxyType({})


#: ``_pl_clean`` answers by power-levels event (a pure function of its
#: content, which the interned event pins), cleared with the auth memo: in
#: a resolution each power-levels event is read as the new content once and
#: as the old content of every later one checked against it.
_clean_memo: dict[Event, int | float | None] = {}
_MISSING: Any = object()
_NEG_INF = float("-inf")


def _pl_event_info(event: Event) -> int | float | None:
    """``_pl_clean`` of the event's content, memoised."""
    hit = _clean_memo.get(event, _MISSING)
    if hit is _MISSING:
        if len(_clean_memo) >= AUTH_MEMO_MAX:
            _clean_memo.clear()
            _valid_uids.clear()
        hit = _pl_clean(event.content)
        if AUTH_MEMO_MAX:
            _clean_memo[event] = hit
    return hit


#: User IDs seen to have the shape rule 9.3 asks for (kept with ``_clean_memo``).
_valid_uids: set[str] = set()


def _pl_clean(c: Mapping[str, Any]) -> int | float | None:
    """For a power-levels content whose every level is a plain int and every
    user ID looks like one (it passes rules 9.1-9.3, and its values compare
    as the ints ``_int`` would read): the highest level it sets outside
    ``users`` (-inf if none). None means "not sure", never "invalid"."""
    top: int | float = _NEG_INF
    for name, v in c.items():
        if name in _LEVEL_SET:
            if type(v) is not int:
                return None
            if v > top:
                top = v
        elif name == "users":
            if type(v) is not dict:
                return None
            if len(v) < 8:  # a loop costs less than the map and set test below
                for x in v.values():
                    if type(x) is not int:
                        return None
            elif not _INT_ONLY.issuperset(map(type, v.values())):
                return None
            if not _valid_uids.issuperset(v):
                for uid in v:
                    if not (type(uid) is str and uid.startswith("@") and ":" in uid):
                        return None
                if AUTH_MEMO_MAX:
                    _valid_uids.update(v)
        elif name == "events" or name == "notifications":
            if type(v) is not dict:
                return None
            for x in v.values():  # few entries: one loop checks the types and finds the highest
                if type(x) is not int:
                    return None
                if x > top:
                    top = x
    return top


def _pl_change_ok(sender: str, new: Mapping[str, Any], new_top: int | float, old: Mapping[str, Any],
                  old_top: int | float, level: int) -> bool:
    """``_pl_changes_allowed`` for two clean contents whose highest levels
    outside ``users`` are ``new_top`` and ``old_top``: when neither exceeds
    the sender's level no change outside ``users`` can (rules 9.5-9.7), and
    equal ``users`` maps change nothing (9.8, 9.9)."""
    if new_top <= level and old_top <= level and new.get("users") == old.get("users"):
        return True
    return _pl_changes_allowed(sender, new, old, level)


def _changed_within(new: Mapping[str, int], old: Mapping[str, int], level: int) -> bool:
    """Rules 9.5-9.7 on one map of int levels: every added, removed or
    changed entry has old and new values at most ``level``."""
    for k, n in new.items():
        o = old.get(k)
        if o != n and (n > level or (o is not None and o > level)):
            return False
    for k, o in old.items():
        if o > level and k not in new:
            return False
    return True


def _pl_changes_allowed(sender: str, new: Mapping[str, Any], old: Mapping[str, Any], level: int) -> bool:
    """Rules 9.5-9.9 for two clean contents (see ``_pl_clean``)."""
    for name, n in new.items():
        if name in _LEVEL_SET:
            o = old.get(name)
            if o != n and (n > level or (o is not None and o > level)):
                return False
    for name, o in old.items():
        if name in _LEVEL_SET and o > level and name not in new:
            return False
    for section in ("events", "notifications"):
        o_map = old.get(section) or _NO_LEVELS
        n_map = new.get(section) or _NO_LEVELS
        if o_map != n_map and not _changed_within(n_map, o_map, level):
            return False
    o_users = old.get("users") or _NO_LEVELS
    users = new.get("users") or _NO_LEVELS
    # The users added, removed or changed, found by a set operation on the
    # (user, level) pairs (both maps hold plain ints).
    if users == o_users:
        return True
    for uid in {u for u, _ in users.items() ^ o_users.items()}:
        o = o_users.get(uid)
        n = users.get(uid)
        if o is not None and (o > level or (o == level and uid != sender)):
            return False
        if n is not None and n > level:
            return False
    return True


def _check_power_levels(event: Event, auth_state: Mapping[StateKey, Event], user_level: int, rv: RoomVersion) -> AuthResult:
    """Rule 9. Contents that are clean (the usual case) are compared with
    plain int comparisons; anything else, and every rejection, goes through
    the rule-by-rule path so its reason is the same."""
    new_top = _pl_event_info(event)
    if new_top is not None:
        old_event = auth_state.get(PL_KEY)
        if old_event is None:
            return _accept("9.4", "first power levels event")
        old_top = _pl_event_info(old_event)
        if old_top is not None and _pl_change_ok(event.sender, event.content, new_top, old_event.content, old_top,
                                                 user_level):
            return _OK_9_10
    return _check_power_levels_exact(event, auth_state, user_level, rv)


def _check_power_levels_exact(event: Event, auth_state: Mapping[StateKey, Event], user_level: int, rv: RoomVersion) -> AuthResult:
    # Plain dict copies: ``.get`` on a read-only mapping proxy is several
    # times slower, and this runs once per power-levels event resolved.
    new = dict(event.content)
    for name in _LEVEL_NAMES:
        if name in new and type(new[name]) is not int:
            return _reject("9.1", f"{name} must be an integer, got {new[name]!r}")
    for name in ("events", "notifications"):
        if name in new:
            v = new[name]
            if not _is_map(v) or not all(type(x) is int for x in v.values()):
                return _reject("9.2", f"{name} must be an object of integers")
    users = new.get("users", {})
    if not _is_map(users):
        return _reject("9.3", "users must be an object")
    for uid, level in users.items():
        if not (isinstance(uid, str) and uid.startswith("@") and ":" in uid):
            return _reject("9.3", f"{uid!r} is not a valid user ID")
        if type(level) is not int:
            return _reject("9.3", f"level of {uid} must be an integer, got {level!r}")
    old_event = auth_state.get(PL_KEY)
    if old_event is None:
        return _accept("9.4", "first power levels event")
    old = dict(old_event.content)
    L = user_level
    for name in _LEVEL_NAMES:
        o, n = old.get(name), new.get(name)
        if o == n and (name in old) == (name in new):
            continue
        if o is not None and _int(o, 0) > L:
            return _reject("9.5", f"{name}: old value {o} exceeds the sender's level {L}")
        if n is not None and n > L:
            return _reject("9.5", f"{name}: new value {n} exceeds the sender's level {L}")
    for section in ("events", "notifications"):
        o_map = old.get(section) if _is_map(old.get(section)) else {}
        n_map = new.get(section) if _is_map(new.get(section)) else {}
        for k in set(o_map) | set(n_map):
            o, n = o_map.get(k), n_map.get(k)
            if k in o_map and k in n_map and _int(o, 0) == n:
                continue
            if k in o_map and _int(o, 0) > L:
                return _reject("9.6", f"{section}.{k}: old value {o} exceeds the sender's level {L}")
            if k in n_map and n > L:
                return _reject("9.7", f"{section}.{k}: new value {n} exceeds the sender's level {L}")
    o_users = old.get("users") if _is_map(old.get("users")) else {}
    for uid in set(o_users) | set(users):
        o, n = o_users.get(uid), users.get(uid)
        if uid in o_users and uid in users and _int(o, 0) == n:
            continue
        if uid in o_users and uid != event.sender and _int(o, 0) >= L:
            return _reject("9.8", f"users.{uid}: cannot change a level ({o}) at or above the sender's ({L})")
        if uid in o_users and _int(o, 0) > L:
            return _reject("9.8", f"users.{uid}: old value {o} exceeds the sender's level {L}")
        if uid in users and n > L:
            return _reject("9.9", f"users.{uid}: new value {n} exceeds the sender's level {L}")
    return _OK_9_10
