"""Logical to physical addresses: Btrfs chunks and their stripe profiles.

Every address in a Btrfs tree is *logical*; a chunk maps ``[logical, logical+length)`` onto
stripes on the devices. SINGLE has one stripe, DUP two on the same device, RAID1/1C3/1C4
a full copy on each stripe; RAID0 spreads ``stripe_len`` units round-robin, RAID10 does
the same over mirror pairs (``sub_stripes``), RAID5/6 add one or two rotating parity units
per row (one missing data unit is the XOR of the rest of its row and P; the volume layer
rebuilds it). The SYSTEM chunks are listed in the superblock's ``sys_chunk_array``, the rest
in the chunk tree.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ...units import is_pow2
from . import structs as S

MAX_CHUNKS = 1 << 20  # more chunks than a 1 EiB filesystem of 1 GiB chunks: hostile
MAX_STRIPES = 256


class ChunkError(ValueError):
    """A chunk item that cannot be used (the caller names where it was)."""


@dataclass(slots=True)
class ChunkMap:
    """One chunk: its logical range, profile and stripes (devid, physical offset)."""

    logical: int
    length: int
    type: int
    stripe_len: int
    num_stripes: int
    sub_stripes: int
    stripes: list[tuple[int, int]]

    @property
    def profile(self) -> str:
        for bit, name in ((S.BG_RAID0, "raid0"), (S.BG_RAID1, "raid1"), (S.BG_DUP, "dup"),
                          (S.BG_RAID10, "raid10"), (S.BG_RAID5, "raid5"),
                          (S.BG_RAID6, "raid6"), (S.BG_RAID1C3, "raid1c3"),
                          (S.BG_RAID1C4, "raid1c4")):
            if self.type & bit:
                return name
        return "single"

    @property
    def mirrors(self) -> int:
        """How many copies of each byte can be read directly."""
        t = self.type
        if t & (S.BG_RAID1 | S.BG_DUP | S.BG_RAID1C3 | S.BG_RAID1C4):
            return self.num_stripes
        if t & S.BG_RAID10:
            return self.sub_stripes
        return 1

    def place(self, offset: int, mirror: int = 0) -> tuple[int, int, int]:
        """(stripe index, physical offset, bytes left in the stripe unit) of the byte at
        ``offset`` into the chunk, for copy ``mirror``."""
        t, sl = self.type, self.stripe_len
        if t & (S.BG_RAID1 | S.BG_DUP | S.BG_RAID1C3 | S.BG_RAID1C4) or not t & (
                S.BG_RAID0 | S.BG_RAID10 | S.BG_RAID5 | S.BG_RAID6):
            idx = mirror if mirror < self.num_stripes else 0
            return idx, self.stripes[idx][1] + offset, self.length - offset
        nr, within = divmod(offset, sl)
        left = sl - within
        if t & S.BG_RAID0:
            row, idx = divmod(nr, self.num_stripes)
        elif t & S.BG_RAID10:
            groups = self.num_stripes // self.sub_stripes
            row, g = divmod(nr, groups)
            idx = g * self.sub_stripes + min(mirror, self.sub_stripes - 1)
        else:  # RAID5/6: data units rotate with the row, parity after them
            ndata = self.num_stripes - (2 if t & S.BG_RAID6 else 1)
            row, d = divmod(nr, ndata)
            idx = (row + d) % self.num_stripes
        return idx, self.stripes[idx][1] + row * sl + within, left


def parse_chunk(buf: bytes, pos: int, key_offset: int, limit: int) -> tuple[ChunkMap, int]:
    """The chunk item at ``buf[pos:]`` (logical start ``key_offset``) and its end."""
    if pos + S.CHUNK_SIZE > limit:
        raise ChunkError("chunk item cut short")
    (length, _owner, stripe_len, ctype, _ia, _iw, _ss, nstripes,
     sub) = S.CHUNK_FMT.unpack_from(buf, pos)
    end = pos + S.CHUNK_SIZE + nstripes * S.STRIPE_SIZE
    if not 0 < nstripes <= MAX_STRIPES or end > limit:
        raise ChunkError(f"chunk at logical {key_offset:#x}: {nstripes} stripes do not fit")
    if length == 0 or key_offset + length >= 1 << 64:
        raise ChunkError(f"chunk at logical {key_offset:#x}: bad length {length}")
    striped = ctype & (S.BG_RAID0 | S.BG_RAID10 | S.BG_RAID5 | S.BG_RAID6)
    if striped and (not is_pow2(stripe_len) or stripe_len > 1 << 30):
        raise ChunkError(f"chunk at logical {key_offset:#x}: bad stripe_len {stripe_len}")
    if ctype & S.BG_RAID10 and (sub < 1 or nstripes % sub):
        raise ChunkError(f"chunk at logical {key_offset:#x}: {nstripes} stripes, "
                         f"{sub} sub-stripes")
    need = 3 if ctype & S.BG_RAID6 else 2 if ctype & S.BG_RAID5 else 1
    if nstripes < need:
        raise ChunkError(f"chunk at logical {key_offset:#x}: too few stripes")
    stripes = []
    for i in range(nstripes):
        devid, off, _uuid = S.STRIPE_FMT.unpack_from(buf, pos + S.CHUNK_SIZE + i * S.STRIPE_SIZE)
        stripes.append((devid, off))
    return ChunkMap(key_offset, length, ctype, stripe_len, nstripes, sub, stripes), end


def parse_sys_chunk_array(data: bytes) -> list[ChunkMap]:
    """The (disk key, chunk) pairs of the superblock's ``sys_chunk_array``."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + S.DISK_KEY_SIZE > len(data):
            raise ChunkError("sys_chunk_array: key cut short")
        objectid, ktype, offset = S.DISK_KEY_FMT.unpack_from(data, pos)
        if ktype != S.CHUNK_ITEM:
            raise ChunkError(f"sys_chunk_array: item type {ktype} at {pos} is not a chunk")
        chunk, pos = parse_chunk(data, pos + S.DISK_KEY_SIZE, offset, len(data))
        out.append(chunk)
    return out


class ChunkTable:
    """The chunks by logical start; ``find(logical)`` bisects."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.chunks: list[ChunkMap] = []

    def add(self, c: ChunkMap) -> bool:
        """Insert a chunk; False (not added) when it overlaps one already there."""
        if len(self.chunks) >= MAX_CHUNKS:
            raise ChunkError("too many chunks")
        i = bisect.bisect_left(self.starts, c.logical)
        if i < len(self.chunks) and self.starts[i] == c.logical:
            return self.chunks[i].length == c.length  # the same chunk again (sys array)
        if i > 0 and self.chunks[i - 1].logical + self.chunks[i - 1].length > c.logical:
            return False
        if i < len(self.chunks) and c.logical + c.length > self.starts[i]:
            return False
        self.starts.insert(i, c.logical)
        self.chunks.insert(i, c)
        return True

    def find(self, logical: int) -> ChunkMap | None:
        i = bisect.bisect_right(self.starts, logical) - 1
        if i >= 0:
            c = self.chunks[i]
            if logical < c.logical + c.length:
                return c
        return None

    def __len__(self) -> int:
        return len(self.chunks)
