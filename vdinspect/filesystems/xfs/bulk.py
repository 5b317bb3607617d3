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

from ...io import crc32c, crc32c_records
from ..base import DIR, FILE
from . import structs as S

if TYPE_CHECKING:
    from .fs import XfsFileSystem

S_IFMT, S_IFREG, S_IFDIR = 0o170000, 0o100000, 0o40000


@functools.lru_cache(maxsize=8)
def core_dtype(isz: int, v3: bool) -> np.dtype:
    """The inode core's fields (structs.Dinode) at their offsets in an ``isz``-byte record."""
    base = S.dtype(S.Dinode)
    last = len(S.DINODE_FIELDS) if v3 else S.DINODE_FIELDS.index("di_crc")
    names = [n for n in base.names if n in S.DINODE_FIELDS[:last]]
    return np.dtype({"names": names, "formats": [base.fields[n][0] for n in names],
                     "offsets": [base.fields[n][1] for n in names], "itemsize": isz})


def gather(fs: XfsFileSystem, agno: np.ndarray, agino: np.ndarray) -> np.ndarray:
    """The inode records ``(agno, agino)`` (each inside the volume) as an (n, isz) uint8
    array. Inodes are read a group of 64 (an inode chunk's worth, or one block when a
    block holds more) at a time, consecutive on disk, and the groups are cached."""
    g = fs.geo
    isz, bs = g.inode_size, fs.block_size
    glog = max(6, g.inopblog)
    n = len(agno)
    out = np.empty((n, isz), dtype=np.uint8)
    keys = (agno << 32) | (agino >> glog)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    cuts = [0, *(np.flatnonzero(sk[1:] != sk[:-1]) + 1).tolist(), n]
    for lo, hi in zip(cuts, cuts[1:]):
        grp = order[lo:hi]
        i0 = int(grp[0])
        a, first = int(agno[i0]), int(agino[i0]) >> glog << glog
        start = (a * g.agblocks + (first >> g.inopblog)) * bs
        length = min(isz << glog, fs.dev.size - start)
        recs = fs.inode_group(start, length)  # (whole records, isz) uint8
        rel = agino[grp] - first
        if int(rel.max()) < len(recs):
            out[grp] = recs[rel]
            continue
        for i, r in zip(grp.tolist(), rel.tolist()):  # cut short by the volume's end
            at = start + r * isz
            out[i] = np.frombuffer(fs.read_bytes(at, isz, "inode"), dtype=np.uint8)
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


def crc_good(recs: np.ndarray, at: int) -> np.ndarray:
    """Which (n, isz) records hold at byte ``at`` (little-endian) the CRC-32C of the record
    with those 4 bytes zeroed (the v5 inode rule)."""
    n, isz = recs.shape
    if not n:
        return np.zeros(0, dtype=bool)
    t = _crc_field_tables(isz, at)
    f = recs[:, at:at + 4]
    stored = f.copy().view("<u4").ravel()
    fix = t[0][f[:, 0]] ^ t[1][f[:, 1]] ^ t[2][f[:, 2]] ^ t[3][f[:, 3]]
    whole = np.array(crc32c_records(np.ascontiguousarray(recs), isz), dtype=np.uint32)
    return (whole ^ fix) == stored


def times_ns(raw: np.ndarray, bigtime: np.ndarray) -> np.ndarray:
    """int64 nanoseconds since the epoch of on-disk timestamps (bigtime or seconds and
    nanoseconds), as ``inode.decode_time`` reads one."""
    raw = raw.astype(np.uint64)
    big = (raw - np.uint64(S.BIGTIME_EPOCH_OFFSET * 10**9)).view(np.int64)
    sec = (raw >> np.uint64(32)).astype(np.uint32).view(np.int32).astype(np.int64)
    old = sec * 10**9 + (raw & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return np.where(bigtime, big, old)


def live_rows(fs: XfsFileSystem, live: list, dpath: str) -> list:
    """For each raw entry (None for a removed one), its files() row tuple and handle (the inode number of a
    directory, else None) when its inode is a plain file or directory passing every check
    (magic, version, CRC, number, file type), else None (the Entry path reports it)."""
    n = len(live)
    res: list = [None] * n
    if not n:
        return res
    g = fs.geo
    bs, isz = fs.block_size, g.inode_size
    bits = g.agblklog + g.inopblog
    inos = np.fromiter((0 if r.deleted else r.ino for r in live), dtype=np.uint64, count=n)
    agno = (inos >> np.uint64(bits)).astype(np.int64)
    agino = (inos & np.uint64((1 << bits) - 1)).astype(np.int64)
    agbno = agino >> g.inopblog
    offs = (agno * g.agblocks + agbno) * bs + (agino & ((1 << g.inopblog) - 1)) * isz
    ok = (inos > 0) & (agno < g.agcount) & (agbno < g.agblocks)
    ok &= (offs >= 0) & (offs + isz <= fs.dev.size)
    idx = np.flatnonzero(ok)
    if not len(idx):
        return res
    flat = gather(fs, agno[idx], agino[idx])
    recs = flat.view(core_dtype(isz, g.crc)).ravel()
    mode = recs["di_mode"].astype(np.int64)
    fmt = mode & S_IFMT
    ver = recs["di_version"]
    good = (recs["di_magic"] == S.XFS_DINODE_MAGIC) & ((fmt == S_IFREG) | (fmt == S_IFDIR))
    good &= (recs["di_size"] < 1 << 63) & (recs["di_nblocks"] < (1 << 63) // bs)
    good &= (ver == 3) if g.crc else ((ver == 1) | (ver == 2))
    ft = np.fromiter((live[i].ftype for i in idx.tolist()), dtype=np.int64, count=len(idx))
    good &= (ft == 0) | ((ft == 1) & (fmt == S_IFREG)) | ((ft == 2) & (fmt == S_IFDIR))
    if g.crc:
        good &= recs["di_ino"] == inos[idx]
        sel = np.flatnonzero(good)
        good[sel] = crc_good(flat[sel], S.DINODE_CRC_OFF)
    keep = np.flatnonzero(good)
    if not len(keep):
        return res
    recs = flat[keep].view(core_dtype(isz, g.crc)).ravel()  # rows: a plain copy
    # size, allocated, mode, uid, gid, created, modified, accessed, changed, inode, links:
    # the row's contiguous integer run, made in one array and listed row by row
    vals = np.empty((len(keep), 12), dtype=np.int64)
    vals[:, 0] = recs["di_size"]
    vals[:, 1] = recs["di_nblocks"].astype(np.int64) * bs
    vals[:, 2] = mode[keep]
    vals[:, 3] = recs["di_uid"]
    vals[:, 4] = recs["di_gid"]
    stamps = ["di_crtime"] if g.crc else []
    stamps += ["di_mtime", "di_atime", "di_ctime"]
    raw = np.column_stack([recs[f] for f in stamps])
    big = ((recs["di_flags2"] & S.DIFLAG2_BIGTIME) != 0) if g.crc else np.zeros(
        len(keep), dtype=bool)
    vals[:, 9 - len(stamps):9] = times_ns(raw, big[:, None])
    vals[:, 9] = inos[idx[keep]]
    vals[:, 10] = np.where(recs["di_version"] == 1, recs["di_onlink"], recs["di_nlink"])
    vals[:, 11] = recs["di_flags"]
    isdir = (vals[:, 2] & S_IFMT) == S_IFDIR
    prefix = "/" if dpath in ("", "/") else dpath + "/"
    v5 = g.crc
    for i, d, v in zip(idx[keep].tolist(), isdir.tolist(), vals.tolist()):
        name = live[i].name.decode("utf-8", "surrogateescape")
        if not v5:
            v[5] = None
        res[i] = ((prefix + name, name, dpath, DIR if d else FILE, *v[:11], False, False,
                   None, v[11], None, "index"), v[9] if d else None)
    return res
