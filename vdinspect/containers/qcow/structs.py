"""QCOW (version 1) on-disk structures, as QEMU's block/qcow.c reads them (big-endian)."""

from __future__ import annotations

from construct import Bytes, Int8ub, Int16ub, Int32ub, Int64ub, Struct

FORMAT = "qcow"

QCOW_MAGIC = b"QFI\xfb"
QCOW_VERSION = 1
QCOW_CRYPT_NONE = 0
QCOW_CRYPT_AES = 1
QCOW_OFLAG_COMPRESSED = 1 << 63

QcowHeader = Struct(
    "magic" / Bytes(4) * "QFI\\xfb",
    "version" / Int32ub * "1 for this format (2 and 3 are QCOW2)",
    "backing_file_offset" / Int64ub * "host offset of the backing file name, bytes; 0 = none",
    "backing_file_size" / Int32ub * "length of the backing file name, bytes (no NUL)",
    "mtime" / Int32ub * "modification time, seconds since 1970-01-01 UTC (qemu writes 0)",
    "size" / Int64ub * "virtual disk size, bytes",
    "cluster_bits" / Int8ub * "log2 of the cluster size, bytes (qemu accepts 9..16)",
    "l2_bits" / Int8ub * "log2 of the entries in one L2 table (qemu accepts 6..13)",
    "padding" / Int16ub * "unused, zero",
    "crypt_method" / Int32ub * "0 = none, 1 = AES-CBC",
    "l1_table_offset" / Int64ub * "host offset of the L1 table, bytes",
)
HEADER_SIZE = QcowHeader.sizeof()  # 48

#: L1 and L2 tables are arrays of big-endian u64 (``numpy.frombuffer(buf, ">u8")``):
#: L1 entry = host offset of an L2 table (0 = none); L2 entry as in the module docstring.
TABLE_ENTRY = ">u8"

MAX_L1_ENTRIES = (2**31 - 1) // 8  # qemu's limit (INT_MAX / sizeof(uint64_t))
MAX_BACKING_NAME = 1023  # qemu's limit on backing_file_size
MAX_FINDINGS = 100  # per kind of problem in check(); the rest are summarised
L2_SCAN_BYTES = 16 << 20  # leaked bytes check() reads to recognise unreferenced L2 tables

# kinds of L2 entries after decoding
UNALLOC, PLAIN, COMPRESSED, BAD = 0, 1, 2, 3

