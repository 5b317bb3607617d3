"""XFS extended attributes: short form (in the inode's attribute fork), leaf blocks and
node (dabtree) forms; values kept locally in a leaf or in remote blocks (v5 remote
blocks start with a 56-byte header). Attribute blocks are one filesystem block each.

Names get the Linux namespace prefix of their flags: ``trusted.`` (ROOT),
``security.`` (SECURE), else ``user.``; parent pointers and incomplete entries are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import CorruptImage
from ...io.mapped import MappedSource
from . import structs as S
from .bmap import fork_source
from .superblock import crc_ok

if TYPE_CHECKING:
    from .fs import XfsFileSystem
    from .inode import Inode

MAX_DA_LEVELS = 5
LEAF_MAGICS = (S.XFS_ATTR_LEAF_MAGIC, S.XFS_ATTR3_LEAF_MAGIC)
NODE_MAGICS = (S.XFS_DA_NODE_MAGIC, S.XFS_DA3_NODE_MAGIC)


def _prefix(flags: int) -> str | None:
    if flags & (S.ATTR_INCOMPLETE | S.ATTR_PARENT):
        return None
    if flags & S.ATTR_ROOT:
        return "trusted."
    if flags & S.ATTR_SECURE:
        return "security."
    return "user."


def read_xattrs(fs: XfsFileSystem, rec: Inode) -> dict[str, bytes]:
    """The extended attributes of an inode, name -> value."""
    where = f"inode {rec.number} attributes"
    if not rec.f["di_forkoff"]:
        return {}
    if rec.aformat == S.FMT_LOCAL:
        return _shortform(fs, rec.attr_fork, where, rec.offset)
    if rec.aformat not in (S.FMT_EXTENTS, S.FMT_BTREE):
        fs.problem(where, rec.offset, f"attribute fork format {rec.aformat}")
        return {}
    emap = fs.fork_map(rec, attr=True)
    if not len(emap):
        return {}
    bs = fs.block_size
    nblocks = int((emap.startoff + emap.count).max())
    src = fork_source(fs.dev, bs, nblocks * bs, emap, where)
    reader = _Blocks(fs, src, bs, nblocks, where)
    out: dict[str, bytes] = {}
    blk = 0
    for _ in range(MAX_DA_LEVELS + 1):  # down the leftmost path to the first leaf
        data = reader.block(blk)
        magic = S.DA_BLKINFO_FMT.unpack_from(data, 0)[2]
        if magic in LEAF_MAGICS:
            break
        if magic not in NODE_MAGICS:
            fs.problem(where, rec.offset, f"attribute block {blk} has magic {magic:#x}")
            return out
        hdr = S.DA3_NODE_HDR_V5 if fs.geo.crc else S.DA_NODE_HDR_V4
        blk = S.DA_NODE_ENTRY_FMT.unpack_from(data, hdr)[1]
    else:
        fs.problem(where, rec.offset, "attribute node tree deeper than allowed")
        return out
    seen: set[int] = set()
    while blk not in seen and len(seen) < nblocks:
        seen.add(blk)
        data = reader.block(blk)
        if S.DA_BLKINFO_FMT.unpack_from(data, 0)[2] not in LEAF_MAGICS:
            fs.problem(where, rec.offset, f"attribute block {blk} is not a leaf")
            break
        _leaf(fs, reader, data, out, where)
        blk = S.DA_BLKINFO_FMT.unpack_from(data, 0)[0]
        if not blk:
            break
    return out


class _Blocks:
    """Attribute fork blocks by logical number, CRC-checked on v5."""

    def __init__(self, fs: XfsFileSystem, src: MappedSource, bs: int, n: int,
                 where: str) -> None:
        self.fs, self.src, self.bs, self.n, self.where = fs, src, bs, n, where

    def block(self, i: int) -> bytes:
        if not 0 <= i < self.n:
            self.fs.fail(CorruptImage, f"attribute block {i} is past the fork", self.where)
        data = self.src.read(i * self.bs, self.bs)
        magic = S.DA_BLKINFO_FMT.unpack_from(data, 0)[2]
        if self.fs.geo.crc and magic in (S.XFS_ATTR3_LEAF_MAGIC, S.XFS_DA3_NODE_MAGIC):
            if not crc_ok(data, S.DA3_CRC_OFF):
                self.fs.problem(self.where, None, f"attribute block {i} CRC-32C mismatch")
        return data

    def remote(self, blk: int, length: int) -> bytes:
        """A remote value of ``length`` bytes starting at logical block ``blk``."""
        if not self.fs.geo.crc:
            if blk < 0 or blk * self.bs + length > self.n * self.bs:
                self.fs.fail(CorruptImage, "remote attribute value past the fork", self.where)
            return self.src.read(blk * self.bs, length)
        parts = []
        got = 0
        hdr = S.RMT_HDR_SIZE
        while got < length:
            data = self.block(blk)
            magic, off, nbytes = S.RMT_HDR_FMT.unpack_from(data, 0)[:3]
            if magic != S.XFS_ATTR3_RMT_MAGIC or off != got or nbytes > self.bs - hdr or (
                    not nbytes):
                self.fs.problem(self.where, None, f"remote value block {blk} has a bad header")
                break
            if not crc_ok(data, S.RMT_CRC_OFF):
                self.fs.problem(self.where, None, f"remote value block {blk} CRC-32C mismatch")
            parts.append(data[hdr:hdr + nbytes])
            got += nbytes
            blk += 1
        return b"".join(parts)[:length]


def _shortform(fs: XfsFileSystem, fork: bytes, where: str, at: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if len(fork) < S.ATTR_SF_HDR_FMT.size:
        return out
    totsize, count, _pad = S.ATTR_SF_HDR_FMT.unpack_from(fork, 0)
    end = min(totsize, len(fork))
    pos = S.ATTR_SF_HDR_FMT.size
    for _ in range(count):
        if pos + S.ATTR_SF_ENTRY_FMT.size > end:
            fs.problem(where, at, "short-form attributes run past the fork")
            break
        namelen, valuelen, flags = S.ATTR_SF_ENTRY_FMT.unpack_from(fork, pos)
        p = pos + S.ATTR_SF_ENTRY_FMT.size
        if p + namelen + valuelen > end:
            fs.problem(where, at, "short-form attribute runs past the fork")
            break
        prefix = _prefix(flags)
        if prefix:
            name = fork[p:p + namelen].decode("utf-8", "surrogateescape")
            out[prefix + name] = fork[p + namelen:p + namelen + valuelen]
        pos = p + namelen + valuelen
    return out


def _leaf(fs: XfsFileSystem, reader: _Blocks, data: bytes, out: dict, where: str) -> None:
    hdr_size = S.ATTR3_LEAF_HDR_V5 if fs.geo.crc else S.ATTR_LEAF_HDR_V4
    count_fmt = S.ATTR3_LEAF_COUNT_V5 if fs.geo.crc else S.ATTR_LEAF_COUNT_V4
    count = count_fmt.unpack_from(data)[0] if len(data) >= count_fmt.size else 0
    bs = len(data)
    ent = S.ATTR_LEAF_ENTRY_FMT
    if hdr_size + count * ent.size > bs:
        fs.problem(where, None, f"{count} attribute entries do not fit in a block")
        count = (bs - hdr_size) // ent.size
    for k in range(count):
        _hash, idx, flags, _pad = ent.unpack_from(data, hdr_size + k * ent.size)
        prefix = _prefix(flags)
        if prefix is None:
            continue
        if flags & S.ATTR_LOCAL:
            if idx + S.ATTR_NAME_LOCAL_FMT.size > bs:
                fs.problem(where, None, "attribute name past the block")
                continue
            vlen, nlen = S.ATTR_NAME_LOCAL_FMT.unpack_from(data, idx)
            p = idx + S.ATTR_NAME_LOCAL_FMT.size
            if p + nlen + vlen > bs:
                fs.problem(where, None, "attribute value past the block")
                continue
            out[prefix + data[p:p + nlen].decode("utf-8", "surrogateescape")] = (
                data[p + nlen:p + nlen + vlen])
        else:
            if idx + S.ATTR_NAME_REMOTE_FMT.size > bs:
                fs.problem(where, None, "attribute name past the block")
                continue
            vblk, vlen, nlen = S.ATTR_NAME_REMOTE_FMT.unpack_from(data, idx)
            p = idx + S.ATTR_NAME_REMOTE_FMT.size
            name = data[p:p + nlen].decode("utf-8", "surrogateescape")
            if vlen > 1 << 16:
                fs.problem(where, None, f"attribute {name} value of {vlen} bytes (max 64 KiB)")
                continue
            out[prefix + name] = reader.remote(vblk, vlen)
