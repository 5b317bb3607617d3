"""VDI on-disk structures (VirtualBox VDICore.h): the pre-header, the headers of
versions 0 and 1.1, the block map; and reading them."""

from __future__ import annotations

import uuid as uuidlib

from construct import Bytes, Container, Int32ul, Int64ul, Struct

from ...errors import VDInspectError
from ...io import FileSource, paths

FORMAT = "vdi"
SIGNATURE = 0xBEDA107F
SECTOR = 512
PREHEADER_SIZE = 72
VERSION_0 = 0x00000002  # the only version 0 value VirtualBox still accepts
BLOCK_FREE = 0xFFFFFFFF  # never written: zeros, or the parent's data in a differencing image
BLOCK_ZERO = 0xFFFFFFFE  # discarded / explicitly zero: reads as zeros

NORMAL, FIXED, UNDO, DIFF = 1, 2, 3, 4
IMAGE_TYPES = {NORMAL: "dynamic", FIXED: "fixed", UNDO: "undo", DIFF: "diff"}
IMAGE_TYPE_NAMES = {
    NORMAL: "normal (dynamically growing)",
    FIXED: "fixed (preallocated)",
    UNDO: "undo (changes to commit or discard)",
    DIFF: "differencing",
}
FLAG_NAMES = {0x01: "zero expand (as written by VirtualBox)", 0x100: "zero expand"}
KNOWN_FLAGS = 0x101

#: VirtualBox names a differencing image after its own UUID inside this folder
SNAPSHOTS_FOLDER = "Snapshots"
MAX_SIZE = (1 << 63) - 1  # byte offsets must fit in int64
MAX_SCAN = 4096  # *.vdi headers read at most per folder when looking for a parent

# --- on-disk structures ----------------------------------------------------------------

DiskGeometry = Struct(
    "cCylinders" / Int32ul * "cylinders",
    "cHeads" / Int32ul * "heads",
    "cSectors" / Int32ul * "sectors per track",
    "cbSector" / Int32ul * "bytes per sector (512)",
)  # 16 bytes

PreHeader = Struct(
    "szFileInfo" / Bytes(64) * 'banner for the eyes only, "<<< ... Disk Image >>>\\n", NUL-padded',
    "u32Signature" / Int32ul * "0xbeda107f",
    "u32Version" / Int32ul * "major << 16 | minor: 0x00010001 = 1.1; 0x00000002 = version 0",
)  # 72 bytes

Header0 = Struct(
    "u32Type" / Int32ul * "1 normal, 2 fixed, 3 undo, 4 differencing",
    "fFlags" / Int32ul * "image flags",
    "szComment" / Bytes(256) * "description, UTF-8, NUL-padded",
    "LegacyGeometry" / DiskGeometry * "physical CHS geometry of old versions",
    "cbDisk" / Int64ul * "virtual disk size, bytes",
    "cbBlock" / Int32ul * "block size, bytes (a power of two, 1 MiB by default)",
    "cBlocks" / Int32ul * "blocks in the disk (entries in the block map)",
    "cBlocksAllocated" / Int32ul * "blocks stored in the data area",
    "uuidCreate" / Bytes(16) * "this image's UUID",
    "uuidModify" / Bytes(16) * "UUID of the last modification",
    "uuidLinkage" / Bytes(16) * "differencing: the parent's uuidCreate",
)  # 348 bytes; the block map follows it, then the data

Header1 = Struct(
    "cbHeader" / Int32ul * "size of this header, bytes (384, or 400 with the LCHS geometry)",
    "u32Type" / Int32ul * "1 normal, 2 fixed, 3 undo, 4 differencing",
    "fFlags" / Int32ul * "image flags",
    "szComment" / Bytes(256) * "description, UTF-8, NUL-padded",
    "offBlocks" / Int32ul * "host offset of the block map",
    "offData" / Int32ul * "host offset of the data area",
    "LegacyGeometry" / DiskGeometry * "physical CHS geometry (unused since 1.1)",
    "u32Dummy" / Int32ul * "was the BIOS translation mode; unused",
    "cbDisk" / Int64ul * "virtual disk size, bytes",
    "cbBlock" / Int32ul * "block size, bytes (a power of two, 1 MiB by default)",
    "cbBlockExtra" / Int32ul * "bytes of private data in front of each block's data (0)",
    "cBlocks" / Int32ul * "blocks in the disk (entries in the block map)",
    "cBlocksAllocated" / Int32ul * "blocks stored in the data area",
    "uuidCreate" / Bytes(16) * "this image's UUID",
    "uuidModify" / Bytes(16) * "UUID of the last modification",
    "uuidLinkage" / Bytes(16) * "differencing: the parent's uuidCreate",
    "uuidParentModify" / Bytes(16) * "differencing: the parent's uuidModify when made",
)  # 384 bytes

Header1Plus = Struct(
    *Header1.subcons,
    "LCHSGeometry" / DiskGeometry * "logical CHS geometry the guest's BIOS sees",
)  # 400 bytes: header 1.1 as VirtualBox writes it since 1.2

# VirtualBox's names (VDICore.h), for explain()'s titles
PreHeader.docs, Header0.docs = "VDIPREHEADER", "VDIHEADER0"
Header1.docs, Header1Plus.docs = "VDIHEADER1", "VDIHEADER1PLUS"

#: The block map: ``cBlocks`` little-endian u32 (numpy dtype).
BLOCK_ENTRY = "<u4"





def vdi_uuid(raw: bytes) -> uuidlib.UUID:
    """A UUID as VirtualBox stores it (IPRT layout: first three fields little-endian)."""
    return uuidlib.UUID(bytes_le=bytes(raw))


def header_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def geometry(g) -> tuple[int, int, int, int] | None:
    if g is None:
        return None
    return (g.cCylinders, g.cHeads, g.cSectors, g.cbSector)


def parse_headers(data: bytes) -> tuple[Container, Container] | None:
    """(pre-header, header, header offset map) from a file's first bytes, or None.

    The header comes back in the version 1.1 shape whatever the version; for version 0 the
    offsets VirtualBox computes are filled in. None when the bytes are not a VDI header.
    """
    if len(data) < PREHEADER_SIZE:
        return None
    pre = PreHeader.parse(data[:PREHEADER_SIZE])
    if pre.u32Signature != SIGNATURE:
        return None
    body = data[PREHEADER_SIZE:]
    if pre.u32Version >> 16 == 1:
        if len(body) < Header1.sizeof():
            return None
        h = Header1.parse(body[: Header1.sizeof()])
        if h.cbHeader >= Header1Plus.sizeof() and len(body) >= Header1Plus.sizeof():
            h = Header1Plus.parse(body[: Header1Plus.sizeof()])
        else:
            h.LCHSGeometry = None
        return pre, h
    if pre.u32Version == VERSION_0:
        if len(body) < Header0.sizeof():
            return None
        h = Header0.parse(body[: Header0.sizeof()])
        h.cbHeader = Header0.sizeof()
        h.offBlocks = PREHEADER_SIZE + Header0.sizeof()
        h.offData = h.offBlocks + 4 * h.cBlocks
        h.cbBlockExtra = 0
        h.u32Dummy = 0
        h.uuidParentModify = bytes(16)
        h.LCHSGeometry = None
        return pre, h
    return pre, None


def peek_uuid(path: str, referrer: str | None = None) -> uuidlib.UUID | None:
    """The ``uuidCreate`` of the VDI file at ``path`` (None if it is not a readable VDI, or
    if the path policy does not let ``referrer``, the file naming it, open it)."""
    try:
        src = paths.current().open(path, referrer) if referrer else FileSource(path)
    except (VDInspectError, OSError):
        return None
    try:
        got = parse_headers(src.read(0, min(src.size, PREHEADER_SIZE + Header1Plus.sizeof())))
    except (VDInspectError, OSError):
        return None
    finally:
        src.close()
    if not got or got[1] is None:
        return None
    return vdi_uuid(got[1].uuidCreate)


def uuid_text(u) -> str | None:
    """A UUID as text (None stays None)."""
    return None if u is None else str(u)
