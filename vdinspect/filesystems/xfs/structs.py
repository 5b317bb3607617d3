"""XFS on-disk structures, declared once (big-endian; the CRC fields are little-endian).

Names follow the Linux kernel's ``xfs_format.h``/``xfs_da_format.h``/``xfs_log_format.h``
and the "XFS Algorithms & Data Structures" book. Fast paths (``struct`` formats, numpy
dtypes, field offsets) come from these declarations through :mod:`vdinspect.layout`.
"""

from __future__ import annotations

import struct
from functools import partial

from construct import (
    Array,
    Bytes,
    Enum,
    FlagsEnum,
    Int8ub,
    Int16ub,
    Int16ul,
    Int32sl,
    Int32ub,
    Int32ul,
    Int64sl,
    Int64ub,
    Int64ul,
    Struct,
)

from ...layout import field_format, field_slice, leaves, offset_of, struct_format

# the superblock is declared in volumes/xfs_layout.py (the probe reads it too)
from ...volumes.xfs_layout import XFS_SB_MAGIC as XFS_SB_MAGIC
from ...volumes.xfs_layout import XFS_SB_MAGIC_BYTES as XFS_SB_MAGIC_BYTES
from ...volumes.xfs_layout import Superblock

# --- fast paths: layout.py derives them from the declarations -------------------------

#: a big-endian ``struct.Struct`` of a declaration, Arrays of integers as their values (a
#: little-endian CRC field reads byte-swapped: swap it when used); ``upto`` stops before it
be_format = partial(struct_format, order=">", arrays=True)


def unpack(s: Struct, form: struct.Struct, buf: bytes, offset: int = 0) -> dict:
    """Fields of ``s`` from ``buf`` through its :data:`be_format` ``form``, as a dict
    (an Array of integers becomes a list)."""
    vals = form.unpack_from(buf, offset)
    out: dict = {}
    i = 0
    for x in leaves(s):
        if i >= len(vals):
            break
        if x.item:
            out[x.name] = list(vals[i:i + x.items])
            i += x.items
        elif x.count:
            out[x.name] = vals[i]
            i += 1
    return out



VERSION_NUMBITS = 0x000F
VersionFlags = FlagsEnum(
    Int16ub,
    ATTR=0x0010, NLINK=0x0020, QUOTA=0x0040, ALIGN=0x0080, DALIGN=0x0100, SHARED=0x0200,
    LOGV2=0x0400, SECTOR=0x0800, EXTFLG=0x1000, DIRV2=0x2000, BORG=0x4000, MOREBITS=0x8000,
)
Features2 = FlagsEnum(
    Int32ub, LAZYSBCOUNT=0x2, ATTR2=0x8, PARENT=0x10, PROJID32=0x80, CRC=0x100, FTYPE=0x200,
)
RoCompat = FlagsEnum(Int32ub, FINOBT=0x1, RMAPBT=0x2, REFLINK=0x4, INOBTCNT=0x8)
Incompat = FlagsEnum(
    Int32ub, FTYPE=0x1, SPINODES=0x2, META_UUID=0x4, BIGTIME=0x8, NEEDSREPAIR=0x10,
    NREXT64=0x20, EXCHRANGE=0x40, PARENT=0x80, METADIR=0x100,
)
LogIncompat = FlagsEnum(Int32ub, XATTRS=0x1)
INCOMPAT_FTYPE, INCOMPAT_SPINODES, INCOMPAT_BIGTIME, INCOMPAT_NREXT64 = 0x1, 0x2, 0x8, 0x20
INCOMPAT_KNOWN = 0x1FF
F2_CRC, F2_FTYPE = 0x100, 0x200

# --- allocation group headers (sector 1: AGF, sector 2: AGI) -------------------------

XFS_AGF_MAGIC = 0x58414746  # "XAGF"
XFS_AGI_MAGIC = 0x58414749  # "XAGI"

AGF = Struct(
    "agf_magicnum" / Int32ub * "XAGF",
    "agf_versionnum" / Int32ub * "1",
    "agf_seqno" / Int32ub * "allocation group number",
    "agf_length" / Int32ub * "blocks in this AG",
    "agf_roots" / Array(3, Int32ub) * "roots of the by-block, by-size and rmap btrees (agbno)",
    "agf_levels" / Array(3, Int32ub) * "levels of those btrees",
    "agf_flfirst" / Int32ub * "first free-list slot in use",
    "agf_fllast" / Int32ub * "last free-list slot in use",
    "agf_flcount" / Int32ub * "free-list blocks",
    "agf_freeblks" / Int32ub * "free blocks",
    "agf_longest" / Int32ub * "longest free extent, blocks",
    "agf_btreeblks" / Int32ub * "blocks held by the free-space btrees",
    "agf_uuid" / Bytes(16) * "filesystem UUID (v5)",
    "agf_rmap_blocks" / Int32ub * "rmap btree blocks",
    "agf_refcount_blocks" / Int32ub * "refcount btree blocks",
    "agf_refcount_root" / Int32ub * "refcount btree root (agbno)",
    "agf_refcount_level" / Int32ub * "refcount btree levels",
    "agf_spare64" / Bytes(112) * "reserved",
    "agf_lsn" / Int64ub * "last write LSN",
    "agf_crc" / Int32ul * "CRC-32C of the sector (v5)",
    "agf_spare2" / Int32ub * "padding",
)  # 224 bytes

AGI = Struct(
    "agi_magicnum" / Int32ub * "XAGI",
    "agi_versionnum" / Int32ub * "1",
    "agi_seqno" / Int32ub * "allocation group number",
    "agi_length" / Int32ub * "blocks in this AG",
    "agi_count" / Int32ub * "allocated inodes",
    "agi_root" / Int32ub * "inode btree root (agbno)",
    "agi_level" / Int32ub * "inode btree levels",
    "agi_freecount" / Int32ub * "free inodes in allocated chunks",
    "agi_newino" / Int32ub * "last allocated chunk (agino)",
    "agi_dirino" / Int32ub * "unused (-1)",
    "agi_unlinked" / Array(64, Int32ub) * "hash buckets of unlinked-but-open inodes",
    "agi_uuid" / Bytes(16) * "filesystem UUID (v5)",
    "agi_crc" / Int32ul * "CRC-32C of the sector (v5)",
    "agi_pad32" / Int32ub * "padding",
    "agi_lsn" / Int64ub * "last write LSN",
    "agi_free_root" / Int32ub * "free inode btree root (FINOBT)",
    "agi_free_level" / Int32ub * "free inode btree levels",
    "agi_iblocks" / Int32ub * "inode btree blocks (INOBTCNT)",
    "agi_fblocks" / Int32ub * "free inode btree blocks (INOBTCNT)",
)  # 344 bytes

# --- btree block headers ---------------------------------------------------------------

BtreeShortBlock = Struct(  # AG btrees (inobt, free space); v4 part = first 16 bytes
    "bb_magic" / Int32ub * "IABT/IAB3 (inodes), FIBT/FIB3, ABTB/AB3B, ABTC/AB3C",
    "bb_level" / Int16ub * "0 = leaf",
    "bb_numrecs" / Int16ub * "records or keys in this block",
    "bb_leftsib" / Int32ub * "left sibling agbno (NULL = 0xffffffff)",
    "bb_rightsib" / Int32ub * "right sibling agbno",
    "bb_blkno" / Int64ub * "this block's daddr, 512-byte units (v5)",
    "bb_lsn" / Int64ub * "last write LSN (v5)",
    "bb_uuid" / Bytes(16) * "filesystem UUID (v5)",
    "bb_owner" / Int32ub * "owning AG (v5)",
    "bb_crc" / Int32ul * "CRC-32C of the block (v5)",
)  # 56 bytes (v4 uses the first 16)

BtreeLongBlock = Struct(  # inode-rooted btrees (bmbt); v4 part = first 24 bytes
    "bb_magic" / Int32ub * "BMAP (v4) or BMA3 (v5)",
    "bb_level" / Int16ub * "0 = leaf (extent records follow)",
    "bb_numrecs" / Int16ub * "records or keys in this block",
    "bb_leftsib" / Int64ub * "left sibling fsblock (NULL = all ones)",
    "bb_rightsib" / Int64ub * "right sibling fsblock",
    "bb_blkno" / Int64ub * "this block's daddr (v5)",
    "bb_lsn" / Int64ub * "last write LSN (v5)",
    "bb_uuid" / Bytes(16) * "filesystem UUID (v5)",
    "bb_owner" / Int64ub * "owning inode (v5)",
    "bb_crc" / Int32ul * "CRC-32C of the block (v5)",
    "bb_pad" / Int32ub * "padding",
)  # 72 bytes (v4 uses the first 24)

SHORT_HDR_V4 = offset_of(BtreeShortBlock, "bb_blkno")  # the v5 fields start there
SHORT_HDR_V5 = BtreeShortBlock.sizeof()
LONG_HDR_V4, LONG_HDR_V5 = offset_of(BtreeLongBlock, "bb_blkno"), BtreeLongBlock.sizeof()
XFS_BMAP_MAGIC, XFS_BMAP_CRC_MAGIC = 0x424D4150, 0x424D4133  # BMAP, BMA3
XFS_IBT_MAGIC, XFS_IBT_CRC_MAGIC = 0x49414254, 0x49414233  # IABT, IAB3

BmdrBlock = Struct(  # the bmbt root kept in an inode fork
    "bb_level" / Int16ub * "levels below the root (>= 1)",
    "bb_numrecs" / Int16ub * "keys in the root",
)  # 4 bytes; then keys (bmbt_key), then pointers (8-byte fsblock) at the max-keys slot

BmbtRec = Struct(
    "l0" / Int64ub * "bit 63: unwritten flag; bits 9-62: br_startoff; bits 0-8: high "
    "bits of br_startblock",
    "l1" / Int64ub * "bits 21-63: low bits of br_startblock; bits 0-20: br_blockcount",
)  # 16 bytes: one extent (logical block, fsblock, length, unwritten)
BmbtKey = Struct("br_startoff" / Int64ub * "first logical block below this pointer")
BmbtPtr = Struct("ptr" / Int64ub * "child block, fsblock number")

XFS_ABTB_MAGIC, XFS_ABTB_CRC_MAGIC = 0x41425442, 0x41423342  # ABTB, AB3B (by block)
XFS_ABTC_CRC_MAGIC = 0x41423343  # AB3C (free space by size)
XFS_FIBT_CRC_MAGIC = 0x46494233  # FIB3 (free inode btree)
XFS_RMAP_CRC_MAGIC = 0x524D4233  # RMB3 (reverse mapping btree, v5 only)
AllocRec = Struct(
    "ar_startblock" / Int32ub * "first free block (agbno)",
    "ar_blockcount" / Int32ub * "free blocks",
)  # 8 bytes; keys have the same layout, pointers are 4-byte agbno
InobtRec = Struct(
    "ir_startino" / Int32ub * "first agino of the 64-inode chunk",
    "ir_holemask" / Int16ub * "sparse chunks: bit i = inodes 4i..4i+3 not allocated",
    "ir_count" / Int8ub * "inodes allocated in the chunk (sparse) ",
    "ir_freecount" / Int8ub * "free inodes (low byte of a 32-bit count without sparse)",
    "ir_free" / Int64ub * "bit i set = inode startino+i is free",
)  # 16 bytes
InobtKey = Struct("ir_startino" / Int32ub * "first agino below this pointer")
InobtPtr = Struct("ptr" / Int32ub * "child block, agbno")
XFS_REFC_CRC_MAGIC, XFS_REFC_COWFLAG = 0x52334643, 1 << 31  # R3FC (v5 only); CoW domain
RefcountRec = Struct(
    "rc_startblock" / Int32ub * "first block (agbno); bit 31: a CoW staging extent",
    "rc_blockcount" / Int32ub * "blocks",
    "rc_refcount" / Int32ub * "owners sharing them (2 or more; a CoW staging extent: 1)",
)  # 12 bytes: a block no record covers has one owner; keys: rc_startblock, pointers agbno

# --- inodes -----------------------------------------------------------------------------

XFS_DINODE_MAGIC = 0x494E  # "IN"

DinodeFormat = Enum(Int8ub, DEV=0, LOCAL=1, EXTENTS=2, BTREE=3, UUID=4, META_BTREE=5)
FMT_DEV, FMT_LOCAL, FMT_EXTENTS, FMT_BTREE = 0, 1, 2, 3

Dinode = Struct(
    "di_magic" / Int16ub * "IN",
    "di_mode" / Int16ub * "POSIX mode: type and permissions (0 = free)",
    "di_version" / Int8ub * "1, 2 or 3 (v5 filesystems)",
    "di_format" / DinodeFormat * "data fork format",
    "di_onlink" / Int16ub * "link count (version 1 inodes)",
    "di_uid" / Int32ub * "owner",
    "di_gid" / Int32ub * "group",
    "di_nlink" / Int32ub * "link count (version 2+)",
    "di_projid_lo" / Int16ub * "project id, low 16 bits",
    "di_projid_hi" / Int16ub * "project id, high 16 bits",
    "di_big_nextents" / Int64ub * "data fork extents with NREXT64 (else padding and "
    "di_flushiter in the low 16 bits)",
    "di_atime" / Int64ub * "access time: seconds (high 32, signed) and ns (low 32), or with "
    "BIGTIME ns since 1901-12-13T20:45:52Z",
    "di_mtime" / Int64ub * "modification time (as di_atime)",
    "di_ctime" / Int64ub * "inode change time (as di_atime)",
    "di_size" / Int64ub * "file size, bytes",
    "di_nblocks" / Int64ub * "blocks held, both forks and btree blocks",
    "di_extsize" / Int32ub * "extent size hint, blocks",
    "di_nextents" / Int32ub * "data fork extents (attr fork extents with NREXT64)",
    "di_anextents" / Int16ub * "attr fork extents (padding with NREXT64)",
    "di_forkoff" / Int8ub * "attr fork offset in 8-byte units from the fork area (0 = none)",
    "di_aformat" / DinodeFormat * "attr fork format",
    "di_dmevmask" / Int32ub * "DMAPI event mask",
    "di_dmstate" / Int16ub * "DMAPI state",
    "di_flags" / Int16ub * "XFS_DIFLAG_*",
    "di_gen" / Int32ub * "generation number",
    "di_next_unlinked" / Int32ub * "next agino in an unlinked list (NULL = 0xffffffff)",
    # version 3 from here
    "di_crc" / Int32ul * "CRC-32C of the inode with this field zeroed (v3)",
    "di_changecount" / Int64ub * "changes to the inode (v3)",
    "di_lsn" / Int64ub * "last write LSN (v3)",
    "di_flags2" / Int64ub * "XFS_DIFLAG2_* (v3)",
    "di_cowextsize" / Int32ub * "copy-on-write extent size hint (v3)",
    "di_pad2" / Bytes(12) * "padding",
    "di_crtime" / Int64ub * "creation time (v3, as di_atime)",
    "di_ino" / Int64ub * "this inode's number (v3)",
    "di_uuid" / Bytes(16) * "filesystem UUID (v3)",
)  # 176 bytes; versions 1 and 2 end at di_crc (100 bytes)

DINODE_V2_SIZE = offset_of(Dinode, "di_crc")
DINODE_V3_SIZE = Dinode.sizeof()
DiFlags = FlagsEnum(
    Int16ub, REALTIME=0x1, PREALLOC=0x2, NEWRTBM=0x4, IMMUTABLE=0x8, APPEND=0x10, SYNC=0x20,
    NOATIME=0x40, NODUMP=0x80, RTINHERIT=0x100, PROJINHERIT=0x200, NOSYMLINKS=0x400,
    EXTSIZE=0x800, EXTSZINHERIT=0x1000, NODEFRAG=0x2000, FILESTREAM=0x4000,
)
DIFLAG_REALTIME = 0x1
DiFlags2 = FlagsEnum(Int64ub, DAX=0x1, REFLINK=0x2, COWEXTSIZE=0x4, BIGTIME=0x8, NREXT64=0x10)
DIFLAG2_BIGTIME, DIFLAG2_NREXT64 = 0x8, 0x10
BIGTIME_EPOCH_OFFSET = 1 << 31  # seconds from 1901-12-13T20:45:52Z to the Unix epoch
DinodeDev = Struct(  # the data fork of a device inode (di_format DEV)
    "di_dev" / Int32ub * "xfs_dev_t: major << 18 | minor (Linux's sysv encoding)",
)

# --- directories ------------------------------------------------------------------------

FileType = Enum(Int8ub, UNKNOWN=0, REG_FILE=1, DIR=2, CHRDEV=3, BLKDEV=4, FIFO=5, SOCK=6,
                SYMLINK=7, WHT=8)

Dir2SfHdr = Struct(
    "count" / Int8ub * "entries with 4-byte inode numbers",
    "i8count" / Int8ub * "entries with 8-byte inode numbers (then all are 8 bytes)",
)  # then the parent inode number (4 or 8 bytes), then the entries
# a short-form entry: namelen (u8), offset (u16, the entry's place in a block form),
# name[namelen], ftype (u8, FTYPE only), inumber (4 or 8 bytes), unaligned
Dir2SfEntryHead = Struct(
    "namelen" / Int8ub * "name length, bytes",
    "offset" / Int16ub * "saved offset in the data block form",
)

XFS_DIR2_BLOCK_MAGIC, XFS_DIR3_BLOCK_MAGIC = 0x58443242, 0x58444233  # XD2B, XDB3
XFS_DIR2_DATA_MAGIC, XFS_DIR3_DATA_MAGIC = 0x58443244, 0x58444433  # XD2D, XDD3
XFS_DIR2_FREE_MAGIC, XFS_DIR3_FREE_MAGIC = 0x58443246, 0x58444633  # XD2F, XDF3
XFS_DIR2_LEAF1_MAGIC, XFS_DIR3_LEAF1_MAGIC = 0xD2F1, 0x3DF1
XFS_DIR2_LEAFN_MAGIC, XFS_DIR3_LEAFN_MAGIC = 0xD2FF, 0x3DFF
XFS_DA_NODE_MAGIC, XFS_DA3_NODE_MAGIC = 0xFEBE, 0x3EBE
XFS_DIR2_DATA_FREE_TAG = 0xFFFF
XFS_DIR2_LEAF_OFFSET = 32 << 30  # logical bytes: leaf/node/free blocks live from here

Dir2DataFree = Struct("offset" / Int16ub * "start of a free region", "length" / Int16ub * "bytes")
Dir2DataHdr = Struct(
    "magic" / Int32ub * "XD2B (block form) or XD2D (data block)",
    "bestfree" / Array(3, Dir2DataFree) * "largest free regions",
)  # 16 bytes
Dir3BlkHdr = Struct(
    "magic" / Int32ub * "XDB3 (block form) or XDD3 (data block)",
    "crc" / Int32ul * "CRC-32C of the directory block",
    "blkno" / Int64ub * "this block's daddr",
    "lsn" / Int64ub * "last write LSN",
    "uuid" / Bytes(16) * "filesystem UUID",
    "owner" / Int64ub * "directory inode",
)  # 48 bytes
Dir3DataHdr = Struct(
    "hdr" / Dir3BlkHdr,
    "best_free" / Array(3, Dir2DataFree) * "largest free regions",
    "pad" / Int32ub * "to 64 bytes",
)  # 64 bytes
Dir2DataEntryHead = Struct(
    "inumber" / Int64ub * "inode number",
    "namelen" / Int8ub * "name length",
)  # then name, ftype (FTYPE), padding to 8 bytes, tag (u16: offset of the entry)
Dir2DataUnused = Struct(
    "freetag" / Int16ub * "0xffff",
    "length" / Int16ub * "bytes of the free region (a multiple of 8)",
)  # ... tag (u16) at the region's end
Dir2BlockTail = Struct(
    "count" / Int32ub * "leaf entries before this tail",
    "stale" / Int32ub * "stale leaf entries",
)  # at the end of a block-form directory block, after count 8-byte leaf entries
DIR2_LEAF_ENTRY_SIZE = 8

# --- dabtree blocks (directory leaf/node and attribute blocks) ---------------------------

DaBlkinfo = Struct(
    "forw" / Int32ub * "next block (logical, in the fork)",
    "back" / Int32ub * "previous block",
    "magic" / Int16ub * "block kind",
    "pad" / Int16ub * "padding",
)  # 12 bytes
Da3Blkinfo = Struct(
    "forw" / Int32ub * "next block (logical, in the fork)",
    "back" / Int32ub * "previous block",
    "magic" / Int16ub * "block kind",
    "pad" / Int16ub * "padding",
    "crc" / Int32ul * "CRC-32C of the block",
    "blkno" / Int64ub * "this block's daddr",
    "lsn" / Int64ub * "last write LSN",
    "uuid" / Bytes(16) * "filesystem UUID",
    "owner" / Int64ub * "owning inode",
)  # 56 bytes
DaNodeHdr = Struct("info" / DaBlkinfo, "count" / Int16ub * "entries", "level" / Int16ub * "level")
Da3NodeHdr = Struct(
    "info" / Da3Blkinfo, "count" / Int16ub * "entries", "level" / Int16ub * "level",
    "pad32" / Int32ub * "padding",
)
DaNodeEntry = Struct(
    "hashval" / Int32ub * "highest hash below this pointer",
    "before" / Int32ub * "child block (logical, in the fork)",
)

# --- extended attributes ------------------------------------------------------------------

AttrSfHdr = Struct(
    "totsize" / Int16ub * "bytes of the short-form attribute area",
    "count" / Int8ub * "entries",
    "padding" / Int8ub * "padding",
)
AttrSfEntryHead = Struct(
    "namelen" / Int8ub * "name length",
    "valuelen" / Int8ub * "value length",
    "flags" / Int8ub * "namespace: ROOT (trusted), SECURE (security), else user",
)  # then name, value
AttrFlags = FlagsEnum(Int8ub, LOCAL=0x1, ROOT=0x2, SECURE=0x4, PARENT=0x8, INCOMPLETE=0x80)
ATTR_LOCAL, ATTR_ROOT, ATTR_SECURE, ATTR_PARENT, ATTR_INCOMPLETE = 1, 2, 4, 8, 0x80
XFS_ATTR_LEAF_MAGIC, XFS_ATTR3_LEAF_MAGIC = 0xFBEE, 0x3BEE
XFS_ATTR3_RMT_MAGIC = 0x5841524D  # "XARM"

AttrLeafMap = Struct("base" / Int16ub * "free region start", "size" / Int16ub * "bytes")
AttrLeafHdr = Struct(
    "info" / DaBlkinfo,
    "count" / Int16ub * "entries",
    "usedbytes" / Int16ub * "bytes of names and values",
    "firstused" / Int16ub * "first byte of the name/value area",
    "holes" / Int8ub * "compaction wanted",
    "pad1" / Int8ub * "padding",
    "freemap" / Array(3, AttrLeafMap) * "free regions",
)  # 32 bytes
Attr3LeafHdr = Struct(
    "info" / Da3Blkinfo,
    "count" / Int16ub * "entries",
    "usedbytes" / Int16ub * "bytes of names and values",
    "firstused" / Int16ub * "first byte of the name/value area (0 = 65536)",
    "holes" / Int8ub * "compaction wanted",
    "pad1" / Int8ub * "padding",
    "freemap" / Array(3, AttrLeafMap) * "free regions",
    "pad2" / Int32ub * "padding",
)  # 80 bytes
AttrLeafEntry = Struct(
    "hashval" / Int32ub * "hash of the name",
    "nameidx" / Int16ub * "offset of the name/value record in the block",
    "flags" / Int8ub * "LOCAL (value in the block), ROOT, SECURE, INCOMPLETE",
    "pad2" / Int8ub * "padding",
)
AttrLeafNameLocal = Struct(
    "valuelen" / Int16ub * "value length",
    "namelen" / Int8ub * "name length",
)  # then name, value
AttrLeafNameRemote = Struct(
    "valueblk" / Int32ub * "first block of the value (logical, in the attr fork)",
    "valuelen" / Int32ub * "value length",
    "namelen" / Int8ub * "name length",
)  # then name
Attr3RmtHdr = Struct(
    "rm_magic" / Int32ub * "XARM",
    "rm_offset" / Int32ub * "offset of this block's bytes in the value",
    "rm_bytes" / Int32ub * "value bytes in this block",
    "rm_crc" / Int32ul * "CRC-32C of the block",
    "rm_uuid" / Bytes(16) * "filesystem UUID",
    "rm_owner" / Int64ub * "owning inode",
    "rm_blkno" / Int64ub * "this block's daddr",
    "rm_lsn" / Int64ub * "last write LSN",
)  # 56 bytes, at the start of every remote value block (v5)

# --- symlinks ---------------------------------------------------------------------------

XFS_SYMLINK_MAGIC = 0x58534C4D  # "XSLM"
XFS_SYMLINK_MAXLEN = 1024
DsymlinkHdr = Struct(
    "sl_magic" / Int32ub * "XSLM",
    "sl_offset" / Int32ub * "offset of this block's bytes in the target",
    "sl_bytes" / Int32ub * "target bytes in this block",
    "sl_crc" / Int32ul * "CRC-32C of the block",
    "sl_uuid" / Bytes(16) * "filesystem UUID",
    "sl_owner" / Int64ub * "owning inode",
    "sl_blkno" / Int64ub * "this block's daddr",
    "sl_lsn" / Int64ub * "last write LSN",
)  # 56 bytes, at the start of every remote symlink block (v5)

# --- the log ------------------------------------------------------------------------------

XLOG_HEADER_MAGIC_NUM = 0xFEEDBABE
XLOG_UNMOUNT_TYPE = 0x556E  # "Un": the unmount record's item type
XLOG_UNMOUNT_TRANS = 0x20  # op header flag of the unmount record
LogRecHeader = Struct(
    "h_magicno" / Int32ub * "0xFEEDBABE",
    "h_cycle" / Int32ub * "write cycle of the log",
    "h_version" / Int32ub * "1 or 2 (v2 logs)",
    "h_len" / Int32ub * "bytes of log data after the header",
    "h_lsn" / Int64ub * "this record's LSN: cycle (high 32) and block (low 32)",
    "h_tail_lsn" / Int64ub * "LSN of the oldest record still needed",
    "h_crc" / Int32ul * "CRC-32C of the header and data (v5)",
    "h_prev_block" / Int32ub * "block of the previous record",
    "h_num_logops" / Int32ub * "operations in the record",
    "h_cycle_data" / Array(64, Int32ub) * "first words of the record's basic blocks, "
    "replaced on disk by the cycle number",
    "h_fmt" / Int32ub * "log format (1 = Linux)",
    "h_fs_uuid" / Bytes(16) * "filesystem UUID",
    "h_size" / Int32ub * "log buffer size, bytes (v2 logs: headers span h_size / 32 KiB "
    "basic blocks)",
)  # 324 bytes, in a 512-byte basic block
LogOpHeader = Struct(
    "oh_tid" / Int32ub * "transaction id",
    "oh_len" / Int32ub * "bytes of the region after this header",
    "oh_clientid" / Int8ub * "XFS_TRANSACTION (0x69) or XFS_LOG (0xaa)",
    "oh_flags" / Int8ub * "START 1, COMMIT 2, CONTINUE 4, WAS_CONT 8, END 0x10, UNMOUNT 0x20",
    "oh_res2" / Int16ub * "padding",
)  # 12 bytes
LOG_REC_HEADER_SIZE = 512  # one basic block: the header and the first cycle words
XLOG_HEADER_CYCLE_SIZE = 32 << 10  # record bytes whose cycle words one header holds
XLOG_REC_CRC_SIZES = (328, 324)  # header bytes under h_crc: to h_pad0 (64-bit), to h_size (i386)
XlogRecExtHeader = Struct(
    "xh_cycle" / Int32ub * "write cycle of the log",
    "xh_cycle_data" / Array(64, Int32ub) * "first words of the next 64 basic blocks",
)  # 260 bytes of a 512-byte extended header (v2 logs with records over 32 KiB)
XLOG_START_TRANS, XLOG_COMMIT_TRANS = 0x01, 0x02
XLOG_CONTINUE_TRANS, XLOG_WAS_CONT_TRANS, XLOG_END_TRANS = 0x04, 0x08, 0x10
XFS_TRANSACTION, XFS_LOG = 0x69, 0xAA  # oh_clientid values

# The log items below are written in the byte order of the host that wrote them
# (little-endian: x86, arm64); the buffer contents they carry are in disk order.
XFS_TRANS_HEADER_MAGIC = 0x5452414E  # "TRAN"
XfsTransHeader = Struct(
    "th_magic" / Int32ul * "TRAN",
    "th_type" / Int32ul * "transaction type (40 = CHECKPOINT with delayed logging)",
    "th_tid" / Int32ul * "transaction id (unused)",
    "th_num_items" / Int32ul * "log items in the transaction",
)  # 16 bytes: the first region of every transaction
XFS_LI_EFI, XFS_LI_INODE, XFS_LI_BUF, XFS_LI_ICREATE = 0x1236, 0x123B, 0x123C, 0x123F
XfsLogItemHead = Struct(
    "type" / Int16ul * "XFS_LI_*: what the item logs",
    "size" / Int16ul * "regions of the item, this one included",
)  # the first 4 bytes of every item's format region
XfsBufLogFormat = Struct(
    "blf_type" / Int16ul * "XFS_LI_BUF",
    "blf_size" / Int16ul * "regions of the item: this one and one per run of logged chunks",
    "blf_flags" / Int16ul * "INODE_BUF 1, CANCEL 2, dquot 4/8/0x10; buffer type in bits 11-15",
    "blf_len" / Int16ul * "buffer length, 512-byte basic blocks",
    "blf_blkno" / Int64sl * "buffer start on the data device, 512-byte basic blocks",
    "blf_map_size" / Int32ul * "words of the dirty bitmap that follow",
)  # 20 bytes, then blf_map_size 32-bit words: bit i = 128-byte chunk i was logged
BlfDataMapWord = Struct("blf_data_map" / Int32ul * "32 bits of the dirty bitmap")
XFS_BLF_CHUNK = 128  # bytes of a buffer per dirty-bitmap bit
XFS_BLF_INODE_BUF, XFS_BLF_CANCEL = 0x1, 0x2
XfsInodeLogFormat = Struct(
    "ilf_type" / Int16ul * "XFS_LI_INODE",
    "ilf_size" / Int16ul * "regions: this one, the core, then the data and attr forks logged",
    "ilf_fields" / Int32ul * "XFS_ILOG_*: which parts follow",
    "ilf_asize" / Int16ul * "bytes of the attr fork region",
    "ilf_dsize" / Int16ul * "bytes of the data fork region",
    "ilf_pad" / Int32ul * "padding (absent in the 32-bit form)",
    "ilf_ino" / Int64ul * "inode number",
    "ilf_u" / Bytes(16) * "device number of a device inode (first 4 bytes)",
    "ilf_blkno" / Int64sl * "inode cluster buffer, 512-byte basic blocks",
    "ilf_len" / Int32sl * "inode cluster buffer length, basic blocks",
    "ilf_boffset" / Int32sl * "offset of the inode in the buffer, bytes",
)  # 56 bytes (52 in the packed 32-bit form, without ilf_pad)
XFS_ILOG_CORE, XFS_ILOG_DDATA, XFS_ILOG_DEXT, XFS_ILOG_DBROOT = 0x001, 0x002, 0x004, 0x008
XFS_ILOG_DEV, XFS_ILOG_ADATA, XFS_ILOG_AEXT, XFS_ILOG_ABROOT = 0x010, 0x040, 0x080, 0x100
XfsInodeLogFormat32 = Struct(  # xfs_inode_log_format_32: what 32-bit x86 kernels wrote
    *(sc for sc in XfsInodeLogFormat.subcons if sc.name != "ilf_pad"),
)  # 52 bytes, packed
XfsIcreateLog = Struct(
    "icl_type" / Int16ul * "XFS_LI_ICREATE",
    "icl_size" / Int16ul * "regions (1)",
    "icl_ag" / Int32ub * "allocation group",
    "icl_agbno" / Int32ub * "first block of the inode chunk",
    "icl_count" / Int32ub * "inodes to initialise",
    "icl_isize" / Int32ub * "inode size, bytes",
    "icl_length" / Int32ub * "blocks of the chunk",
    "icl_gen" / Int32ub * "generation number of the new inodes",
)  # 28 bytes
# Intents announce work and done items close them (EFI/EFD extent free, RUI/RUD reverse
# map, CUI/CUD refcount, BUI/BUD file mapping, ATTRI/ATTRD, XMI/XMD): every intent's id and
# every done item's intent id sit at byte 8; an intent with no done item in the log is
# carried out by log recovery ("XFS Algorithms & Data Structures", Journaling Log).
XFS_LI_EFD, XFS_LI_CUI, XFS_LI_BUI, XFS_LI_BUD = 0x1237, 0x1242, 0x1244, 0x1245
XfsIntentHead = Struct(
    "type" / Int16ul * "XFS_LI_*: the intent (efi_type, bui_type, ...) or done item",
    "size" / Int16ul * "regions of the item (1)",
    "nextents" / Int32ul * "records that follow (efi_nextents, ...; ATTRI: igen; else pad)",
    "id" / Int64ul * "intent id (efi_id, bui_id, ...) or the id a done item closes",
)  # 16 bytes
XfsExtent64 = Struct(
    "ext_start" / Int64ul * "first block, fsblock number (AG << agblklog | AG block)",
    "ext_len" / Int32ul * "blocks (bit 31: a realtime extent)",
    "ext_pad" / Int32ul * "padding",
)  # an EFI/EFD record; the packed 32-bit form (XfsExtent32) has no ext_pad
XfsExtent32 = Struct("ext_start" / Int64ul * "first block, fsblock", "ext_len" / Int32ul * "blocks")
XfsMapExtent = Struct(
    "me_owner" / Int64ul * "inode number whose fork changes",
    "me_startblock" / Int64ul * "first block, fsblock number",
    "me_startoff" / Int64ul * "first block, logical (in the fork)",
    "me_len" / Int32ul * "blocks",
    "me_flags" / Int32ul * "type (low byte: 1 MAP, 2 UNMAP); 1<<31 attr fork, 1<<30 unwritten",
)  # the BUI record (one per BUI)
XfsPhysExtent = Struct(
    "pe_startblock" / Int64ul * "first block, fsblock number",
    "pe_len" / Int32ul * "blocks",
    "pe_flags" / Int32ul * "type (low byte): 1 INCREASE, 2 DECREASE, 3 ALLOC_COW, 4 FREE_COW",
)  # a CUI record
XFS_REFCOUNT_DECREASE, XFS_REFCOUNT_EXTENT_REALTIME = 2, 1 << 31
XFS_BMAP_MAP, XFS_BMAP_UNMAP = 1, 2
XFS_BMAP_EXTENT_ATTR_FORK, XFS_BMAP_EXTENT_UNWRITTEN = 1 << 31, 1 << 30
XFS_BMAP_EXTENT_REALTIME, XFS_EFI_EXTLEN_REALTIME_EXT = 1 << 29, 1 << 31

# --- fast-path formats derived from the declarations ------------------------------------------

SB_FMT = be_format(Superblock)
AGF_FMT = be_format(AGF)
AGI_FMT = be_format(AGI)
DINODE_V2_FMT = be_format(Dinode, upto="di_crc")
DINODE_V3_FMT = be_format(Dinode)
BMBT_REC_FMT = be_format(BmbtRec)
INOBT_REC_FMT = be_format(InobtRec)
ALLOC_REC_FMT = be_format(AllocRec)
SHORT_HDR_FMT = be_format(BtreeShortBlock, upto="bb_blkno")
LONG_HDR_FMT = be_format(BtreeLongBlock, upto="bb_blkno")
BMDR_FMT = be_format(BmdrBlock)
DA_BLKINFO_FMT = be_format(DaBlkinfo)
DA_NODE_ENTRY_FMT = be_format(DaNodeEntry)
DIR2_SF_HDR_FMT = be_format(Dir2SfHdr)
DIR2_SF_ENTRY_FMT = be_format(Dir2SfEntryHead)
DIR2_DATA_ENTRY_FMT = be_format(Dir2DataEntryHead)
DIR2_DATA_UNUSED_FMT = be_format(Dir2DataUnused)
DIR2_BLOCK_TAIL_FMT = be_format(Dir2BlockTail)
ATTR_SF_HDR_FMT = be_format(AttrSfHdr)
ATTR_SF_ENTRY_FMT = be_format(AttrSfEntryHead)
ATTR_LEAF_ENTRY_FMT = be_format(AttrLeafEntry)
ATTR_NAME_LOCAL_FMT = be_format(AttrLeafNameLocal)
ATTR_NAME_REMOTE_FMT = be_format(AttrLeafNameRemote)
RMT_HDR_FMT = be_format(Attr3RmtHdr)
SYMLINK_HDR_FMT = be_format(DsymlinkHdr)
LOG_REC_FMT = be_format(LogRecHeader)
LOG_OP_FMT = be_format(LogOpHeader)

BMBT_KEY_PTR_SIZE = BmbtKey.sizeof() + BmbtPtr.sizeof()  # a bmbt root entry: key + ptr
CRC_FMT = field_format(Superblock, "sb_crc")  # every v5 CRC-32C field: little-endian u32
DIR_MAGIC_FMT = field_format(Dir2DataHdr, "magic")  # first word of a directory data block
BLOCK_MAGIC_FMT = field_format(BtreeShortBlock, "bb_magic")  # any metadata block's magic
ATTR_LEAF_COUNT_V4 = be_format(AttrLeafHdr, "count")
ATTR3_LEAF_COUNT_V5 = be_format(Attr3LeafHdr, "count")
LOG_MAGIC_CYCLE_FMT = be_format(LogRecHeader, "h_magicno", "h_cycle")  # a record's start
DINODE_MAGIC_FMT = field_format(Dinode, "di_magic")
DINODE_DEV_FMT = be_format(DinodeDev)
LOG_ILF32_FMT = struct_format(XfsInodeLogFormat32)
BLF_MAP_WORD_FMT = struct_format(BlfDataMapWord)
SB_CRC_OFF = offset_of(Superblock, "sb_crc")
SB_MAGIC = field_slice(Superblock, "sb_magicnum")
AGF_CRC_OFF = offset_of(AGF, "agf_crc")
AGI_CRC_OFF = offset_of(AGI, "agi_crc")
DINODE_CRC_OFF = offset_of(Dinode, "di_crc")
LONG_CRC_OFF = offset_of(BtreeLongBlock, "bb_crc")
SHORT_CRC_OFF = offset_of(BtreeShortBlock, "bb_crc")
DIR3_CRC_OFF = offset_of(Dir3BlkHdr, "crc")
DA3_CRC_OFF = offset_of(Da3Blkinfo, "crc")
RMT_CRC_OFF = offset_of(Attr3RmtHdr, "rm_crc")
SYMLINK_CRC_OFF = offset_of(DsymlinkHdr, "sl_crc")
LOG_CRC_OFF = offset_of(LogRecHeader, "h_crc")
DIR2_DATA_HDR_V4, DIR3_DATA_HDR_V5 = Dir2DataHdr.sizeof(), Dir3DataHdr.sizeof()
DA_NODE_HDR_V4, DA3_NODE_HDR_V5 = DaNodeHdr.sizeof(), Da3NodeHdr.sizeof()
ATTR_LEAF_HDR_V4, ATTR3_LEAF_HDR_V5 = AttrLeafHdr.sizeof(), Attr3LeafHdr.sizeof()
RMT_HDR_SIZE = Attr3RmtHdr.sizeof()
SYMLINK_HDR_SIZE = DsymlinkHdr.sizeof()
DINODE_FIELDS = [c.name for c in Dinode.subcons]
