"""A byte source seen through replaced ranges kept in memory: how a journal or a log is
replayed without writing to the image.

Both replays this package does fit it. VHDX log replay lays the log's data sectors (bytes)
and zero descriptors (zeros) over the host file, in log order, and may grow the file. ext3/4
journal replay points each replaced block at its committed copy elsewhere in the same volume
(:meth:`OverlaySource.copy`, read when asked, never held) and puts back the escaped magic of
a block with one more 4-byte :meth:`~OverlaySource.write` on top of it.
"""

from __future__ import annotations

import bisect

from .sources import (
    NOT_STORED,
    ByteSource,
    FilledSource,
    HostPieces,
    HostRanges,
    damaged_through,
    join_host_ranges,
)

# What fills one replaced range [start, end): its bytes, None for zeros, or (source, offset):
# the bytes of ``source`` from ``offset`` on, read when asked.
Piece = bytes | None | tuple[ByteSource, int]


def _cut(piece: Piece, start: int, a: int, b: int) -> Piece:
    """The part ``[a, b)`` of a piece that fills ``[start, ...)``."""
    if piece is None:
        return None
    if isinstance(piece, tuple):
        return (piece[0], piece[1] + a - start)
    return piece[a - start : b - start]


class OverlaySource(FilledSource):
    """``base`` with some ranges replaced from memory; later replacements win.

    Unreplaced bytes come from ``base``; past its end they read as zeros, and a replacement
    past the end (or :meth:`extend`) makes the source longer. The damage of ``base`` (salvage
    mode) passes through for unreplaced bytes and for bytes copied from a source; bytes held
    in memory and zeros are sound. The base is not closed with the overlay: it belongs to
    whoever opened it.
    """

    def __init__(self, base: ByteSource, name: str | None = None) -> None:
        self.base = base
        self.name = name or base.name
        self.size = base.size
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._pieces: list[Piece] = []

    # --- replacing -----------------------------------------------------------------------

    def write(self, offset: int, data: bytes | None, length: int | None = None) -> None:
        """Lay ``data`` (or ``length`` zero bytes when data is None) over ``offset``."""
        length = len(data) if data is not None else int(length or 0)
        self._replace(offset, length, None if data is None else bytes(data))

    def copy(self, offset: int, length: int, src_offset: int, source: ByteSource | None = None
             ) -> None:
        """Make ``[offset, offset+length)`` read as ``source`` (default: the base) does from
        ``src_offset``: a journal block's committed copy, read when asked."""
        self._replace(offset, length, (source if source is not None else self.base, src_offset))

    def extend(self, size: int) -> None:
        """Make the source at least ``size`` bytes long (the new bytes read as zeros)."""
        self.size = max(self.size, size)

    def _replace(self, start: int, length: int, piece: Piece) -> None:
        if length <= 0:
            return
        end = start + length
        i = bisect.bisect_right(self._ends, start)
        j = i
        left = right = None
        while j < len(self._starts) and self._starts[j] < end:
            s, e, p = self._starts[j], self._ends[j], self._pieces[j]
            if s < start:
                left = (s, start, _cut(p, s, s, start))
            if e > end:
                right = (end, e, _cut(p, s, end, e))
            j += 1
        new = [x for x in (left, (start, end, piece), right) if x is not None]
        self._starts[i:j] = [x[0] for x in new]
        self._ends[i:j] = [x[1] for x in new]
        self._pieces[i:j] = [x[2] for x in new]
        self.size = max(self.size, end)

    @property
    def segments(self) -> list[tuple[int, int, bool]]:
        """The replaced ranges as ``(start, end, is_zero)``, touching neighbours of the same
        kind joined."""
        out: list[tuple[int, int, bool]] = []
        for s, e, p in zip(self._starts, self._ends, self._pieces):
            z = p is None
            if out and out[-1][1] == s and out[-1][2] == z:
                out[-1] = (out[-1][0], e, z)
            else:
                out.append((s, e, z))
        return out

    # --- reading -------------------------------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        """Bytes no replacement touches are the base's as it returns them (no buffer to
        fill and copy: a sequential read of an unreplayed VHDX is one ``pread``)."""
        end = offset + length
        i = bisect.bisect_right(self._ends, offset)
        if end <= self.base.size and (i == len(self._starts) or self._starts[i] >= end):
            return self.base.read(offset, length)
        return super()._read(offset, length)

    def _base_fill(self, pos: int, mv: memoryview) -> None:
        """Unreplaced bytes: the base's, zeros past its end."""
        n = min(len(mv), max(0, self.base.size - pos))
        if n:
            self.base.readinto(pos, mv[:n])
        if n < len(mv):
            mv[n:] = bytes(len(mv) - n)

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:
        end = offset + len(mv)
        i = bisect.bisect_right(self._ends, offset)
        pos = offset
        while i < len(self._starts) and self._starts[i] < end:
            s, e, p = self._starts[i], self._ends[i], self._pieces[i]
            a, b = max(s, offset), min(e, end)
            if a > pos:
                self._base_fill(pos, mv[pos - offset : a - offset])
            out = mv[a - offset : b - offset]
            if p is None:
                out[:] = bytes(b - a)
            elif isinstance(p, tuple):
                p[0].readinto(p[1] + a - s, out)
            else:
                out[:] = p[a - s : b - s]
            pos = b
            i += 1
        if pos < end:
            self._base_fill(pos, mv[pos - offset :])

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """Unreplaced bytes and copies where their source says (zeros as zeros); None for a
        range holding bytes kept in memory (see ``ByteSource.host_ranges``)."""
        return self._host(offset, length, False)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """As :meth:`host_ranges`, bytes kept in memory (a replayed log's sectors) as
        stretches not stored (``NOT_STORED``), so a copy reads only those and copies the
        unreplaced bytes around them in the kernel (see ``ByteSource.host_pieces``)."""
        return self._host(offset, length, True)

    def _host(self, offset: int, length: int, pieces: bool) -> list | None:
        self._check_range(offset, length)
        end = offset + length
        out: list = []

        def add(src: ByteSource, a: int, n: int) -> bool:
            got = src.host_pieces(a, n) if pieces else src.host_ranges(a, n)
            if got is None:
                return False
            join_host_ranges(out, got)
            return True

        def base(a: int, b: int) -> bool:
            n = min(b, max(a, self.base.size)) - a
            if n and not add(self.base, a, n):
                return False
            if b - a > n:
                join_host_ranges(out, [(None, 0, b - a - n)])
            return True

        i = bisect.bisect_right(self._ends, offset)
        pos = offset
        while i < len(self._starts) and self._starts[i] < end:
            s, e, p = self._starts[i], self._ends[i], self._pieces[i]
            a, b = max(s, offset), min(e, end)
            if a > pos and not base(pos, a):
                return None
            if p is None:
                join_host_ranges(out, [(None, 0, b - a)])
            elif isinstance(p, tuple):
                if not add(p[0], p[1] + a - s, b - a):
                    return None
            elif pieces:
                join_host_ranges(out, [(NOT_STORED, 0, b - a)])
            else:
                return None
            pos = b
            i += 1
        if pos < end and not base(pos, end):
            return None
        return out

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        # unreplaced bytes map to the same offsets of the base; copies to their source
        base_end = min(end, self.base.size)
        through: dict[int, tuple[ByteSource, list]] = {id(self.base): (self.base, [])}
        i = bisect.bisect_right(self._ends, start)
        pos = start
        while i < len(self._starts) and self._starts[i] < end:
            s, e, p = self._starts[i], self._ends[i], self._pieces[i]
            a, b = max(s, start), min(e, end)
            if a > pos and pos < base_end:
                through[id(self.base)][1].append((pos, pos, min(a, base_end) - pos))
            if isinstance(p, tuple):
                through.setdefault(id(p[0]), (p[0], []))[1].append((a, p[1] + a - s, b - a))
            pos = b
            i += 1
        if pos < base_end:
            through[id(self.base)][1].append((pos, pos, base_end - pos))
        out: list[tuple[int, int]] = []
        for source, pieces in through.values():
            if pieces:
                out.extend(damaged_through(source, pieces, start, end))
        return out


__all__ = ["OverlaySource", "Piece"]
