"""Allocation groups: the AGF and AGI headers, the inode btree (which inodes exist and
are free) and the by-block free-space btree (which blocks are free), and the search for
orphan inodes that those answer.

Each AG starts with a superblock copy, then the AGF (sector 1), AGI (sector 2) and AGFL
(sector 3). The inode btree's records each describe a 64-inode chunk: a free bitmap and,
with sparse inode chunks, a hole mask of 4-inode groups that do not exist. Walks are
bounded like the bmbt's: levels drop by one per step, every block is visited once.
"""

from __future__ import annotations

from itertools import compress
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage
from ...layout import numpy_dtype
from ..base import Entry
from . import structs as S
from .intents import join_free
from .superblock import crc_ok

if TYPE_CHECKING:
    from .bmap import ExtentMap
    from .fs import XfsFileSystem

MAX_LEVELS = 8
NULL_AGBLOCK = 0xFFFFFFFF
AG_PTR = numpy_dtype(S.InobtPtr)["ptr"]  # a child pointer of an AG btree node (agbno)


class AllocationGroups:
    """The AG headers and btrees of a filesystem, read when first asked for."""

    def __init__(self, fs: XfsFileSystem) -> None:
        self.fs = fs
        self._agi: dict[int, dict | None] = {}
        self._agf: dict[int, dict | None] = {}
        self._chunks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._free: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self._refc: dict[int, np.ndarray] = {}  # refcount btree records by AG

    # --- headers -------------------------------------------------------------------
    def _header(self, agno: int, which: str) -> dict | None:
        cache = self._agi if which == "AGI" else self._agf
        if agno in cache:
            return cache[agno]
        fs, g = self.fs, self.fs.geo
        decl, form, magic, crc_at = ((S.AGI, S.AGI_FMT, S.XFS_AGI_MAGIC, S.AGI_CRC_OFF)
                                     if which == "AGI" else
                                     (S.AGF, S.AGF_FMT, S.XFS_AGF_MAGIC, S.AGF_CRC_OFF))
        off = g.ag_offset(agno) + (2 if which == "AGI" else 1) * g.sector_size
        where = f"{which} {agno}"
        cache[agno] = None
        try:
            raw = fs.read_bytes(off, g.sector_size, where)
        except CorruptImage as exc:
            fs.problem(where, off, exc.detail)
            return None
        h = S.unpack(decl, form, raw)
        head = list(h.values())
        if head[0] != magic or head[2] != agno:
            fs.problem(where, off, f"bad {which} (magic {head[0]:#x}, AG number {head[2]})")
            return None
        if g.crc and not crc_ok(raw, crc_at):
            fs.problem(where, off, f"{which} CRC-32C mismatch")
        cache[agno] = h
        return h

    # --- short-form btrees -------------------------------------------------------------
    def _walk(self, agno: int, root: int, levels: int, magic: int, rec_size: int,
              key_size: int, where: str) -> list[bytes]:
        """The leaf records (as bytes) of an AG btree."""
        fs, g = self.fs, self.fs.geo
        bs = g.block_size
        hdr = S.SHORT_HDR_V5 if g.crc else S.SHORT_HDR_V4
        if not 1 <= levels <= MAX_LEVELS:
            fs.problem(where, g.ag_offset(agno), f"btree of {levels} levels")
            return []
        out: list[bytes] = []
        seen: set[int] = set()
        stack = [(root, levels - 1)]
        while stack:
            agbno, lvl = stack.pop()
            off = g.ag_offset(agno) + agbno * bs
            if agbno >= g.agblocks or agbno in seen:
                fs.problem(where, off, f"btree pointer {agbno} outside the AG or seen twice")
                continue
            seen.add(agbno)
            data = fs.read_bytes(off, bs, where)
            bmagic, blevel, n = S.SHORT_HDR_FMT.unpack_from(data, 0)[:3]
            if bmagic != magic or blevel != lvl:
                fs.problem(where, off, f"bad btree block (magic {bmagic:#x}, level {blevel})")
                continue
            if g.crc and not crc_ok(data, S.SHORT_CRC_OFF):
                fs.problem(where, off, "btree block CRC-32C mismatch")
            if lvl == 0:
                n = min(n, (bs - hdr) // rec_size)
                out.append(data[hdr:hdr + n * rec_size])
            else:
                room = (bs - hdr) // (key_size + AG_PTR.itemsize)
                n = min(n, room)
                ptrs = np.frombuffer(data, dtype=AG_PTR, count=n, offset=hdr + room * key_size)
                stack.extend((p, lvl - 1) for p in reversed(ptrs.tolist()))
        return out

    def chunks(self, agno: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inode chunks of an AG: (startino agino, free mask, hole mask) arrays."""
        got = self._chunks.get(agno)
        if got is not None:
            return got
        empty = (np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.uint16))
        self._chunks[agno] = empty
        agi = self._header(agno, "AGI")
        if agi is None:
            return empty
        magic = S.XFS_IBT_CRC_MAGIC if self.fs.geo.crc else S.XFS_IBT_MAGIC
        try:
            leaves = self._walk(agno, agi["agi_root"], agi["agi_level"], magic,
                                S.INOBT_REC_FMT.size, S.InobtKey.sizeof(),
                                f"inode btree of AG {agno}")
        except CorruptImage as exc:
            self.fs.problem(f"inode btree of AG {agno}", None, exc.detail)
            return empty
        recs = np.frombuffer(b"".join(leaves), dtype=numpy_dtype(S.InobtRec))
        holes = recs["ir_holemask"] if self.fs.geo.sparse_inodes else np.zeros(len(recs),
                                                                                np.uint16)
        got = (recs["ir_startino"].astype(np.int64), recs["ir_free"].astype(np.uint64),
               holes.astype(np.uint16))
        self._chunks[agno] = got
        return got

    def inode_allocated(self, ino: int) -> bool:
        """Whether the inode btree says ``ino`` is in use."""
        g = self.fs.geo
        agno = ino >> (g.agblklog + g.inopblog)
        agino = ino & ((1 << (g.agblklog + g.inopblog)) - 1)
        start, free, holes = self.chunks(agno)
        i = int(np.searchsorted(start, agino, side="right")) - 1
        if i < 0 or agino >= start[i] + 64:
            return False
        k = agino - int(start[i])
        if int(holes[i]) >> (k // 4) & 1:
            return False
        return not (int(free[i]) >> k) & 1

    def free_extents(self, agno: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Free space of an AG as sorted (start agbno, end agbno) arrays, or None."""
        if agno in self._free:
            return self._free[agno]
        self._free[agno] = None
        agf = self._header(agno, "AGF")
        if agf is None:
            return None
        magic = S.XFS_ABTB_CRC_MAGIC if self.fs.geo.crc else S.XFS_ABTB_MAGIC
        try:
            leaves = self._walk(agno, agf["agf_roots"][0], agf["agf_levels"][0], magic,
                                S.ALLOC_REC_FMT.size, S.ALLOC_REC_FMT.size,
                                f"free space btree of AG {agno}")
        except CorruptImage:
            return None
        recs = np.frombuffer(b"".join(leaves), dtype=numpy_dtype(S.AllocRec))
        a = recs["ar_startblock"].astype(np.int64)
        order = np.argsort(a)
        got = (a[order], (a + recs["ar_blockcount"].astype(np.int64))[order])
        if self.fs.intents is not None:  # extents an open log intent frees
            got = self.fs.intents.free_view(agno, *got, shared=self.shared_extents)
        got = join_free(*got, self.cow_staging(agno))
        self._free[agno] = got
        return got

    def _refcounts(self, agno: int) -> np.ndarray:
        """The refcount btree records of an AG (RefcountRec dtype), read once; empty
        without reflink or when the btree cannot be read (a problem is recorded)."""
        got = self._refc.get(agno)
        if got is not None:
            return got
        dt = numpy_dtype(S.RefcountRec)
        self._refc[agno] = got = np.zeros(0, dtype=dt)
        agf = self._header(agno, "AGF")
        if not agf or not agf["agf_refcount_level"] or not self.fs.geo.crc:
            return got
        try:
            leaves = self._walk(agno, agf["agf_refcount_root"], agf["agf_refcount_level"],
                                S.XFS_REFC_CRC_MAGIC, dt.itemsize, 4,
                                f"refcount btree of AG {agno}")
        except CorruptImage:
            return got
        self._refc[agno] = got = np.frombuffer(b"".join(leaves), dtype=dt)
        return got

    def shared_extents(self, agno: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The refcount btree's shared extents of an AG, as sorted (start agbno, end
        agbno, owners) arrays (CoW staging extents left out)."""
        recs = self._refcounts(agno)
        recs = recs[recs["rc_startblock"] < S.XFS_REFC_COWFLAG]
        a = recs["rc_startblock"].astype(np.int64)
        order = np.argsort(a)
        return (a[order], (a + recs["rc_blockcount"].astype(np.int64))[order],
                recs["rc_refcount"].astype(np.int64)[order])

    def cow_staging(self, agno: int) -> list[tuple[int, int]]:
        """[start, end) agbno of the CoW staging extents the refcount btree still holds
        (a crash during copy-on-write): every mount frees them (the kernel's
        ``xfs_reflink_recover_cow``, read-only mounts too), so they count as free."""
        recs = self._refcounts(agno)
        recs = recs[recs["rc_startblock"] >= S.XFS_REFC_COWFLAG]
        a = (recs["rc_startblock"] & ~np.uint32(S.XFS_REFC_COWFLAG)).astype(np.int64)
        b = np.minimum(a + recs["rc_blockcount"].astype(np.int64), self.fs.geo.agblocks)
        return [(x, y) for x, y in zip(a.tolist(), b.tolist()) if x < y]  # inside the AG

    def blocks_in_use(self, emap: ExtentMap) -> int | None:
        """How many of a map's blocks the free-space btree does not list as free."""
        g = self.fs.geo
        used = 0
        for fsb, cnt in zip(emap.fsb.tolist(), emap.count.tolist()):
            agno, agbno = fsb >> g.agblklog, fsb & ((1 << g.agblklog) - 1)
            free = self.free_extents(agno)
            if free is None:
                return None
            starts, ends = free
            i = int(np.searchsorted(starts, agbno, side="right")) - 1
            covered = 0
            while 0 <= i < len(starts) and starts[i] < agbno + cnt:
                covered += max(0, min(int(ends[i]), agbno + cnt) - max(int(starts[i]), agbno))
                i += 1
            used += cnt - covered
        return used

    # --- orphans ----------------------------------------------------------------------
    def _named(self) -> list[int]:
        """Every inode a name (live or removed) reaches from the root (once or more)."""
        fs = self.fs
        named: list[int] = [fs.geo.rootino]
        seen: set[int] = set()
        stack = [fs.geo.rootino]
        while stack:
            ino = stack.pop()
            if ino in seen:
                continue
            seen.add(ino)
            try:
                rec = fs.inode(ino)
                if not rec.is_dir:
                    continue
                raws = fs.dir_entries(rec)
            except CorruptImage:
                continue
            named += raws.inos  # a list extended at C speed (a set would hash each)
            if raws.removed or 0 in raws.ftypes:
                stack += [i for i, dl, ft in zip(raws.inos, raws.deleted, raws.ftypes)
                          if not dl and (ft == 2 or (not ft and _is_dir(fs, i)))]
            else:  # every entry live and typed: the directories' numbers at C speed
                stack += compress(raws.inos, map((2).__eq__, raws.ftypes))
        return named

    def find_orphans(self) -> list[Entry]:
        """Free inodes that were once used (change time set) and allocated inodes that no
        name reaches, as ``OrphanFile-<inode>`` entries (deleted when free)."""
        fs, g = self.fs, self.fs.geo
        named = self._named()
        r = g.raw
        special = {r["sb_rbmino"], r["sb_rsumino"], r["sb_uquotino"], r["sb_gquotino"],
                   r["sb_pquotino"]}
        out = []
        known = np.array(named + sorted(special), dtype=np.uint64)
        known = np.sort(known[known < np.uint64(1 << 63)].view(np.int64))  # repeats: harmless
        slot = np.arange(64, dtype=np.int64)
        for agno in range(g.agcount):
            start, free, holes = self.chunks(agno)
            # every inode slot of every chunk at once; a sparse chunk's holes left out
            inos = g.agino_to_ino(agno, 0) + start[:, None] + slot
            real = ((holes.astype(np.int64)[:, None] >> (slot // 4)) & 1) == 0
            free_bit = ((free[:, None] >> slot.astype(np.uint64)) & np.uint64(1)) != 0
            at = np.minimum(np.searchsorted(known, inos), max(len(known) - 1, 0))
            pick = real & ~(known[at] == inos if len(known) else False)
            for ino, fr in zip(inos[pick].tolist(), free_bit[pick].tolist()):
                try:
                    rec = fs.inode(ino)
                except CorruptImage:
                    continue
                name = f"OrphanFile-{ino}"
                if fr:
                    if not rec.f["di_ctime"]:
                        continue  # never used
                    ok, why = fs.recoverability(rec)
                    e = fs.make_entry(name, rec, True, note="unnamed inode; " + why,
                                      recoverable=ok)
                elif rec.mode:
                    e = fs.make_entry(name, rec, False, recoverable=True,
                                      note="allocated inode that no directory entry "
                                           "names (xfs_repair would move it to lost+found)")
                else:
                    continue
                e.found_by = "inode-table"
                out.append(e)
        return out

    # --- checks --------------------------------------------------------------------------
    def check(self) -> None:
        """Read every AG header and inode btree (their findings go to ``check()``)."""
        for agno in range(self.fs.geo.agcount):
            self._header(agno, "AGF")
            self.chunks(agno)
            self.free_extents(agno)


def _is_dir(fs: XfsFileSystem, ino: int) -> bool:
    try:
        return fs.inode(ino).is_dir
    except CorruptImage:
        return False
