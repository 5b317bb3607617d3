"""A gzip stream read in place as the bytes it decompresses to, with random access.

One pass over the stream at open measures it and keeps a copy of the decompressor's state
(its 32 KiB window) every ``step`` bytes of output, at most :data:`MAX_CHECKPOINTS` of them;
a read resumes from the nearest state before it (or from where the last read stopped, so
reading forward never starts over). Nothing is written anywhere and memory stays bounded:
about 45 KiB per checkpoint plus a few decoded 1 MiB blocks. Concatenated gzip members
(RFC 1952 allows them) are one stream.
"""

from __future__ import annotations

import bisect
import zlib

from ..errors import CorruptImage
from .cache import LRUCache
from .sources import ByteSource

BLOCK = 1 << 20  # decoded bytes cached per entry, and compressed bytes read at a time
MIN_STEP = 4 << 20  # output bytes between checkpoints (at least)
MAX_CHECKPOINTS = 1024
WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate data


class _State:
    """A decompressor ``d`` that has produced ``out`` bytes and taken the input before
    ``inp`` (less its ``unconsumed_tail``); ``done`` after the last member."""

    __slots__ = ("out", "inp", "d", "done")

    def __init__(self, out: int, inp: int, d) -> None:
        self.out, self.inp, self.d, self.done = out, inp, d, False

    def copy(self) -> _State:
        return _State(self.out, self.inp, self.d.copy())


class GzipSource(ByteSource):
    """The decompressed bytes of the gzip stream in ``source`` (refused beyond ``limit``).

    A stream that breaks or ends early raises CorruptImage naming where, unless ``salvage``
    is true: then the bytes before the damage are the source, and ``damage`` says what
    happened (the caller reports it)."""

    def __init__(self, source: ByteSource, *, limit: int, name: str | None = None,
                 salvage: bool = False) -> None:
        self.source = source
        self.name = name or f"{source.name} (gunzipped)"
        self.damage: tuple[int, str] | None = None  # (compressed offset, what went wrong)
        self.points: list[_State] = []
        self._blocks = LRUCache(8)
        self._cursor: _State | None = None
        self.size = self._measure(limit, salvage)

    def _step(self, st: _State, max_out: int) -> bytes | None:
        """Feed ``st`` its next input and return up to ``max_out`` bytes (None at the end)."""
        d = st.d
        if st.done:
            return None
        data = d.unconsumed_tail
        if not data:
            if st.inp >= self.source.size:
                return None
            data = self.source.read(st.inp, min(BLOCK, self.source.size - st.inp))
            st.inp += len(data)
        got = d.decompress(data, max_out)
        if d.eof:
            # input after this member's end is given back (zlib may show the same bytes
            # in unconsumed_tail too: that old decompressor is never fed again)
            st.inp -= len(d.unused_data)
            if self.source.read(st.inp, min(2, self.source.size - st.inp)) == b"\x1f\x8b":
                st.d = zlib.decompressobj(WBITS)  # a further member of the same stream
            else:
                st.done = True  # trailing zeros or padding are ignored, as gzip does
        st.out += len(got)
        return got

    def _measure(self, limit: int, salvage: bool) -> int:
        step = max(MIN_STEP, -(-limit // MAX_CHECKPOINTS))
        st = _State(0, 0, zlib.decompressobj(WBITS))
        self.points.append(st.copy())
        mark = step
        while True:
            try:
                got = self._step(st, BLOCK)
            except zlib.error as e:
                return self._broken(st.inp, f"broken gzip data: {e}", st.out, salvage)
            if got is None:
                break
            if st.out > limit:
                raise CorruptImage(f"decompresses to more than {limit} bytes (the bound from "
                                   "the disk's capacity): refused", path=self.name,
                                   structure="gzip stream")
            if st.out >= mark and not st.done:  # a copy keeps the unconsumed input too
                self.points.append(st.copy())
                mark = st.out + step
        if not st.done:
            return self._broken(st.inp, "the gzip stream is truncated", st.out, salvage)
        return st.out

    def _broken(self, at: int, message: str, out: int, salvage: bool) -> int:
        if not salvage:
            raise CorruptImage(message, path=self.name, structure="gzip stream", offset=at)
        self.damage = (at, message)
        return out

    # -- reading --------------------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        parts = []
        end = offset + length
        k = offset // BLOCK
        while k * BLOCK < end:
            block = self._blocks.get(k, lambda k=k: self._decode(k * BLOCK))
            a = max(offset - k * BLOCK, 0)
            parts.append(block[a : min(len(block), end - k * BLOCK)])
            k += 1
        return b"".join(parts)

    def _decode(self, at: int) -> bytes:
        """The ``BLOCK`` decoded bytes from ``at`` (fewer at the end): from the state left
        by the last read when that is at or before ``at`` and after the nearest checkpoint,
        else from a copy of that checkpoint."""
        want = min(BLOCK, self.size - at)
        i = bisect.bisect_right([p.out for p in self.points], at) - 1
        cur = self._cursor
        if cur is not None and self.points[i].out <= cur.out <= at:
            st = cur
        else:
            st = self.points[i].copy()
        self._cursor = None
        while st.out < at:  # skip to ``at``, never past it
            if not self._step(st, min(BLOCK, at - st.out)) and st.done:
                break
        buf = bytearray()
        while len(buf) < want:
            got = self._step(st, want - len(buf))
            if got is None:
                break
            buf += got
        self._cursor = st
        return bytes(buf)

    def close(self) -> None:
        self.points.clear()
        self._blocks.clear()
        self._cursor = None
