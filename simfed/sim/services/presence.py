"""Presence: online / unavailable / offline, ``last_active_ago``, presence
lists, and the m.presence EDUs that carry them (protocol.md §5.5).

Theory of operation
-------------------
Each local user has a client that connects (a session) and disconnects over
time. While connected the user makes *proactive* actions (sending a message,
...). Following Synapse (``handlers/presence.py``):

- ``last_active`` is the time of the last proactive action; going from
  offline or unavailable to online is proactive too. ``last_active_ago`` is
  ``now - last_active`` when an entry is built; ``currently_active`` is true
  for ``last_active_granularity`` (60 s) after an action.
- online -> unavailable after ``idle_after`` (5 min) without an action;
  -> offline ``offline_after`` (30 s) after the session ends.
- An update is pushed to remote servers only when it matters
  (``should_notify``): the state changed; or, while online,
  ``currently_active`` changed or ``last_active`` moved by more than the
  granularity. Online and unavailable users are pushed again every
  ``resend_interval`` (25 min, Synapse's FEDERATION_PING_INTERVAL).
- Visibility: a user's presence goes only to servers with a user allowed to
  see it: servers sharing a room with the user (the home server's view of
  the rooms' joined servers) and the servers of the user's presence-list
  subscribers. Nobody else ever receives it.
- Batching: per destination, pending updates are merged by user (a newer
  state of a user replaces an older unsent one) into one m.presence EDU of
  at most ``max_users_per_edu`` (50) users, Synapse's
  ``MAX_PRESENCE_STATES_PER_EDU``. The EDU sits in the federation sender's
  queue under a key; entries join it while it is unsent. When it is full,
  the next entries open a second EDU (Synapse would hold them for the next
  transaction instead; both leave within one transaction interval).
- Receivers accept an entry only for a user of the sending server, and mark
  a remote user offline when not refreshed for ``remote_timeout`` (30 min).

Presence lists (the Matrix r0 presence list, federated as the
``m.presence_invite`` / ``m.presence_accept`` / ``m.presence_deny`` exchange)
are modelled as federation *requests* (``presence_invite``,
``presence_accept``, ``presence_deny``) with short retries, so both servers
learn the outcome: the observer's server records the pending invite and,
on accept, the followed user; the observed user's server records the
pending invite and, on accept, the subscriber, and pushes the user's
current presence to the subscriber's server at once. An invite for an
unknown user answers M_NOT_FOUND; an accept or deny without a matching
invite answers M_FORBIDDEN.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generator

import numpy as np
import simpy

from ..transport import M_FORBIDDEN, M_NOT_FOUND, MatrixError, Response
from .common import JoinedServers, edu_queued, exp_ms, per_minute_mean_ms, queue_edu, record, server_of

if TYPE_CHECKING:
    from ...config.services import PresenceConfig
    from ..homeserver import Homeserver
    from ..world import World

__all__ = ["Presence", "STATES", "LEVEL"]

STATES = ("offline", "unavailable", "online")
#: Availability order: moving up is a proactive event.
LEVEL = {"offline": 0, "unavailable": 1, "online": 2}
DAY_MS = 86_400_000.0
REMOTE_TIMEOUT_MS = 1_800_000.0
Proc = Generator[simpy.Event, Any, Any]


@dataclass(slots=True)
class LocalPresence:
    """A local user's presence at its home server."""

    state: str = "offline"
    last_active: float = -math.inf
    currently_active: bool = False
    connected: bool = False


@dataclass(slots=True)
class _OpenEdu:
    key: Any
    edu: dict
    index: dict[str, int]
    #: Each entry's user's last_active time as of the entry (ms; -inf: never).
    last_active: dict[str, float] = field(default_factory=dict)


class Presence:
    """Presence of every user, at its home server and as other servers see it."""

    def __init__(self, world: "World", cfg: "PresenceConfig") -> None:
        self.world = world
        self.env = world.env
        self.cfg = cfg
        self.local: dict[str, LocalPresence] = {}
        #: (observer server, user) -> (state, currently_active, last_active_ts estimate, received at)
        self.views: dict[tuple[str, str], tuple[str, bool, float, float]] = {}
        #: Per server: observed user (local) -> observer users allowed to see it.
        self.followers: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        #: Per server: observer user (local) -> users it follows.
        self.following: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        #: Per server: pending (observer, observed) invites it knows of.
        self.invites: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._open: dict[tuple[str, str], list[_OpenEdu]] = {}
        self._edu_seq = 0
        self._joined = JoinedServers()
        #: Counters: updates pushed, entries queued, entries received, entries refused.
        self.counters: dict[str, int] = defaultdict(int)
        for hs in world.servers.values():
            for u in hs.users:
                self.local[u] = LocalPresence()

    # -- start -------------------------------------------------------------------

    def start(self) -> None:
        self.env.process(self._remote_timeout_loop())
        for name, hs in sorted(self.world.servers.items()):
            if not hs.honest:
                continue
            for u in hs.users:
                self.env.process(self._client(hs, u, self.world.rng(f"services/presence/{u}")))
            self.env.process(self._resend_loop(hs))
            if self.cfg.lists.invites_per_user_per_hour > 0:
                self.env.process(self._invites(hs, self.world.rng(f"services/presence_lists/{name}")))

    # -- who may see whom ----------------------------------------------------------

    def audience(self, user: str) -> list[str]:
        """Servers allowed to see ``user``'s presence (excluding its own), sorted."""
        home = server_of(user)
        hs = self.world.servers[home]
        out: set[str] = set()
        for rid in hs.rooms:
            if hs.is_joined(rid, user):
                out |= self._joined(hs, rid)
        for obs in self.followers[home].get(user, ()):
            out.add(server_of(obs))
        out.discard(home)
        return sorted(out)

    # -- local changes ------------------------------------------------------------

    def entry(self, user: str) -> dict[str, Any]:
        """The user's presence as an m.presence ``push`` entry, now."""
        p = self.local[user]
        e: dict[str, Any] = {"user_id": user, "presence": p.state}
        if p.last_active > -math.inf:
            e["last_active_ago"] = int(max(0.0, self.env.now - p.last_active))
        else:
            e["last_active_ago"] = int(self.env.now + 1e9)  # never active in this run: long ago
        if p.state == "online":
            e["currently_active"] = p.currently_active
        return e

    def set_state(self, hs: "Homeserver", user: str, state: str, *, proactive: bool = False) -> bool:
        """Apply a change at the user's server; push it if Synapse would. Returns whether pushed."""
        p = self.local[user]
        now = self.env.now
        old = (p.state, p.currently_active, p.last_active)
        if proactive or LEVEL[state] > LEVEL[p.state]:
            p.last_active = now
            p.currently_active = True
        if state != "online":
            p.currently_active = False
        p.state = state
        if not self._should_notify(old, p):
            return False
        self._push(hs, user, "change" if old[0] != state else "activity")
        return True

    def _should_notify(self, old: tuple[str, bool, float], new: LocalPresence) -> bool:
        state, active, last = old
        if state != new.state:
            return True
        if new.state == "online":
            if active != new.currently_active:
                return True
            if new.last_active - last > self.cfg.last_active_granularity_ms:
                return True
        return False

    def _push(self, hs: "Homeserver", user: str, reason: str, only: list[str] | None = None) -> None:
        dests = self.audience(user) if only is None else only
        e = self.entry(user)
        self.counters["updates"] += 1
        self.counters["entries_queued"] += len(dests)
        record(self.world, "presence", self.env.now, hs.name, user, e["presence"], bool(e.get("currently_active")),
               e["last_active_ago"], "local", len(dests), reason)
        for dest in dests:
            self._queue(hs, dest, e)

    def _queue(self, hs: "Homeserver", dest: str, entry: dict[str, Any]) -> None:
        user = entry["user_id"]
        opened = [o for o in self._open.get((hs.name, dest), ()) if edu_queued(hs.sender, dest, o.key)]
        target = next((o for o in opened if user in o.index), None)
        if target is None:
            if opened and len(opened[-1].index) < self.cfg.max_users_per_edu:
                target = opened[-1]
            else:
                self._edu_seq += 1
                target = _OpenEdu(("m.presence", self._edu_seq),
                                  {"edu_type": "m.presence", "content": {"push": []}}, {})
                opened.append(target)
        self._open[(hs.name, dest)] = opened
        push = target.edu["content"]["push"]
        i = target.index.get(user)
        if i is None:
            target.index[user] = len(push)
            push.append(entry)
        else:
            push[i] = entry
        target.last_active[user] = self.local[user].last_active
        queue_edu(hs, dest, target.edu, target.key, render=lambda t=target: self._render(t))

    def _render(self, target: _OpenEdu) -> dict:
        """The EDU as sent: ``last_active_ago`` counted to the moment its
        transaction is built (Synapse formats queued presence then)."""
        now = self.env.now
        push = []
        for e in target.edu["content"]["push"]:
            last = target.last_active.get(e["user_id"], -math.inf)
            if last > -math.inf:
                e = {**e, "last_active_ago": int(max(0.0, now - last))}
            push.append(e)
        return {"edu_type": target.edu["edu_type"], "content": {"push": push}}

    # -- the client ------------------------------------------------------------------

    def _session_rate_factor(self, t: float) -> float:
        c = self.cfg
        if not c.daily_cycle:
            return 1.0
        return 1.0 + c.daily_amplitude * math.cos(2 * math.pi * (t - c.daily_peak_ms) / DAY_MS)

    def _wait_for_session(self, rng: np.random.Generator) -> Proc:
        c = self.cfg
        rate = c.sessions_per_user_per_hour / 3_600_000.0
        if rate <= 0:
            yield self.env.event()  # never connects: this event is never triggered
            return
        top = rate * (1.0 + (c.daily_amplitude if c.daily_cycle else 0.0))
        while True:  # thinning: candidate at the peak rate, kept with rate(t) / peak
            yield self.env.timeout(float(rng.exponential(1.0 / top)))
            if rng.random() * top <= rate * self._session_rate_factor(self.env.now):
                return

    def _client(self, hs: "Homeserver", user: str, rng: np.random.Generator) -> Proc:
        c = self.cfg
        p = self.local[user]
        env = self.env
        session_end = math.inf
        if rng.random() < c.online_at_start:
            p.connected = True
            self.set_state(hs, user, "online", proactive=True)
            session_end = env.now + exp_ms(rng, c.session_ms)
        action_mean = per_minute_mean_ms(c.actions_per_user_per_minute)
        while True:
            if not p.connected:
                yield from self._wait_for_session(rng)
                p.connected = True
                session_end = env.now + exp_ms(rng, c.session_ms)
                if hs.up:
                    self.set_state(hs, user, "online", proactive=True)
            now = env.now
            t_action = now + exp_ms(rng, action_mean)
            t_idle = p.last_active + c.idle_after_ms if p.state == "online" else math.inf
            t_calm = p.last_active + c.last_active_granularity_ms if p.currently_active else math.inf
            t = min(t_action, t_idle, t_calm, session_end)
            yield env.timeout(max(0.0, t - now))
            if t == session_end:
                yield env.timeout(c.offline_after_ms)
                p.connected = False
                if hs.up:
                    self.set_state(hs, user, "offline")
                continue
            if not hs.up:
                continue
            if t == t_action:
                self.set_state(hs, user, "online", proactive=True)
            elif t == t_idle:
                self.set_state(hs, user, "unavailable")
            else:
                old = (p.state, p.currently_active, p.last_active)
                p.currently_active = False
                if self._should_notify(old, p):
                    self._push(hs, user, "activity")

    def _resend_loop(self, hs: "Homeserver") -> Proc:
        while True:
            yield self.env.timeout(self.cfg.resend_interval_ms)
            if not hs.up:
                continue
            for u in hs.users:
                if self.local[u].state != "offline":
                    self._push(hs, u, "resend")

    # -- receiving ---------------------------------------------------------------------

    def on_edu(self, hs: "Homeserver", origin: str, content: dict) -> None:
        now = self.env.now
        for e in content.get("push", ()):
            user = e.get("user_id", "")
            if server_of(user) != origin or e.get("presence") not in LEVEL:
                self.counters["entries_refused"] += 1
                continue
            self.counters["entries_received"] += 1
            self._view(hs.name, user, e["presence"], bool(e.get("currently_active", False)),
                       now - float(e.get("last_active_ago", 0)), now, "edu")

    def _view(self, server: str, user: str, state: str, active: bool, last_ts: float, now: float, why: str) -> None:
        old = self.views.get((server, user))
        self.views[(server, user)] = (state, active, last_ts, now)
        if old is None or old[0] != state or old[1] != active:
            record(self.world, "presence", now, server, user, state, active,
                   int(max(0.0, now - last_ts)), "remote", 0, why)

    def _remote_timeout_loop(self) -> Proc:
        """Synapse marks remote users offline when not refreshed for 30 minutes
        (checked every 5 minutes, by every server that is up)."""
        step = REMOTE_TIMEOUT_MS / 6
        servers = self.world.servers
        while True:
            yield self.env.timeout(step)
            now = self.env.now
            for (server, user), (state, _active, last_ts, at) in list(self.views.items()):
                if state != "offline" and now - at > REMOTE_TIMEOUT_MS and servers[server].up:
                    self._view(server, user, "offline", False, last_ts, now, "timeout")

    def view(self, server: str, user: str) -> str | None:
        """The presence state ``server`` shows for ``user`` (None: never heard)."""
        if server == server_of(user):
            return self.local[user].state
        v = self.views.get((server, user))
        return v[0] if v is not None else None

    # -- presence lists ------------------------------------------------------------------

    def _invites(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        c = self.cfg.lists
        n = len(hs.users)
        mean = 3_600_000.0 / (c.invites_per_user_per_hour * n)
        others = sorted(u for s in self.world.servers.values() if s.name != hs.name and s.honest for u in s.users)
        while others:
            yield self.env.timeout(float(rng.exponential(mean)))
            if not hs.up:
                continue
            observer = hs.users[int(rng.integers(n))]
            observed = others[int(rng.integers(len(others)))]
            if observed in self.following[hs.name].get(observer, ()):
                continue
            self.env.process(self.invite(observer, observed, rng=rng))

    def invite(self, observer: str, observed: str, *, rng: np.random.Generator | None = None,
               accept: bool | None = None) -> Proc:
        """``observer`` asks to follow ``observed`` (on any server); returns the final status.

        The observed user answers after ``reply_delay`` (accepting with
        ``accept_probability``, or as ``accept`` says). Status: ``accepted``,
        ``declined``, or the errcode / failure of the request that failed.
        """
        hs = self.world.servers[server_of(observer)]
        dest = server_of(observed)
        pair = (observer, observed)
        self.invites[hs.name].add(pair)
        res = yield from hs.request(dest, "presence_invite", {"observer_user": observer, "observed_user": observed}, 200)
        if not isinstance(res, Response) or not res.ok:
            self.invites[hs.name].discard(pair)
            return _failure(res)
        rng = rng if rng is not None else self.world.rng(f"services/presence_lists/{dest}")
        c = self.cfg.lists
        yield self.env.timeout(float(rng.exponential(c.reply_delay_ms)))
        if accept is None:
            accept = bool(rng.random() < c.accept_probability)
        return (yield from self.answer(observer, observed, accept))

    def answer(self, observer: str, observed: str, accept: bool) -> Proc:
        """``observed`` accepts or declines ``observer``'s invite; both servers learn it."""
        home = self.world.servers[server_of(observed)]
        pair = (observer, observed)
        if pair not in self.invites[home.name]:
            return "M_FORBIDDEN"
        kind = "presence_accept" if accept else "presence_deny"
        res = yield from home.request(server_of(observer), kind,
                                      {"observer_user": observer, "observed_user": observed}, 200)
        if not isinstance(res, Response) or not res.ok:
            return _failure(res)
        self.invites[home.name].discard(pair)
        if not accept:
            return "declined"
        already = server_of(observer) in self.audience(observed)
        self.followers[home.name][observed].add(observer)
        if home.up and not already:
            self._push(home, observed, "subscribe", only=[server_of(observer)])
        return "accepted"

    # -- request handlers (answered by the server named in the request) --------------------

    def on_invite(self, hs: "Homeserver", origin: str, body: dict) -> Response:
        observer, observed = body["observer_user"], body["observed_user"]
        if server_of(observer) != origin:
            raise MatrixError(M_FORBIDDEN, f"{origin} may not invite for {observer}", 403)
        if observed not in hs.users:
            raise MatrixError(M_NOT_FOUND, f"{hs.name} has no user {observed}", 404)
        self.invites[hs.name].add((observer, observed))
        return Response(200, {}, 100)

    def on_reply(self, hs: "Homeserver", origin: str, body: dict, accept: bool) -> Response:
        observer, observed = body["observer_user"], body["observed_user"]
        pair = (observer, observed)
        if server_of(observed) != origin or pair not in self.invites[hs.name]:
            raise MatrixError(M_FORBIDDEN, f"no presence invite from {observer} to {observed}", 403)
        self.invites[hs.name].discard(pair)
        if accept:
            self.following[hs.name][observer].add(observed)
        return Response(200, {}, 100)


def _failure(res: Any) -> str:
    if isinstance(res, Response):
        return str(res.body.get("errcode", res.status)) if isinstance(res.body, dict) else str(res.status)
    return f"failed:{res.reason}"
