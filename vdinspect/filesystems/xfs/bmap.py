"""Where a fork's bytes are: extent lists, extent B+trees (bmbt) and the file source.

An extent record packs (unwritten flag, logical block, fsblock, length) in 128 bits.
Extents fork: ``nextents`` records in the inode. Btree fork: a root in the inode (level,
keys, then pointers placed after the root's maximum key count), interior blocks of keys and
pointers, leaf blocks of records. The walk is bounded: the level drops by one per step and
is at most :data:`MAX_LEVELS`, counts are checked against what fits, every block is
visited once and every number is checked against the filesystem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...io import ByteSource
from ...io.mapped import MappedSource
from ...layout import numpy_dtype
from . import structs as S

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .fs import XfsFileSystem
    from .inode import Inode

REC = numpy_dtype(S.BmbtRec)
REC_SIZE = REC.itemsize
KEY_SIZE = S.BmbtKey.sizeof()  # a node holds its keys, then as many child pointers
KEY_PTR_SIZE = KEY_SIZE + S.BmbtPtr.sizeof()
PTR = numpy_dtype(S.BmbtPtr)["ptr"]
MAX_LEVELS = 9  # a bmbt of 2^63 blocks fits in fewer levels
DATA, UNWRITTEN, DAMAGED = 0, 1, 2
STATE_NAMES = {DATA: "data", UNWRITTEN: "unwritten", DAMAGED: "damaged"}
_OFF_MASK = (1 << 54) - 1
_LEN_MASK = (1 << 21) - 1


class ExtentMap:
    """A fork's mapping sorted by logical block: parallel numpy arrays.

    ``startoff`` (logical block), ``block`` (linear block on the volume), ``count`` and
    ``state`` (DATA, UNWRITTEN reads as zeros, DAMAGED unreadable); ``fsb`` keeps the
    packed fsblock numbers; ``meta`` the bmbt blocks (linear block numbers).
    """

    __slots__ = ("startoff", "block", "count", "state", "fsb", "meta")

    def __init__(self, startoff, block, count, state, fsb, meta: list[int]) -> None:
        self.startoff = np.asarray(startoff, dtype=np.int64)
        self.block = np.asarray(block, dtype=np.int64)
        self.count = np.asarray(count, dtype=np.int64)
        self.state = np.asarray(state, dtype=np.int8)
        self.fsb = np.asarray(fsb, dtype=np.int64)
        self.meta = meta

    def __len__(self) -> int:
        return len(self.startoff)

    def rows(self) -> Iterator[tuple[int, int, int, int]]:
        return zip(self.startoff.tolist(), self.block.tolist(), self.count.tolist(),
                   self.state.tolist())


def decode_records(buf: bytes, n: int) -> tuple[np.ndarray, ...]:
    """(startoff, fsblock, count, unwritten) arrays of ``n`` packed records."""
    recs = np.frombuffer(buf, dtype=REC, count=n)
    l0 = recs["l0"].astype(np.uint64)
    l1 = recs["l1"].astype(np.uint64)
    startoff = ((l0 >> np.uint64(9)) & np.uint64(_OFF_MASK)).astype(np.int64)
    fsb = (((l0 & np.uint64(0x1FF)) << np.uint64(43)) | (l1 >> np.uint64(21))).astype(np.int64)
    count = (l1 & np.uint64(_LEN_MASK)).astype(np.int64)
    unwritten = (l0 >> np.uint64(63)).astype(bool)
    return startoff, fsb, count, unwritten


class _Collector:
    """Gathers records from the fork or the tree's leaves, with their trust state."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.bad: list[np.ndarray] = []
        self.meta: list[int] = []
        self.total = 0

    def add(self, buf: bytes, n: int, damaged: bool) -> None:
        self.parts.append(decode_records(buf, n))
        self.bad.append(np.full(n, damaged))
        self.total += n


def fork_map(fs: XfsFileSystem, ino: Inode, fork: bytes, fmt: int, nextents: int,
             where: str, fork_at: int) -> ExtentMap:
    """The extent map of one fork (format EXTENTS or BTREE) of inode ``ino``."""
    col = _Collector()
    g = fs.geo
    if fmt == S.FMT_EXTENTS and 0 <= nextents <= SMALL and not ino.crc_bad:
        got = _small_map(g, fork, nextents)
        if got is not None:
            return got
    if fmt == S.FMT_EXTENTS:
        fit = len(fork) // REC_SIZE
        if nextents > fit:
            fs.problem(where, fork_at, f"{nextents} extents do not fit in a {len(fork)}-byte "
                       "fork")
            nextents = fit
        col.add(fork, nextents, ino.crc_bad)
    elif fmt == S.FMT_BTREE:
        _walk_root(fs, ino, fork, where, fork_at, col)
    else:
        fs.problem(where, fork_at, f"fork format {fmt} has no extents")
    if not col.parts:
        return ExtentMap([], [], [], [], [], col.meta)
    startoff = np.concatenate([p[0] for p in col.parts])
    fsb = np.concatenate([p[1] for p in col.parts])
    count = np.concatenate([p[2] for p in col.parts])
    unwritten = np.concatenate([p[3] for p in col.parts])
    bad = np.concatenate(col.bad)
    order = np.argsort(startoff, kind="stable")
    startoff, fsb, count, unwritten, bad = (a[order] for a in (startoff, fsb, count,
                                                               unwritten, bad))
    agno = fsb >> g.agblklog
    agbno = fsb & ((1 << g.agblklog) - 1)
    block = agno * g.agblocks + agbno
    ok = (count > 0) & (agno < g.agcount) & (agbno + count <= g.agblocks)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        fs.problem(where, fork_at, f"{int((~ok).sum())} extents point outside the filesystem "
                   f"(first: logical block {int(startoff[i])}, fsblock {int(fsb[i])}, "
                   f"{int(count[i])} blocks)")
        bad |= ~ok
    if len(startoff) > 1:
        overlap = startoff[1:] < startoff[:-1] + count[:-1]
        if overlap.any():
            i = int(np.flatnonzero(overlap)[0]) + 1
            fs.problem(where, fork_at, f"extents overlap at logical block {int(startoff[i])}")
            keep = np.concatenate([[True], ~overlap])
            startoff, fsb, count, unwritten, bad, block = (
                a[keep] for a in (startoff, fsb, count, unwritten, bad, block))
    state = np.where(bad, DAMAGED, np.where(unwritten, UNWRITTEN, DATA)).astype(np.int8)
    return ExtentMap(startoff, block, count, state, fsb, col.meta)


SMALL = 8  # extent lists this short are decoded without numpy (most directories)


def _small_map(g, fork: bytes, n: int) -> ExtentMap | None:
    """The map of a short, sound, sorted extent list in the inode; None when anything
    needs the general path (which reports it)."""
    if n * REC_SIZE > len(fork):
        return None
    rows = []
    end = -1
    for i in range(n):
        l0, l1 = S.BMBT_REC_FMT.unpack_from(fork, i * REC_SIZE)
        off = (l0 >> 9) & _OFF_MASK
        fsb = ((l0 & 0x1FF) << 43) | (l1 >> 21)
        cnt = l1 & _LEN_MASK
        if not cnt or off < end or not g.fsb_valid(fsb, cnt):
            return None
        end = off + cnt
        rows.append((off, g.fsb_to_block(fsb), cnt, UNWRITTEN if l0 >> 63 else DATA, fsb))
    cols = list(zip(*rows)) if rows else [()] * 5
    return ExtentMap(*cols, [])


def _walk_root(fs: XfsFileSystem, ino: Inode, fork: bytes, where: str, fork_at: int,
               col: _Collector) -> None:
    g = fs.geo
    if len(fork) < S.BMDR_FMT.size:
        fs.problem(where, fork_at, "btree fork too small for its root")
        return
    level, numrecs = S.BMDR_FMT.unpack_from(fork, 0)
    maxrecs = (len(fork) - S.BMDR_FMT.size) // KEY_PTR_SIZE
    if not 1 <= level <= MAX_LEVELS or numrecs > maxrecs or numrecs == 0:
        fs.problem(where, fork_at, f"bad bmbt root (level {level}, {numrecs} keys, "
                   f"room for {maxrecs})")
        return
    at = S.BMDR_FMT.size + maxrecs * KEY_SIZE
    ptrs = np.frombuffer(fork, dtype=PTR, count=numrecs, offset=at).tolist()
    hdr = S.LONG_HDR_V5 if g.crc else S.LONG_HDR_V4
    magic = S.XFS_BMAP_CRC_MAGIC if g.crc else S.XFS_BMAP_MAGIC
    bs = g.block_size
    seen: set[int] = set()
    limit = max(1, g.dblocks)
    stack = [(p, level - 1) for p in reversed(ptrs)]
    while stack:
        fsb, lvl = stack.pop()
        if not g.fsb_valid(fsb):
            fs.problem(where, fork_at, f"bmbt pointer {fsb} is outside the filesystem")
            continue
        blk = g.fsb_to_block(fsb)
        if blk in seen:
            fs.problem(where, blk * bs, "bmbt block reached twice (a loop)")
            continue
        seen.add(blk)
        col.meta.append(blk)
        bwhere = f"{where} bmbt block"
        data = fs.read_block(blk, bwhere)
        bmagic, blevel, bnum = S.LONG_HDR_FMT.unpack_from(data, 0)[:3]
        if bmagic != magic or blevel != lvl:
            fs.problem(bwhere, blk * bs, f"bad bmbt block (magic {bmagic:#x}, level "
                       f"{blevel}, expected {lvl})")
            continue
        damaged = False
        if g.crc:
            why = fs.verify_block(data, S.LONG_CRC_OFF)
            if why:
                fs.problem(bwhere, blk * bs, why)
                damaged = True
        if lvl == 0:
            room = (bs - hdr) // REC_SIZE
            if bnum > room:
                fs.problem(bwhere, blk * bs, f"{bnum} records do not fit (room for {room})")
                bnum = room
            if col.total + bnum > limit:
                fs.problem(bwhere, blk * bs, "more extents than blocks in the filesystem")
                return
            col.add(data[hdr:hdr + bnum * REC_SIZE], bnum, damaged)
        else:
            room = (bs - hdr) // KEY_PTR_SIZE
            if bnum > room or bnum == 0:
                fs.problem(bwhere, blk * bs, f"{bnum} keys do not fit (room for {room})")
                continue
            if damaged:
                continue
            kids = np.frombuffer(data, dtype=PTR, count=bnum, offset=hdr + room * KEY_SIZE)
            stack.extend((p, lvl - 1) for p in reversed(kids.tolist()))
        if len(seen) > limit:
            return


def fork_source(dev: ByteSource, block_size: int, size: int, emap: ExtentMap,
                name: str) -> MappedSource:
    """A fork's bytes: data extents read from the volume, holes and unwritten extents as
    zeros, damaged ones as zeros reported by ``damaged_ranges``; exactly ``size`` bytes."""
    return MappedSource.from_blocks(dev, size, block_size, emap.startoff, emap.count,
                                    emap.block, emap.state, data=DATA, damaged=DAMAGED,
                                    name=name)
