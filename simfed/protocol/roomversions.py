"""The room versions simfed implements and the rules that differ between them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_ROOM_VERSION", "KNOWN_ROOM_VERSIONS", "RoomVersion", "get_room_version"]


@dataclass(frozen=True, slots=True)
class RoomVersion:
    """Flags for one room version (protocol.md §1.2)."""

    identifier: str
    #: v11 redaction algorithm (keeps all of create, ``invite`` in PL, ...).
    v11_redaction: bool
    #: v11: the creator is the create event's ``sender``, not ``content.creator``.
    creator_is_sender: bool
    #: v11: a redaction names its target in ``content.redacts``.
    redacts_in_content: bool
    #: v10+: power level values must be real integers.
    integer_power_levels: bool = True
    #: the state resolution algorithm the version prescribes.
    state_res: str = "v2"
    max_depth: int = 2**53 - 1


V10 = RoomVersion("10", v11_redaction=False, creator_is_sender=False, redacts_in_content=False)
V11 = RoomVersion("11", v11_redaction=True, creator_is_sender=True, redacts_in_content=True)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (V10, V11)}
DEFAULT_ROOM_VERSION = "11"


def get_room_version(room_version: str | RoomVersion) -> RoomVersion:
    """Look a room version up by identifier; ``ValueError`` names the choices."""
    if isinstance(room_version, RoomVersion):
        return room_version
    try:
        return KNOWN_ROOM_VERSIONS[str(room_version)]
    except KeyError:
        raise ValueError(
            f"room_version={room_version!r} is not supported; "
            f"choose one of {sorted(KNOWN_ROOM_VERSIONS)}"
        ) from None
