"""Identity servers: 3PID verification, binds, lookups and replication.

A cluster of identity servers ``is0 .. is{n-1}``, each a network node (with
latency, loss and partitions like a homeserver). A user verifies a third
party ID (an email address or a phone number: a token sent to it, submitted
after a while) and binds it to its Matrix ID at one identity server; a
homeserver looks a 3PID up at any identity server.

Replication scheme: push with periodic anti-entropy (a version vector of
contiguous prefixes).

- A bind accepted at server O gets a record ID ``(O, seq)`` (seq counts O's
  binds) and a timestamp; O applies it and pushes it at once to every peer
  (one ``is_replicate`` request each, no retries).
- Every ``anti_entropy_interval`` (jittered) each server picks a random peer
  and sends ``is_sync`` with its version vector ``{origin: n}``, where ``n``
  is the largest seq such that it holds every record ``(origin, 1..n)``. The
  peer answers with every record it holds beyond those prefixes and its own
  vector; the initiator applies them, then pushes the records the peer
  lacks (``is_replicate``). So a record lost by push is repaired within a
  few intervals after the network lets the two servers talk, and every
  server converges after a partition heals.
- Conflicts (a 3PID bound again, to another user, at another server) are
  resolved last-writer-wins on ``(timestamp, origin, seq)``, the same order
  everywhere, so servers holding the same records answer the same.

Every failure answers with Matrix's standard error: M_NOT_FOUND for a 3PID
with no binding, M_FORBIDDEN for a wrong verification token, M_LIMIT_EXCEEDED
(with ``retry_after_ms``) above ``max_requests_per_second`` per origin.

Recorded (``identity`` table): each bind (accepted at its server, or failed
at the homeserver), each record applied at each identity server (replication
lag = applied - bound), each lookup with its latency and outcome against the
truth when the answer arrives (the newest accepted bind of that 3PID
anywhere): ``ok``, ``stale`` (another user), ``missing`` (M_NOT_FOUND though
a binding exists), ``not_found`` (correctly none), ``error``, ``failed``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator

import numpy as np
import simpy

from ..serving import OVERHEAD_BYTES
from ..transport import (
    M_FORBIDDEN,
    M_LIMIT_EXCEEDED,
    M_NOT_FOUND,
    M_UNRECOGNIZED,
    MatrixError,
    RequestFailed,
    Response,
)
from .common import Outstanding, exp_ms, per_minute_mean_ms, record

if TYPE_CHECKING:
    from ...config.services import IdentityConfig
    from ..homeserver import Homeserver
    from ..world import World

__all__ = ["IdentityCluster", "IdentityServer", "Binding"]

Proc = Generator[simpy.Event, Any, Any]
RECORD_BYTES = 160
MEDIA = ("email", "msisdn")


@dataclass(frozen=True, slots=True)
class Binding:
    """One bind: ``(medium, address) -> mxid``, stamped ``(ts, origin, seq)``."""

    medium: str
    address: str
    mxid: str
    ts: float
    origin: str
    seq: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.medium, self.address)

    @property
    def order(self) -> tuple[float, str, int]:
        return (self.ts, self.origin, self.seq)

    @property
    def record_id(self) -> str:
        return f"{self.origin}:{self.seq}"


class IdentityServer:
    """One identity server: its records, its version vector, its handler."""

    def __init__(self, cluster: "IdentityCluster", name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.env = cluster.env
        self.mappings: dict[tuple[str, str], Binding] = {}
        self.log: dict[str, dict[int, Binding]] = defaultdict(dict)
        self.prefix: dict[str, int] = defaultdict(int)
        self.seq = 0
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._handlers = {
            "3pid_bind": self._on_bind,
            "3pid_lookup": self._on_lookup,
            "is_replicate": self._on_replicate,
            "is_sync": self._on_sync,
        }

    # -- state --------------------------------------------------------------------

    def apply(self, b: Binding) -> bool:
        """Store a record (idempotent); returns whether it was new here."""
        held = self.log[b.origin]
        if b.seq in held:
            return False
        held[b.seq] = b
        p = self.prefix[b.origin]
        while p + 1 in held:
            p += 1
        self.prefix[b.origin] = p
        cur = self.mappings.get(b.key)
        if cur is None or b.order > cur.order:
            self.mappings[b.key] = b
        record(self.cluster.world, "identity", self.env.now, self.name, "applied", b.medium, b.address, b.mxid,
               b.record_id, b.ts, float("nan"), "ok", None)
        return True

    def vector(self) -> dict[str, int]:
        return {o: n for o, n in sorted(self.prefix.items()) if n}

    def beyond(self, vector: dict[str, int]) -> list[Binding]:
        """Records held here that a server with ``vector`` may lack."""
        out = []
        for origin in sorted(self.log):
            n = vector.get(origin, 0)
            out += [b for s, b in sorted(self.log[origin].items()) if s > n]
        return out

    # -- serving ------------------------------------------------------------------

    def handle(self, origin: str, kind: str, body: Any) -> Response:
        handler = self._handlers.get(kind)
        if handler is None:
            raise MatrixError(M_UNRECOGNIZED, f"{self.name} serves no {kind}", 404)
        self._rate_limit(origin)
        try:
            return handler(origin, body)
        except (KeyError, TypeError, AttributeError) as exc:
            raise MatrixError("M_BAD_JSON", f"malformed {kind} request: {exc!r}", 400) from None

    def _rate_limit(self, origin: str) -> None:
        window = self._windows[origin]
        now = self.env.now
        while window and window[0] <= now - 1000.0:
            window.popleft()
        if len(window) >= self.cluster.cfg.max_requests_per_second:
            retry = max(1, int(-(-(window[0] + 1000.0 - now) // 1)))
            raise MatrixError(M_LIMIT_EXCEEDED, "Too many requests", 429, retry_after_ms=retry)
        window.append(now)

    def _on_bind(self, origin: str, body: dict) -> Response:
        if not body.get("token_ok", False):
            raise MatrixError(M_FORBIDDEN, "3PID not validated: wrong token", 403)
        self.seq += 1
        b = Binding(body["medium"], body["address"], body["mxid"], self.env.now, self.name, self.seq)
        self.cluster.accepted(self, b)
        self.apply(b)
        for peer in self.cluster.peers(self.name):
            self.cluster.send(self.name, peer, "is_replicate", {"records": [b]}, RECORD_BYTES)
        return Response(200, {"medium": b.medium, "address": b.address, "mxid": b.mxid, "ts": int(b.ts)},
                        OVERHEAD_BYTES)

    def _on_lookup(self, origin: str, body: dict) -> Response:
        b = self.mappings.get((body["medium"], body["address"]))
        if b is None:
            raise MatrixError(M_NOT_FOUND, f"no binding for {body['medium']} {body['address']}", 404)
        return Response(200, {"mxid": b.mxid}, OVERHEAD_BYTES)

    def _on_replicate(self, origin: str, body: dict) -> Response:
        if origin not in self.cluster.servers:
            raise MatrixError(M_FORBIDDEN, f"{origin} is not an identity server of this cluster", 403)
        for b in body["records"]:
            self.apply(b)
        return Response(200, {}, OVERHEAD_BYTES)

    def _on_sync(self, origin: str, body: dict) -> Response:
        if origin not in self.cluster.servers:
            raise MatrixError(M_FORBIDDEN, f"{origin} is not an identity server of this cluster", 403)
        records = self.beyond(body["vector"])
        return Response(200, {"records": records, "vector": self.vector()},
                        OVERHEAD_BYTES + RECORD_BYTES * len(records))

    # -- anti-entropy --------------------------------------------------------------

    def anti_entropy(self, rng: np.random.Generator) -> Proc:
        c = self.cluster.cfg
        peers = self.cluster.peers(self.name)
        while peers:
            yield self.env.timeout(c.anti_entropy_interval_ms * float(rng.uniform(0.8, 1.2)))
            peer = peers[int(rng.integers(len(peers)))]
            mine = self.vector()
            res = yield self.cluster.send(self.name, peer, "is_sync", {"vector": mine},
                                          OVERHEAD_BYTES + 30 * len(mine))
            if not isinstance(res, Response) or not res.ok:
                continue
            for b in res.body["records"]:
                self.apply(b)
            missing = self.beyond(res.body["vector"])
            if missing:
                self.cluster.send(self.name, peer, "is_replicate", {"records": missing},
                                  OVERHEAD_BYTES + RECORD_BYTES * len(missing))


class IdentityCluster:
    """The identity servers, the users binding 3PIDs and the homeservers looking them up."""

    def __init__(self, world: "World", cfg: "IdentityConfig") -> None:
        self.world = world
        self.outstanding = Outstanding()
        self.env = world.env
        self.cfg = cfg
        self.servers: dict[str, IdentityServer] = {n: IdentityServer(self, n) for n in cfg.server_names()}
        #: (medium, address) -> the newest accepted Binding anywhere (the truth lookups are judged against).
        self.truth: dict[tuple[str, str], Binding] = {}
        self._n3pid = 0
        self.counters: dict[str, int] = defaultdict(int)

    def names(self) -> tuple[str, ...]:
        return tuple(self.servers)

    def peers(self, name: str) -> list[str]:
        return [n for n in self.servers if n != name]

    def send(self, src: str, dst: str, kind: str, body: Any, size: int) -> simpy.Event:
        """One request between identity servers (no retries: anti-entropy repairs)."""
        return self.world.transport.request(src, dst, kind, body, size,
                                            timeout_ms=self.world.scenario.federation.request_timeout_ms)

    def accepted(self, server: IdentityServer, b: Binding) -> None:
        cur = self.truth.get(b.key)
        if cur is None or b.order > cur.order:
            self.truth[b.key] = b
        self.counters["binds"] += 1
        record(self.world, "identity", self.env.now, server.name, "bind", b.medium, b.address, b.mxid, b.record_id,
               b.ts, float("nan"), "ok", None)

    # -- processes ------------------------------------------------------------------

    def start(self) -> None:
        for name in self.servers:
            record(self.world, "identity", self.env.now, name, "server", "", "", None, None,
                   float("nan"), float("nan"), "up", None)
        for name, s in self.servers.items():
            self.env.process(s.anti_entropy(self.world.rng(f"services/identity/{name}")))
        for name, hs in sorted(self.world.servers.items()):
            if not hs.honest:
                continue
            if self.cfg.binds_per_user_per_hour > 0:
                self.env.process(self._binds(hs, self.world.rng(f"services/identity/binds/{name}")))
            if self.cfg.lookups_per_server_per_minute > 0:
                self.env.process(self._lookups(hs, self.world.rng(f"services/identity/lookups/{name}")))

    def _binds(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        mean = 3_600_000.0 / (self.cfg.binds_per_user_per_hour * len(hs.users))
        while True:
            yield self.env.timeout(exp_ms(rng, mean))
            user = hs.users[int(rng.integers(len(hs.users)))]
            if self.truth and rng.random() < self.cfg.rebind_probability:
                keys = sorted(self.truth)
                medium, address = keys[int(rng.integers(len(keys)))]
            else:
                self._n3pid += 1
                medium = MEDIA[int(rng.integers(2))]
                address = f"u{self._n3pid}@example.org" if medium == "email" else f"4420{self._n3pid:07d}"
            target = sorted(self.servers)[int(rng.integers(len(self.servers)))]
            self.env.process(self.bind(hs, user, medium, address, target, rng=rng))

    def bind(self, hs: "Homeserver", user: str, medium: str, address: str, target: str, *,
             rng: np.random.Generator | None = None, token_ok: bool | None = None) -> Proc:
        """``user`` verifies ``(medium, address)`` then binds it at ``target``; returns the Response or failure."""
        rng = rng if rng is not None else self.world.rng(f"services/identity/binds/{hs.name}")
        yield self.env.timeout(exp_ms(rng, self.cfg.verification_ms))
        if token_ok is None:
            token_ok = bool(rng.random() >= self.cfg.verification_failure)
        if not hs.up:
            return RequestFailed("connection")
        t0 = self.env.now
        body = {"medium": medium, "address": address, "mxid": user, "token_ok": token_ok}
        res = yield from hs.request(target, "3pid_bind", body, OVERHEAD_BYTES)
        if not (isinstance(res, Response) and res.ok):
            outcome, err = _failed(res)
            record(self.world, "identity", self.env.now, hs.name, "bind", medium, address, user, target,
                   float("nan"), self.env.now - t0, outcome, err)
        return res

    def _lookups(self, hs: "Homeserver", rng: np.random.Generator) -> Proc:
        mean = per_minute_mean_ms(self.cfg.lookups_per_server_per_minute)
        names = sorted(self.servers)
        while True:
            yield self.env.timeout(exp_ms(rng, mean))
            if not hs.up or not self.truth:
                continue
            keys = sorted(self.truth)
            medium, address = keys[int(rng.integers(len(keys)))]
            self.env.process(self.lookup(hs, medium, address, names[int(rng.integers(len(names)))]))

    def lookup(self, hs: "Homeserver", medium: str, address: str, target: str) -> Proc:
        """``hs`` looks ``(medium, address)`` up at ``target``; returns the outcome string."""
        t0 = self.env.now
        token = self.outstanding.start(lambda: record(
            self.world, "identity", self.env.now, hs.name, "lookup", medium, address, None, target,
            float("nan"), self.env.now - t0, "pending", None))
        res = yield from hs.request(target, "3pid_lookup", {"medium": medium, "address": address}, OVERHEAD_BYTES)
        self.outstanding.done(token)
        truth = self.truth.get((medium, address))
        mxid = None
        if isinstance(res, Response) and res.ok:
            mxid = res.body["mxid"]
            outcome = "ok" if truth is not None and truth.mxid == mxid else "stale"
            err = None
        else:
            outcome, err = _failed(res)
            if err == M_NOT_FOUND:
                outcome = "missing" if truth is not None else "not_found"
        self.counters[f"lookup_{outcome}"] += 1
        record(self.world, "identity", self.env.now, hs.name, "lookup", medium, address, mxid, target,
               float("nan"), self.env.now - t0, outcome, err)
        return outcome

    def converged(self) -> bool:
        """Every identity server holds every record."""
        vectors = [s.vector() for s in self.servers.values()]
        return all(v == vectors[0] for v in vectors) and all(
            s.mappings == next(iter(self.servers.values())).mappings for s in self.servers.values())


def _failed(res: Response | RequestFailed) -> tuple[str, str | None]:
    if isinstance(res, RequestFailed):
        return "failed", res.reason
    err = res.body.get("errcode") if isinstance(res.body, dict) else None
    return "error", err

