"""VHD on-disk structures (Microsoft "Virtual Hard Disk Image Format Specification";
big-endian): the footer, the dynamic disk header, parent locators, the BAT."""

from __future__ import annotations

import datetime as dt
from urllib.parse import unquote, urlparse

from construct import Array, Bytes, Int8ub, Int16ub, Int32ub, Int64ub, Struct

from ...errors import InvalidArgument

FORMAT = "vhd"
COOKIE = b"conectix"
DYNAMIC_COOKIE = b"cxsparse"
SECTOR = 512
FOOTER_SIZE = 512
OLD_FOOTER_SIZE = 511  # some old Virtual PC versions wrote one byte less
DYNAMIC_HEADER_SIZE = 1024
BAT_UNUSED = 0xFFFFFFFF
#: what a BAT entry is: unused, a block, a block at an impossible place (damaged)
E_UNUSED, E_BLOCK, E_MISPLACED = 0, 1, 2
FORMAT_VERSION = 0x00010000
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF  # footer.data_offset of a fixed disk
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # VHD time stamps count seconds from here
MAX_VIRTUAL_SIZE = 1 << 61  # far past the spec's 2040 GiB; keeps offsets inside int64
MAX_GEOMETRY = 65535 * 16 * 255  # sectors: the largest CHS geometry; size comes from current_size

FIXED, DYNAMIC, DIFFERENCING = 2, 3, 4
DISK_TYPES = {
    0: "none",
    1: "reserved (deprecated)",
    FIXED: "fixed",
    DYNAMIC: "dynamic",
    DIFFERENCING: "differencing",
    5: "reserved",
    6: "reserved",
}

FEATURE_TEMPORARY = 1 << 0  # the disk may be deleted on shutdown
FEATURE_RESERVED = 1 << 1  # must always be set

HOST_OS = {b"Wi2k": "Windows", b"Mac ": "Macintosh"}

#: Platform codes of the parent locators, and how their data is encoded.
PLATFORM_NONE = b"\0\0\0\0"
PLATFORMS = {
    b"Wi2r": "relative Windows path (deprecated)",
    b"Wi2k": "absolute Windows path (deprecated)",
    b"W2ru": "relative Windows path, UTF-16LE",
    b"W2ku": "absolute Windows path, UTF-16LE",
    b"Mac ": "Mac OS alias record",
    b"MacX": "Mac OS X file URL, UTF-8",
}
#: the order in which locators are tried: relative paths first, so a moved folder still works
LOCATOR_PREFERENCE = [b"W2ru", b"Wi2r", b"W2ku", b"Wi2k", b"MacX"]

#: Creator applications whose images are sized by their CHS geometry: Virtual PC, Virtual
#: Server (Virtual PC's sibling) and old QEMU. QEMU up to 9.x used CHS for every writer but
#: "win ", "qem2", "d2v ", "CTXS" and "tap\0"; since 10.0 only for "vpc " and "qemu". The
#: rules agree on every known writer; an unknown one (Azure's "wa\0\0") gets current_size.
CHS_CREATORS = (b"vpc ", b"vs  ", b"qemu")
SIZE_RULES = ("auto", "chs", "current_size")

# --- on-disk structures ----------------------------------------------------------------

DiskGeometry = Struct(
    "cylinders" / Int16ub * "cylinders",
    "heads" / Int8ub * "heads per cylinder",
    "sectors_per_track" / Int8ub * "512-byte sectors per track",
)

HardDiskFooter = Struct(
    "cookie" / Bytes(8) * 'always "conectix"',
    "features" / Int32ub * "bit 0 temporary disk, bit 1 reserved (always set)",
    "file_format_version" / Int32ub * "major << 16 | minor, 0x00010000",
    "data_offset" / Int64ub * "host offset of the dynamic disk header; all ones when fixed",
    "time_stamp" / Int32ub * "creation time, seconds since 2000-01-01 00:00:00 UTC",
    "creator_application" / Bytes(4) * 'writer: "vpc ", "vs  ", "win ", "d2v ", "qemu", ...',
    "creator_version" / Int32ub * "writer version, major << 16 | minor",
    "creator_host_os" / Bytes(4) * '"Wi2k" Windows, "Mac " Macintosh',
    "original_size" / Int64ub * "virtual size at creation, bytes",
    "current_size" / Int64ub * "virtual size now, bytes",
    "disk_geometry" / DiskGeometry * "CHS geometry the guest's BIOS sees",
    "disk_type" / Int32ub * "2 fixed, 3 dynamic, 4 differencing",
    "checksum" / Int32ub * "one's complement of the byte sum of the footer, this field zero",
    "unique_id" / Bytes(16) * "UUID of this disk; a child names its parent by it",
    "saved_state" / Int8ub * "1 = the virtual machine was saved with this disk in use",
    "reserved" / Bytes(427) * "zeros",
)  # 512 bytes
FOOTER_CHECKSUM_AT = 64

ParentLocatorEntry = Struct(
    "platform_code" / Bytes(4) * 'how the data names the parent: "W2ku", "W2ru", "MacX", ...',
    "platform_data_space" / Int32ub * "room reserved for the data: sectors per the spec, "
    "bytes as Virtual PC and Hyper-V write it",
    "platform_data_length" / Int32ub * "length of the locator data, bytes",
    "reserved" / Int32ub * "zero",
    "platform_data_offset" / Int64ub * "host offset of the locator data",
)  # 24 bytes

DynamicDiskHeader = Struct(
    "cookie" / Bytes(8) * 'always "cxsparse"',
    "data_offset" / Int64ub * "next structure; unused, all ones",
    "table_offset" / Int64ub * "host offset of the block allocation table (BAT)",
    "header_version" / Int32ub * "major << 16 | minor, 0x00010000",
    "max_table_entries" / Int32ub * "BAT entries: the most blocks the disk can have",
    "block_size" / Int32ub * "data bytes per block (a power of two, 2 MiB by default); "
    "the sector bitmap comes on top",
    "checksum" / Int32ub * "one's complement of the byte sum of this header, this field zero",
    "parent_unique_id" / Bytes(16) * "unique_id of the parent's footer (differencing disks)",
    "parent_time_stamp" / Int32ub * "parent's modification time, seconds since 2000-01-01 UTC",
    "reserved1" / Int32ub * "zero",
    "parent_unicode_name" / Bytes(512) * "parent file name, UTF-16BE, NUL-padded",
    "parent_locator_entries" / Array(8, ParentLocatorEntry) * "where to find the parent",
    "reserved2" / Bytes(256) * "zeros",
)  # 1024 bytes
HEADER_CHECKSUM_AT = 36
LOCATORS_AT = 576  # offset of the parent locator entries inside the header

#: The BAT: ``max_table_entries`` big-endian u32 host sector numbers (numpy dtype).
BAT_ENTRY = ">u4"
MAX_FINDINGS = 100  # per kind of problem in check(); the rest are counted in one row




def vhd_checksum(data: bytes, at: int) -> int:
    """One's complement of the byte sum of ``data``, leaving out the 4 bytes at ``at``."""
    total = sum(data) - sum(data[at : at + 4])  # a footer or header: 512 or 1024 bytes
    return ~total & 0xFFFFFFFF


def vhd_time(seconds: int) -> dt.datetime:
    """A VHD time stamp (seconds since 2000-01-01 UTC) as an aware datetime."""
    return EPOCH + dt.timedelta(seconds=seconds)


def chs_size(footer) -> int:
    """Virtual size by the CHS geometry rule, bytes."""
    g = footer.disk_geometry
    return g.cylinders * g.heads * g.sectors_per_track * SECTOR


def size_rule_for(footer, override: str = "auto") -> str:
    """``"chs"`` or ``"current_size"``: how this footer's writer meant the size (QEMU's rule).

    Virtual PC ("vpc "), Virtual Server ("vs  ") and old QEMU ("qemu") size a disk by its
    geometry; everyone else (Hyper-V "win ", Disk2VHD "d2v ", QEMU "qem2", XenServer "tap",
    Azure "wa") by ``current_size``. A disk with the largest geometry (65535/16/255) always goes by
    ``current_size``, since its geometry cannot say more; ``override`` forces a rule otherwise.
    """
    if override not in SIZE_RULES:
        raise InvalidArgument(f"size_rule must be one of {', '.join(SIZE_RULES)}, not {override!r}")
    if chs_size(footer) // SECTOR == MAX_GEOMETRY:
        return "current_size"
    if override != "auto":
        return override
    return "chs" if footer.creator_application in CHS_CREATORS else "current_size"


#: Creators QEMU up to 9.x sizes by ``current_size``; it sizes every other one by geometry.
QEMU9_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")


def size_note(footer, size: int, file_size: int) -> str | None:
    """Where qemu-img reports another virtual size than ours, and why (None: it agrees).

    Ours follows the specification ("Current Size: the size of the hard disk from the
    perspective of the virtual machine", as Hyper-V and VirtualBox report it) except for the
    geometry-sized writers of :data:`CHS_CREATORS`."""
    notes = []
    chs = chs_size(footer)
    qemu9 = chs
    if footer.creator_application in QEMU9_CURRENT_SIZE_CREATORS or chs // SECTOR == MAX_GEOMETRY:
        qemu9 = footer.current_size // SECTOR * SECTOR
    if qemu9 != size:
        notes.append(
            f"qemu-img before 10.0 sizes creator {type_code(footer.creator_application)!r} "
            f"by its CHS geometry, {qemu9} bytes; its current_size (the specification's "
            f"size, which Hyper-V, VirtualBox and qemu 10 use) is {size}")
    if footer.disk_type == FIXED:
        notes.append(
            "qemu-img without -f vpc takes a fixed VHD for raw (nothing marks its start) "
            f"and reports the file size, {file_size} bytes: the disk and its footer")
    return "; ".join(notes) or None


def type_code(b: bytes) -> str:
    """A four-character code (creator application, platform code) as text."""
    return b.decode("latin-1").rstrip("\0 ") if b.strip(b"\0") else ""


def _decode_locator(code: bytes, data: bytes) -> str | None:
    """The parent path a locator's data holds (None for Mac alias records)."""
    if code in (b"W2ku", b"W2ru"):
        return data.decode("utf-16-le", "replace").split("\0", 1)[0] or None
    if code in (b"Wi2k", b"Wi2r"):
        text = data.split(b"\0", 1)[0]
        try:
            return text.decode("utf-8") or None
        except UnicodeDecodeError:
            return text.decode("latin-1") or None
    if code == b"MacX":
        url = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        p = urlparse(url)
        if p.scheme == "file":
            return unquote(p.path) or None
        return url or None
    return None


class ParentLocator:
    """One parent locator entry and the path its data decodes to (``.raw`` is the entry)."""

    def __init__(self, index: int, raw, data: bytes | None) -> None:
        self.index = index
        self.raw = raw
        self.data = data
        self.platform = type_code(raw.platform_code)
        self.path = _decode_locator(raw.platform_code, data) if data is not None else None

    @property
    def host_offset(self) -> int:
        return self.raw.platform_data_offset

    @property
    def space(self) -> int:
        """Bytes reserved for the data (the field holds bytes or sectors, see the struct)."""
        s, n = self.raw.platform_data_space, self.raw.platform_data_length
        return s if s >= n else s * SECTOR

    def as_dict(self) -> dict:
        return dict(
            platform=self.platform,
            path=self.path,
            host_offset=self.host_offset,
            length=self.raw.platform_data_length,
            space=self.space,
        )

    def __repr__(self) -> str:
        return f"<vhd ParentLocator {self.platform} {self.path!r}>"
