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

from dataclasses import dataclass

from construct import Bytes, Enum, Int8ul, Int16ul, Int32ul, Struct

from ...layout import flag_values, numpy_dtype, offset_of, struct_format
from ...lazy import np
from .superblock import HashVersion

# --- codes ------------------------------------------------------------------------------

#: file_type of an entry (filetype feature); 0xDE marks the checksum tail
FileType = Enum(
    Int8ul,
    unknown=0,
    reg_file=1,
    dir=2,
    chrdev=3,
    blkdev=4,
    fifo=5,
    sock=6,
    symlink=7,
    dir_csum=0xDE,
)
_FT = flag_values(FileType)
FT_REG_FILE, FT_DIR, FT_SYMLINK = _FT["reg_file"], _FT["dir"], _FT["symlink"]
FT_DIR_CSUM = _FT["dir_csum"]

# --- on-disk structures ----------------------------------------------------------------

DirEntry = Struct(
    "inode" / Int32ul * "inode number (0 = unused entry)",
    "rec_len" / Int16ul * "bytes to the next entry",
    "name_len" / Int16ul * "name length, bytes",
)  # 8 bytes, then the name, padded to 4 (without the filetype feature)

DirEntry2 = Struct(
    "inode" / Int32ul * "inode number (0 = unused entry)",
    "rec_len" / Int16ul * "bytes to the next entry",
    "name_len" / Int8ul * "name length, bytes",
    "file_type" / FileType * "1 file, 2 dir, 3 chr, 4 blk, 5 fifo, 6 sock, 7 symlink",
)  # 8 bytes, then the name, padded to 4 (filetype feature: the high byte of name_len)

DirEntryTail = Struct(
    "det_reserved_zero1" / Int32ul * "0 (looks like an unused entry)",
    "det_rec_len" / Int16ul * "12",
    "det_reserved_zero2" / Int8ul * "0 (name_len)",
    "det_reserved_ft" / FileType * "0xDE",
    "det_checksum" / Int32ul * "crc32c of the block up to here",
)  # 12 bytes at the end of a leaf block (metadata_csum)

DxRootInfo = Struct(
    "reserved_zero" / Int32ul * "0",
    "hash_version" / HashVersion * "0 legacy, 1 half MD4, 2 tea, 3-5 unsigned variants, 6 siphash",
    "info_length" / Int8ul * "8",
    "indirect_levels" / Int8ul * "levels of interior nodes below the root",
    "unused_flags" / Int8ul * "0",
)

DxRoot = Struct(
    "dot" / DirEntry2 * "the fake \".\" entry (rec_len 12)",
    "dot_name" / Bytes(4) * "\".\" and padding",
    "dotdot" / DirEntry2 * "the fake \"..\" entry, spanning the rest of the block",
    "dotdot_name" / Bytes(4) * "\"..\" and padding",
    "dx_root_info" / DxRootInfo * "the htree's parameters",
    "limit" / Int16ul * "capacity of the root, entries (the header counts as one)",
    "count" / Int16ul * "entries used (the header counts as one)",
    "block" / Int32ul * "logical block of the child for the lowest hashes",
)  # block 0 of a hashed directory; DxEntry records follow

DxNode = Struct(
    "fake" / DirEntry2 * "inode 0, rec_len = block size: an empty entry",
    "limit" / Int16ul * "capacity of this node, entries (the header counts as one)",
    "count" / Int16ul * "entries used (the header counts as one)",
    "block" / Int32ul * "logical block of the child for the lowest hashes",
)  # an interior htree block; DxEntry records follow

DxEntry = Struct(
    "hash" / Int32ul * "lowest hash of the child (absent in the first entry)",
    "block" / Int32ul * "logical block of the child within the directory",
)

# fast decoders, generated from the layouts above
_DIRENT = struct_format(DirEntry2)
_HEAD = _DIRENT.size  # the name follows
_TAIL = DirEntryTail.sizeof()
_DX_ROOT = struct_format(DxRoot)
_DX_NODE = struct_format(DxNode)
_DX_INFO_AT = offset_of(DxRoot, "dx_root_info.reserved_zero")
_DX_NODE_AT = offset_of(DxNode, "limit")
_DX_ENTRY_SIZE = DxEntry.sizeof()


@dataclass(slots=True)
class RawDirent:
    """One entry found in a directory block: live, or recovered from slack (deleted)."""

    inode: int
    name: bytes
    file_type: int
    offset: int  # byte offset inside the directory's content (or region)
    deleted: bool
    found_by: str = "index"  # "journal": from an older copy of the block (history.py)
    note: str | None = None


class LiveColumns:
    """The entries of a directory that holds live entries only (nothing removed, nothing
    odd), as columns: what :func:`scan_live_block` appends to; ``raws()`` gives the
    :class:`RawDirent` list :func:`parse_dir_block` would have made."""

    __slots__ = ("inodes", "names", "file_types", "offsets")

    def __init__(self) -> None:
        self.inodes: list[int] = []
        self.names: list[bytes] = []
        self.file_types: list[int] = []
        self.offsets: list[int] = []

    def __len__(self) -> int:
        return len(self.inodes)

    def raws(self) -> list[RawDirent]:
        """The entries as objects."""
        return [RawDirent(i, n, t, o, False)
                for i, n, t, o in zip(self.inodes, self.names, self.file_types, self.offsets)]


def rec_len_from_disk(v: int, block_size: int) -> int:
    """The kernel's rec_len decoding (65536-byte blocks store 65536 as 0 or 65535)."""
    if block_size < 65536:
        return v
    if v in (0, 65535):
        return block_size
    return (v & 65532) | ((v & 3) << 16)


def entry_size(name_len: int) -> int:
    """The bytes a live entry with this name needs (8 + name, rounded up to 4)."""
    return (_HEAD + name_len + 3) & ~3


_SMALLEST = entry_size(1)  # 12: the room a removed entry with a name needs


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
    head, tail = _HEAD, _TAIL
    big = block_size >= 65536  # only then is rec_len stored in another form
    while pos + head <= n:
        ino, rec_len, name_len, ftype = unpack(buf, pos)
        if big:
            rec_len = rec_len_from_disk(rec_len, block_size)
        if not filetype:
            name_len |= ftype << 8
            ftype = 0
        if rec_len < head or rec_len % 4 or pos + rec_len > n or head + name_len > rec_len:
            if problems is not None:
                problems.append(
                    (base + pos, f"bad directory entry (rec_len {rec_len}, name_len {name_len})")
                )
            if deleted:
                out.extend(_scan_slack(buf, pos, n, base, filetype, inodes_count))
            break
        if ino == 0 and rec_len == tail and not name_len and ftype == FT_DIR_CSUM and pos + tail == n:
            break  # checksum tail
        name = buf[pos + head : pos + head + name_len]
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
        used = (head + name_len + 3) & ~3 if (ino or name_len) else head  # entry_size()
        if deleted and rec_len - used >= _SMALLEST and pos != skip_slack_after:
            out.extend(_scan_slack(buf, pos + used, pos + rec_len, base, filetype, inodes_count))
        pos += rec_len
        index += 1
    return out


def scan_live_block(
    buf: bytes,
    base: int,
    out: LiveColumns,
    inodes_count: int,
    deleted: bool,
    skip_slack_after: int = -1,
) -> bool:
    """The live entries of one block appended to ``out``, on a volume with the filetype
    feature and blocks under 64 KiB: the entries :func:`parse_dir_block` finds, without
    an object each. False (``out`` then holds part of the block) when the block holds
    anything else: a broken chain, an inode past the count, a removed first entry, a
    removed entry in slack (``deleted``); the caller then parses it the full way, which
    reports it."""
    n = len(buf)
    pos = 0
    unpack = _DIRENT.unpack_from
    head, tail, smallest = _HEAD, _TAIL, _SMALLEST
    inos, names, ftypes, offsets = out.inodes, out.names, out.file_types, out.offsets
    first = base == 0  # "." and ".." are the first two entries of block 0
    index = 0
    while pos + head <= n:
        ino, rec_len, name_len, ftype = unpack(buf, pos)
        if rec_len < head or rec_len % 4 or pos + rec_len > n or head + name_len > rec_len:
            return False
        if ino:
            if ino > inodes_count:
                return False
            name = buf[pos + head : pos + head + name_len]
            if not (first and index < 2 and name == (b".", b"..")[index]):
                inos.append(ino)
                names.append(name)
                ftypes.append(ftype)
                offsets.append(base + pos)
            used = (head + name_len + 3) & ~3
        elif name_len:
            return False  # a removed first entry, or a name the full parse looks at
        elif rec_len == tail and ftype == FT_DIR_CSUM and pos + tail == n:
            return True  # the checksum tail
        else:
            used = head
        if (deleted and rec_len - used >= smallest and pos != skip_slack_after
                and _scan_slack(buf, pos + used, pos + rec_len, base, True, inodes_count)):
            return False
        pos += rec_len
        index += 1
    return True


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
    end = start + lead + len(body) + _HEAD  # an entry's header may end in zero bytes
    end = min(end, start + len(region))
    pos = (start + lead) & ~3
    pos = max(pos, (start + 3) & ~3)
    n = len(buf)
    unpack = _DIRENT.unpack_from
    while pos + _SMALLEST <= end:
        ino, rec_len, name_len, ftype = unpack(buf, pos)
        if not filetype:
            name_len |= ftype << 8
            ftype = 0
        ok = (
            0 < ino <= inodes_count
            and name_len > 0
            and pos + _HEAD + name_len <= end
            and rec_len >= entry_size(name_len)
            and rec_len % 4 == 0
            and pos + rec_len <= n
            and ftype <= 7
        )
        if ok:
            name = buf[pos + _HEAD : pos + _HEAD + name_len]
            if _plausible_name(name) and name not in (b".", b".."):
                out.append(RawDirent(ino, name, ftype, base + pos, True))
                pos += entry_size(name_len)
                continue
        pos += 4
    return out


def _children(block: bytes, start: int, count: int) -> list[int]:
    """The child blocks of ``count`` DxEntry records from ``start`` (the first record's
    hash field holds limit and count instead)."""
    return np.frombuffer(block, dtype=numpy_dtype(DxEntry), count=count,
                         offset=start)["block"].tolist()


def parse_dx_root(block0: bytes, block_size: int) -> tuple[int, int, list[int]] | None:
    """(hash_version, indirect_levels, child blocks) of an htree root block, or None."""
    if len(block0) < _DX_ROOT.size:
        return None
    (_i, dot_rec, _nl, _ft, _dn, _i2, _r2, _nl2, _ft2, _dn2,
     _z, hver, info_len, levels, _f, limit, count, _first) = _DX_ROOT.unpack_from(block0, 0)  # fmt: skip
    if dot_rec != _SMALLEST:  # "." with its padded name: 12 bytes
        return None
    if info_len != 8 or levels > 3:
        return None
    start = _DX_INFO_AT + info_len
    cap = (block_size - start) // _DX_ENTRY_SIZE
    if not 0 < count <= limit <= cap:
        return None
    return hver, levels, _children(block0, start, count)


def parse_dx_node(block: bytes, block_size: int) -> list[int] | None:
    """The child blocks of an htree interior node, or None if it is not one."""
    if len(block) < _DX_NODE.size:
        return None
    ino, rec_len, name_len, _ft, limit, count, _first = _DX_NODE.unpack_from(block, 0)
    if ino != 0 or name_len != 0 or rec_len_from_disk(rec_len, block_size) != block_size:
        return None
    cap = (block_size - _DX_NODE_AT) // _DX_ENTRY_SIZE
    if not 0 < count <= limit <= cap:
        return None
    return _children(block, _DX_NODE_AT, count)


__all__ = [
    "DirEntry2",
    "DirEntryTail",
    "DirEntry",
    "DxRootInfo",
    "DxRoot",
    "DxNode",
    "DxEntry",
    "FileType",
    "RawDirent",
    "LiveColumns",
    "parse_dir_block",
    "scan_live_block",
    "parse_dx_root",
    "parse_dx_node",
    "entry_size",
    "rec_len_from_disk",
]
