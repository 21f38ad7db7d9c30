"""Ed25519 server keys and the Matrix way of signing JSON objects."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

import nacl.exceptions
import nacl.signing

from .canonical import canonical_json, decode_base64, encode_base64

__all__ = [
    "SignatureError",
    "SigningKey",
    "VerifyKey",
    "derive_server_key",
    "sign_json",
    "verify_json",
    "verify_signature",
]

_KEY_ID = re.compile(r"^ed25519:[a-zA-Z0-9_]+$")


class SignatureError(ValueError):
    """A signature is missing, malformed or does not verify."""


class VerifyKey:
    """An ed25519 public key with its key ID (``ed25519:<version>``)."""

    __slots__ = ("key_id", "_nacl", "public_key_bytes")

    def __init__(self, public_key: bytes | str, key_id: str = "ed25519:1") -> None:
        raw = decode_base64(public_key) if isinstance(public_key, str) else bytes(public_key)
        if len(raw) != 32:
            raise ValueError(f"an ed25519 public key has 32 bytes, got {len(raw)}")
        self.key_id = key_id
        self.public_key_bytes = raw
        self._nacl = nacl.signing.VerifyKey(raw)

    @property
    def public_key_base64(self) -> str:
        return encode_base64(self.public_key_bytes)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is this key's signature of ``message``."""
        try:
            self._nacl.verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, VerifyKey)
            and other.public_key_bytes == self.public_key_bytes
            and other.key_id == self.key_id
        )

    def __hash__(self) -> int:
        return hash((self.key_id, self.public_key_bytes))

    def __repr__(self) -> str:
        return f"VerifyKey({self.key_id!r}, {self.public_key_base64!r})"


class SigningKey:
    """An ed25519 signing key with its key ID.

    >>> k = SigningKey.from_seed(bytes(32))
    >>> k.key_id
    'ed25519:1'
    """

    __slots__ = ("key_id", "_nacl", "verify_key", "seed")

    def __init__(self, nacl_key: nacl.signing.SigningKey, key_id: str) -> None:
        if not _KEY_ID.match(key_id):
            raise ValueError(f"key_id={key_id!r}: expected 'ed25519:' + [a-zA-Z0-9_]+")
        self.key_id = key_id
        self._nacl = nacl_key
        self.seed = bytes(nacl_key)
        self.verify_key = VerifyKey(bytes(nacl_key.verify_key), key_id)

    @classmethod
    def from_seed(cls, seed: bytes | str, key_id: str = "ed25519:1") -> "SigningKey":
        """Build a key from its 32-byte seed (raw bytes or unpadded base64)."""
        raw = decode_base64(seed) if isinstance(seed, str) else bytes(seed)
        if len(raw) != 32:
            raise ValueError(f"an ed25519 seed has 32 bytes, got {len(raw)}")
        return cls(nacl.signing.SigningKey(raw), key_id)

    @property
    def public_key_base64(self) -> str:
        return self.verify_key.public_key_base64

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return self._nacl.sign(message).signature

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id!r}, public={self.public_key_base64!r})"


def derive_server_key(seed: int | bytes | str, server_name: str, key_id: str = "ed25519:1") -> SigningKey:
    """The signing key of ``server_name`` in a scenario with ``seed``.

    Deterministic: the same seed and name always give the same key, and
    different names give independent keys.
    """
    if isinstance(seed, int):
        seed_bytes = seed.to_bytes(16, "big", signed=True)
    elif isinstance(seed, str):
        seed_bytes = seed.encode()
    else:
        seed_bytes = bytes(seed)
    material = hashlib.sha256(
        b"simfed server key\x00" + seed_bytes + b"\x00" + server_name.encode()
    ).digest()
    return SigningKey.from_seed(material, key_id)


_verified: dict[tuple[bytes, bytes, bytes], bool] = {}


def verify_signature(key: VerifyKey, message: bytes, signature: bytes, *, memo: bool = False) -> bool:
    """Check one detached signature; with ``memo`` the answer is cached.

    The cache is exact (keyed by key, signature and message), so it only
    saves work; callers that model cost count the check themselves.
    """
    if not memo:
        return key.verify(message, signature)
    k = (key.public_key_bytes, signature, message)
    hit = _verified.get(k)
    if hit is None:
        hit = _verified[k] = key.verify(message, signature)
    return hit


def _signable(obj: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(obj: dict, server_name: str, key: SigningKey) -> dict:
    """Return a copy of ``obj`` signed by ``server_name`` with ``key``.

    ``signatures`` and ``unsigned`` are not covered; signatures already there
    are kept.
    """
    sig = encode_base64(key.sign(_signable(obj)))
    out = dict(obj)
    old = obj.get("signatures") or {}
    sigs = {name: dict(v) for name, v in old.items()}
    sigs.setdefault(server_name, {})[key.key_id] = sig
    out["signatures"] = sigs
    return out


def _as_verify_key(verify_key: Any) -> VerifyKey:
    if isinstance(verify_key, VerifyKey):
        return verify_key
    if isinstance(verify_key, SigningKey):
        return verify_key.verify_key
    if isinstance(verify_key, nacl.signing.VerifyKey):
        return VerifyKey(bytes(verify_key))
    if isinstance(verify_key, (bytes, str)):
        return VerifyKey(verify_key)
    raise TypeError(f"verify_key: expected a VerifyKey, bytes or base64 text, got {type(verify_key).__name__}")


def verify_json(obj: Mapping[str, Any], server_name: str, verify_key: Any) -> None:
    """Check that ``obj`` carries a valid signature by ``server_name``.

    Returns ``None`` on success; raises :class:`SignatureError` saying why
    otherwise. A key whose ``key_id`` names the signature to check is used for
    that signature only; a bare key is tried against every ``ed25519``
    signature of the server.
    """
    vk = _as_verify_key(verify_key)
    sigs = obj.get("signatures")
    if not isinstance(sigs, Mapping):
        raise SignatureError("no 'signatures' object")
    by_server = sigs.get(server_name)
    if not isinstance(by_server, Mapping) or not by_server:
        raise SignatureError(f"no signature from {server_name!r}")
    explicit = isinstance(verify_key, (VerifyKey, SigningKey))
    candidates = (
        [(vk.key_id, by_server.get(vk.key_id))] if explicit
        else [(k, v) for k, v in by_server.items() if str(k).startswith("ed25519:")]
    )
    candidates = [(k, v) for k, v in candidates if v is not None]
    if not candidates:
        raise SignatureError(f"no signature from {server_name!r} with key {vk.key_id!r}")
    message = _signable(obj)
    for key_id, b64 in candidates:
        try:
            raw = decode_base64(b64)
        except ValueError:
            raise SignatureError(f"signature {server_name}/{key_id} is not base64") from None
        if len(raw) != 64:
            raise SignatureError(f"signature {server_name}/{key_id} has {len(raw)} bytes, not 64")
        if vk.verify(message, raw):
            return None
    raise SignatureError(f"signature from {server_name!r} ({vk.key_id}) does not verify")
