"""Beyond room events: presence, typing, receipts, profiles, the alias
directory and identity servers.

The World builds one :class:`Services` after the homeservers; it holds one
object per enabled service (``presence``, ``typing``, ``receipts``,
``profiles``, ``directory``, ``identity``; ``None`` when disabled) and is
the homeservers' single entry point:

- ``on_edus(hs, origin, edus)``: the EDUs of a received ``/send``
  transaction, dispatched by ``edu_type`` (each recorded in the ``edus``
  table with its entries and size; unknown types are ignored as Synapse
  does);
- ``handler(kind)``: the federation request kinds the services answer
  (``query_profile``, ``query_directory``, ``presence_invite``,
  ``presence_accept``, ``presence_deny``, and the identity servers' own);
- ``nodes()``: the identity servers, extra network nodes with their
  request handlers.

With every service disabled (the default) nothing is started and a run is
exactly what it was without services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...config.services import ServicesConfig
from ..transport import MatrixError
from .common import edu_entries, edu_size
from .directory import Directory
from .edus import Receipts, Typing
from .identity import IdentityCluster
from .presence import Presence
from .profiles import Profiles

if TYPE_CHECKING:
    from ..homeserver import Homeserver
    from ..world import World

__all__ = ["Services", "Presence", "Typing", "Receipts", "Profiles", "Directory", "IdentityCluster",
           "identity_node_names"]


def identity_node_names(scenario: Any) -> tuple[str, ...]:
    """Names of the identity servers a scenario asks for (network nodes besides the homeservers)."""
    cfg = getattr(scenario, "services", None)
    return cfg.identity.server_names() if cfg is not None else ()


class Services:
    """Every service of one run (see the module docstring)."""

    def __init__(self, world: "World") -> None:
        self.world = world
        cfg: ServicesConfig = getattr(world.scenario, "services", None) or ServicesConfig()
        self.cfg = cfg
        self.presence = Presence(world, cfg.presence) if cfg.presence.enabled else None
        self.typing = Typing(world, cfg.typing) if cfg.typing.enabled else None
        self.receipts = Receipts(world, cfg.receipts) if cfg.receipts.enabled else None
        self.profiles = Profiles(world, cfg.profiles) if cfg.profiles.enabled else None
        self.directory = Directory(world, cfg.directory) if cfg.directory.enabled else None
        self.identity = IdentityCluster(world, cfg.identity) if cfg.identity.enabled else None
        self._edu: dict[str, Callable[["Homeserver", str, dict], None]] = {}
        self._requests: dict[str, Callable[["Homeserver", str, dict], Any]] = {}
        if self.presence is not None:
            p = self.presence
            self._edu["m.presence"] = p.on_edu
            self._requests["presence_invite"] = p.on_invite
            self._requests["presence_accept"] = lambda hs, o, b: p.on_reply(hs, o, b, True)
            self._requests["presence_deny"] = lambda hs, o, b: p.on_reply(hs, o, b, False)
        if self.typing is not None:
            self._edu["m.typing"] = self.typing.on_edu
        if self.receipts is not None:
            self._edu["m.receipt"] = self.receipts.on_edu
        if self.profiles is not None:
            self._requests["query_profile"] = self.profiles.on_query
        if self.directory is not None:
            self._requests["query_directory"] = self.directory.on_query
        #: EDUs received, by type (also those of disabled services, which are ignored).
        self.received: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return any(s is not None for s in (self.presence, self.typing, self.receipts, self.profiles,
                                           self.directory, self.identity))

    def nodes(self) -> dict[str, Callable[[str, str, Any], Any]]:
        """Identity servers: name -> request handler (to register on the transport)."""
        if self.identity is None:
            return {}
        return {name: s.handle for name, s in self.identity.servers.items()}

    def start(self) -> None:
        """Start every enabled service's processes (call once, when the world runs)."""
        for s in (self.presence, self.typing, self.receipts, self.profiles, self.directory, self.identity):
            if s is not None:
                s.start()

    def finish(self) -> None:
        """The run ended: record requests still unanswered as ``pending``."""
        for s in (self.profiles, self.directory, self.identity):
            if s is not None:
                s.outstanding.flush()

    def on_local_event(self, hs: "Homeserver", ev: Any) -> None:
        """A user of ``hs`` sent an event: a message is a proactive presence action
        (online, ``last_active`` now) for a user whose client is connected."""
        p = self.presence
        if p is None or ev.type != "m.room.message":
            return
        local = p.local.get(ev.sender)
        if local is not None and local.state != "offline":
            p.set_state(hs, ev.sender, "online", proactive=True)

    def on_edus(self, hs: "Homeserver", origin: str, edus: list) -> None:
        """The EDUs of one received transaction, at ``hs``, from ``origin``."""
        rec = self.world.recorder
        now = self.world.env.now
        for edu in edus:
            if not isinstance(edu, dict) or not isinstance(edu.get("content"), dict):
                continue  # not an EDU we model (Synapse ignores what it does not know)
            kind = str(edu.get("edu_type", ""))
            self.received[kind] = self.received.get(kind, 0) + 1
            if rec is not None:
                rec.edu(now, origin, hs.name, kind, edu_entries(edu), edu_size(edu))
            fn = self._edu.get(kind)
            if fn is not None:
                fn(hs, origin, edu["content"])

    def handler(self, kind: str) -> Callable[["Homeserver", str, dict], Any] | None:
        """The handler ``(hs, origin, body) -> Response`` of a request kind, or None.

        A body without the fields the endpoint needs is answered 400 M_BAD_JSON.
        """
        fn = self._requests.get(kind)
        return None if fn is None else (lambda hs, origin, body: well_formed(fn, kind, hs, origin, body))


def well_formed(fn: Callable[..., Any], kind: str, *args: Any) -> Any:
    """Call a handler; a malformed body (missing or mistyped fields) becomes 400 M_BAD_JSON."""
    try:
        return fn(*args)
    except (KeyError, TypeError, AttributeError) as exc:
        raise MatrixError("M_BAD_JSON", f"malformed {kind} request: {exc!r}", 400) from None
