"""A Btrfs file's bytes as a ByteSource, from its EXTENT_DATA items.

Each item covers ``[key.offset, +num_bytes)`` of the file: inline data, a range of a
regular extent (``offset`` bytes into the decompressed extent at ``disk_bytenr``), or a
preallocated one (reads as zeros). Ranges no item covers are holes (NO_HOLES), as are
regular items with ``disk_bytenr`` 0. Compressed extents are decoded whole and cached.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...io import NOT_STORED, ByteSource, HostPieces, HostRanges, LRUCache, join_host_ranges

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem

HOLE, INLINE, PLAIN, COMPRESSED = 0, 1, 2, 3


@dataclass(slots=True)
class Piece:
    """A file range: ``kind`` says how its bytes are found.

    INLINE: ``data`` holds them (decoded); PLAIN: at logical ``addr`` (already shifted by
    the item's offset); COMPRESSED: ``offset`` bytes into the extent at ``addr``
    (``disk_len`` bytes on disk, ``ram`` decoded, codec ``codec``).
    """

    start: int
    length: int
    kind: int
    addr: int = 0
    offset: int = 0
    disk_len: int = 0
    ram: int = 0
    codec: int = 0
    data: bytes = b""
    item: int | None = None  # logical address of the leaf holding the item


class ExtentSource(ByteSource):
    """The file's bytes; ``_damage_pairs`` maps unreadable device ranges and checksum
    failures met (reading, or by ``check()``) into file offsets."""

    def __init__(self, fs: BtrfsFileSystem, pieces: list[Piece], size: int, name: str,
                 verify: bool = True) -> None:
        self.fs = fs
        self.pieces = [p for p in pieces if p.length > 0 and p.start < size]
        self.starts = [p.start for p in self.pieces]
        self.size = size
        self.name = name
        self.verify = verify
        self.cache: LRUCache[bytes] = LRUCache(4)
        self.bad: list[tuple[int, int]] = []  # file ranges read as zeros (salvage)

    def _find(self, pos: int) -> int:
        return max(0, bisect.bisect_right(self.starts, pos) - 1)

    def _read(self, offset: int, length: int) -> bytes:
        end = offset + length
        i = self._find(offset)
        if i < len(self.pieces):  # one piece holds it all: no assembly copy
            p = self.pieces[i]
            if p.start <= offset and end <= p.start + p.length:
                return self._piece_bytes(p, offset - p.start, length)
        out = bytearray(length)
        while i < len(self.pieces):
            p = self.pieces[i]
            if p.start >= end:
                break
            a, b = max(offset, p.start), min(end, p.start + p.length)
            if a < b:
                out[a - offset:b - offset] = self._piece_bytes(p, a - p.start, b - a)
            i += 1
        return bytes(out)

    def _piece_bytes(self, p: Piece, within: int, n: int) -> bytes:
        if p.kind == HOLE:
            return bytes(n)
        if p.kind == INLINE:
            got = p.data[within:within + n]
            return got + bytes(n - len(got))
        if p.kind == PLAIN:
            data, bad = self.fs.read_data(p.addr + within, n, self.verify)
        else:
            def load():
                return self.fs.read_compressed(p.addr, p.disk_len, p.ram, p.codec,
                                               self.verify)
            data, spoiled = self.cache.get(p.addr, load)
            bad = [(0, n)] if spoiled else []
            got = data[p.offset + within:p.offset + within + n]
            data = got + bytes(n - len(got))
        for a, m in bad:
            self.bad.append((p.start + within + a, p.start + within + a + m))
        return data

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """Plain regular extents through the chunk map (checked against their checksums
        unless the inode says nodatasum), holes and preallocated ranges as zeros (see
        ``ByteSource.host_ranges``); None when the range touches inline or compressed
        data (decoded, not stored as themselves) or bytes found bad."""
        self._check_range(offset, length)
        end = offset + length
        if any(a < end and b > offset for a, b in self.bad):
            return None
        return self._host(offset, end, False)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """As :meth:`host_ranges`, inline and compressed items, bytes found bad and plain
        extents failing their checksum as stretches not stored (``io.NOT_STORED``): a copy
        reads those and copies the other extents in the kernel."""
        self._check_range(offset, length)
        return self._host(offset, offset + length, True)

    def _host(self, offset: int, end: int, pieces: bool) -> list | None:
        out: list = []
        i, pos = self._find(offset), offset
        while pos < end:
            p = self.pieces[i] if i < len(self.pieces) else None
            if p is not None and p.start + p.length <= pos:
                i += 1
                continue
            if p is None or p.start > pos:  # no item: a hole up to the next one
                b = end if p is None else min(end, p.start)
                join_host_ranges(out, [(None, 0, b - pos)])
                pos = b
                continue
            b = min(end, p.start + p.length)
            got = None
            if p.kind == HOLE:
                got = [(None, 0, b - pos)]
            elif p.kind == PLAIN and not (pieces and any(x < b and y > pos for x, y in self.bad)):
                got = self.fs.data_host_ranges(p.addr + pos - p.start, b - pos, self.verify)
            if got is None:
                if not pieces:
                    return None
                got = [(NOT_STORED, 0, b - pos)]
            join_host_ranges(out, got)
            pos = b
            i += 1
        return out

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        out = [(max(a, start), min(b, end)) for a, b in self.bad if a < end and b > start]
        for p in self.pieces:
            a, b = max(start, p.start), min(end, p.start + p.length)
            if a >= b or p.kind in (HOLE, INLINE):
                continue
            if p.kind == PLAIN:
                for x, y in self.fs.damaged_logical(p.addr + a - p.start, b - a):
                    out.append((p.start + x, p.start + y))
            elif self.fs.damaged_logical(p.addr, p.disk_len):
                out.append((a, b))  # one bad byte spoils the whole compressed extent
        return out

    def seek_data(self, pos: int) -> int:
        """The first offset >= ``pos`` not in a hole (``size`` if none)."""
        for i in range(self._find(pos), len(self.pieces)):
            p = self.pieces[i]
            if p.kind != HOLE and p.start + p.length > pos:
                return max(pos, p.start)
        return self.size
