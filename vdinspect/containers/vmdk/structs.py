"""VMDK on-disk structures, named as VMware's "Virtual Disk Format" technical notes name them.

All numbers are little-endian. Offsets and sizes written in *sectors* are 512-byte units.
The seSparse layout is not published by VMware; its field names follow QEMU's block/vmdk.c.
"""

from __future__ import annotations

from construct import Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

SECTOR = 512

# --- hosted sparse extent ("KDMV"): monolithicSparse, twoGbMaxExtentSparse, streamOptimized ---

SPARSE_MAGIC = b"KDMV"

SparseExtentHeader = Struct(
    "magicNumber" / Bytes(4) * "'KDMV'",
    "version"
    / Int32ul
    * "1; 2 adds zeroed-grain GTEs; 3 stream-optimized / changed-block tracking",
    "flags" / Int32ul * "bit 0 newline test valid, 1 redundant grain directory, "
    "2 zeroed-grain GTEs, 16 compressed grains, 17 markers",
    "capacity" / Int64ul * "size of the extent, sectors",
    "grainSize" / Int64ul * "size of a grain, sectors",
    "descriptorOffset" / Int64ul * "embedded descriptor, sectors (0 = none)",
    "descriptorSize" / Int64ul * "embedded descriptor length, sectors",
    "numGTEsPerGT" / Int32ul * "entries in one grain table (512)",
    "rgdOffset" / Int64ul * "redundant grain directory, sectors",
    "gdOffset" / Int64ul * "grain directory, sectors (GD_AT_END: use the footer's)",
    "overHead" / Int64ul * "sectors of metadata before the first grain",
    "uncleanShutdown" / Int8ul * "1 = the extent was not closed cleanly",
    "singleEndLineChar" / Bytes(1) * "'\\n' (newline test)",
    "nonEndLineChar" / Bytes(1) * "' '",
    "doubleEndLineChar1" / Bytes(1) * "'\\r'",
    "doubleEndLineChar2" / Bytes(1) * "'\\n'",
    "compressAlgorithm" / Int16ul * "0 none, 1 deflate (zlib stream)",
    "pad" / Bytes(433) * "zeros",
)  # 512 bytes

FLAG_NL_DETECT = 1 << 0
FLAG_RGD = 1 << 1
FLAG_ZEROED_GRAIN = 1 << 2
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
FLAG_NAMES = {
    FLAG_NL_DETECT: "newline test",
    FLAG_RGD: "redundant grain directory",
    FLAG_ZEROED_GRAIN: "zeroed-grain GTEs",
    FLAG_COMPRESSED: "compressed grains",
    FLAG_MARKERS: "markers",
}
COMPRESSION_NONE, COMPRESSION_DEFLATE = 0, 1
GD_AT_END = 0xFFFFFFFFFFFFFFFF  # gdOffset of a stream whose grain directory is in the footer
GTE_ZEROED = 1  # grain table entry of a zeroed grain (with FLAG_ZEROED_GRAIN)
NEWLINE_CHECK = (b"\n", b" ", b"\r", b"\n")

# Stream-optimized markers: each starts on a sector boundary. A grain marker has size > 0 and
# is followed by the compressed grain; a metadata marker has size 0, fills one sector, and the
# ``val`` sectors of metadata it announces follow it.
Marker = Struct(
    "val" / Int64ul * "grain marker: LBA of the grain (sectors); metadata marker: its sectors",
    "size" / Int32ul * "grain marker: compressed bytes that follow; 0 = metadata marker",
    "type" / Int32ul * "metadata marker type (MARKER_*); part of the data in a grain marker",
)
FOOTER_BYTES = 3 * SECTOR  # footer marker, footer (a copy of the header), end-of-stream marker
GrainMarker = Struct(*Marker.subcons[:2])  # a grain marker: val (LBA) and size, then the data
GRAIN_MARKER_SIZE = GrainMarker.sizeof()  # 12: lba (8) + size (4), then the deflate stream
MARKER_EOS, MARKER_GT, MARKER_GD, MARKER_FOOTER = 0, 1, 2, 3
MARKER_NAMES = {
    MARKER_EOS: "end-of-stream marker",
    MARKER_GT: "grain table marker",
    MARKER_GD: "grain directory marker",
    MARKER_FOOTER: "footer marker",
}

MARKER_TYPES = frozenset(MARKER_NAMES)


def marker_name(mtype: int) -> str:
    """A metadata marker's name; types outside the specification (ovftool's 4) by number."""
    return MARKER_NAMES.get(mtype, f"marker of unknown type {mtype}")

# --- ESX Server sparse extent ("COWD"): vmfsSparse redo logs ------------------------------

COWD_MAGIC = b"COWD"
COWD_GT_ENTRIES = 4096  # grain table entries per table (fixed)

COWDHeader = Struct(
    "magicNumber" / Bytes(4) * "'COWD'",
    "version" / Int32ul * "1",
    "flags" / Int32ul * "bit flags",
    "numSectors" / Int32ul * "size of the extent, sectors",
    "grainSize" / Int32ul * "size of a grain, sectors",
    "gdOffset" / Int32ul * "grain directory, sectors",
    "numGDEntries" / Int32ul * "entries in the grain directory",
    "freeSector" / Int32ul * "next free sector in the file",
    "u" / Bytes(1028) * "root: cylinders, heads, sectors; child: parentFileName[1024], "
    "parentGeneration",
    "generation" / Int32ul * "generation of this extent",
    "name" / Bytes(60) * "NUL-padded name",
    "description" / Bytes(512) * "NUL-padded description",
    "savedGeneration" / Int32ul * "generation when last closed cleanly",
    "reserved" / Bytes(8) * "zeros",
    "uncleanShutdown" / Int32ul * "1 = the extent was not closed cleanly",
    "padding" / Bytes(396) * "zeros",
)  # 2048 bytes

COWDRoot = Struct(
    "cylinders" / Int32ul * "geometry of a root disk",
    "heads" / Int32ul,
    "sectors" / Int32ul,
)
COWDChild = Struct(
    "parentFileName" / Bytes(1024) * "NUL-padded name of the parent extent",
    "parentGeneration" / Int32ul * "the parent's generation when the child was made",
)

# --- ESXi space-efficient sparse extent (seSparse) --------------------------------------------

SESPARSE_CONST_MAGIC = 0x00000000CAFEBABE
SESPARSE_VOLATILE_MAGIC = 0x00000000CAFECAFE
SESPARSE_VERSION = 0x0000000200000001

SESparseConstHeader = Struct(
    "magic" / Int64ul * "0xcafebabe",
    "version" / Int64ul * "0x0000000200000001",
    "capacity" / Int64ul * "size of the extent, sectors",
    "grain_size" / Int64ul * "size of a grain, sectors (8)",
    "grain_table_size" / Int64ul * "size of one grain table, sectors (64 = 4096 entries)",
    "flags" / Int64ul * "0",
    "reserved1" / Int64ul,
    "reserved2" / Int64ul,
    "reserved3" / Int64ul,
    "reserved4" / Int64ul,
    "volatile_header_offset" / Int64ul * "sectors",
    "volatile_header_size" / Int64ul * "sectors",
    "journal_header_offset" / Int64ul * "sectors",
    "journal_header_size" / Int64ul * "sectors",
    "journal_offset" / Int64ul * "sectors",
    "journal_size" / Int64ul * "sectors",
    "grain_dir_offset" / Int64ul * "grain directory, sectors",
    "grain_dir_size" / Int64ul * "grain directory length, sectors (8-byte entries)",
    "grain_tables_offset" / Int64ul * "first grain table, sectors",
    "grain_tables_size" / Int64ul * "grain table area, sectors",
    "free_bitmap_offset" / Int64ul * "sectors",
    "free_bitmap_size" / Int64ul * "sectors",
    "backmap_offset" / Int64ul * "sectors",
    "backmap_size" / Int64ul * "sectors",
    "grains_offset" / Int64ul * "first grain, sectors",
    "grains_size" / Int64ul * "grain area, sectors",
    "pad" / Bytes(304) * "zeros",
)  # 512 bytes

SESparseVolatileHeader = Struct(
    "magic" / Int64ul * "0xcafecafe",
    "free_gt_number" / Int64ul * "next free grain table",
    "next_txn_seq_number" / Int64ul * "journal transaction sequence",
    "replay_journal" / Int64ul * "nonzero = the journal must be replayed (dirty)",
    "pad" / Bytes(480) * "zeros",
)  # 512 bytes

# grain directory entry: top 32 bits 0x10000000 = allocated, low 32 bits = grain table index
SESPARSE_GDE_ALLOCATED = 0x10000000
# grain table entry: the top nibble is the type
SESPARSE_GTE_UNALLOCATED, SESPARSE_GTE_UNMAPPED = 0x0, 0x1
SESPARSE_GTE_ZERO, SESPARSE_GTE_ALLOCATED = 0x2, 0x3
