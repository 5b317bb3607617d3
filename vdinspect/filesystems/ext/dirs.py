"""ext2/3/4 directories: linear entry lists, htree index blocks, slack, inline directories.

A directory's blocks hold a chain of entries (inode, rec_len, name_len, file_type, name);
``rec_len`` runs to the next entry, so the last entry of a block spans to its end. Removing
an entry adds its ``rec_len`` to the entry before it (or zeroes the inode number of the
first entry in a block): the removed entry's bytes stay in the survivor's slack until
overwritten, which is where deleted names are found. With metadata_csum every leaf block
ends in a 12-byte fake entry (inode 0, rec_len 12, name_len 0, type 0xDE) holding the
block's crc32c. Hashed (htree) directories keep their index in block 0 (after fake "."
and ".." entries, ".." spanning the block) and in interior blocks that look like one
empty entry spanning the block; neither holds names, and their slack is index data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from construct import Int8ul, Int16ul, Int32ul, Struct

# --- on-disk structures ----------------------------------------------------------------

DirEntry2 = Struct(
    "inode" / Int32ul * "inode number (0 = unused entry)",
    "rec_len" / Int16ul * "bytes to the next entry",
    "name_len" / Int8ul * "name length, bytes",
    "file_type" / Int8ul * "1 file, 2 dir, 3 chr, 4 blk, 5 fifo, 6 sock, 7 symlink (filetype)",
)  # 8 bytes, then the name, padded to 4 (without filetype: name_len is 16 bits)

DirEntryTail = Struct(
    "det_reserved_zero1" / Int32ul * "0 (looks like an unused entry)",
    "det_rec_len" / Int16ul * "12",
    "det_reserved_zero2" / Int8ul * "0 (name_len)",
    "det_reserved_ft" / Int8ul * "0xDE",
    "det_checksum" / Int32ul * "crc32c of the block up to here",
)  # 12 bytes at the end of a leaf block (metadata_csum)

DxRootInfo = Struct(
    "reserved_zero" / Int32ul * "0",
    "hash_version" / Int8ul * "0 legacy, 1 half MD4, 2 tea, 3-5 unsigned variants, 6 siphash",
    "info_length" / Int8ul * "8",
    "indirect_levels" / Int8ul * "levels of interior nodes below the root",
    "unused_flags" / Int8ul * "0",
)  # at byte 24 of block 0 (after the fake "." and ".." entries)

DxCountLimit = Struct(
    "limit" / Int16ul * "capacity of this node, entries (the header counts as one)",
    "count" / Int16ul * "entries used (the header counts as one)",
)

DxEntry = Struct(
    "hash" / Int32ul * "lowest hash of the child (absent in the first entry)",
    "block" / Int32ul * "logical block of the child within the directory",
)

FT_NAMES = {1: "file", 2: "dir", 3: "chr", 4: "blk", 5: "fifo", 6: "sock", 7: "symlink"}
FT_DIR_CSUM = 0xDE
_DIRENT = struct.Struct("<IHBB")
_DXROOT = struct.Struct("<IBBBBHHI")


@dataclass(slots=True)
class RawDirent:
    """One entry found in a directory block: live, or recovered from slack (deleted)."""

    inode: int
    name: bytes
    file_type: int
    offset: int  # byte offset inside the directory's content (or region)
    deleted: bool


def rec_len_from_disk(v: int, block_size: int) -> int:
    """The kernel's rec_len decoding (65536-byte blocks store 65536 as 0 or 65535)."""
    if block_size < 65536:
        return v
    if v in (0, 65535):
        return block_size
    return (v & 65532) | ((v & 3) << 16)


def entry_size(name_len: int) -> int:
    """The bytes a live entry with this name needs (8 + name, rounded up to 4)."""
    return (8 + name_len + 3) & ~3


def _plausible_name(name: bytes) -> bool:
    return bool(name) and b"\0" not in name and b"/" not in name


def parse_dir_block(
    buf: bytes,
    base: int,
    *,
    filetype: bool,
    inodes_count: int,
    block_size: int,
    deleted: bool,
    skip_slack_after: int = -1,
    problems: list | None = None,
) -> list[RawDirent]:
    """The entries of one directory block (or inline region) ``buf``.

    ``base`` is the block's offset in the directory (reported in ``offset``). Live entries
    come in chain order; with ``deleted`` the slack of each entry is searched for removed
    entries. ``skip_slack_after`` (an offset in ``buf``) marks an htree root's ".." whose
    slack is index data. A broken chain stops the walk and is appended to ``problems``.
    """
    out: list[RawDirent] = []
    n = len(buf)
    pos = 0
    index = 0  # of the entry in this block: "." and ".." are the first two of block 0
    unpack = _DIRENT.unpack_from
    while pos + 8 <= n:
        ino, rec_len, name_len, ftype = unpack(buf, pos)
        rec_len = rec_len_from_disk(rec_len, block_size)
        if not filetype:
            name_len |= ftype << 8
            ftype = 0
        if rec_len < 8 or rec_len % 4 or pos + rec_len > n or 8 + name_len > rec_len:
            if problems is not None:
                problems.append(
                    (base + pos, f"bad directory entry (rec_len {rec_len}, name_len {name_len})")
                )
            if deleted:
                out.extend(_scan_slack(buf, pos, n, base, filetype, inodes_count))
            break
        if ino == 0 and rec_len == 12 and name_len == 0 and ftype == FT_DIR_CSUM and pos + 12 == n:
            break  # checksum tail
        name = buf[pos + 8 : pos + 8 + name_len]
        if ino:
            if base == 0 and index < 2 and name == (b".", b"..")[index]:
                pass  # elsewhere a "." or ".." is a hostile name, listed like any other
            elif ino <= inodes_count:
                out.append(RawDirent(ino, name, ftype, base + pos, False))
            elif problems is not None:
                problems.append(
                    (
                        base + pos,
                        f"entry {name!r} names inode {ino}, beyond the inode count {inodes_count}",
                    )
                )
        elif name_len and deleted and _plausible_name(name):
            # the first entry of a block, removed: the inode number is gone
            out.append(RawDirent(0, name, ftype, base + pos, True))
        used = entry_size(name_len) if (ino or name_len) else 8
        if deleted and rec_len - used >= 12 and pos != skip_slack_after:
            out.extend(_scan_slack(buf, pos + used, pos + rec_len, base, filetype, inodes_count))
        pos += rec_len
        index += 1
    return out


def _scan_slack(
    buf: bytes, start: int, end: int, base: int, filetype: bool, inodes_count: int
) -> list[RawDirent]:
    """Removed entries inside ``buf[start:end]`` (a live entry's unused tail)."""
    out = []
    region = buf[start:end]
    body = region.strip(b"\0")
    if not body:
        return out  # all zeros: nothing was ever here
    lead = region.index(body[:1])
    end = start + lead + len(body) + 8  # an entry's header may end in zero bytes
    end = min(end, start + len(region))
    pos = (start + lead) & ~3
    pos = max(pos, (start + 3) & ~3)
    n = len(buf)
    unpack = _DIRENT.unpack_from
    while pos + 12 <= end:
        ino, rec_len, name_len, ftype = unpack(buf, pos)
        if not filetype:
            name_len |= ftype << 8
            ftype = 0
        ok = (
            0 < ino <= inodes_count
            and name_len > 0
            and pos + 8 + name_len <= end
            and rec_len >= entry_size(name_len)
            and rec_len % 4 == 0
            and pos + rec_len <= n
            and ftype <= 7
        )
        if ok:
            name = buf[pos + 8 : pos + 8 + name_len]
            if _plausible_name(name) and name not in (b".", b".."):
                out.append(RawDirent(ino, name, ftype, base + pos, True))
                pos += entry_size(name_len)
                continue
        pos += 4
    return out


def parse_dx_root(block0: bytes, block_size: int) -> tuple[int, int, list[int]] | None:
    """(hash_version, indirect_levels, child blocks) of an htree root block, or None."""
    if len(block0) < 40:
        return None
    dot_rec = _DIRENT.unpack_from(block0, 0)[1]
    if dot_rec != 12:
        return None
    _z, hver, info_len, levels, _f, limit, count, first = _DXROOT.unpack_from(block0, 24)
    if info_len != 8 or levels > 3:
        return None
    start = 24 + info_len
    cap = (block_size - start) // 8
    if not 0 < count <= limit <= cap:
        return None
    children = [first]
    for i in range(1, count):
        children.append(struct.unpack_from("<I", block0, start + 8 * i + 4)[0])
    return hver, levels, children


def parse_dx_node(block: bytes, block_size: int) -> list[int] | None:
    """The child blocks of an htree interior node, or None if it is not one."""
    if len(block) < 16:
        return None
    ino, rec_len, name_len, _ft = _DIRENT.unpack_from(block, 0)
    if ino != 0 or name_len != 0 or rec_len_from_disk(rec_len, block_size) != block_size:
        return None
    limit, count, first = struct.unpack_from("<HHI", block, 8)
    cap = (block_size - 8) // 8
    if not 0 < count <= limit <= cap:
        return None
    out = [first]
    for i in range(1, count):
        out.append(struct.unpack_from("<I", block, 8 + 8 * i + 4)[0])
    return out


__all__ = [
    "DirEntry2",
    "DirEntryTail",
    "DxRootInfo",
    "DxCountLimit",
    "DxEntry",
    "RawDirent",
    "parse_dir_block",
    "parse_dx_root",
    "parse_dx_node",
    "FT_NAMES",
    "entry_size",
    "rec_len_from_disk",
]
