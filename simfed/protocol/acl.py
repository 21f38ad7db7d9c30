"""Server ACLs (``m.room.server_acl``): which servers a room accepts.

As Synapse (``storage/controllers/state.py`` ``server_acl_evaluator_from_event``,
``rust/src/acl/mod.rs`` ``ServerAclEvaluator``; spec "Server Access Control
Lists"):

- content is read leniently: ``allow_ip_literals`` that is not a boolean
  counts as ``true``; ``allow``/``deny`` that are not lists count as empty,
  and their non-string entries are ignored;
- a server name is matched without its port;
- ``allow_ip_literals: false`` denies IPv4 literals and ``[...]`` IPv6 literals;
- then any ``deny`` glob that matches denies, then any ``allow`` glob that
  matches allows, and everything else is denied (no ``allow``: nobody);
- globs match the whole name, case-insensitively; ``*`` is any run of
  characters (possibly empty), ``?`` exactly one (:func:`glob_matches`).

A room without an ACL event allows every server. Pure: no clock, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

__all__ = ["ACL_EVENT_TYPE", "ServerAcl", "glob_matches", "server_host"]

ACL_EVENT_TYPE = "m.room.server_acl"



def _seg_at(seg: str, s: str, i: int) -> bool:
    return all(c == "?" or c == s[i + k] for k, c in enumerate(seg))


def _find(seg: str, s: str, start: int, end: int) -> int:
    for i in range(start, end - len(seg) + 1):
        if _seg_at(seg, s, i):
            return i
    return -1


@lru_cache(maxsize=4096)
def glob_matches(glob: str, name: str) -> bool:
    """True if the server-name glob matches all of ``name``, case-insensitively.

    ``*`` matches any run of characters, ``?`` one. Matched segment by
    segment (leftmost placement is optimal between stars), in at most
    ``len(name) * len(glob)`` steps whatever the glob: a hostile ACL cannot
    make it backtrack exponentially (Synapse compiles globs to Rust's
    linear-time regexes for the same reason)."""
    g, s = glob.lower(), name.lower()
    parts = g.split("*")
    if len(parts) == 1:
        return len(g) == len(s) and _seg_at(g, s, 0)
    if sum(map(len, parts)) > len(s):
        return False
    first, last = parts[0], parts[-1]
    if not _seg_at(first, s, 0) or not _seg_at(last, s, len(s) - len(last)):
        return False
    pos, end = len(first), len(s) - len(last)
    for seg in parts[1:-1]:
        if seg:
            i = _find(seg, s, pos, end)
            if i < 0:
                return False
            pos = i + len(seg)
    return True


def server_host(server: str) -> str:
    """A server name without its port (``[v6]:port`` keeps the brackets)."""
    if server.startswith("["):
        end = server.find("]")
        return server[: end + 1] if end >= 0 else server
    return server.rpartition(":")[0] if ":" in server else server


def _is_ip_literal(host: str) -> bool:
    if host.startswith("["):
        return True
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _globs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)):
        return ()
    return tuple(s for s in v if isinstance(s, str))


@dataclass(frozen=True, slots=True)
class ServerAcl:
    """A parsed ``m.room.server_acl`` content."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_ip_literals: bool = True

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> ServerAcl:
        """Parse leniently, ignoring bad data, as Synapse does."""
        if not isinstance(content, Mapping):
            return cls()
        ip = content.get("allow_ip_literals", True)
        return cls(_globs(content.get("allow", [])), _globs(content.get("deny", [])),
                   ip if isinstance(ip, bool) else True)

    def allows(self, server: str) -> bool:
        """True if ``server`` (port ignored) may take part in the room."""
        host = server_host(server)
        if not self.allow_ip_literals and _is_ip_literal(host):
            return False
        if any(glob_matches(g, host) for g in self.deny):
            return False
        return any(glob_matches(g, host) for g in self.allow)
