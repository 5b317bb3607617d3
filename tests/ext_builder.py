"""Patch tool-made ext2/3/4 images into variants no tool here writes, for tests.

Written from the kernel's "ext4 Data Structures and Algorithms" with ``struct`` and a
bit-by-bit CRC-32C, independently of vdinspect's construct structs: a test compares
vdinspect with bytes placed here. Images start as real ``mke2fs`` output; this module only
changes documented fields (superblock counts, inode ``i_block``, directory ``rec_len``,
extent nodes) and recomputes the superblock checksum when metadata_csum is on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from tests.tools import write_sparse

SB_OFFSET = 1024
METADATA_CSUM = 0x400
EXTENT_MAGIC = 0xF30A


def crc32c_raw(seed: int, data: bytes) -> int:
    """CRC-32C as ext4 uses it: reflected 0x82F63B78, from ``seed``, no final inversion."""
    crc = seed
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc


@dataclass
class Geometry:
    """The few superblock and descriptor numbers the patches need."""

    block_size: int
    inodes_per_group: int
    inode_size: int
    desc_size: int
    first_data_block: int
    blocks_count: int
    ro_compat: int
    inode_tables: list[int]


def geometry(img: bytes | bytearray) -> Geometry:
    """Read the superblock and the group descriptor table (documented offsets)."""
    sb = img[SB_OFFSET : SB_OFFSET + 1024]
    (blocks_lo, _r, _f, _fi, first_data, log_bs) = struct.unpack_from("<IIIIII", sb, 4)
    bpg, _cpg, ipg = struct.unpack_from("<III", sb, 0x20)
    incompat, ro_compat = struct.unpack_from("<II", sb, 0x60)
    inode_size = struct.unpack_from("<H", sb, 0x58)[0]
    bs = 1024 << log_bs
    is64 = bool(incompat & 0x80)
    desc_size = struct.unpack_from("<H", sb, 0xFE)[0] if is64 else 32
    blocks = blocks_lo | (struct.unpack_from("<I", sb, 0x150)[0] << 32 if is64 else 0)
    groups = -(-(blocks - first_data) // bpg)
    gdt = (1024 // bs + 1) * bs
    tables = []
    for g in range(groups):
        d = img[gdt + g * desc_size : gdt + (g + 1) * desc_size]
        lo = struct.unpack_from("<I", d, 8)[0]
        hi = struct.unpack_from("<I", d, 0x28)[0] if desc_size >= 64 else 0
        tables.append(lo | hi << 32)
    return Geometry(bs, ipg, inode_size, desc_size, first_data, blocks, ro_compat, tables)


def inode_offset(geo: Geometry, ino: int) -> int:
    g, i = divmod(ino - 1, geo.inodes_per_group)
    return geo.inode_tables[g] * geo.block_size + i * geo.inode_size


def fix_superblock_checksum(img: bytearray) -> None:
    """Recompute s_checksum (crc32c of the first 1020 bytes) when metadata_csum is on."""
    ro = struct.unpack_from("<I", img, SB_OFFSET + 0x64)[0]
    if ro & METADATA_CSUM:
        c = crc32c_raw(0xFFFFFFFF, bytes(img[SB_OFFSET : SB_OFFSET + 0x3FC]))
        struct.pack_into("<I", img, SB_OFFSET + 0x3FC, c)


def patch_superblock(path: Path, fields: dict[int, tuple[str, int]]) -> None:
    """Set superblock fields {offset: (struct format, value)} and fix the checksum."""
    img = bytearray(Path(path).read_bytes())
    for off, (fmt, value) in fields.items():
        struct.pack_into(fmt, img, SB_OFFSET + off, value)
    fix_superblock_checksum(img)
    write_sparse(path, img)


def zero_primary_superblock(path: Path) -> None:
    """Wipe the primary superblock (bytes 1024..2047); the backups stay."""
    img = bytearray(Path(path).read_bytes())
    img[SB_OFFSET : SB_OFFSET + 1024] = bytes(1024)
    write_sparse(path, img)


def i_block(img: bytes | bytearray, geo: Geometry, ino: int) -> bytes:
    off = inode_offset(geo, ino)
    return bytes(img[off + 0x28 : off + 0x28 + 60])


def set_i_block(img: bytearray, geo: Geometry, ino: int, data: bytes) -> None:
    off = inode_offset(geo, ino)
    img[off + 0x28 : off + 0x28 + 60] = data.ljust(60, b"\0")


def extent_header(entries: int, max_entries: int, depth: int) -> bytes:
    return struct.pack("<HHHHI", EXTENT_MAGIC, entries, max_entries, depth, 0)


def extent_index(lblk: int, child: int) -> bytes:
    return struct.pack("<IIHH", lblk, child & 0xFFFFFFFF, child >> 32, 0)


def extent_leaf(lblk: int, length: int, start: int) -> bytes:
    return struct.pack("<IHHI", lblk, length, start >> 32, start & 0xFFFFFFFF)


def first_extent(img: bytes | bytearray, geo: Geometry, ino: int) -> tuple[int, int, int]:
    """(logical, length, physical) of the first extent of a depth-0 extent root."""
    root = i_block(img, geo, ino)
    magic, entries, _m, depth, _g = struct.unpack_from("<HHHHI", root, 0)
    assert magic == EXTENT_MAGIC and depth == 0 and entries >= 1
    lb, ln, hi, lo = struct.unpack_from("<IHHI", root, 12)
    return lb, ln, hi << 32 | lo


def make_extent_loop(path: Path, ino: int) -> int:
    """Turn ``ino``'s extent root into an index whose child node points at itself.

    The child is the file's own first data block (rewritten as an interior node of depth
    1 with one index entry naming that same block). Returns the block number.
    """
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    _lb, _ln, blk = first_extent(img, geo, ino)
    set_i_block(img, geo, ino, extent_header(1, 4, 2) + extent_index(0, blk))
    node = extent_header(1, (geo.block_size - 12) // 12, 1) + extent_index(0, blk)
    img[blk * geo.block_size : blk * geo.block_size + len(node)] = node
    write_sparse(path, img)
    return blk


def make_extent_outside(path: Path, ino: int) -> None:
    """Point ``ino``'s first extent past the end of the volume."""
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    lb, ln, _blk = first_extent(img, geo, ino)
    root = bytearray(i_block(img, geo, ino))
    root[12:24] = extent_leaf(lb, ln, geo.blocks_count + 1000)
    set_i_block(img, geo, ino, bytes(root))
    write_sparse(path, img)


def make_indirect_loop(path: Path, ino: int) -> int:
    """ext2/3: make ``ino``'s double-indirect block list itself as its first child.

    The single-indirect block is reused as the double-indirect block, so the walk meets
    the same block twice. Returns that block.
    """
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    ptrs = list(struct.unpack("<15I", i_block(img, geo, ino)))
    ind = ptrs[12]
    assert ind, "the file needs an indirect block"
    ptrs[13] = ind
    set_i_block(img, geo, ino, struct.pack("<15I", *ptrs))
    struct.pack_into("<I", img, ind * geo.block_size, ind)  # first pointer: itself
    size = geo.block_size * (12 + geo.block_size // 4 + 8)
    off = inode_offset(geo, ino)
    struct.pack_into("<I", img, off + 4, size & 0xFFFFFFFF)
    struct.pack_into("<I", img, off + 0x6C, size >> 32)
    write_sparse(path, img)
    return ind


def dir_block(img: bytes | bytearray, geo: Geometry, ino: int) -> int:
    """The first data block of a directory (extent root or block map)."""
    off = inode_offset(geo, ino)
    flags = struct.unpack_from("<I", img, off + 0x20)[0]
    if flags & 0x80000:
        return first_extent(img, geo, ino)[2]
    return struct.unpack_from("<I", img, off + 0x28)[0]


def break_dir_rec_len(path: Path, ino: int, entry_index: int = 2) -> None:
    """Give the ``entry_index``-th entry of a directory's first block a rec_len of 3."""
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    base = dir_block(img, geo, ino) * geo.block_size
    pos = 0
    for _ in range(entry_index):
        pos += struct.unpack_from("<H", img, base + pos + 4)[0]
    struct.pack_into("<H", img, base + pos + 4, 3)
    write_sparse(path, img)


def set_inode_table(path: Path, group: int, block: int) -> None:
    """Point group ``group``'s inode table at ``block`` (descriptor checksum left stale)."""
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    gdt = (1024 // geo.block_size + 1) * geo.block_size
    struct.pack_into("<I", img, gdt + group * geo.desc_size + 8, block & 0xFFFFFFFF)
    if geo.desc_size >= 64:
        struct.pack_into("<I", img, gdt + group * geo.desc_size + 0x28, block >> 32)
    write_sparse(path, img)


def add_ea_inode_xattr(
    path: Path, owner: int, value_ino: int, name: bytes, value_size: int
) -> None:
    """Give ``owner`` one in-inode xattr ``user.<name>`` whose value lives in inode
    ``value_ino`` (ea_inode), and flag that inode EXT4_EA_INODE_FL. No metadata_csum."""
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    off = inode_offset(geo, owner)
    extra = struct.unpack_from("<H", img, off + 0x80)[0]
    area = off + 128 + extra
    entry = struct.pack("<BBHIII", len(name), 1, 0, value_ino, value_size, 0) + name
    entry = entry.ljust((len(entry) + 3) & ~3, b"\0")
    blob = struct.pack("<I", 0xEA020000) + entry + b"\0\0\0\0"
    assert area + len(blob) <= off + geo.inode_size
    img[area : area + len(blob)] = blob
    voff = inode_offset(geo, value_ino)
    flags = struct.unpack_from("<I", img, voff + 0x20)[0]
    struct.pack_into("<I", img, voff + 0x20, flags | 0x200000)
    write_sparse(path, img)


def patch_inode(path: Path, ino: int, offset: int, data: bytes) -> None:
    """Overwrite bytes of inode ``ino``'s record (checksum left as it was)."""
    img = bytearray(Path(path).read_bytes())
    off = inode_offset(geometry(img), ino) + offset
    img[off : off + len(data)] = data
    write_sparse(path, img)


def rename_dirent(path: Path, dir_ino: int, old: bytes, new: bytes) -> None:
    """Give entry ``old`` of a one-block directory the name ``new`` (any bytes: "..", "/",
    NUL...), in place: ``name_len`` and the name change, ``rec_len`` stays."""
    img = bytearray(Path(path).read_bytes())
    geo = geometry(img)
    base = dir_block(img, geo, dir_ino) * geo.block_size
    pos = 0
    while pos < geo.block_size:
        ino, rec_len, name_len, _ft = struct.unpack_from("<IHBB", img, base + pos)
        if rec_len < 8:
            break
        start = base + pos + 8
        if ino and bytes(img[start : start + name_len]) == old:
            assert 8 + len(new) <= rec_len <= geo.block_size - pos, "no room for the name"
            img[base + pos + 6] = len(new)
            img[start : start + rec_len - 8] = new.ljust(rec_len - 8, b"\0")
            write_sparse(path, img)
            return
        pos += rec_len
    raise KeyError(f"no entry {old!r} in directory inode {dir_ino}")
