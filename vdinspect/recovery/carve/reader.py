"""What validators read through: the searched space, cached in blocks, every byte counted
against the scan's budget, and memoised searches so a disk full of fake headers costs one
pass instead of one pass per header."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from ...io import ByteSource, LRUCache

BLOCK = 1 << 18  # validators' small reads come from cached blocks this big
STREAM = 1 << 20  # bytes a streaming validator asks for at a time
MAX_MEMO_HITS = 1 << 16  # occurrences a memoised search keeps before it starts afresh


@dataclass
class Found:
    """What a validator says of a candidate: its length in bytes, whether its structure was
    followed to a proper end, the type (the file name extension) and a short note."""

    length: int
    validated: bool
    type: str
    note: str = ""


class OutOfBudget(Exception):
    """The scan's validation budget is spent: the candidate is left unexamined."""


class Reader:
    """Bounded reads of the searched space for validators (``read`` clamps at the end)."""

    def __init__(self, source: ByteSource, budget_bytes: int) -> None:
        self.source = source
        self.size = source.size
        self.budget = budget_bytes
        self.used = 0
        self.cache: LRUCache[bytes] = LRUCache(16)
        self.memo: dict[bytes, list] = {}

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.budget:
            raise OutOfBudget

    def _block(self, b: int) -> bytes:
        def load() -> bytes:
            start = b * BLOCK
            n = min(BLOCK, self.size - start)
            self.charge(n)
            return self.source.read(start, n)

        return self.cache.get(b, load)

    def read(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (fewer at the end of the space; b"" past it)."""
        if pos < 0 or pos >= self.size or n <= 0:
            return b""
        n = min(n, self.size - pos)
        if n > BLOCK:
            self.charge(n)
            return self.source.read(pos, n)
        b = pos // BLOCK
        end_b = (pos + n - 1) // BLOCK
        if b == end_b:
            blk = self._block(b)
            return blk[pos - b * BLOCK : pos - b * BLOCK + n]
        return b"".join(self._block(k) for k in range(b, end_b + 1))[pos - b * BLOCK:][:n]

    def stream(self, pos: int, limit: int, first: int = 4096):
        """Successive pieces of ``[pos, limit)``, growing from ``first`` bytes to STREAM:
        a validator that fails early (most candidates) reads little."""
        n = first
        while pos < limit:
            piece = self.read(pos, min(n, limit - pos))
            if not piece:
                return
            yield pos, piece
            pos += len(piece)
            n = min(STREAM, n * 4)

    def unpack(self, fmt: struct.Struct, pos: int) -> tuple | None:
        """``fmt`` unpacked at ``pos``; None when the space ends first."""
        raw = self.read(pos, fmt.size)
        return fmt.unpack(raw) if len(raw) == fmt.size else None

    def find(self, pattern: bytes, start: int, limit: int) -> int:
        """The first ``pattern`` at or after ``start`` and before ``limit`` (-1 if none).

        Memoised: what was searched once is not read again, so candidates that all look
        for the same trailer (fake ZIP headers each wanting an end record) share a pass."""
        limit = min(limit, self.size)
        m = self.memo.get(pattern)  # [lo, hi, hits]: every occurrence inside [lo, hi)
        if m is None or not m[0] <= start <= m[1]:
            m = self.memo[pattern] = [start, start, []]
        lo, _hi, hits = m
        i = bisect.bisect_left(hits, start)
        if i < len(hits):
            return hits[i] if hits[i] + len(pattern) <= limit else -1
        step = 1 << 14  # grows to STREAM: a trailer close by costs a small read
        while m[1] < limit:
            at = max(lo, m[1] - len(pattern) + 1)
            chunk = self.read(at, min(step, limit - at))
            if not chunk:
                break
            step = min(STREAM, step * 4)
            found = []
            i = chunk.find(pattern)
            while i >= 0:
                found.append(at + i)
                i = chunk.find(pattern, i + 1)
            if len(hits) + len(found) > MAX_MEMO_HITS:
                del hits[: len(hits) // 2 + 1]
                m[0] = lo = hits[0] if hits else at
            hits.extend(found)
            m[1] = at + len(chunk)
            later = [f for f in found if f >= start]
            if later:
                return later[0]
        return -1
