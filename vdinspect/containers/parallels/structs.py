"""Parallels expandable image structures (QEMU docs/interop/parallels.txt; little-endian)."""

from __future__ import annotations

from construct import Bytes, Int32ul, Int64ul, Struct

FORMAT = "parallels"
MAGIC_V1 = b"WithoutFreeSpace"  # BAT in sectors, 32-bit sector count
MAGIC_V2 = b"WithouFreSpacExt"  # BAT in clusters, 64-bit sector count
HEADER_VERSION = 2
HEADER_SIZE = 64
SECTOR = 512
INUSE_OPEN = 0x746F6E59  # "Ynot": opened read/write and not closed (dirty)
INUSE_CLOSED = 0x312E3276  # "v2.1": closed cleanly
FLAG_EMPTY = 1 << 0  # "the image should be considered clear"
MAX_TRACKS = 0x7FFFFFFF // 513  # QEMU's limit on the cluster size, sectors
MAX_BAT_ENTRIES = 0x7FFFFFFF // 4  # QEMU's limit on the BAT ("catalog too large")
MAX_SECTORS = (1 << 63) // SECTOR - 1  # byte offsets must fit in int64

EXT_MAGIC = 0xAB234CEF23DCEA87
FEATURE_END = 0x0000000000000000
FEATURE_DIRTY_BITMAP = 0x20385FAE252CB34A
FEATURE_NAMES = {FEATURE_END: "end of features", FEATURE_DIRTY_BITMAP: "dirty bitmap"}
FEATURE_NECESSARY, FEATURE_TRANSIT = 1 << 0, 1 << 1

# --- on-disk structures ----------------------------------------------------------------

ParallelsHeader = Struct(
    "magic" / Bytes(16) * '"WithoutFreeSpace" (v1) or "WithouFreSpacExt" (v2)',
    "version" / Int32ul * "2",
    "heads" / Int32ul * "disk geometry for the guest: heads",
    "cylinders" / Int32ul * "disk geometry for the guest: cylinders",
    "tracks" / Int32ul * "cluster size, sectors",
    "bat_entries" / Int32ul * "entries in the BAT: disk size in clusters",
    "nb_sectors" / Int64ul * "disk size, sectors (v1: only the low 32 bits count)",
    "inuse" / Int32ul * "0x746F6E59 open, 0x312e3276 closed, 0 old software",
    "data_off" / Int32ul * "start of the data area, sectors (v1: 0 = right after the BAT)",
    "flags" / Int32ul * "bit 0: empty image",
    "ext_off" / Int64ul * "Format Extension cluster, sectors (0 = none)",
)  # 64 bytes; the BAT follows

FormatExtensionHeader = Struct(
    "magic" / Int64ul * "0xAB234CEF23DCEA87",
    "check_sum" / Bytes(16) * "MD5 of the rest of the extension cluster (from byte 24)",
)  # 24 bytes, then feature sections

FeatureHeader = Struct(
    "magic" / Int64ul * "feature: 0 end of features, 0x20385FAE252CB34A dirty bitmap",
    "flags" / Int64ul * "bit 0 NECESSARY, bit 1 TRANSIT",
    "data_size" / Int32ul * "bytes of feature data that follow",
    "unused32" / Int32ul * "alignment",
)  # 24 bytes, then data, padded to 8

DirtyBitmapFeature = Struct(
    "size" / Int64ul * "bitmap size: the disk size in sectors",
    "id" / Bytes(16) * "UUID for backup consistency checking",
    "granularity" / Int32ul * "sectors per bit (a power of two)",
    "l1_size" / Int32ul * "entries in the L1 table",
)  # 32 bytes, then l1_size u64 L1 entries: sector offsets of bitmap clusters (0/1 = all clear/set)


#: The BAT: ``bat_entries`` little-endian u32 (numpy dtype).
BAT_ENTRY = "<u4"
