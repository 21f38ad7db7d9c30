"""Canonical JSON and the base64 flavours Matrix uses.

Encoding goes through the ``canonicaljson`` package; the checks it leaves out
(floats, integers outside the interoperable range, non-string keys) are done
here, in one pass, so an event that passes can be hashed and signed safely.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from canonicaljson import encode_canonical_json

__all__ = [
    "CanonicalJSONError",
    "MAX_SAFE_INT",
    "MIN_SAFE_INT",
    "canonical_json",
    "check_canonical",
    "decode_base64",
    "encode_base64",
    "encode_base64_urlsafe",
]

MAX_SAFE_INT = 2**53 - 1
MIN_SAFE_INT = -(2**53) + 1


class CanonicalJSONError(ValueError):
    """A value that canonical JSON (room version 6 and later) does not allow."""


def _path(parts: list[str | int]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _find_problem(value: Any) -> str:
    """Walk again, with paths, to describe the first offending value."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        v, path = stack.pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is dict:
            for k, child in v.items():
                if type(k) is not str:
                    return f"object key {k!r} at {_path(path)} is not a string"
                stack.append((child, path + [k]))
        elif t is list or t is tuple:
            stack.extend((child, path + [i]) for i, child in enumerate(v))
        elif t is float:
            return f"float {v!r} at {_path(path)} is not allowed"
        elif isinstance(v, int):
            if v > MAX_SAFE_INT or v < MIN_SAFE_INT:
                return f"integer {v} at {_path(path)} is outside [{MIN_SAFE_INT}, {MAX_SAFE_INT}]"
        else:
            return f"value of type {t.__name__} at {_path(path)} is not JSON"
    return "invalid value"


def check_canonical(value: Any) -> None:
    """Raise :class:`CanonicalJSONError` naming the first offending value.

    Refused: floats, integers outside ``[-(2**53)+1, 2**53-1]``, non-string
    object keys, and types JSON cannot hold. Iterative, so deep values cannot
    exhaust the recursion limit; paths are only built to describe a failure.
    """
    stack = [value]
    pop = stack.pop
    push = stack.append
    extend = stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str:
            continue
        if t is dict:
            for k, child in v.items():
                if type(k) is not str:
                    raise CanonicalJSONError(_find_problem(value))
                if type(child) is not str:
                    push(child)
        elif t is int:
            if v > MAX_SAFE_INT or v < MIN_SAFE_INT:
                raise CanonicalJSONError(_find_problem(value))
        elif t is list or t is tuple:
            extend(v)
        elif t is bool or v is None:
            continue
        elif t is not float and isinstance(v, int) and MIN_SAFE_INT <= v <= MAX_SAFE_INT:
            continue
        else:
            raise CanonicalJSONError(_find_problem(value))


def canonical_json(value: Any, *, check: bool = True) -> bytes:
    """Return the canonical JSON bytes of ``value``.

    With ``check`` (the default) the value is validated first; pass
    ``check=False`` only for values already validated.
    """
    if check:
        check_canonical(value)
    return encode_canonical_json(value)


def encode_base64(data: bytes) -> str:
    """Unpadded standard base64."""
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def encode_base64_urlsafe(data: bytes) -> str:
    """Unpadded URL-safe base64 (event IDs of room version 4 and later)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not.

    Raises ``ValueError`` on anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected base64 text, got {type(text).__name__}")
    s = text.rstrip("=")
    if len(s) % 4 == 1:
        raise ValueError(f"invalid base64 length in {text!r}")
    s += "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return base64.b64decode(s, altchars=b"-_", validate=True)
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid base64 {text!r}: {e}") from None
