"""Hand-built rooms for tests: name events, wire them by name, sign for real."""

from __future__ import annotations

from typing import Any, Sequence

from simfed.protocol import Event, derive_server_key


class RoomBuilder:
    """Builds signed events whose prev/auth events are given by short names."""

    def __init__(self, room_id: str = "!room:a", room_version: str = "11", seed: int = 0) -> None:
        self.room_id = room_id
        self.room_version = room_version
        self.seed = seed
        self.by_name: dict[str, Event] = {}
        self._ts = 0

    def id(self, name: str) -> str:
        return self.by_name[name].event_id

    def __getitem__(self, name: str) -> Event:
        return self.by_name[name]

    def add(
        self,
        name: str,
        type: str,
        sender: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        prev: Sequence[str] = (),
        auth: Sequence[str] = (),
        ts: int | None = None,
        depth: int | None = None,
    ) -> Event:
        if ts is None:
            self._ts += 1
            ts = self._ts
        server = sender.partition(":")[2]
        prev_ids = [self.id(p) for p in prev]
        if depth is None:
            depth = max((self.by_name[p].depth for p in prev), default=0) + 1
        fields: dict[str, Any] = {
            "room_id": self.room_id,
            "sender": sender,
            "type": type,
            "content": content,
            "prev_events": prev_ids,
            "auth_events": [self.id(a) for a in auth],
            "depth": depth,
            "origin_server_ts": ts,
        }
        if state_key is not None:
            fields["state_key"] = state_key
        ev = Event.create(fields, server, derive_server_key(self.seed, server), self.room_version)
        self.by_name[name] = ev
        return ev

    def member(self, name: str, sender: str, membership: str, *, target: str | None = None, **kw: Any) -> Event:
        return self.add(name, "m.room.member", sender, {"membership": membership}, state_key=target or sender, **kw)

    def events(self) -> dict[str, Event]:
        return {e.event_id: e for e in self.by_name.values()}

    def names(self, state: dict) -> dict:
        """A state map with event IDs replaced by names (readable asserts)."""
        rev = {e.event_id: n for n, e in self.by_name.items()}
        return {k: rev.get(v, v) for k, v in state.items()}


def worked_example() -> RoomBuilder:
    """protocol.md §3.5: a demotion racing a kick and a topic change."""
    b = RoomBuilder()
    A, B, C = "@alice:a", "@bob:b", "@carol:c"
    b.add("CREATE", "m.room.create", A, {"room_version": "11"}, state_key="", ts=1)
    b.member("A_JOIN", A, "join", prev=["CREATE"], auth=["CREATE"], ts=2)
    b.add("PL1", "m.room.power_levels", A, {"users": {A: 100, B: 50}}, state_key="",
          prev=["A_JOIN"], auth=["CREATE", "A_JOIN"], ts=3)
    b.add("JR", "m.room.join_rules", A, {"join_rule": "public"}, state_key="",
          prev=["PL1"], auth=["CREATE", "PL1", "A_JOIN"], ts=4)
    b.member("B_JOIN", B, "join", prev=["JR"], auth=["CREATE", "PL1", "JR"], ts=5)
    b.member("C_JOIN", C, "join", prev=["B_JOIN"], auth=["CREATE", "PL1", "JR"], ts=6)
    b.add("PL2", "m.room.power_levels", A, {"users": {A: 100, B: 0}}, state_key="",
          prev=["C_JOIN"], auth=["CREATE", "PL1", "A_JOIN"], ts=7)
    b.add("N1", "m.room.name", A, {"name": "n"}, state_key="",
          prev=["PL2"], auth=["CREATE", "PL2", "A_JOIN"], ts=10)
    b.add("T1", "m.room.topic", B, {"topic": "t"}, state_key="",
          prev=["C_JOIN"], auth=["CREATE", "PL1", "B_JOIN"], ts=8)
    b.member("KICK", B, "leave", target=C, prev=["T1"], auth=["CREATE", "PL1", "B_JOIN", "C_JOIN"], ts=9)
    return b
