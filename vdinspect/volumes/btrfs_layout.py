"""The Btrfs superblock, declared once, with the device item and backup roots it holds.

Declared here, below the filesystem drivers, because the probe (``probes.py``) and the
partition scan's evidence read it as well as the Btrfs driver (``vdinspect.filesystems.
btrfs``, which re-exports it from its ``structs`` module). Facts from the Btrfs
documentation ("On-disk format") and the kernel's include/uapi/linux/btrfs_tree.h
(``btrfs_super_block``, names without the ``btrfs_`` prefix). Little-endian.
"""

from __future__ import annotations

from construct import Array, Bytes, Enum, Int8ul, Int16ul, Int32ul, Int64ul, Struct

MAGIC = b"_BHRfS_M"
SUPER_INFO_OFFSET = 0x10000  # the primary superblock, bytes from the device start
SUPER_MIRRORS = (0x10000, 0x4000000, 0x4000000000)  # 64 KiB, 64 MiB, 256 GiB
SUPER_INFO_SIZE = 4096
CSUM_SIZE = 32  # room for a checksum in headers; the used part depends on csum_type
SYS_CHUNK_ARRAY_SIZE = 2048


DevItem = Struct(
    "devid" / Int64ul * "device id inside the filesystem",
    "total_bytes" / Int64ul * "size of the device, bytes",
    "bytes_used" / Int64ul * "bytes allocated to chunks on the device",
    "io_align" / Int32ul * "optimal I/O alignment, bytes",
    "io_width" / Int32ul * "optimal I/O width, bytes",
    "sector_size" / Int32ul * "minimal I/O size, bytes",
    "type" / Int64ul * "device type (unused)",
    "generation" / Int64ul * "last generation the item changed",
    "start_offset" / Int64ul * "start of the allocatable area (unused)",
    "dev_group" / Int32ul * "device group (unused)",
    "seek_speed" / Int8ul * "seek speed hint (unused)",
    "bandwidth" / Int8ul * "bandwidth hint (unused)",
    "uuid" / Bytes(16) * "device UUID",
    "fsid" / Bytes(16) * "filesystem UUID the device belongs to",
)

RootBackup = Struct(
    "tree_root" / Int64ul * "root tree logical address",
    "tree_root_gen" / Int64ul * "its generation",
    "chunk_root" / Int64ul * "chunk tree logical address",
    "chunk_root_gen" / Int64ul * "its generation",
    "extent_root" / Int64ul * "extent tree logical address",
    "extent_root_gen" / Int64ul * "its generation",
    "fs_root" / Int64ul * "FS tree logical address",
    "fs_root_gen" / Int64ul * "its generation",
    "dev_root" / Int64ul * "device tree logical address",
    "dev_root_gen" / Int64ul * "its generation",
    "csum_root" / Int64ul * "checksum tree logical address",
    "csum_root_gen" / Int64ul * "its generation",
    "total_bytes" / Int64ul * "filesystem size, bytes",
    "bytes_used" / Int64ul * "bytes used",
    "num_devices" / Int64ul * "devices",
    "unused_64" / Array(4, Int64ul) * "reserved",
    "tree_root_level" / Int8ul * "levels of the trees above",
    "chunk_root_level" / Int8ul,
    "extent_root_level" / Int8ul,
    "fs_root_level" / Int8ul,
    "dev_root_level" / Int8ul,
    "csum_root_level" / Int8ul,
    "unused_8" / Bytes(10) * "reserved",
)

CsumType = Enum(Int16ul, crc32c=0, xxhash64=1, sha256=2, blake2b=3)

#: bytes of each checksum type that are used
CSUM_LENGTHS = {0: 4, 1: 8, 2: 32, 3: 32}
CSUM_NAMES = {0: "crc32c", 1: "xxhash64", 2: "sha256", 3: "blake2b"}

Superblock = Struct(
    "csum" / Bytes(CSUM_SIZE) * "checksum of everything after this field (4 KiB block)",
    "fsid" / Bytes(16) * "filesystem UUID",
    "bytenr" / Int64ul * "physical address of this copy, bytes",
    "flags" / Int64ul * "superblock flags",
    "magic" / Bytes(8) * "_BHRfS_M",
    "generation" / Int64ul * "transaction id of the last commit",
    "root" / Int64ul * "root tree logical address",
    "chunk_root" / Int64ul * "chunk tree logical address",
    "log_root" / Int64ul * "log tree logical address (0: no log to replay)",
    "unused_log_root_transid" / Int64ul * "unused",
    "total_bytes" / Int64ul * "filesystem size, bytes",
    "bytes_used" / Int64ul * "bytes used",
    "root_dir_objectid" / Int64ul * "the root tree directory (6)",
    "num_devices" / Int64ul * "devices in the filesystem",
    "sectorsize" / Int32ul * "data block size, bytes",
    "nodesize" / Int32ul * "tree block size, bytes",
    "unused_leafsize" / Int32ul * "old leaf size (= nodesize)",
    "stripesize" / Int32ul * "stripe size, bytes",
    "sys_chunk_array_size" / Int32ul * "bytes of sys_chunk_array in use",
    "chunk_root_generation" / Int64ul * "generation of the chunk tree",
    "compat_flags" / Int64ul * "compatible features",
    "compat_ro_flags" / Int64ul * "read-only compatible features",
    "incompat_flags" / Int64ul * "incompatible features",
    "csum_type" / CsumType * "checksum algorithm",
    "root_level" / Int8ul * "root tree height - 1",
    "chunk_root_level" / Int8ul * "chunk tree height - 1",
    "log_root_level" / Int8ul * "log tree height - 1",
    "dev_item" / DevItem * "this device",
    "label" / Bytes(256) * "label, NUL padded",
    "cache_generation" / Int64ul * "free space cache generation",
    "uuid_tree_generation" / Int64ul * "UUID tree generation",
    "metadata_uuid" / Bytes(16) * "UUID written into tree blocks (METADATA_UUID feature)",
    "nr_global_roots" / Int64ul * "global roots (extent tree v2)",
    "reserved" / Bytes(216) * "reserved",
    "sys_chunk_array" / Bytes(SYS_CHUNK_ARRAY_SIZE) * "(disk key, chunk item) pairs of the "
    "SYSTEM chunks: enough to read the chunk tree",
    "super_roots" / Array(4, RootBackup) * "backup root pointers of recent commits",
    "padding" / Bytes(565) * "to 4 KiB",
)
