"""QCOW2 on-disk structures and constants, named as QEMU's "qcow2 image format" document
(docs/interop/qcow2.txt) names them. All numbers on disk are big-endian."""

from __future__ import annotations

from construct import (
    Bytes,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Padding,
    Struct,
    this,
)

FORMAT = "qcow2"
MAGIC = b"QFI\xfb"

# --- on-disk structures ----------------------------------------------------------------

QCowHeader = Struct(
    "magic" / Bytes(4) * "QFI\\xfb",
    "version" / Int32ub * "2 or 3",
    "backing_file_offset" / Int64ub * "host offset of the backing file name, 0 = none",
    "backing_file_size" / Int32ub * "length of the backing file name, bytes (< 1024)",
    "cluster_bits" / Int32ub * "log2 of the cluster size, bytes (9..21)",
    "size" / Int64ub * "virtual disk size, bytes",
    "crypt_method" / Int32ub * "0 none, 1 AES, 2 LUKS",
    "l1_size" / Int32ub * "entries in the active L1 table",
    "l1_table_offset" / Int64ub * "host offset of the active L1 table",
    "refcount_table_offset" / Int64ub * "host offset of the refcount table",
    "refcount_table_clusters" / Int32ub * "size of the refcount table, clusters",
    "nb_snapshots" / Int32ub * "number of internal snapshots",
    "snapshots_offset" / Int64ub * "host offset of the snapshot table",
)  # 72 bytes: the whole version 2 header

QCowHeaderV3 = Struct(
    "incompatible_features" / Int64ub * "bit 0 dirty, 1 corrupt, 2 external data file, "
    "3 compression type, 4 extended L2",
    "compatible_features" / Int64ub * "bit 0 lazy refcounts",
    "autoclear_features" / Int64ub * "bit 0 bitmaps consistent, 1 data file is raw",
    "refcount_order" / Int32ub * "refcount width = 1 << refcount_order bits",
    "header_length" / Int32ub * "length of the header structure, bytes (>= 104)",
)  # bytes 72..103

QCowHeaderFull = Struct(
    *QCowHeader.subcons,
    *QCowHeaderV3.subcons,
    "compression_type" / If(this.header_length > 104, Int8ub) * "0 zlib, 1 zstd "
    "(present when header_length > 104)",
    "padding" / Bytes(lambda c: max(0, c.header_length - 105)) * "zeros up to header_length",
)  # the whole version 3 header as stored (header_length bytes): what explain("header") shows
# the spec's name ("The first cluster of a qcow2 image contains the file header"), for
# explain()'s title
QCowHeader.docs = "qcow2 header (version 2 fields)"
QCowHeaderFull.docs = "qcow2 header (version 3)"

HeaderExtension = Struct(
    "type" / Int32ub * "extension type (0 = end of the list)",
    "length" / Int32ub * "length of the data, bytes (padded to 8 on disk)",
)

FeatureNameEntry = Struct(
    "type" / Int8ub * "0 incompatible, 1 compatible, 2 autoclear",
    "bit" / Int8ub * "bit number in that feature field",
    "name" / Bytes(46) * "NUL-padded ASCII name",
)

BitmapsExtension = Struct(
    "nb_bitmaps" / Int32ub * "number of persistent dirty bitmaps",
    Padding(4),
    "bitmap_directory_size" / Int64ub * "bytes",
    "bitmap_directory_offset" / Int64ub * "host offset",
)

BitmapDirectoryEntry = Struct(
    "bitmap_table_offset" / Int64ub * "host offset of the bitmap table",
    "bitmap_table_size" / Int32ub * "entries (u64) in the bitmap table",
    "flags" / Int32ub * "bit 0 in_use, 1 auto",
    "type" / Int8ub * "1 = dirty tracking bitmap",
    "granularity_bits" / Int8ub * "log2 of bytes per bit",
    "name_size" / Int16ub * "bytes",
    "extra_data_size" / Int32ub * "bytes",
)  # 24 bytes, then extra data, name, padding to 8

CryptoHeaderExtension = Struct(
    "offset" / Int64ub * "host offset of the encryption header",
    "length" / Int64ub * "length of the encryption header, bytes",
)

SnapshotHeader = Struct(
    "l1_table_offset" / Int64ub * "host offset of the snapshot's L1 table",
    "l1_size" / Int32ub * "entries in that L1 table",
    "id_str_size" / Int16ub * "bytes",
    "name_size" / Int16ub * "bytes",
    "date_sec" / Int32ub * "creation time, seconds since the epoch",
    "date_nsec" / Int32ub * "nanoseconds",
    "vm_clock_nsec" / Int64ub * "guest clock at the snapshot, ns",
    "vm_state_size" / Int32ub * "saved VM state, bytes (0 = disk-only)",
    "extra_data_size" / Int32ub * "bytes of extra data after this header",
)  # 40 bytes, then extra data, id, name, padding to 8

SnapshotTableEntry = Struct(
    *SnapshotHeader.subcons,
    "extra_data" / Bytes(this.extra_data_size) * "SnapshotExtraData (VM state size, disk "
    "size, instruction count), as long as extra_data_size says",
    "id_str" / Bytes(this.id_str_size) * "the snapshot's unique id, text (not NUL-ended)",
    "name" / Bytes(this.name_size) * "the snapshot's name, text (not NUL-ended)",
    "padding" / Bytes(lambda c: -(40 + c.extra_data_size + c.id_str_size + c.name_size) % 8)
    * "zeros up to a multiple of 8 bytes",
)  # one entry of the snapshot table, as stored
SnapshotTableEntry.docs = "QCowSnapshot (snapshot table entry)"

SnapshotExtraData = Struct(
    "vm_state_size_large" / Int64ub * "VM state size, bytes (64-bit)",
    "disk_size" / Int64ub * "virtual disk size at the snapshot, bytes",
    "icount" / Int64ub * "instruction count (record/replay), -1 = none",
)

EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441
EXTENSION_NAMES = {
    EXT_BACKING_FORMAT: "backing format",
    EXT_FEATURE_NAMES: "feature name table",
    EXT_BITMAPS: "bitmaps",
    EXT_CRYPTO: "full disk encryption header pointer",
    EXT_DATA_FILE: "external data file name",
}

INCOMPAT_DIRTY, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE = 1 << 0, 1 << 1, 1 << 2
INCOMPAT_COMPRESSION, INCOMPAT_EXTL2 = 1 << 3, 1 << 4
INCOMPAT_KNOWN = 0x1F
COMPAT_LAZY_REFCOUNTS = 1 << 0
AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW = 1 << 0, 1 << 1
FEATURE_DEFAULT_NAMES = {
    (0, 0): "dirty",
    (0, 1): "corrupt",
    (0, 2): "external data file",
    (0, 3): "compression type",
    (0, 4): "extended L2 entries",
    (1, 0): "lazy refcounts",
    (2, 0): "bitmaps",
    (2, 1): "raw external data",
}

L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
BME_OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bitmap table entry: host offset of a bitmap data cluster
BME_RESERVED_MASK = 0xFF000000000001FE  # ... bits that must be zero
BME_ALL_ONES = 1  # bit 0: the cluster reads as all ones (only with offset 0)
QCOW_OFLAG_COPIED = 1 << 63
QCOW_OFLAG_COMPRESSED = 1 << 62
QCOW_OFLAG_ZERO = 1
MAX_L1_BYTES = 32 << 20  # QEMU's limit on L1 tables
L1E_RESERVED_MASK = 0x7F000000000001FF  # bits that must be zero in an L1 entry
L2E_STD_RESERVED_MASK = 0x3F000000000001FE  # ... in a standard (uncompressed) L2 entry
MAX_REFTABLE_BYTES = 8 << 20 << 3
MAX_CHECK_ROWS = 10_000  # check() lists this many refcount problems, then counts the rest



def cstr(b: bytes) -> str:
    """A NUL-terminated (or NUL-padded) name as text."""
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")
