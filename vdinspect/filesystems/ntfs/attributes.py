"""Attribute values: $STANDARD_INFORMATION, $FILE_NAME, $ATTRIBUTE_LIST, $VOLUME_*,
$REPARSE_POINT, and FILETIME timestamps.

Facts from the Linux-NTFS project documentation (one page per attribute type) and, for
reparse data, Microsoft's [MS-FSCC] 2.1.2 (symbolic link, mount point and WOF buffers).
"""

from __future__ import annotations

import codecs
import datetime as dt
from dataclasses import dataclass

from construct import Bytes, Enum, FlagsEnum, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ...layout import flag_values, offset_of, struct_format
from .mft import MREF_MASK, AttributeType, RecordError

# --- codes and flags --------------------------------------------------------------------

FileAttributes = FlagsEnum(
    Int32ul,
    READONLY=0x1,
    HIDDEN=0x2,
    SYSTEM=0x4,
    DIRECTORY=0x10,
    ARCHIVE=0x20,
    DEVICE=0x40,
    NORMAL=0x80,
    TEMPORARY=0x100,
    SPARSE_FILE=0x200,
    REPARSE_POINT=0x400,
    COMPRESSED=0x800,
    OFFLINE=0x1000,
    NOT_CONTENT_INDEXED=0x2000,
    ENCRYPTED=0x4000,
    DUP_FILE_NAME_INDEX_PRESENT=0x10000000,  # in $FILE_NAME: the file is a directory
    DUP_VIEW_INDEX_PRESENT=0x20000000,
)  # FILE_ATTRIBUTE_* ([MS-FSCC] 2.6), plus the two NTFS keeps in $FILE_NAME copies

FileNameType = Enum(Int8ul, POSIX=0, WIN32=1, DOS=2, WIN32_AND_DOS=3)

ReparseTag = Enum(
    Int32ul,
    MOUNT_POINT=0xA0000003,
    SYMLINK=0xA000000C,
    WOF=0x80000017,
    DEDUP=0x80000013,
    APPEXECLINK=0x8000001B,
    AF_UNIX=0x80000023,
    CLOUD=0x9000001A,
    NFS=0x80000014,
    LX_SYMLINK=0x80000020,
    LX_FIFO=0x80000024,
    LX_CHR=0x80000025,
    LX_BLK=0x80000026,
    DFS=0x8000000A,
    DFSR=0x80000012,
    CSV=0x80000009,
    PROJFS=0x8000001E,
)  # IO_REPARSE_TAG_* ([MS-FSCC] 2.1.2.1): bit 31 Microsoft, bit 29 name surrogate

VolumeFlags = FlagsEnum(
    Int16ul,
    IS_DIRTY=0x0001,
    RESIZE_LOG_FILE=0x0002,
    UPGRADE_ON_MOUNT=0x0004,
    MOUNTED_ON_NT4=0x0008,
    DELETE_USN_UNDERWAY=0x0010,
    REPAIR_OBJECT_ID=0x0020,
    CHKDSK_UNDERWAY=0x4000,
    MODIFIED_BY_CHKDSK=0x8000,
)

# --- on-disk structures ----------------------------------------------------------------

StandardInformation = Struct(
    "creation_time" / Int64ul * "FILETIME: 100 ns units since 1601-01-01 UTC",
    "last_data_change_time" / Int64ul * "FILETIME of the last write to $DATA",
    "last_mft_change_time" / Int64ul * "FILETIME of the last change to the MFT record",
    "last_access_time" / Int64ul * "FILETIME",
    "file_attributes" / FileAttributes * "FILE_ATTRIBUTE_* flags",
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
    "file_attributes" / FileAttributes * "FILE_ATTRIBUTE_* flags",
    "reparse_or_ea" / Int32ul * "reparse tag, or EA size",
    "file_name_length" / Int8ul * "UTF-16 units",
    "file_name_type" / FileNameType * "namespace: 0 POSIX, 1 Win32, 2 DOS, 3 Win32 & DOS",
    "file_name" / Bytes(lambda c: 2 * c.file_name_length) * "UTF-16LE",
)  # 66 bytes + name

AttributeListEntry = Struct(
    "type" / AttributeType * "attribute type code",
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
    "flags" / VolumeFlags * "dirty, resize $LogFile, upgrade on mount, ...",
)  # 12 bytes

ReparsePointHeader = Struct(
    "reparse_tag" / ReparseTag * "IO_REPARSE_TAG_*: bit 31 Microsoft, bit 29 name surrogate",
    "reparse_data_length" / Int16ul * "bytes after this 8-byte header",
    "reserved" / Int16ul,
)  # 8 bytes

SymbolicLinkReparseBuffer = Struct(
    "substitute_name_offset" / Int16ul * "bytes into the path buffer",
    "substitute_name_length" / Int16ul * "bytes",
    "print_name_offset" / Int16ul * "bytes into the path buffer",
    "print_name_length" / Int16ul * "bytes",
    "flags" / Int32ul * "1 = relative target (symbolic links only, absent in mount points)",
)  # 12 bytes, then the path buffer (a mount point's buffer lacks "flags": 8 bytes)

_FA = flag_values(FileAttributes)
FA_READONLY, FA_HIDDEN, FA_SYSTEM = _FA["READONLY"], _FA["HIDDEN"], _FA["SYSTEM"]
FA_DIRECTORY, FA_ARCHIVE = _FA["DIRECTORY"], _FA["ARCHIVE"]
FA_SPARSE, FA_REPARSE = _FA["SPARSE_FILE"], _FA["REPARSE_POINT"]
FA_COMPRESSED, FA_ENCRYPTED = _FA["COMPRESSED"], _FA["ENCRYPTED"]
FA_DUP_DIRECTORY = _FA["DUP_FILE_NAME_INDEX_PRESENT"]  # in $FILE_NAME: a directory

_NS = flag_values(FileNameType)
NS_POSIX, NS_WIN32, NS_DOS, NS_WIN32_DOS = (
    _NS["POSIX"], _NS["WIN32"], _NS["DOS"], _NS["WIN32_AND_DOS"]
)

#: reparse tag -> name ("SYMLINK")
REPARSE_TAG_NAMES = {code: name for name, code in flag_values(ReparseTag).items()}
_TAG = flag_values(ReparseTag)
IO_REPARSE_TAG_MOUNT_POINT = _TAG["MOUNT_POINT"]
IO_REPARSE_TAG_SYMLINK = _TAG["SYMLINK"]
IO_REPARSE_TAG_WOF = _TAG["WOF"]
IO_REPARSE_TAG_DEDUP = _TAG["DEDUP"]
VOLUME_IS_DIRTY = flag_values(VolumeFlags)["IS_DIRTY"]

# fast paths, from the declarations above
#: UTF-16LE to str, called directly (``bytes.decode`` looks the codec up by name each
#: call: four times the cost for a short name); ``(text, bytes used)``
utf16_decode = codecs.utf_16_le_decode

_SI = struct_format(Struct(*StandardInformation.subcons[:5]))  # times and attributes
_SI_OWNER_AT = offset_of(StandardInformation, "owner_id")
_SI3 = struct_format(Struct(*StandardInformation.subcons[8:10]))  # owner and security ids
FILE_NAME_HEAD = struct_format(Struct(*FileName.subcons[:-1]))  # 66 bytes, then the name
_ALE = struct_format(AttributeListEntry)
_VOLINFO = struct_format(VolumeInformation)
_REPARSE = struct_format(ReparsePointHeader)
_LINK = struct_format(SymbolicLinkReparseBuffer)
_MOUNT = struct_format(Struct(*SymbolicLinkReparseBuffer.subcons[:4]))

EPOCH_1601 = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
#: FILETIMEs at or past this (year 10000) have no datetime
MAX_FILETIME = (dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - EPOCH_1601) // _US * 10
#: microseconds from 1601-01-01 to 1970-01-01 (FILETIME to Unix time)
UNIX_EPOCH_US = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) - EPOCH_1601) // _US


def filetime(ft: int) -> dt.datetime | None:
    """A FILETIME (100 ns since 1601 UTC) as an aware UTC datetime (microseconds kept).

    0 and values past year 9999 give None (the raw integer keeps the full precision).
    """
    if not 0 < ft < MAX_FILETIME:
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
    if len(value) < _SI.size:
        raise RecordError(f"$STANDARD_INFORMATION is {len(value)} bytes (< {_SI.size})")
    c, m, ch, a, fa = _SI.unpack_from(value, 0)
    owner = sec = None
    if len(value) >= _SI_OWNER_AT + _SI3.size:
        owner, sec = _SI3.unpack_from(value, _SI_OWNER_AT)
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
    head = FILE_NAME_HEAD.size
    if len(value) - offset < head:
        raise RecordError(f"$FILE_NAME is {len(value) - offset} bytes (< {head})")
    (pref, c, m, ch, a, alloc, dsize, fa, rp, nlen, ns) = FILE_NAME_HEAD.unpack_from(value, offset)
    start = offset + head
    if start + 2 * nlen > len(value):
        raise RecordError("$FILE_NAME name runs past the attribute")
    name = utf16_decode(value[start : start + 2 * nlen], "replace")[0]
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
    head = _ALE.size
    while off + head <= n:
        atype, length, nlen, noff, lvcn, ref, inst = _ALE.unpack_from(value, off)
        if length < head or off + length > n:
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
    hsize = _REPARSE.size
    if len(value) < hsize:
        raise RecordError(f"$REPARSE_POINT is {len(value)} bytes (< {hsize})")
    tag, dlen, _ = _REPARSE.unpack_from(value, 0)
    data = value[hsize : hsize + dlen]
    rp = Reparse(tag, data=bytes(data))
    if tag in (IO_REPARSE_TAG_SYMLINK, IO_REPARSE_TAG_MOUNT_POINT):
        fmt = _LINK if tag == IO_REPARSE_TAG_SYMLINK else _MOUNT
        head = fmt.size
        if len(data) < head:
            raise RecordError(f"reparse buffer of tag {tag:#x} is {len(data)} bytes")
        so, sl, po, pl, *more = fmt.unpack_from(data, 0)
        flags = more[0] if more else 0
        buf = data[head:]
        if so + sl > len(buf) or po + pl > len(buf):
            raise RecordError(f"reparse buffer of tag {tag:#x}: names outside the buffer")
        rp.substitute = buf[so : so + sl].decode("utf-16-le", "replace")
        rp.print_name = buf[po : po + pl].decode("utf-16-le", "replace")
        rp.relative = bool(flags & 1)
    return rp


def parse_volume_information(value: bytes) -> tuple[int, int, int]:
    """(major, minor, flags) of $VOLUME_INFORMATION."""
    if len(value) < _VOLINFO.size:
        raise RecordError(f"$VOLUME_INFORMATION is {len(value)} bytes (< {_VOLINFO.size})")
    _reserved, major, minor, flags = _VOLINFO.unpack_from(value, 0)
    return major, minor, flags


def display_name_rank(namespace: int) -> int:
    """How Windows prefers names: Win32 or Win32&DOS, then POSIX, then DOS (lower first)."""
    return {NS_WIN32: 0, NS_WIN32_DOS: 0, NS_POSIX: 1, NS_DOS: 2}.get(namespace, 3)
