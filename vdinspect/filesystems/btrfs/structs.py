"""Btrfs on-disk structures, declared once as ``construct`` Structs.

Facts from the Btrfs documentation ("On-disk format" in btrfs.readthedocs.io and the
kernel's include/uapi/linux/btrfs_tree.h), cross-checked against ``btrfs inspect-internal
dump-super``/``dump-tree`` output. Everything is little-endian. Field names are the
kernel's (``btrfs_super_block``, ``btrfs_header``...) without the ``btrfs_`` prefix.

The fast paths (``struct`` formats for the items parsed by the thousand) come from these
declarations through :func:`fmt`, never from offsets typed again.
"""

from __future__ import annotations

from functools import partial

from construct import (
    Array,
    Bytes,
    Enum,
    FlagsEnum,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Struct,
)

from ...layout import leaves, struct_format

# the superblock and what it holds are declared in volumes/btrfs_layout.py (the probe
# and the partition scan read it too)
from ...volumes.btrfs_layout import (  # noqa: F401 (re-exported)
    CSUM_LENGTHS,
    CSUM_NAMES,
    CSUM_SIZE,
    MAGIC,
    SUPER_INFO_OFFSET,
    SUPER_INFO_SIZE,
    SUPER_MIRRORS,
    SYS_CHUNK_ARRAY_SIZE,
    CsumType,
    DevItem,
    RootBackup,
    Superblock,
)

MAX_LEVEL = 8  # tree levels 0..7

# --- small shared pieces ------------------------------------------------------------------

DiskKey = Struct(
    "objectid" / Int64ul * "object the item belongs to (inode, tree, chunk owner...)",
    "type" / Int8ul * "item type (see ItemType)",
    "offset" / Int64ul * "meaning depends on the type (index, parent, hash, byte)",
)

Timespec = Struct(
    "sec" / Int64ul * "seconds since the epoch (signed)",
    "nsec" / Int32ul * "nanoseconds",
)

Header = Struct(
    "csum" / Bytes(CSUM_SIZE) * "checksum of the rest of the node",
    "fsid" / Bytes(16) * "filesystem UUID (metadata_uuid when set)",
    "bytenr" / Int64ul * "logical address of this node",
    "flags" / Int64ul * "flags (low 56 bits) and backref revision (top 8 bits)",
    "chunk_tree_uuid" / Bytes(16) * "chunk tree UUID",
    "generation" / Int64ul * "transaction that wrote the node",
    "owner" / Int64ul * "tree the node belongs to",
    "nritems" / Int32ul * "items (leaf) or key pointers (node)",
    "level" / Int8ul * "0 for a leaf",
)

Item = Struct(
    "key" / DiskKey,
    "offset" / Int32ul * "item data start, bytes after the header",
    "size" / Int32ul * "item data length, bytes",
)

KeyPtr = Struct(
    "key" / DiskKey * "first key of the child",
    "blockptr" / Int64ul * "logical address of the child",
    "generation" / Int64ul * "transaction that wrote the child",
)

BlockGroupFlags = FlagsEnum(
    Int64ul,
    DATA=1 << 0, SYSTEM=1 << 1, METADATA=1 << 2, RAID0=1 << 3, RAID1=1 << 4, DUP=1 << 5,
    RAID10=1 << 6, RAID5=1 << 7, RAID6=1 << 8, RAID1C3=1 << 9, RAID1C4=1 << 10,
)

Stripe = Struct(
    "devid" / Int64ul * "device holding the stripe",
    "offset" / Int64ul * "physical start on that device, bytes",
    "dev_uuid" / Bytes(16) * "device UUID",
)

Chunk = Struct(
    "length" / Int64ul * "logical bytes the chunk maps",
    "owner" / Int64ul * "extent tree objectid (2)",
    "stripe_len" / Int64ul * "stripe unit, bytes (64 KiB)",
    "type" / BlockGroupFlags * "block group type and profile",
    "io_align" / Int32ul * "optimal I/O alignment",
    "io_width" / Int32ul * "optimal I/O width",
    "sector_size" / Int32ul * "minimal I/O size",
    "num_stripes" / Int16ul * "stripes that follow",
    "sub_stripes" / Int16ul * "copies of each stripe in RAID10 (2)",
)

InodeItem = Struct(
    "generation" / Int64ul * "transaction that created the inode",
    "transid" / Int64ul * "last transaction that changed it",
    "size" / Int64ul * "file size, bytes",
    "nbytes" / Int64ul * "bytes allocated (disk, or inline data)",
    "block_group" / Int64ul * "allocation hint",
    "nlink" / Int32ul * "hard links",
    "uid" / Int32ul * "owner",
    "gid" / Int32ul * "group",
    "mode" / Int32ul * "POSIX type and permissions",
    "rdev" / Int64ul * "device number of device files",
    "flags" / Int64ul * "inode flags (NODATASUM, COMPRESS...)",
    "sequence" / Int64ul * "NFS change counter",
    "reserved" / Array(4, Int64ul) * "reserved",
    "atime" / Timespec * "last access",
    "ctime" / Timespec * "last inode change",
    "mtime" / Timespec * "last content change",
    "otime" / Timespec * "creation",
)

RootItem = Struct(
    "inode" / InodeItem * "unused inode of the tree",
    "generation" / Int64ul * "transaction of the root node",
    "root_dirid" / Int64ul * "the tree's top directory inode (256)",
    "bytenr" / Int64ul * "logical address of the tree's root node",
    "byte_limit" / Int64ul * "unused",
    "bytes_used" / Int64ul * "bytes the tree uses",
    "last_snapshot" / Int64ul * "generation of the last snapshot",
    "flags" / Int64ul * "1: read-only subvolume",
    "refs" / Int32ul * "references (0: being deleted)",
    "drop_progress" / DiskKey * "where a drop stopped",
    "drop_level" / Int8ul * "level of that drop",
    "level" / Int8ul * "height of the tree - 1",
    "generation_v2" / Int64ul * "= generation when the fields below are valid",
    "uuid" / Bytes(16) * "subvolume UUID",
    "parent_uuid" / Bytes(16) * "UUID of the subvolume this is a snapshot of",
    "received_uuid" / Bytes(16) * "UUID of the sent subvolume this was received from",
    "ctransid" / Int64ul * "last change transaction",
    "otransid" / Int64ul * "creation transaction",
    "stransid" / Int64ul * "send transaction",
    "rtransid" / Int64ul * "receive transaction",
    "ctime" / Timespec * "last change",
    "otime" / Timespec * "creation",
    "stime" / Timespec * "send",
    "rtime" / Timespec * "receive",
    "reserved" / Array(8, Int64ul) * "reserved",
)
ROOT_ITEM_OLD_SIZE = 239  # root items written before generation_v2 stop after ``level``
ROOT_SUBVOL_RDONLY = 1

RootRef = Struct(
    "dirid" / Int64ul * "directory of the parent subvolume holding the entry",
    "sequence" / Int64ul * "that entry's DIR_INDEX index",
    "name_len" / Int16ul * "name bytes that follow",
)

InodeRef = Struct(
    "index" / Int64ul * "DIR_INDEX index in the parent directory",
    "name_len" / Int16ul * "name bytes that follow",
)

InodeExtref = Struct(
    "parent_objectid" / Int64ul * "parent directory inode",
    "index" / Int64ul * "DIR_INDEX index in that directory",
    "name_len" / Int16ul * "name bytes that follow",
)

DirItem = Struct(
    "location" / DiskKey * "the inode item (or ROOT_ITEM of a subvolume) named",
    "transid" / Int64ul * "transaction that made the entry",
    "data_len" / Int16ul * "bytes of value after the name (xattrs)",
    "name_len" / Int16ul * "name bytes that follow",
    "type" / Int8ul * "file type (see FileType)",
)

FileType = Enum(Int8ul, unknown=0, reg_file=1, dir=2, chrdev=3, blkdev=4, fifo=5, sock=6,
                symlink=7, xattr=8)

Compression = Enum(Int8ul, none=0, zlib=1, lzo=2, zstd=3)
ExtentType = Enum(Int8ul, inline=0, regular=1, prealloc=2)

FileExtentItem = Struct(
    "generation" / Int64ul * "transaction that wrote the extent",
    "ram_bytes" / Int64ul * "decompressed size of the whole extent, bytes",
    "compression" / Compression * "how the data is compressed",
    "encryption" / Int8ul * "0: not encrypted",
    "other_encoding" / Int16ul * "0: none",
    "type" / ExtentType * "inline data, a regular extent or a preallocated one",
)
FileExtentRegular = Struct(
    "disk_bytenr" / Int64ul * "logical address of the disk extent (0: a hole)",
    "disk_num_bytes" / Int64ul * "bytes of the disk extent (compressed size)",
    "offset" / Int64ul * "where this file range starts inside the decompressed extent",
    "num_bytes" / Int64ul * "file bytes this item covers",
)

ItemType = Enum(
    Int8ul,
    INODE_ITEM=1, INODE_REF=12, INODE_EXTREF=13, XATTR_ITEM=24, VERITY_DESC_ITEM=36,
    VERITY_MERKLE_ITEM=37, ORPHAN_ITEM=48, DIR_LOG_ITEM=60, DIR_LOG_INDEX=72, DIR_ITEM=84,
    DIR_INDEX=96, EXTENT_DATA=108, EXTENT_CSUM=128, ROOT_ITEM=132, ROOT_BACKREF=144,
    ROOT_REF=156, EXTENT_ITEM=168, METADATA_ITEM=169, TREE_BLOCK_REF=176,
    EXTENT_DATA_REF=178, SHARED_BLOCK_REF=182, SHARED_DATA_REF=184, BLOCK_GROUP_ITEM=192,
    FREE_SPACE_INFO=198, FREE_SPACE_EXTENT=199, FREE_SPACE_BITMAP=200, DEV_EXTENT=204,
    DEV_ITEM=216, CHUNK_ITEM=228, QGROUP_STATUS=240, QGROUP_INFO=242, QGROUP_LIMIT=244,
    QGROUP_RELATION=246, PERSISTENT_ITEM=249, DEV_REPLACE=250, UUID_KEY_SUBVOL=251,
    UUID_KEY_RECEIVED_SUBVOL=252, STRING_ITEM=253,
)

# item type numbers used in code (the Enum above gives their names)
INODE_ITEM, INODE_REF, INODE_EXTREF, XATTR_ITEM = 1, 12, 13, 24
DIR_ITEM, DIR_INDEX, EXTENT_DATA, EXTENT_CSUM = 84, 96, 108, 128
ROOT_ITEM, ROOT_BACKREF, ROOT_REF, CHUNK_ITEM, DEV_ITEM = 132, 144, 156, 228, 216
ORPHAN_ITEM, EXTENT_ITEM = 48, 168
DIR_LOG_INDEX = 72

DirLogItem = Struct(
    "end" / Int64ul * "last DIR_INDEX index of the range the log is authoritative for "
    "(the key offset is the first)",
)

_U64 = 1 << 64

ObjectId = Enum(
    Int64ul,
    ROOT_TREE=1, EXTENT_TREE=2, CHUNK_TREE=3, DEV_TREE=4, FS_TREE=5, ROOT_TREE_DIR=6,
    CSUM_TREE=7, QUOTA_TREE=8, UUID_TREE=9, FREE_SPACE_TREE=10, BLOCK_GROUP_TREE=11,
    RAID_STRIPE_TREE=12, FIRST_FREE=256,
    BALANCE=_U64 - 4, ORPHAN=_U64 - 5, TREE_LOG=_U64 - 6, TREE_LOG_FIXUP=_U64 - 7,
    TREE_RELOC=_U64 - 8, DATA_RELOC_TREE=_U64 - 9, EXTENT_CSUM=_U64 - 10,
    FREE_SPACE=_U64 - 11, FREE_INO=_U64 - 12, MULTIPLE=_U64 - 255,
)
ROOT_TREE_OBJECTID, CHUNK_TREE_OBJECTID, FS_TREE_OBJECTID = 1, 3, 5
EXTENT_TREE_OBJECTID = 2
ROOT_TREE_DIR_OBJECTID, CSUM_TREE_OBJECTID = 6, 7
FIRST_FREE_OBJECTID, LAST_FREE_OBJECTID = 256, _U64 - 256
TREE_RELOC_OBJECTID, EXTENT_CSUM_OBJECTID = _U64 - 8, _U64 - 10
TREE_LOG_OBJECTID, ORPHAN_OBJECTID = _U64 - 6, _U64 - 5
FIRST_CHUNK_TREE_OBJECTID = 256

IncompatFlags = FlagsEnum(
    Int64ul,
    MIXED_BACKREF=1 << 0, DEFAULT_SUBVOL=1 << 1, MIXED_GROUPS=1 << 2, COMPRESS_LZO=1 << 3,
    COMPRESS_ZSTD=1 << 4, BIG_METADATA=1 << 5, EXTENDED_IREF=1 << 6, RAID56=1 << 7,
    SKINNY_METADATA=1 << 8, NO_HOLES=1 << 9, METADATA_UUID=1 << 10, RAID1C34=1 << 11,
    ZONED=1 << 12, EXTENT_TREE_V2=1 << 13, RAID_STRIPE_TREE=1 << 14, SIMPLE_QUOTA=1 << 16,
)
INCOMPAT_METADATA_UUID = 1 << 10
CompatRoFlags = FlagsEnum(
    Int64ul, FREE_SPACE_TREE=1 << 0, FREE_SPACE_TREE_VALID=1 << 1, VERITY=1 << 2,
    BLOCK_GROUP_TREE=1 << 3,
)

# block group profile bits (BlockGroupFlags above names them all)
BG_DATA, BG_SYSTEM, BG_METADATA = 1, 2, 4
BG_RAID0, BG_RAID1, BG_DUP, BG_RAID10 = 8, 16, 32, 64
BG_RAID5, BG_RAID6, BG_RAID1C3, BG_RAID1C4 = 128, 256, 512, 1024

# inode flags that matter to a reader
INODE_NODATASUM = 1 << 0
INODE_COMPRESS = 1 << 11


# --- fast paths: layout.py derives them from the declarations ---------------------------

#: a little-endian ``struct.Struct`` of a declaration, nested Structs flattened and Arrays
#: of integers as their values
le_format = partial(struct_format, arrays=True)


HEADER_SIZE = Header.sizeof()  # 101
Crc32cCsum = Struct(  # csum_type crc32c: what the first bytes of a 32-byte csum field hold
    "crc32c" / Int32ul * "CRC-32C of the bytes after the csum field",
)
ITEM_SIZE = Item.sizeof()  # 25
KEY_PTR_SIZE = KeyPtr.sizeof()  # 33
DISK_KEY_SIZE = DiskKey.sizeof()  # 17
CHUNK_SIZE = Chunk.sizeof()  # 48
STRIPE_SIZE = Stripe.sizeof()  # 32
INODE_ITEM_SIZE = InodeItem.sizeof()  # 160
DIR_ITEM_SIZE = DirItem.sizeof()  # 30
FILE_EXTENT_INLINE_SIZE = FileExtentItem.sizeof()  # 21: inline data follows
FILE_EXTENT_SIZE = FILE_EXTENT_INLINE_SIZE + FileExtentRegular.sizeof()  # 53
ROOT_ITEM_SIZE = RootItem.sizeof()  # 439

HEADER_FMT = le_format(Header)
ITEM_FMT = le_format(Item)
KEY_PTR_FMT = le_format(KeyPtr)
DISK_KEY_FMT = le_format(DiskKey)
CHUNK_FMT = le_format(Chunk)
STRIPE_FMT = le_format(Stripe)
INODE_ITEM_FMT = le_format(InodeItem)
DIR_ITEM_FMT = le_format(DirItem)
FILE_EXTENT_FMT = le_format(FileExtentItem)
FILE_EXTENT_REGULAR_FMT = le_format(FileExtentRegular)
INODE_REF_FMT = le_format(InodeRef)
INODE_EXTREF_FMT = le_format(InodeExtref)
ROOT_REF_FMT = le_format(RootRef)
DIR_LOG_ITEM_FMT = le_format(DirLogItem)

#: positions of InodeItem fields in INODE_ITEM_FMT's tuple (nested names joined by "_",
#: the reserved words as reserved0..3)
INODE_FIELDS = {n: i for i, n in enumerate(
    n for x in leaves(InodeItem)
    for n in ([f"{x.name}{k}" for k in range(x.items)] if x.item else [x.name.replace(".", "_")])
)}
