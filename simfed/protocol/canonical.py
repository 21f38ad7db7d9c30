"""Canonical JSON and the base64 flavours Matrix uses.

Encoding goes through the ``canonicaljson`` package; the checks it leaves out
(floats, integers outside the interoperable range, non-string keys) are done
here, in one pass, so an event that passes can be hashed and signed safely.
That pass also refuses what the encoder cannot handle at all: strings that are
not valid Unicode (a lone surrogate such as ``"\\ud800"`` is valid JSON text but
has no UTF-8 form) and nesting deeper than :data:`MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from canonicaljson import encode_canonical_json

__all__ = [
    "CanonicalJSONError",
    "JSONTooDeepError",
    "MAX_JSON_DEPTH",
    "MAX_SAFE_INT",
    "MIN_SAFE_INT",
    "canonical_json",
    "check_canonical",
    "decode_base64",
    "encode_base64",
    "encode_base64_urlsafe",
    "json_copy",
]

MAX_SAFE_INT = 2**53 - 1
MIN_SAFE_INT = -(2**53) + 1


#: Deepest nesting of objects and arrays accepted (the value itself is level
#: 1). The spec names no limit; Synapse's recursive JSON decoding and
#: canonical-JSON validation fail near Python's recursion limit (about 900-1000
#: levels, depending on the stack in use), so nothing deeper is ever accepted
#: by it. simfed names a limit well inside that, which its own (partly
#: recursive) encoder handles with any realistic stack.
MAX_JSON_DEPTH = 512


class CanonicalJSONError(ValueError):
    """A value that canonical JSON (room version 6 and later) does not allow."""


class JSONTooDeepError(CanonicalJSONError):
    """Objects and arrays nested deeper than the limit."""


def _bad_text(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
        if t is str:
            if _bad_text(v):
                return f"string at {_path(path)} is not valid Unicode (lone surrogate)"
            continue
        if t is bool or v is None:
            continue
        if t is dict:
            for k, child in v.items():
                if type(k) is not str:
                    return f"object key {k!r} at {_path(path)} is not a string"
                if _bad_text(k):
                    return f"object key at {_path(path)} is not valid Unicode (lone surrogate)"
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


def check_canonical(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`CanonicalJSONError` naming the first offending value.

    Refused: floats, integers outside ``[-(2**53)+1, 2**53-1]``, non-string
    object keys, strings with no UTF-8 form (lone surrogates), types JSON
    cannot hold, and (:class:`JSONTooDeepError`) objects and arrays nested
    deeper than ``max_depth``. Iterative, so deep values cannot exhaust the
    recursion limit; paths are only built to describe a failure.
    """
    # Level by level: ``depth`` is the nesting of the containers in ``level``.
    level = [value]
    depth = 0
    while level:
        depth += 1
        below: list[Any] = []
        push = below.append
        extend = below.extend
        for v in level:
            t = type(v)
            if t is str:
                if not v.isascii() and _bad_text(v):
                    raise CanonicalJSONError(_find_problem(value))
            elif t is dict:
                if depth > max_depth:
                    raise JSONTooDeepError(f"objects and arrays nested deeper than {max_depth} levels")
                for k, child in v.items():
                    if type(k) is not str or (not k.isascii() and _bad_text(k)):
                        raise CanonicalJSONError(_find_problem(value))
                    if type(child) is str:
                        if not child.isascii() and _bad_text(child):
                            raise CanonicalJSONError(_find_problem(value))
                    else:
                        push(child)
            elif t is int:
                if v > MAX_SAFE_INT or v < MIN_SAFE_INT:
                    raise CanonicalJSONError(_find_problem(value))
            elif t is list or t is tuple:
                if depth > max_depth:
                    raise JSONTooDeepError(f"objects and arrays nested deeper than {max_depth} levels")
                extend(v)
            elif t is bool or v is None:
                continue
            elif t is not float and isinstance(v, int) and MIN_SAFE_INT <= v <= MAX_SAFE_INT:
                continue
            else:
                raise CanonicalJSONError(_find_problem(value))
        level = below


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars), without recursion."""
    if type(value) is dict:
        root: Any = {}
    elif type(value) is list:
        root = []
    else:
        return value
    stack = [(value, root)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if type(src) is dict else enumerate(src)
        for k, v in items:
            t = type(v)
            if t is dict or t is list:
                c: Any = {} if t is dict else []
                stack.append((v, c))
                v = c
            if type(dst) is dict:
                dst[k] = v
            else:
                dst.append(v)
    return root


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
