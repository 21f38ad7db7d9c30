"""Compact random streams, draw for draw identical to numpy's.

A run has one independent stream per component name (``component_rng``:
numpy's ``PCG64`` seeded by ``SeedSequence(seed, spawn_key=(crc32(name),))``).
The network alone needs two per directed link, so a full mesh of 1,000
servers needs two million: as numpy ``Generator`` objects they cost about
1 KB and 65 µs each. :class:`Stream` holds the same PCG64 state as two
integers (~150 bytes), is seeded in pure Python (numpy's ``SeedSequence``
algorithm, reimplemented) and draws ``random()`` itself with PCG64's
XSL-RR output, so its draws equal the numpy generator's. Any other method
(``standard_normal``, ``integers``, ...) turns it, once, into the numpy
generator at the same state, which then makes every later draw: exact
either way. ``tests/sim/test_streams_compact.py`` checks both against numpy.

Many streams of one run are seeded at once by :func:`seed_words`: the same
hashing over numpy ``uint32`` arrays (one array operation per step for all
keys, instead of a Python loop per stream), leaving eight words per stream
that :meth:`Stream.from_words` turns into the stream. :class:`Streams` is the
run's named-stream factory with that batch form.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["Stream", "Streams", "seed_words", "stream"]

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_M128 = (1 << 128) - 1
# numpy's SeedSequence constants (bit_generator.pyx) and PCG64's multiplier.
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341
_POOL = 4
_TO_DOUBLE = 1.0 / 9007199254740992.0  # 2**-53


def _words(x: int) -> list[int]:
    """An integer as little-endian 32-bit words (numpy's entropy coercion)."""
    if x < 0:
        raise ValueError(f"seed={x}: entropy must be non-negative")
    out = []
    while True:
        out.append(x & _M32)
        x >>= 32
        if not x:
            return out


def _mix(x: int, y: int) -> int:
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> 16)


#: the pool mixed with the run's entropy words and the running hash
#: constant, by entropy (the part every stream of a run shares)
_seeded: dict[int, tuple[list[int], list[int], int]] = {}


def _entropy_mixed(entropy: int) -> tuple[list[int], list[int], int]:
    hit = _seeded.get(entropy)
    if hit is not None:
        return hit
    run = _words(entropy)
    if len(run) < _POOL:
        run += [0] * (_POOL - len(run))
    h = _INIT_A
    mixer = []
    for v in run[:_POOL]:
        v ^= h
        h = (h * _MULT_A) & _M32
        v = (v * h) & _M32
        mixer.append(v ^ (v >> 16))
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                v = mixer[src] ^ h
                h = (h * _MULT_A) & _M32
                v = (v * h) & _M32
                mixer[dst] = _mix(mixer[dst], v ^ (v >> 16))
    hit = _seeded[entropy] = (mixer, run[_POOL:], h)
    return hit


def _pool(entropy: int, spawn_key: int) -> list[int]:
    """``SeedSequence(entropy, spawn_key=(spawn_key,)).pool``."""
    mixer, rest, h = _entropy_mixed(entropy)
    mixer = list(mixer)
    for w in rest + _words(spawn_key):
        for dst in range(_POOL):
            v = w ^ h
            h = (h * _MULT_A) & _M32
            v = (v * h) & _M32
            mixer[dst] = _mix(mixer[dst], v ^ (v >> 16))
    return mixer


def _state_words(pool: list[int], n64: int) -> list[int]:
    """``generate_state(n64, np.uint64)`` of a pool."""
    h = _INIT_B
    w32 = []
    for i in range(2 * n64):
        v = pool[i % _POOL] ^ h
        h = (h * _MULT_B) & _M32
        v = (v * h) & _M32
        w32.append(v ^ (v >> 16))
    return [w32[2 * i] | (w32[2 * i + 1] << 32) for i in range(n64)]


def _hash_steps(init: int, mult: int, n: int) -> list[tuple[int, int]]:
    """The hash constant before and after each of ``n`` steps from ``init``."""
    out, h = [], init
    for _ in range(n):
        nh = (h * mult) & _M32
        out.append((h, nh))
        h = nh
    return out


#: the 8 steps of ``generate_state(4, np.uint64)`` (the same for every pool)
_STATE_STEPS = _hash_steps(_INIT_B, _MULT_B, 8)
#: by entropy: the pool after every entropy word, and the 4 hash steps that
#: mix in a one-word spawn key
_prefixes: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}


def _prefix(entropy: int) -> tuple[list[int], list[tuple[int, int]]]:
    hit = _prefixes.get(entropy)
    if hit is None:
        mixer, rest, h = _entropy_mixed(entropy)
        mixer = list(mixer)
        for w in rest:
            for dst in range(_POOL):
                v = w ^ h
                h = (h * _MULT_A) & _M32
                v = (v * h) & _M32
                mixer[dst] = _mix(mixer[dst], v ^ (v >> 16))
        hit = _prefixes[entropy] = (mixer, _hash_steps(h, _MULT_A, _POOL))
    return hit


def _key_state(entropy: int, key: int) -> tuple[int, int, int, int]:
    """``generate_state(4, np.uint64)`` of ``SeedSequence(entropy,
    spawn_key=(key,))`` for a key below 2**32: :func:`_pool` and
    :func:`_state_words` with the shared part precomputed."""
    if not 0 <= key <= _M32:
        w = _state_words(_pool(entropy, key), 4)
        return w[0], w[1], w[2], w[3]
    mixer, steps = _prefix(entropy)
    pool = []
    for m, (h0, h1) in zip(mixer, steps):
        v = ((key ^ h0) * h1) & _M32
        r = (_MIX_L * m - _MIX_R * (v ^ (v >> 16))) & _M32
        pool.append(r ^ (r >> 16))
    w = []
    for i, (h0, h1) in enumerate(_STATE_STEPS):
        v = ((pool[i & 3] ^ h0) * h1) & _M32
        w.append(v ^ (v >> 16))
    return w[0] | (w[1] << 32), w[2] | (w[3] << 32), w[4] | (w[5] << 32), w[6] | (w[7] << 32)


def seed_words(seed: int, keys: np.ndarray) -> np.ndarray:
    """The state words (``generate_state(4, np.uint64)``) of the streams
    ``SeedSequence(seed, spawn_key=(key,))`` for every key in ``keys``
    (uint32), as a ``(len(keys), 4)`` uint64 array: :func:`_pool` and
    :func:`_state_words` done for all keys at once."""
    mixer0, rest, h = _entropy_mixed(seed)
    keys = np.asarray(keys, dtype=np.uint32)
    n = len(keys)
    with np.errstate(over="ignore"):
        mixer = [np.full(n, m, dtype=np.uint32) for m in mixer0]
        words = [np.full(n, w, dtype=np.uint32) for w in rest] + [keys]
        for w in words:
            for dst in range(_POOL):
                v = w ^ np.uint32(h)
                h = (h * _MULT_A) & _M32
                v = v * np.uint32(h)
                v ^= v >> np.uint32(16)
                r = np.uint32(_MIX_L) * mixer[dst] - np.uint32(_MIX_R) * v
                mixer[dst] = r ^ (r >> np.uint32(16))
        w32 = np.empty((n, 8), dtype=np.uint32)
        h = _INIT_B
        for i in range(8):
            v = mixer[i % _POOL] ^ np.uint32(h)
            h = (h * _MULT_B) & _M32
            v = v * np.uint32(h)
            w32[:, i] = v ^ (v >> np.uint32(16))
    w64 = w32.astype(np.uint64)
    return w64[:, 0::2] | (w64[:, 1::2] << np.uint64(32))


class Stream:
    """One PCG64 stream: ``random()`` drawn here, other methods by numpy."""

    __slots__ = ("_state", "_inc", "_gen")

    def __init__(self, seed: int, key: int) -> None:
        w0, w1, w2, w3 = _key_state(seed, key)
        self._seed(w0, w1, w2, w3)

    @classmethod
    def from_words(cls, w: list[int]) -> "Stream":
        """The stream of four 64-bit state words (a row of :func:`seed_words`)."""
        self = cls.__new__(cls)
        inc = ((((w[2] << 64) | w[3]) << 1) | 1) & _M128
        self._state = (((inc + ((w[0] << 64) | w[1])) & _M128) * _PCG_MULT + inc) & _M128
        self._inc = inc
        self._gen = None
        return self

    def _seed(self, w0: int, w1: int, w2: int, w3: int) -> None:
        initstate, initseq = (w0 << 64) | w1, (w2 << 64) | w3
        inc = ((initseq << 1) | 1) & _M128
        # PCG's srandom: state 0, one step (state = inc), add initstate, one step
        self._state = (((inc + initstate) & _M128) * _PCG_MULT + inc) & _M128
        self._inc = inc
        self._gen: np.random.Generator | None = None

    def random(self, *args: Any, **kwargs: Any) -> Any:
        """``Generator.random``: a double in [0, 1) drawn here, or (with
        arguments: an array, another dtype) by numpy."""
        if self._gen is not None or args or kwargs:
            return self.generator().random(*args, **kwargs)
        s = (self._state * _PCG_MULT + self._inc) & _M128
        self._state = s
        x = ((s >> 64) ^ s) & _M64
        rot = s >> 122
        x = ((x >> rot) | (x << (64 - rot))) & _M64
        return (x >> 11) * _TO_DOUBLE

    def generator(self) -> np.random.Generator:
        """The numpy generator at this stream's state (which then draws everything)."""
        if self._gen is None:
            bg = np.random.PCG64(0)
            bg.state = {"bit_generator": "PCG64", "state": {"state": self._state, "inc": self._inc},
                        "has_uint32": 0, "uinteger": 0}
            self._gen = np.random.Generator(bg)
        return self._gen

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator(), name)


def stream(seed: int, name: str) -> Stream:
    """The stream ``component_rng(seed, name)`` would give, compactly."""
    return Stream(seed, zlib.crc32(name.encode()))


class Streams:
    """The named streams of a run seeded ``seed``: ``streams(name)`` is
    ``stream(seed, name)``; ``many(names)`` seeds a batch at once (rows for :meth:`Stream.from_words`)."""

    __slots__ = ("seed",)

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, name: str) -> Stream:
        return stream(self.seed, name)

    def many(self, names: list[str]) -> np.ndarray:
        """The state words of the streams ``names``, a ``(len(names), 4)`` uint64 array."""
        crc = zlib.crc32
        keys = np.fromiter((crc(n.encode()) for n in names), dtype=np.uint32, count=len(names))
        return seed_words(self.seed, keys)
