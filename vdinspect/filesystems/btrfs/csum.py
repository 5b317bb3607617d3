"""Btrfs checksums: crc32c, xxhash64, sha256 and blake2b (256-bit), by ``csum_type``.

Each function returns the bytes as stored on disk (little-endian for the 32/64-bit ones),
so a check is ``digest(type, data) == stored[:len]``.
"""

from __future__ import annotations

import hashlib
import struct

from ...io import crc32c as _crc32c  # the one CRC-32C
from ...io import crc32c_records as _crc32c_records

try:
    import xxhash as _xxhash  # optional: much faster than the Python version below
except ImportError:  # pragma: no cover - depends on the environment
    _xxhash = None

_M = (1 << 64) - 1
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` (the public xxHash specification), in plain Python."""
    n = len(data)
    pos = 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed, (seed - _P1) & _M]
        lanes = struct.unpack_from(f"<{(n // 32) * 4}Q", data)
        for i in range(0, len(lanes), 4):
            v[0] = _round(v[0], lanes[i])
            v[1] = _round(v[1], lanes[i + 1])
            v[2] = _round(v[2], lanes[i + 2])
            v[3] = _round(v[3], lanes[i + 3])
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for x in v:
            h = ((h ^ _round(0, x)) * _P1 + _P4) & _M
        pos = n // 32 * 32
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while pos + 8 <= n:
        (lane,) = struct.unpack_from("<Q", data, pos)
        h = (_rotl(h ^ _round(0, lane), 27) * _P1 + _P4) & _M
        pos += 8
    if pos + 4 <= n:
        (word,) = struct.unpack_from("<I", data, pos)
        h = (_rotl(h ^ (word * _P1 & _M), 23) * _P2 + _P3) & _M
        pos += 4
    while pos < n:
        h = (_rotl(h ^ (data[pos] * _P5 & _M), 11) * _P1) & _M
        pos += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h


def _xxh64_blocks(data, size: int) -> list[bytes]:
    """XXH64 of each ``size``-byte block of ``data`` at once (numpy lanes across blocks;
    ``size`` a multiple of 32, as sectors are)."""
    import numpy as np

    u = np.uint64
    words = np.frombuffer(data, dtype="<u8").reshape(-1, size // 8)
    n = words.shape[0]
    p1, p2, p3, p4, p5 = u(_P1), u(_P2), u(_P3), u(_P4), u(_P5)

    def rotl(x, r):
        return (x << u(r)) | (x >> u(64 - r))

    def rnd(acc, lane):
        return rotl(acc + lane * p2, 31) * p1

    with np.errstate(over="ignore"):
        v = [np.full(n, (_P1 + _P2) & _M, dtype=u), np.full(n, _P2, dtype=u),
             np.zeros(n, dtype=u), np.full(n, (-_P1) & _M, dtype=u)]
        for j in range(0, size // 8, 4):
            for k in range(4):
                v[k] = rnd(v[k], words[:, j + k])
        h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)
        for x in v:
            h = (h ^ rnd(u(0), x)) * p1 + p4
        h = h + u(size)
        h ^= h >> u(33)
        h *= p2
        h ^= h >> u(29)
        h *= p3
        h ^= h >> u(32)
    del p5
    raw = h.astype("<u8").tobytes()
    return [raw[i:i + 8] for i in range(0, len(raw), 8)]


def digests(csum_type: int, data: bytes, size: int) -> list[bytes]:
    """The checksum of each ``size``-byte block of ``data`` (sectors), as stored."""
    if csum_type == 1 and _xxhash is None and size % 32 == 0 and len(data) % size == 0:
        return _xxh64_blocks(data, size)
    mv = memoryview(data)
    return [digest(csum_type, mv[k:k + size]) for k in range(0, len(data), size)]


def sector_sums(csum_type: int, data, size: int, width: int) -> bytes:
    """The checksums of each ``size``-byte block of ``data``, ``width`` bytes each as the
    csum tree stores them, joined: compared with a run of stored checksums in one go."""
    if csum_type == 0:
        sums = _crc32c_records(data, size)
        return struct.pack(f"<{len(sums)}I", *sums)
    return b"".join(d[:width] for d in digests(csum_type, data, size))


def digest(csum_type: int, data: bytes) -> bytes:
    """The checksum of ``data`` as Btrfs stores it for ``csum_type``."""
    if csum_type == 0:
        return struct.pack("<I", _crc32c(data))
    if csum_type == 1:
        if _xxhash is not None:
            return struct.pack("<Q", _xxhash.xxh64_intdigest(data))
        return struct.pack("<Q", xxh64(bytes(data)))
    if csum_type == 2:
        return hashlib.sha256(data).digest()
    if csum_type == 3:
        return hashlib.blake2b(data, digest_size=32).digest()
    raise ValueError(f"unknown checksum type {csum_type}")
