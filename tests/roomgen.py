"""Random room DAGs made of real, signed events (for differential tests).

:func:`generate_room` builds one room: create, creator join, power levels,
join rules, history visibility, then a random walk of members joining,
leaving, being invited, kicked, banned and unbanned, topic/name changes,
power-level changes (promotions, demotions, ``state_default`` / ``events``
changes), join-rule changes, redactions and messages, spread over forks
(concurrent branches with different senders) and merges (events with 2-3
prev_events). A fraction of events are deliberately unauthorised (a low
user changing power levels, kicking a higher user, a banned user talking,
joining an invite-only room, a PL event with a string level, ...), and some
cite stale auth events, so rejections happen.

Each event's auth events are chosen with ``auth_events_for`` from the state
before it, as a creating server does; that state is the generator's own
incremental ``RoomState`` (``compat`` selectable), whose decisions also tell
the walk who is joined and with what power. The generator only picks inputs:
tests judge the outcome with ``process_room`` and the oracle.

Deterministic per (seed, arguments); about 1 ms per event.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from simfed.protocol import Event, RoomState, auth_events_for, derive_server_key, sign_event

__all__ = ["RoomGen", "generate_room"]

PL_TYPE = "m.room.power_levels"
MEMBER = "m.room.member"


@dataclass
class RoomGen:
    """One room being generated; :func:`generate_room` drives it.

    ``room`` is the generator's own view (a ``RoomState``); ``events`` the
    events in creation order (a topological order of prev and auth edges).
    """

    seed: int
    n_servers: int = 3
    n_users: int = 6
    fork_prob: float = 0.2
    merge_prob: float = 0.3
    room_version: str = "11"
    bad_prob: float = 0.1
    stale_prob: float = 0.03
    max_tips: int = 4
    compat: str = "synapse"
    key_seed: int = 0
    join_rule: str | None = None
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.servers = [f"hs{i}.test" for i in range(max(1, self.n_servers))]
        self.users = [f"@u{j}:{self.servers[j % len(self.servers)]}" for j in range(max(2, self.n_users))]
        self.creator = self.users[0]
        self.room_id = f"!r{self.seed}:{self.servers[0]}"
        self.keys = {s: derive_server_key(self.key_seed, s) for s in self.servers}
        self.skew = {s: self.rng.randint(-1500, 1500) for s in self.servers}
        self.clock = 1_700_000_000_000 + self.rng.randint(0, 10**6)
        self.room = RoomState(self.room_version, compat=self.compat, room_id=self.room_id)
        self.by_id: dict[str, Event] = {}
        self.children: dict[str, int] = {}
        self.decisions: dict[str, Any] = {}

    # -- helpers ----------------------------------------------------------------

    def _ts(self, server: str) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.08 and self.events:
            return self.events[rng.randrange(max(0, len(self.events) - 5), len(self.events))].origin_server_ts  # tie
        self.clock += 0 if r < 0.15 else rng.randint(1, 2500)
        ts = self.clock + self.skew[server]
        if rng.random() < 0.03:
            ts -= rng.randint(1000, 60000)  # a badly skewed clock
        return max(ts, 1)

    def _state_for(self, prevs: list[str]) -> dict:
        if len(prevs) == 1:
            return self.room.state_after(prevs[0])
        return self.room.state_before(_Prevs(prevs))

    def _levels(self, state: dict) -> tuple[dict, Any]:
        pl_id = state.get((PL_TYPE, ""))
        pl = self.by_id[pl_id].content if pl_id else {}
        return pl, pl_id

    def _user_level(self, pl: dict, user: str) -> int:
        if not pl:
            return 100 if user == self.creator else 0
        users = pl.get("users") or {}
        v = users.get(user, pl.get("users_default", 0))
        return v if type(v) is int else 0

    def _level(self, pl: dict, name: str, default: int) -> int:
        v = pl.get(name, default)
        return v if type(v) is int else default

    def _send_level(self, pl: dict, etype: str, state: bool) -> int:
        ev = pl.get("events") or {}
        if etype in ev and type(ev[etype]) is int:
            return ev[etype]
        return self._level(pl, "state_default", 50) if state else self._level(pl, "events_default", 0)

    def _membership(self, state: dict, user: str) -> str | None:
        eid = state.get((MEMBER, user))
        return self.by_id[eid].membership if eid else None

    # -- emitting ----------------------------------------------------------------

    def emit(self, etype: str, sender: str, content: dict, *, state_key: str | None = None,
             prevs: list[str] | None = None, auth_state: dict | None = None,
             before: dict | None = None, top: dict | None = None, cosign: str | None = None) -> Event:
        """Create, sign and process one event. ``auth_state`` (default: the
        state before it) is where its auth events are chosen from."""
        prevs = list(prevs or [])
        if before is None:
            before = self._state_for(prevs) if prevs else {}
        if auth_state is None:
            auth_state = before
        server = sender.partition(":")[2]
        fields: dict[str, Any] = {
            "room_id": self.room_id,
            "sender": sender,
            "type": etype,
            "content": content,
            "prev_events": prevs,
            "auth_events": auth_events_for(etype, state_key, sender, content, auth_state) if prevs else [],
            "depth": max((self.by_id[p].depth for p in prevs), default=0) + 1,
            "origin_server_ts": self._ts(server),
        }
        if state_key is not None:
            fields["state_key"] = state_key
        if top:
            fields.update(top)
        if cosign and cosign != server:
            # e.g. a restricted join: the authorising user's server signs too
            fields = sign_event(fields, cosign, self.keys[cosign], self.room_version)
        ev = Event.create(fields, server, self.keys[server], self.room_version)
        self.decisions[ev.event_id] = self.room.add(ev, before=before, soft_fail=False)
        self.by_id[ev.event_id] = ev
        self.events.append(ev)
        for p in prevs:
            self.children[p] = self.children.get(p, 0) + 1
        return ev

    def start(self) -> None:
        """Create, creator join, power levels, join rules, history visibility."""
        rng, c = self.rng, self.creator
        content: dict[str, Any] = {"room_version": self.room_version}
        if self.room_version != "11":
            content["creator"] = c
        if rng.random() < 0.06:
            content["m.federate"] = rng.choice([False, True, 0, "false", None])
        create = self.emit("m.room.create", c, content, state_key="")
        join = self.emit(MEMBER, c, {"membership": "join", "displayname": "creator"}, state_key=c, prevs=[create.event_id])
        users = {c: 100}
        for u in self.users[1:]:
            r = rng.random()
            if r < 0.15:
                users[u] = 75
            elif r < 0.4:
                users[u] = 50
            elif r < 0.5:
                users[u] = 0
        pl = {
            "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": rng.choice([0, 0, 50]),
            "events": {PL_TYPE: 100, "m.room.name": 50, "m.room.topic": rng.choice([0, 50]),
                       "m.room.history_visibility": 100, "m.room.join_rules": rng.choice([50, 100])},
        }
        ev = self.emit(PL_TYPE, c, pl, state_key="", prevs=[join.event_id])
        rule = self.join_rule or rng.choices(["public", "invite", "knock", "restricted", None],
                                             [0.55, 0.25, 0.08, 0.08, 0.04])[0]
        if rule is not None:  # None: no join_rules event at all (protocol.md §8 item 8)
            jr: dict[str, Any] = {"join_rule": rule}
            if rule == "restricted":
                jr["allow"] = [{"type": "m.room_membership", "room_id": "!other:hs0.test"}]
            ev = self.emit("m.room.join_rules", c, jr, state_key="", prevs=[ev.event_id])
        self.emit("m.room.history_visibility", c, {"history_visibility": "shared"}, state_key="", prevs=[ev.event_id])

    # -- the random walk ------------------------------------------------------------

    def _pick_prevs(self) -> list[str]:
        rng = self.rng
        tips = sorted(self.room.forward_extremities)
        if not tips:
            tips = [self.events[-1].event_id]
        if len(tips) >= 2 and (len(tips) > self.max_tips or rng.random() < self.merge_prob):
            return rng.sample(tips, min(len(tips), rng.choice([2, 2, 3])))
        if rng.random() < self.fork_prob:
            # branch off a recent accepted event that already has a child
            recent = [e.event_id for e in self.events[-12:]
                      if self.children.get(e.event_id) and e.event_id not in self.room.rejected]
            if recent:
                return [rng.choice(recent)]
        if rng.random() < 0.03:
            rejected = [e for e in self.room.rejected if not self.children.get(e)]
            if rejected:
                return [rng.choice(sorted(rejected))]
        return [rng.choice(tips)]

    def step(self) -> Event:
        rng = self.rng
        prevs = self._pick_prevs()
        before = self._state_for(prevs)
        auth_state = before
        if rng.random() < self.stale_prob:
            # cite auth events from an older state (a stale view)
            anc = self.by_id[prevs[0]].prev_events
            if anc:
                auth_state = self.room.state_after(anc[0])
        bad = rng.random() < self.bad_prob
        kind, sender, content, state_key, top = self._choose(before, bad)
        via = content.get("join_authorised_via_users_server") if kind == MEMBER else None
        cosign = via.partition(":")[2] if isinstance(via, str) and rng.random() > 0.05 else None
        return self.emit(kind, sender, content, state_key=state_key, prevs=prevs,
                         auth_state=auth_state, before=before, top=top, cosign=cosign)

    def _choose(self, state: dict, bad: bool):
        rng = self.rng
        pl, _ = self._levels(state)
        mem = {u: self._membership(state, u) for u in self.users}
        joined = [u for u in self.users if mem[u] == "join"]
        jr_id = state.get(("m.room.join_rules", ""))
        join_rule = self.by_id[jr_id].content.get("join_rule") if jr_id else None

        if bad or not joined:
            sender = rng.choice(self.users)
        elif rng.random() < 0.25:
            sender = rng.choice([u for u in self.users if mem[u] != "join"] or joined)
        else:
            sender = rng.choice(joined)
        lvl = self._user_level(pl, sender)
        others = [u for u in self.users if u != sender]

        if mem[sender] != "join" and not bad:
            m = mem[sender]
            if m == "invite":
                m2 = "knock" if rng.random() < 0.03 else rng.choice(["join", "join", "leave"])
                return (MEMBER, sender, {"membership": m2}, sender, None)
            if m == "knock":
                return (MEMBER, sender, {"membership": "leave"}, sender, None)
            if join_rule == "knock" and m != "ban":
                return (MEMBER, sender, {"membership": "knock", "reason": "let me in"}, sender, None)
            if join_rule == "restricted" and m != "ban" and joined:
                via = rng.choice(joined)
                return (MEMBER, sender, {"membership": "join", "join_authorised_via_users_server": via}, sender, None)
            if m != "ban" and (join_rule == "public" or rng.random() < 0.3):
                return (MEMBER, sender, {"membership": "join"}, sender, None)
            # nothing sensible for this user: fall through to a joined sender
            if joined:
                sender = rng.choice(joined)
                lvl = self._user_level(pl, sender)
                others = [u for u in self.users if u != sender]

        kinds = ["message", "topic", "name", "pl", "invite", "kick", "ban", "unban", "leave",
                 "join_rules", "history", "redaction", "profile", "custom_state", "join", "knock"]
        weights = [6, 1.5, 0.7, 1.2, 1.2, 0.7, 0.5, 0.4, 0.4, 0.3, 0.2, 0.4, 0.5, 0.3, 0.1, 0.15]
        kind = rng.choices(kinds, weights)[0]

        def lower_than_me(cands):
            return [u for u in cands if self._user_level(pl, u) < lvl] if not bad else cands

        if kind == "message":
            return ("m.room.message", sender, {"msgtype": "m.text", "body": f"msg {len(self.events)}"}, None, None)
        if kind == "topic":
            return ("m.room.topic", sender, {"topic": f"topic {len(self.events)}"}, "", None)
        if kind == "name":
            return ("m.room.name", sender, {"name": f"name {len(self.events)}"}, "", None)
        if kind == "profile":
            return (MEMBER, sender, {"membership": "join", "displayname": f"d{len(self.events)}"}, sender, None)
        if kind == "custom_state":
            sk = rng.choice(["", "x", sender])
            return ("org.example.state", sender, {"v": len(self.events)}, sk, None)
        if kind == "history":
            return ("m.room.history_visibility", sender,
                    {"history_visibility": rng.choice(["shared", "joined", "invited"])}, "", None)
        if kind == "join_rules":
            return ("m.room.join_rules", sender,
                    {"join_rule": rng.choices(["public", "invite", "knock", "restricted"], [0.45, 0.35, 0.1, 0.1])[0]}, "", None)
        if kind == "join":
            return (MEMBER, sender, {"membership": "join"}, sender, None)
        if kind == "leave":
            return (MEMBER, sender, {"membership": "leave"}, sender, None)
        if kind == "knock":
            return (MEMBER, sender, {"membership": "knock"}, sender, None)
        if kind == "invite":
            cands = [u for u in others if mem[u] not in ("join", "ban")] if not bad else others
            if cands:
                return (MEMBER, sender, {"membership": "invite"}, rng.choice(cands), None)
        if kind == "kick":
            cands = lower_than_me([u for u in others if mem[u] in ("join", "invite", "knock")])
            if cands:
                return (MEMBER, sender, {"membership": "leave", "reason": "kick"}, rng.choice(cands), None)
        if kind == "ban":
            cands = lower_than_me([u for u in others if u != self.creator or bad])
            if cands:
                return (MEMBER, sender, {"membership": "ban"}, rng.choice(cands), None)
        if kind == "unban":
            cands = [u for u in others if mem[u] == "ban"]
            if cands:
                return (MEMBER, sender, {"membership": "leave"}, rng.choice(cands), None)
        if kind == "redaction":
            target = rng.choice(self.events).event_id
            if self.room_version == "11":
                return ("m.room.redaction", sender, {"redacts": target}, None, None)
            return ("m.room.redaction", sender, {}, None, {"redacts": target})
        if kind == "pl":
            return (PL_TYPE, sender, self._pl_change(pl, sender, lvl, bad), "", None)
        return ("m.room.message", sender, {"msgtype": "m.text", "body": "fallback"}, None, None)

    def _pl_change(self, pl: dict, sender: str, lvl: int, bad: bool) -> dict:
        rng = self.rng
        new = copy.deepcopy(dict(pl)) if pl else {"users": {self.creator: 100}}
        users = new.setdefault("users", {})
        values = [0, 25, 50, 75, 100]
        ok_values = [v for v in values if v <= lvl] or [0]
        r = rng.random()
        if r < 0.5:
            target = rng.choice(self.users)
            if bad:
                users[target] = rng.choice(values + ["50"] if rng.random() < 0.2 else values)
            elif target == sender or self._user_level(pl, target) < lvl:
                users[target] = rng.choice(ok_values)
            else:
                users[sender] = rng.choice(ok_values)  # lower oneself instead
        elif r < 0.6:
            target = rng.choice(self.users)
            if target in users and (bad or target == sender or self._user_level(pl, target) < lvl):
                del users[target]
        elif r < 0.75:
            new["state_default"] = rng.choice(values if bad else ok_values)
        elif r < 0.9:
            ev = new.setdefault("events", {})
            t = rng.choice(["m.room.topic", "m.room.name", "m.room.message", "org.example.state", "m.room.redaction"])
            if bad or type(ev.get(t, 0)) is not int or ev.get(t, 0) <= lvl:
                ev[t] = rng.choice(values if bad else ok_values)
        else:
            name = rng.choice(["kick", "ban", "invite", "redact", "events_default", "users_default"])
            if bad or self._level(pl, name, 50) <= lvl:
                new[name] = rng.choice(values if bad else ok_values)
        return new


class _Prevs:
    """Just enough of an Event for ``RoomState.state_before``."""

    __slots__ = ("prev_events",)

    def __init__(self, prevs: list[str]) -> None:
        self.prev_events = tuple(prevs)


def generate_room(
    seed: int,
    *,
    n_events: int = 60,
    n_servers: int = 3,
    n_users: int = 6,
    fork_prob: float = 0.2,
    merge_prob: float = 0.3,
    room_version: str = "11",
    bad_prob: float = 0.1,
    stale_prob: float = 0.03,
    max_tips: int = 4,
    compat: str = "synapse",
    key_seed: int = 0,
    join_rule: str | None = None,
    return_gen: bool = False,
) -> list[Event] | RoomGen:
    """``n_events`` signed events of one random room, in creation order.

    With ``return_gen`` the :class:`RoomGen` is returned (``.events``,
    ``.room`` with the generator's own decisions, ``.users``, ...).
    """
    g = RoomGen(seed, n_servers=n_servers, n_users=n_users, fork_prob=fork_prob, merge_prob=merge_prob,
                room_version=room_version, bad_prob=bad_prob, stale_prob=stale_prob, max_tips=max_tips,
                compat=compat, key_seed=key_seed, join_rule=join_rule)
    g.start()
    while len(g.events) < n_events:
        g.step()
    return g if return_gen else g.events
