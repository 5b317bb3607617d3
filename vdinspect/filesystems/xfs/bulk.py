"""Many XFS inodes decoded together: the fast path of the ``files()`` walk.

A directory's children are gathered from the cached 64 KiB chunks of the volume (one
numpy fancy index per chunk, no per-inode slicing), their cores viewed through one numpy
dtype derived from ``structs.Dinode``, and on v5 their CRC-32Cs checked with one C call
per record over the record as stored: the CRC field's own contribution is taken out with
four 256-entry tables (CRC-32C is affine in its input), so nothing is copied or zeroed.
Records that fail any check are left to the driver's one-inode path, which reports them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from ...errors import VDInspectError
from ...io import crc32c, crc32c_records
from ...layout import numpy_dtype
from . import structs as S

if TYPE_CHECKING:
    from .dirs import Dirents
    from .fs import XfsFileSystem

S_IFMT, S_IFREG, S_IFDIR = 0o170000, 0o100000, 0o40000


@functools.lru_cache(maxsize=4)
def core_dtype(v3: bool) -> np.dtype:
    """The inode core's fields (structs.Dinode; v1/v2: those before di_crc), packed as
    the core lies at the start of each record."""
    base = numpy_dtype(S.Dinode)
    last = len(S.DINODE_FIELDS) if v3 else S.DINODE_FIELDS.index("di_crc")
    names = [n for n in base.names if n in S.DINODE_FIELDS[:last]]
    size = max(base.fields[n][1] + base.fields[n][0].itemsize for n in names)
    return np.dtype({"names": names, "formats": [base.fields[n][0] for n in names],
                     "offsets": [base.fields[n][1] for n in names], "itemsize": size})


def cores(flat: np.ndarray, v3: bool) -> np.ndarray:
    """The cores of (n, isz) inode records, copied compactly: (n,) of :func:`core_dtype`
    (each field then read from a few cache lines, not one per record)."""
    return np.ascontiguousarray(flat[:, :core_dtype(v3).itemsize]).view(
        core_dtype(v3)).ravel()


def gather(fs: XfsFileSystem, agno: np.ndarray, agino: np.ndarray,
           out: np.ndarray | None = None) -> np.ndarray:
    """The inode records ``(agno, agino)`` (each inside the volume) as an (n, isz) uint8
    array. Inodes are read a group of 64 (an inode chunk's worth, or one block when a
    block holds more) at a time, consecutive on disk, and the groups are cached; whole
    groups asked for in order (the volume table) are read straight into the result, a run
    of adjacent ones in one read. ``out``: an (n, isz) uint8 array to fill (else a new
    one)."""
    g = fs.geo
    isz, bs = g.inode_size, fs.block_size
    glog = max(6, g.inopblog)
    n = len(agno)
    if out is None:
        out = np.empty((n, isz), dtype=np.uint8)
    if not n:  # no inode at all (an empty or damaged inode B+tree)
        return out
    keys = (agno << 32) | (agino >> glog)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    heads = np.concatenate([[0], np.flatnonzero(sk[1:] != sk[:-1]) + 1])
    cuts = [*heads.tolist(), n]
    # groups asked for whole and in order (the volume table's) are copied as one slice
    at = np.arange(n)
    first_of = np.repeat(heads, np.diff(np.append(heads, n)))
    sagino = agino[order]
    inplace = np.logical_and.reduceat((order == at) & (
        sagino - (sagino >> glog << glog) == at - first_of), heads).tolist()
    firsts = (sagino[heads] >> glog << glog).tolist()
    starts = ((agno[order[heads]] * g.agblocks + (sagino[heads] >> glog << glog >> g.inopblog))
              * bs).tolist()
    per, size = 1 << glog, fs.dev.size
    run = [0, 0, 0]  # whole groups next to each other on disk: (first row, end row, offset)

    def flush() -> None:  # read straight into the rows (no cache, no copy)
        if run[1] > run[0]:
            fs.dev.readinto(run[2], out[run[0]:run[1]])
        run[:] = [0, 0, 0]

    for lo, hi, whole, first, start in zip(cuts, cuts[1:], inplace, firsts, starts):
        if whole and hi - lo == per and start + per * isz <= size:
            if run[1] == lo and run[2] + (lo - run[0]) * isz == start and run[1] > run[0]:
                run[1] = hi
            else:
                flush()
                run[:] = [lo, hi, start]
            continue
        flush()
        length = min(isz << glog, size - start)
        recs = fs.inode_group(start, length)  # (whole records, isz) uint8
        if whole and hi - lo <= len(recs):
            out[lo:hi] = recs[:hi - lo]
            continue
        grp = order[lo:hi]
        rel = agino[grp] - first
        if int(rel.max()) < len(recs):
            out[grp] = recs[rel]
            continue
        for i, r in zip(grp.tolist(), rel.tolist()):  # cut short by the volume's end
            pos = start + r * isz
            out[i] = np.frombuffer(fs.read_bytes(pos, isz, "inode"), dtype=np.uint8)
    flush()
    return out


@functools.lru_cache(maxsize=8)
def _crc_field_tables(isz: int, at: int) -> np.ndarray:
    """(4, 256) uint32: what byte j of the CRC field holding value v adds to the CRC-32C
    of an ``isz``-byte record, against the same record with the field zeroed."""
    zero = bytearray(isz)
    base = crc32c(bytes(zero))
    out = np.empty((4, 256), dtype=np.uint32)
    for j in range(4):
        for v in range(256):
            zero[at + j] = v
            out[j, v] = crc32c(bytes(zero)) ^ base
        zero[at + j] = 0
    return out


GROUP = 64  # records checked together by one CRC-32C call (an inode chunk)


@functools.lru_cache(maxsize=8)
def _shift_tables(length: int, levels: int) -> tuple[np.ndarray, ...]:
    """For j < ``levels``: (4, 256) uint32 tables of the linear map "the CRC-32C of A to the
    CRC-32C of A followed by ``length << j`` zero bytes, less that of the zeros alone", by
    byte of the CRC (CRC-32C is linear once the zeros' own CRC is taken out)."""
    zeros = bytes(length)
    base = crc32c(zeros)
    one = np.array([[crc32c(zeros, v << (8 * j)) ^ base for v in range(256)]
                    for j in range(4)], dtype=np.uint32)
    out = [one]
    for _ in range(1, levels):  # twice the length: the map applied twice
        t = out[-1]
        x = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32)
                                                           )[:, None])
        out.append(_apply(t, _apply(t, x)))
    return tuple(out)


def _apply(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A byte-table linear map (:func:`_shift_tables`) applied to uint32 values."""
    return (t[0][x & 0xFF] ^ t[1][(x >> 8) & 0xFF] ^ t[2][(x >> 16) & 0xFF]
            ^ t[3][x >> 24])


def _fold(crcs: np.ndarray, length: int) -> np.ndarray:
    """The CRC-32C of each row's records laid end to end, from their own CRC-32Cs ((k,
    GROUP) uint32, each of a ``length``-byte record): crc(A + B) = shift(crc(A)) ^ crc(B)."""
    tabs = _shift_tables(length, GROUP.bit_length() - 1)
    for t in tabs:
        crcs = _apply(t, crcs[:, 0::2]) ^ crcs[:, 1::2]
    return crcs[:, 0]


def crc_good(recs: np.ndarray, at: int) -> np.ndarray:
    """Which (n, isz) records hold at byte ``at`` (little-endian) the CRC-32C of the record
    with those 4 bytes zeroed (the v5 inode rule).

    The CRC each record as stored must have follows from its CRC field (tables for the
    field's own share); runs of :data:`GROUP` records are checked with one CRC-32C call
    against those values folded together, and only a run that fails is checked record by
    record (a run whose errors cancel out is as unlikely as one CRC collision, 2**-32)."""
    n, isz = recs.shape
    if not n:
        return np.zeros(0, dtype=bool)
    t = _crc_field_tables(isz, at)
    f = recs[:, at:at + 4]
    stored = f.copy().view("<u4").ravel()
    want = stored ^ t[0][f[:, 0]] ^ t[1][f[:, 1]] ^ t[2][f[:, 2]] ^ t[3][f[:, 3]]
    good = np.zeros(n, dtype=bool)
    whole = n // GROUP * GROUP
    if whole:
        runs = np.array(crc32c_records(np.ascontiguousarray(recs[:whole]), GROUP * isz),
                        dtype=np.uint32)
        ok = runs == _fold(want[:whole].reshape(-1, GROUP), isz)
        good[:whole] = np.repeat(ok, GROUP)
        singles = (np.flatnonzero(~ok)[:, None] * GROUP + np.arange(GROUP)).ravel()
    else:
        singles = np.zeros(0, dtype=np.int64)
    singles = np.concatenate([singles, np.arange(whole, n)])
    if len(singles):
        got = np.array(crc32c_records(np.ascontiguousarray(recs[singles]), isz),
                       dtype=np.uint32)
        good[singles] = got == want[singles]
    return good


def times_ns(raw: np.ndarray, bigtime: np.ndarray) -> np.ndarray:
    """int64 nanoseconds since the epoch of on-disk timestamps (bigtime or seconds and
    nanoseconds), as ``inode.decode_time`` reads one."""
    raw = raw.astype(np.uint64)
    big = (raw - np.uint64(S.BIGTIME_EPOCH_OFFSET * 10**9)).view(np.int64)
    sec = (raw >> np.uint64(32)).astype(np.uint32).view(np.int32).astype(np.int64)
    old = sec * 10**9 + (raw & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return np.where(bigtime, big, old)


def decode(fs: XfsFileSystem, flat: np.ndarray, inos: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(good, vals) of (n, isz) inode records numbered ``inos``: which are plain files or
    directories passing every check of their own (magic, version, sizes, number, CRC),
    and for those the row's integer run: size, allocated, mode, uid, gid, created,
    modified, accessed, changed (ns; created 0 on v4), inode, links, then di_flags."""
    g = fs.geo
    bs = fs.block_size
    recs = cores(flat, g.crc)
    fmt = recs["di_mode"] & S_IFMT
    ver = recs["di_version"]
    good = (recs["di_magic"] == S.XFS_DINODE_MAGIC) & ((fmt == S_IFREG) | (fmt == S_IFDIR))
    good &= (recs["di_size"] < 1 << 63) & (recs["di_nblocks"] < (1 << 63) // bs)
    good &= (ver == 3) if g.crc else ((ver == 1) | (ver == 2))
    if g.crc:
        good &= recs["di_ino"] == inos
        good &= crc_good(flat, S.DINODE_CRC_OFF)  # every record: no copy of the good ones
    keep = np.flatnonzero(good)
    if len(keep) < len(recs) // 2:  # few good: their cores picked out (indexed as bytes:
        core = recs.view(np.uint8).reshape(len(recs), -1)[keep]  # a structured index is slow)
        return good, _values(fs, core.view(recs.dtype).ravel(), inos[keep])
    if len(keep) < len(recs):  # most: every core decoded (garbage too), the good rows kept
        return good, _values(fs, recs, inos)[keep]
    return good, _values(fs, recs, inos)


def _values(fs: XfsFileSystem, recs: np.ndarray, inos: np.ndarray) -> np.ndarray:
    """The (n, 12) integer runs of :func:`decode` of inode cores ``recs`` (structured,
    :func:`core_dtype` fields) numbered ``inos``."""
    g = fs.geo
    bs = fs.block_size
    n = len(recs)
    vals = np.empty((12, n), dtype=np.int64).T  # each column filled as one contiguous run
    vals[:, 0] = recs["di_size"]
    vals[:, 1] = recs["di_nblocks"].astype(np.int64) * bs
    vals[:, 2] = recs["di_mode"]
    vals[:, 3] = recs["di_uid"]
    vals[:, 4] = recs["di_gid"]
    stamps = ["di_crtime"] if g.crc else []
    stamps += ["di_mtime", "di_atime", "di_ctime"]
    raw = np.column_stack([recs[f] for f in stamps])
    big = ((recs["di_flags2"] & S.DIFLAG2_BIGTIME) != 0) if g.crc else np.zeros(
        n, dtype=bool)
    vals[:, 9 - len(stamps):9] = times_ns(raw, big[:, None])
    if not g.crc:
        vals[:, 5] = 0
    vals[:, 9] = inos
    vals[:, 10] = np.where(recs["di_version"] == 1, recs["di_onlink"], recs["di_nlink"])
    vals[:, 11] = recs["di_flags"]
    return vals


class InodeTable:
    """Every inode of the volume's inode chunks decoded at once (a whole-volume listing):
    inode numbers sorted, each with its row values when it passed :func:`decode`."""

    LIMIT = 1 << 18  # inodes; a larger volume is decoded folder by folder
    STEP = 4096  # inodes read and decoded together (2 MiB of 512-byte inodes)

    def __init__(self, inos: np.ndarray, where: np.ndarray, vals: np.ndarray,
                 dir_inos: np.ndarray | None = None, dir_recs: np.ndarray | None = None
                 ) -> None:
        self.inos, self.where, self.vals = inos, where, vals  # where: row of vals, or -1
        # the records of the directories among them (sorted by number), as read
        self.dir_inos = np.zeros(0, np.int64) if dir_inos is None else dir_inos
        self.dir_recs = dir_recs

    def record(self, ino: int) -> bytes | None:
        """The record of directory inode ``ino`` as the table read it (the walk then
        reads no inode twice), or None."""
        i = int(np.searchsorted(self.dir_inos, ino))
        if i < len(self.dir_inos) and int(self.dir_inos[i]) == ino:
            return self.dir_recs[i].tobytes()
        return None

    @classmethod
    def build(cls, fs: XfsFileSystem) -> InodeTable | None:
        """The table, or None when the inode btrees are too large or unreadable (the
        folder-by-folder path then reads, and reports, what it can)."""
        g = fs.geo
        if g.raw["sb_icount"] > cls.LIMIT:
            return None
        bits = g.agblklog + g.inopblog
        slot = np.arange(64, dtype=np.int64)
        parts = []
        try:
            for agno in range(g.agcount):
                start, _free, holes = fs.ags.chunks(agno)
                real = ((holes.astype(np.int64)[:, None] >> (slot // 4)) & 1) == 0
                agino = (start[:, None] + slot)[real]
                parts.append((agno << bits) + agino)
        except VDInspectError:
            return None
        inos = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if len(inos) > 1 and not (inos[1:] > inos[:-1]).all():  # btree records in key order
            inos = np.unique(inos)  # a damaged btree's: sorted, each once
        if len(inos) > cls.LIMIT:
            return None
        agno, agino = inos >> bits, inos & ((1 << bits) - 1)
        offs = ((agno * g.agblocks + (agino >> g.inopblog)) * fs.block_size
                + (agino & ((1 << g.inopblog) - 1)) * g.inode_size)
        inside = (agno < g.agcount) & ((agino >> g.inopblog) < g.agblocks)
        inside &= offs + g.inode_size <= fs.dev.size
        inos, agno, agino = inos[inside], agno[inside], agino[inside]
        # a slice at a time through one buffer: the records are checked and decoded while
        # they are in the CPU's cache, and a few MiB of fresh pages are touched, not all
        n = len(inos)
        buf = np.empty((min(n, cls.STEP), g.inode_size), dtype=np.uint8)
        goods, valss, dir_recs = [], [], []
        for lo in range(0, n, cls.STEP):
            hi = min(n, lo + cls.STEP)
            try:
                flat = gather(fs, agno[lo:hi], agino[lo:hi], buf[:hi - lo])
            except VDInspectError:
                return None
            good, vals = decode(fs, flat, inos[lo:hi].astype(np.uint64))
            dirs = np.flatnonzero(good)[(vals[:, 2] & S_IFMT) == S_IFDIR]
            goods.append(good)
            valss.append(vals)
            dir_recs.append(flat[dirs])  # a copy: the buffer is filled again
        good = np.concatenate(goods) if goods else np.zeros(0, dtype=bool)
        vals = np.concatenate(valss) if valss else np.zeros((0, 12), dtype=np.int64)
        where = np.full(n, -1, dtype=np.int64)
        where[good] = np.arange(int(good.sum()))
        dirs = np.flatnonzero(good)[(vals[:, 2] & S_IFMT) == S_IFDIR]
        recs = (np.concatenate(dir_recs) if dir_recs
                else np.zeros((0, g.inode_size), dtype=np.uint8))
        return cls(inos, where, vals, inos[dirs], recs)


def _table_values(table: InodeTable, live: Dirents) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`live_values` of live entries whose inodes the table decoded, every one (a
    whole listing's usual folder: a few numpy calls), else None."""
    signed = np.array(live.inos, dtype=np.uint64).view(np.int64)  # >= 2**63: no match
    j = table.inos.searchsorted(signed)
    np.minimum(j, len(table.inos) - 1, out=j)
    w = table.where[j]
    if not ((table.inos[j] == signed).all() and (w >= 0).all() and (signed > 0).all()):
        return None
    vals = table.vals[w]
    ft = np.array(live.ftypes, dtype=np.int64)
    ok = (ft == 0) | (ft == np.where((vals[:, 2] & S_IFMT) == S_IFDIR, 2, 1))
    if ok.all():
        return np.arange(len(vals)), vals
    keep = np.flatnonzero(ok)  # else the Entry path says so
    return keep, vals[keep]


def live_values(fs: XfsFileSystem, live: Dirents, table: InodeTable | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(keep, vals): the positions of the raw entries whose inode is a plain file or
    directory passing every check (magic, version, CRC, number, file type; removed
    entries never are), and their rows' integer runs (:func:`decode`), in that order. The
    others are left to the Entry path, which reports them. ``table``: inodes decoded
    beforehand; the others are read here."""
    n = len(live)
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 12), dtype=np.int64)
    if table is not None and len(table.inos) and not live.removed:
        got = _table_values(table, live)
        if got is not None:
            return got
    vals = np.zeros((n, 12), dtype=np.int64)
    have = np.zeros(n, dtype=bool)
    g = fs.geo
    isz = g.inode_size
    bits = g.agblklog + g.inopblog
    inos = np.array(live.inos, dtype=np.uint64)
    if live.removed:  # a removed entry's inode is never read here
        inos[np.array(live.deleted, dtype=bool)] = 0
    ft = np.array(live.ftypes, dtype=np.int64)
    todo = np.arange(n)
    if table is not None and len(table.inos):
        signed = inos.astype(np.int64)
        j = np.minimum(np.searchsorted(table.inos, signed), len(table.inos) - 1)
        hit = (table.inos[j] == signed) & (inos > 0)
        w = np.where(hit, table.where[j], -1)
        found = np.flatnonzero(w >= 0)
        vals[found] = table.vals[w[found]]
        have[found] = True
        todo = np.flatnonzero(~hit)
    if len(todo):
        sub = inos[todo]
        agno = (sub >> np.uint64(bits)).astype(np.int64)
        agino = (sub & np.uint64((1 << bits) - 1)).astype(np.int64)
        agbno = agino >> g.inopblog
        offs = ((agno * g.agblocks + agbno) * fs.block_size
                + (agino & ((1 << g.inopblog) - 1)) * isz)
        ok = (sub > 0) & (agno < g.agcount) & (agbno < g.agblocks)
        ok &= (offs >= 0) & (offs + isz <= fs.dev.size)
        idx = np.flatnonzero(ok)
        if len(idx):
            good, got = decode(fs, gather(fs, agno[idx], agino[idx]), sub[idx])
            at = todo[idx[good]]
            vals[at] = got
            have[at] = True
    isdir = (vals[:, 2] & S_IFMT) == S_IFDIR
    have &= (ft == 0) | (ft == np.where(isdir, 2, 1))  # else the Entry path says so
    keep = np.flatnonzero(have)
    return keep, vals[keep]
