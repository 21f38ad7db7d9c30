"""Forgeries: events no honest server may let into its state.

* ``forge_user``: the sender is a user of another server; the adversary
  signs with its own key, so the sender's server signature is missing and
  receivers must reject it.
* ``bad_signature``: ``signature`` changes a signed field after signing
  (the signature no longer verifies: rejected); ``hash`` changes the
  content after signing (the signature, over the redacted form, still
  verifies: receivers keep the redacted event, as Synapse does).
* ``unauthorised``: correctly signed by the adversary for its own user, but
  the auth rules forbid it (the user raises its own power level to 100).

The builders are plain functions so that ``servers.malicious`` (the older
switch) uses the same ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...protocol import Event, RoomState, auth_events_for
from .base import Behaviour, register

if TYPE_CHECKING:
    from ..homeserver import Homeserver

__all__ = ["BadSignature", "ForgeUser", "Unauthorised", "forged_event"]


def _fields(hs: "Homeserver", room: RoomState, sender: str, body: str) -> dict[str, Any]:
    prevs = sorted(room.forward_extremities)[:10]
    return {"room_id": room.graph.room_id, "sender": sender, "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": body}, "prev_events": prevs,
            "auth_events": [], "depth": max(room.graph[p].depth for p in prevs) + 1,
            "origin_server_ts": hs.now_ts()}


def forged_event(hs: "Homeserver", room: RoomState, kind: str, *, victim: str | None, n: int) -> Event:
    """A forgery of ``kind`` (``forge_user``, ``signature``, ``hash`` or
    ``unauthorised``) built on ``room``'s forward extremities."""
    sender = f"@u0:{victim}" if kind == "forge_user" and victim else hs.users[0]
    fields = _fields(hs, room, sender, f"forged {n}")
    if kind == "unauthorised":
        state = room.current_state()
        pl_id = state.get(("m.room.power_levels", ""))
        content = dict(room.events[pl_id].content) if pl_id else {}
        content["users"] = {**content.get("users", {}), sender: 100}
        fields.update(type="m.room.power_levels", state_key="", content=content,
                      auth_events=auth_events_for("m.room.power_levels", "", sender, content, state))
    ev = Event.create(fields, hs.name, hs.key, hs.config.room_version)
    if kind == "signature":
        pdu = ev.pdu()
        pdu["origin_server_ts"] += 1
        ev = Event.from_pdu(pdu, hs.config.room_version)
    elif kind == "hash":
        pdu = ev.pdu()
        pdu["content"] = {"msgtype": "m.text", "body": f"altered {n}"}
        ev = Event.from_pdu(pdu, hs.config.room_version)
    return ev


class _Forging(Behaviour):
    kind = ""

    def victim(self) -> str | None:
        return None

    def act(self) -> None:
        room = self.room()
        if room is None or not room.forward_extremities:
            return
        ev = forged_event(self.hs, room, self.kind, victim=self.victim(), n=self.actions)
        self.hs.counters["forged"] += 1
        dests = self.targets(room)
        self.send(ev, dests)
        self.record("send", ev, target=",".join(dests), illegitimate=self.kind != "hash")


@register
class ForgeUser(_Forging):
    name = "forge_user"
    kind = "forge_user"

    def victim(self) -> str | None:
        if self.cfg.victim is not None:
            return self.cfg.victim
        victims = self.victims()
        return victims[self.actions % len(victims)] if victims else None


@register
class BadSignature(_Forging):
    name = "bad_signature"

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.cfg.corrupt


@register
class Unauthorised(_Forging):
    name = "unauthorised"
    kind = "unauthorised"
