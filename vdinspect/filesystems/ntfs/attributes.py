"""Attribute values: $STANDARD_INFORMATION, $FILE_NAME, $ATTRIBUTE_LIST, $VOLUME_*,
$REPARSE_POINT, and FILETIME timestamps.

Facts from the Linux-NTFS project documentation (one page per attribute type) and, for
reparse data, Microsoft's [MS-FSCC] 2.1.2 (symbolic link, mount point and WOF buffers).
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass

from construct import Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from .mft import MREF_MASK, RecordError

StandardInformation = Struct(
    "creation_time" / Int64ul * "FILETIME: 100 ns units since 1601-01-01 UTC",
    "last_data_change_time" / Int64ul * "FILETIME of the last write to $DATA",
    "last_mft_change_time" / Int64ul * "FILETIME of the last change to the MFT record",
    "last_access_time" / Int64ul * "FILETIME",
    "file_attributes" / Int32ul * "FILE_ATTRIBUTE_* flags (0x800 compressed, 0x4000 "
    "encrypted, 0x400 reparse point, 0x200 sparse)",
    "maximum_versions" / Int32ul * "0",
    "version_number" / Int32ul * "0",
    "class_id" / Int32ul * "0",
    # NTFS 3.0 and later (72 bytes):
    "owner_id" / Int32ul * "index into $Extend/$Quota",
    "security_id" / Int32ul * "index into $Secure",
    "quota_charged" / Int64ul * "bytes charged to the owner's quota",
    "usn" / Int64ul * "last update sequence number in $Extend/$UsnJrnl",
)  # 48 bytes (NTFS 1.x) or 72 bytes (3.x)

FileName = Struct(
    "parent_directory" / Int64ul * "file reference: record number (48 bits) + sequence (16)",
    "creation_time" / Int64ul * "FILETIME",
    "last_data_change_time" / Int64ul * "FILETIME",
    "last_mft_change_time" / Int64ul * "FILETIME",
    "last_access_time" / Int64ul * "FILETIME",
    "allocated_size" / Int64ul * "bytes (a copy, updated lazily)",
    "data_size" / Int64ul * "bytes (a copy, updated lazily)",
    "file_attributes" / Int32ul * "FILE_ATTRIBUTE_* flags",
    "reparse_or_ea" / Int32ul * "reparse tag, or EA size",
    "file_name_length" / Int8ul * "UTF-16 units",
    "file_name_type" / Int8ul * "namespace: 0 POSIX, 1 Win32, 2 DOS, 3 Win32 & DOS",
    "file_name" / Bytes(lambda c: 2 * c.file_name_length) * "UTF-16LE",
)  # 66 bytes + name

AttributeListEntry = Struct(
    "type" / Int32ul * "attribute type code",
    "length" / Int16ul * "bytes of this entry (multiple of 8)",
    "name_length" / Int8ul * "UTF-16 units",
    "name_offset" / Int8ul * "offset of the name in this entry",
    "lowest_vcn" / Int64ul * "first VCN of this piece (0 for resident attributes)",
    "mft_reference" / Int64ul * "file reference of the record holding the attribute",
    "instance" / Int16ul * "attribute id in that record",
)  # 26 bytes + name

VolumeInformation = Struct(
    "reserved" / Int64ul,
    "major_version" / Int8ul * "1, 3",
    "minor_version" / Int8ul * "0, 1, 2",
    "flags" / Int16ul * "0x0001 dirty, 0x0002 resize $LogFile, 0x0004 upgrade on mount, ...",
)

ReparsePointHeader = Struct(
    "reparse_tag" / Int32ul * "IO_REPARSE_TAG_*: bit 31 Microsoft, bit 29 name surrogate",
    "reparse_data_length" / Int16ul * "bytes after this 8-byte header",
    "reserved" / Int16ul,
)

SymbolicLinkReparseBuffer = Struct(
    "substitute_name_offset" / Int16ul * "bytes into the path buffer",
    "substitute_name_length" / Int16ul * "bytes",
    "print_name_offset" / Int16ul * "bytes into the path buffer",
    "print_name_length" / Int16ul * "bytes",
    "flags" / Int32ul * "1 = relative target (symbolic links only, absent in mount points)",
)

# FILE_ATTRIBUTE_* flags
FA_READONLY, FA_HIDDEN, FA_SYSTEM = 0x1, 0x2, 0x4
FA_DIRECTORY, FA_ARCHIVE = 0x10, 0x20
FA_SPARSE, FA_REPARSE, FA_COMPRESSED = 0x200, 0x400, 0x800
FA_ENCRYPTED = 0x4000
FA_DUP_DIRECTORY = 0x10000000  # in $FILE_NAME: the file is a directory

NS_POSIX, NS_WIN32, NS_DOS, NS_WIN32_DOS = 0, 1, 2, 3

IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003
IO_REPARSE_TAG_SYMLINK = 0xA000000C
IO_REPARSE_TAG_WOF = 0x80000017
IO_REPARSE_TAG_DEDUP = 0x80000013
REPARSE_TAG_NAMES = {
    0xA0000003: "MOUNT_POINT",
    0xA000000C: "SYMLINK",
    0x80000017: "WOF",
    0x80000013: "DEDUP",
    0x8000001B: "APPEXECLINK",
    0x80000023: "AF_UNIX",
    0x9000001A: "CLOUD",
    0x80000014: "NFS",
    0x80000020: "LX_SYMLINK",
    0x80000024: "LX_FIFO",
    0x80000025: "LX_CHR",
    0x80000026: "LX_BLK",
    0x8000000A: "DFS",
    0x80000012: "DFSR",
    0x80000009: "CSV",
    0x8000001E: "PROJFS",
}

_SI = struct.Struct("<QQQQI")
_SI3 = struct.Struct("<II")
_FN = struct.Struct("<QQQQQQQIIBB")

EPOCH_1601 = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
_MAX_FT = (
    (dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - EPOCH_1601) // dt.timedelta(microseconds=1) * 10
)


def filetime(ft: int) -> dt.datetime | None:
    """A FILETIME (100 ns since 1601 UTC) as an aware UTC datetime (microseconds kept).

    0 and values past year 9999 give None (the raw integer keeps the full precision).
    """
    if not 0 < ft < _MAX_FT:
        return None
    return EPOCH_1601 + dt.timedelta(microseconds=ft // 10)


@dataclass(slots=True)
class StdInfo:
    """$STANDARD_INFORMATION: the four times (raw FILETIMEs), flags, owner and security ids."""

    created: int
    modified: int
    changed: int  # MFT change time
    accessed: int
    attributes: int
    owner_id: int | None = None
    security_id: int | None = None


def parse_std_info(value: bytes) -> StdInfo:
    if len(value) < 36:
        raise RecordError(f"$STANDARD_INFORMATION is {len(value)} bytes (< 36)")
    c, m, ch, a, fa = _SI.unpack_from(value, 0)
    owner = sec = None
    if len(value) >= 56:
        owner, sec = _SI3.unpack_from(value, 48)
    return StdInfo(c, m, ch, a, fa, owner, sec)


@dataclass(slots=True)
class FileNameAttr:
    """$FILE_NAME: parent reference, name, namespace, the four times and size copies."""

    parent: int  # record number
    parent_seq: int
    name: str
    namespace: int
    created: int
    modified: int
    changed: int
    accessed: int
    allocated_size: int
    data_size: int
    attributes: int
    reparse_tag: int

    @property
    def is_dir(self) -> bool:
        return bool(self.attributes & FA_DUP_DIRECTORY)


def parse_file_name(value: bytes | memoryview, offset: int = 0) -> FileNameAttr:
    """A $FILE_NAME value (also the key of a $I30 index entry)."""
    if len(value) - offset < 66:
        raise RecordError(f"$FILE_NAME is {len(value) - offset} bytes (< 66)")
    (pref, c, m, ch, a, alloc, dsize, fa, rp, nlen, ns) = _FN.unpack_from(value, offset)
    if offset + 66 + 2 * nlen > len(value):
        raise RecordError("$FILE_NAME name runs past the attribute")
    name = bytes(value[offset + 66 : offset + 66 + 2 * nlen]).decode("utf-16-le", "replace")
    return FileNameAttr(pref & MREF_MASK, pref >> 48, name, ns, c, m, ch, a, alloc, dsize, fa, rp)


@dataclass(slots=True)
class AttrListEntry:
    type: int
    name: str
    lowest_vcn: int
    record: int
    seq: int
    instance: int


def parse_attribute_list(value: bytes) -> list[AttrListEntry]:
    """$ATTRIBUTE_LIST entries (RecordError when an entry is malformed)."""
    out = []
    off = 0
    n = len(value)
    while off + 26 <= n:
        atype, length, nlen, noff, lvcn, ref, inst = struct.unpack_from("<IHBBQQH", value, off)
        if length < 26 or off + length > n:
            raise RecordError(f"$ATTRIBUTE_LIST entry at byte {off} has a bad length {length}")
        if noff + 2 * nlen > length:
            raise RecordError(f"$ATTRIBUTE_LIST entry at byte {off}: name outside it")
        name = value[off + noff : off + noff + 2 * nlen].decode("utf-16-le", "replace")
        out.append(AttrListEntry(atype, name, lvcn, ref & MREF_MASK, ref >> 48, inst))
        off += length
    return out


@dataclass(slots=True)
class Reparse:
    """A reparse point: its tag, and for links the substitute and print names."""

    tag: int
    substitute: str | None = None
    print_name: str | None = None
    relative: bool = False
    data: bytes = b""

    @property
    def tag_name(self) -> str:
        return REPARSE_TAG_NAMES.get(self.tag, f"{self.tag:#010x}")

    @property
    def is_link(self) -> bool:
        return self.tag in (IO_REPARSE_TAG_SYMLINK, IO_REPARSE_TAG_MOUNT_POINT)

    @property
    def target(self) -> str | None:
        """What a link points to: the print name, else the substitute name."""
        return self.print_name or self.substitute


def parse_reparse(value: bytes) -> Reparse:
    if len(value) < 8:
        raise RecordError(f"$REPARSE_POINT is {len(value)} bytes (< 8)")
    tag, dlen, _ = struct.unpack_from("<IHH", value, 0)
    data = value[8 : 8 + dlen]
    rp = Reparse(tag, data=bytes(data))
    if tag in (IO_REPARSE_TAG_SYMLINK, IO_REPARSE_TAG_MOUNT_POINT):
        head = 12 if tag == IO_REPARSE_TAG_SYMLINK else 8
        if len(data) < head:
            raise RecordError(f"reparse buffer of tag {tag:#x} is {len(data)} bytes")
        so, sl, po, pl = struct.unpack_from("<HHHH", data, 0)
        flags = struct.unpack_from("<I", data, 8)[0] if head == 12 else 0
        buf = data[head:]
        if so + sl > len(buf) or po + pl > len(buf):
            raise RecordError(f"reparse buffer of tag {tag:#x}: names outside the buffer")
        rp.substitute = buf[so : so + sl].decode("utf-16-le", "replace")
        rp.print_name = buf[po : po + pl].decode("utf-16-le", "replace")
        rp.relative = bool(flags & 1)
    return rp


def parse_volume_information(value: bytes) -> tuple[int, int, int]:
    """(major, minor, flags) of $VOLUME_INFORMATION."""
    if len(value) < 12:
        raise RecordError(f"$VOLUME_INFORMATION is {len(value)} bytes (< 12)")
    major, minor, flags = struct.unpack_from("<BBH", value, 8)
    return major, minor, flags


def display_name_rank(namespace: int) -> int:
    """How Windows prefers names: Win32 or Win32&DOS, then POSIX, then DOS (lower first)."""
    return {NS_WIN32: 0, NS_WIN32_DOS: 0, NS_POSIX: 1, NS_DOS: 2}.get(namespace, 3)
