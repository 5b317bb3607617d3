"""ext2/3/4 inodes and extended attributes.

The inode table of each block group holds ``s_inodes_per_group`` records of
``s_inode_size`` bytes (128 on revision 0); inode ``n`` is record ``(n - 1) %
inodes_per_group`` of group ``(n - 1) // inodes_per_group``. The first 128 bytes are the
classic ext2 inode; ``i_extra_isize`` more bytes carry nanoseconds, epoch bits, the
creation time and the checksum's high half, and the rest of the record holds in-inode
extended attributes. Extended attributes may also live in one block (``i_file_acl``) and,
with ea_inode, in inodes of their own.
"""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Struct

# --- on-disk structures ----------------------------------------------------------------

Inode = Struct(
    "i_mode" / Int16ul * "file type (high 4 bits) and permissions",
    "i_uid" / Int16ul * "owner uid, low 16 bits",
    "i_size_lo" / Int32ul * "size, bytes, low 32 bits",
    "i_atime" / Int32ul * "access time, seconds since the epoch (signed)",
    "i_ctime" / Int32ul * "inode change time, seconds (signed)",
    "i_mtime" / Int32ul * "modification time, seconds (signed)",
    "i_dtime" / Int32ul * "deletion time, seconds (or next orphan inode)",
    "i_gid" / Int16ul * "group, low 16 bits",
    "i_links_count" / Int16ul * "hard links",
    "i_blocks_lo" / Int32ul * "blocks held, 512-byte units (fs blocks with HUGE_FILE_FL)",
    "i_flags" / Int32ul * "EXT4_*_FL inode flags",
    "l_i_version" / Int32ul * "inode version (osd1)",
    "i_block" / Bytes(60) * "block map, extent tree root, inline data or symlink target",
    "i_generation" / Int32ul * "file version (NFS)",
    "i_file_acl_lo" / Int32ul * "extended attribute block, low 32 bits",
    "i_size_high" / Int32ul * "size, bytes, high 32 bits",
    "i_obso_faddr" / Int32ul * "fragment address (obsolete)",
    "l_i_blocks_high" / Int16ul * "i_blocks, high 16 bits",
    "l_i_file_acl_high" / Int16ul * "extended attribute block, high 16 bits",
    "l_i_uid_high" / Int16ul * "owner uid, high 16 bits",
    "l_i_gid_high" / Int16ul * "group, high 16 bits",
    "l_i_checksum_lo" / Int16ul * "crc32c checksum, low 16 bits",
    "l_i_reserved" / Int16ul * "unused",
)  # 128 bytes: the ext2 inode (Linux osd2)

InodeExtra = Struct(
    "i_extra_isize" / Int16ul * "bytes of extra fields used past 128",
    "i_checksum_hi" / Int16ul * "crc32c checksum, high 16 bits",
    "i_ctime_extra" / Int32ul * "epoch bits (2) | nanoseconds << 2",
    "i_mtime_extra" / Int32ul * "epoch bits (2) | nanoseconds << 2",
    "i_atime_extra" / Int32ul * "epoch bits (2) | nanoseconds << 2",
    "i_crtime" / Int32ul * "creation time, seconds (signed)",
    "i_crtime_extra" / Int32ul * "epoch bits (2) | nanoseconds << 2",
    "i_version_hi" / Int32ul * "inode version, high 32 bits",
    "i_projid" / Int32ul * "project id",
)  # up to 32 bytes after offset 128, as far as i_extra_isize reaches

ExtAttrHeader = Struct(
    "h_magic" / Int32ul * "0xEA020000",
    "h_refcount" / Int32ul * "inodes sharing this block",
    "h_blocks" / Int32ul * "blocks used (1)",
    "h_hash" / Int32ul * "hash of all attributes",
    "h_checksum" / Int32ul * "crc32c (metadata_csum)",
    "h_reserved" / Array(3, Int32ul) * "zero",
)  # 32 bytes at the start of an extended attribute block

ExtAttrEntry = Struct(
    "e_name_len" / Int8ul * "name length",
    "e_name_index" / Int8ul * "name prefix index (1 user., 4 trusted., 6 security., ...)",
    "e_value_offs" / Int16ul * "value offset (block start, or first in-inode entry)",
    "e_value_inum" / Int32ul * "inode holding the value (ea_inode), else 0",
    "e_value_size" / Int32ul * "value length, bytes",
    "e_hash" / Int32ul * "hash of name and value",
)  # 16 bytes, then the name, padded to 4 bytes

# fast decoders for the hot path (the same fields as the construct structs above)
_INODE = struct.Struct("<HHIIIIIHHIII60sIIIIHHHHHH")
_EXTRA = struct.Struct("<HHIIIIIII")
_XATTR_ENTRY = struct.Struct("<BBHIII")

XATTR_MAGIC = 0xEA020000
XATTR_PREFIXES = {
    1: "user.",
    2: "system.posix_acl_access",
    3: "system.posix_acl_default",
    4: "trusted.",
    6: "security.",
    7: "system.",
    8: "system.richacl",
}

# i_mode file types
S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK = 0o170000, 0o140000, 0o120000, 0o100000, 0o60000
S_IFDIR, S_IFCHR, S_IFIFO = 0o40000, 0o20000, 0o10000

# i_flags
FL_COMPR, FL_COMPRBLK = 0x4, 0x200  # e2compr: compressed file / compressed clusters
FL_ENCRYPT = 0x800
FL_INDEX = 0x1000
FL_HUGE_FILE = 0x40000
FL_EXTENTS = 0x80000
FL_VERITY = 0x100000
FL_EA_INODE = 0x200000
FL_INLINE_DATA = 0x10000000
FL_CASEFOLD = 0x40000000
FL_COMPRESSED_ANY = FL_COMPR | FL_COMPRBLK  # e2compr

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ROOT_INO = 2  # the root directory (inodes 1..10 are reserved)


def _signed32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def decode_time(seconds: int, extra: int | None) -> int:
    """Nanoseconds since the epoch: signed seconds plus the extra field's epoch bits."""
    sec = _signed32(seconds)
    if extra is None:
        return sec * 1_000_000_000
    sec += (extra & 3) << 32
    return sec * 1_000_000_000 + ((extra >> 2) & 0x3FFFFFFF) % 1_000_000_000


def _time(seconds: int, extra: int) -> int:
    """decode_time for the common case (extra field present)."""
    sec = (seconds - 0x100000000 if seconds & 0x80000000 else seconds) + ((extra & 3) << 32)
    nsec = extra >> 2
    if nsec >= 1_000_000_000:
        nsec %= 1_000_000_000
    return sec * 1_000_000_000 + nsec


def ns_to_datetime(ns: int | None) -> dt.datetime | None:
    """An aware UTC datetime (microseconds) for nanoseconds since the epoch."""
    if ns is None:
        return None
    try:
        return EPOCH + dt.timedelta(microseconds=ns // 1000)
    except OverflowError:
        return None


class InodeRecord:
    """One decoded inode. ``raw`` is the record's bytes; ``parsed()`` the construct view.

    Times (``atime_ns``, ``ctime_ns``, ``mtime_ns``, ``crtime_ns``: nanoseconds since the
    epoch, ``crtime_ns`` None when the record has no room for it) are decoded on first use.
    """

    __slots__ = (
        "number",
        "raw",
        "size_invalid",
        "mode",
        "uid",
        "gid",
        "size",
        "links",
        "flags",
        "i_block",
        "file_acl",
        "dtime",
        "generation",
        "blocks_raw",
        "extra_isize",
        "offset",
        "_times",
    )

    def __init__(
        self, number: int, raw: bytes, offset: int, huge_file: bool, block_size: int
    ) -> None:
        self.number = number
        self.raw = raw
        self.offset = offset
        (
            mode,
            uid,
            size_lo,
            _a,
            _c,
            _m,
            dtime,
            gid,
            links,
            blocks_lo,
            flags,
            _v,
            i_block,
            gen,
            acl_lo,
            size_hi,
            _faddr,
            blocks_hi,
            acl_hi,
            uid_hi,
            gid_hi,
            _csum,
            _r,
        ) = _INODE.unpack_from(raw, 0)
        self.mode = mode
        self.uid = uid | (uid_hi << 16)
        self.gid = gid | (gid_hi << 16)
        self.size = size_lo | (size_hi << 32)
        self.size_invalid = None
        if size_hi >> 31:  # Linux reads i_size as signed (loff_t) and refuses such an inode
            self.size_invalid, self.size = self.size, 0
        self.links = links
        self.flags = flags
        self.i_block = i_block
        self.file_acl = acl_lo | (acl_hi << 32)
        self.dtime = dtime
        self.generation = gen
        if huge_file:
            blocks = blocks_lo | (blocks_hi << 32)
            self.blocks_raw = blocks * (block_size if flags & FL_HUGE_FILE else 512)
        else:
            self.blocks_raw = blocks_lo * 512
        extra = 0
        if len(raw) > 128:
            extra = raw[128] | (raw[129] << 8)
            if not 4 <= extra <= len(raw) - 128:
                extra = 0
        self.extra_isize = extra
        self._times = None

    def times(self) -> tuple[int, int, int, int | None]:
        """(atime, ctime, mtime, crtime) in nanoseconds since the epoch."""
        t = self._times
        if t is None:
            raw = self.raw
            atime, ctime, mtime = struct.unpack_from("<III", raw, 8)
            ext = self.extra_isize
            if ext >= 24:
                c_x, m_x, a_x, crtime, cr_x = struct.unpack_from("<IIIII", raw, 0x84)
                t = (
                    _time(atime, a_x) if ext >= 16 else decode_time(atime, None),
                    _time(ctime, c_x),
                    _time(mtime, m_x),
                    _time(crtime, cr_x),
                )
            else:
                padded = raw[0x84 : 128 + ext] + bytes(20)
                c_x, m_x, a_x, crtime, _cr = struct.unpack_from("<IIIII", padded, 0)
                t = (
                    decode_time(atime, a_x if ext >= 16 else None),
                    decode_time(ctime, c_x if ext >= 8 else None),
                    decode_time(mtime, m_x if ext >= 12 else None),
                    decode_time(crtime, None) if ext >= 20 else None,
                )
            self._times = t
        return t

    @property
    def atime_ns(self) -> int:
        return self.times()[0]

    @property
    def ctime_ns(self) -> int:
        return self.times()[1]

    @property
    def mtime_ns(self) -> int:
        return self.times()[2]

    @property
    def crtime_ns(self) -> int | None:
        return self.times()[3]

    @property
    def checksum(self) -> int:
        """The stored crc32c (low 16 bits only when the record has no high half)."""
        lo = struct.unpack_from("<H", self.raw, 0x7C)[0]
        if self.extra_isize >= 4:
            lo |= struct.unpack_from("<H", self.raw, 0x82)[0] << 16
        return lo

    # --- kinds -----------------------------------------------------------------------
    @property
    def ftype(self) -> int:
        return self.mode & S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_reg(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    @property
    def is_symlink(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK

    @property
    def uses_extents(self) -> bool:
        return bool(self.flags & FL_EXTENTS)

    @property
    def inline(self) -> bool:
        return bool(self.flags & FL_INLINE_DATA)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & FL_ENCRYPT)

    @property
    def is_empty(self) -> bool:
        """True for a never-used record (all of the classic fields zero)."""
        return not any(self.raw[:128])

    def parsed(self):
        """The construct view of the record (classic part, then the extra fields)."""
        base = Inode.parse(self.raw[:128])
        if self.extra_isize:
            base.extra = InodeExtra.parse(self.raw[128:160].ljust(32, b"\0"))
        return base

    def in_inode_xattr_area(self) -> tuple[bytes, int] | None:
        """(bytes after the magic, their offset in the record) when in-inode xattrs exist."""
        start = 128 + self.extra_isize
        if self.extra_isize == 0 or start + 4 > len(self.raw):
            return None
        if int.from_bytes(self.raw[start : start + 4], "little") != XATTR_MAGIC:
            return None
        return self.raw[start + 4 :], start + 4

    def __repr__(self) -> str:
        return f"<InodeRecord {self.number} mode={self.mode:o} size={self.size}>"


def decode_times_bulk(records: np.ndarray) -> dict[str, np.ndarray]:
    """Times of many inode records at once (an (n, inode_size) uint8 array): arrays of
    nanoseconds since the epoch for atime, ctime, mtime, crtime (crtime: int64 min where
    the record has no creation time)."""
    n, isz = records.shape

    def u32(off: int) -> np.ndarray:
        return records[:, off : off + 4].copy().view("<u4").ravel().astype(np.int64)

    def signed(v: np.ndarray) -> np.ndarray:
        return np.where(v >= 1 << 31, v - (1 << 32), v)

    if isz > 128:
        extra = records[:, 128].astype(np.int64) | (records[:, 129].astype(np.int64) << 8)
        extra = np.where((extra >= 4) & (extra <= isz - 128), extra, 0)
    else:
        extra = np.zeros(n, dtype=np.int64)
    out = {}
    for name, off, xoff, need in (
        ("atime", 0x08, 0x8C, 16),
        ("ctime", 0x0C, 0x84, 8),
        ("mtime", 0x10, 0x88, 12),
        ("crtime", 0x90, 0x94, 24),
    ):
        if name == "crtime" and isz < 0x98:
            out[name] = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
            continue
        sec = signed(u32(off))
        if isz >= xoff + 4:
            x = np.where(extra >= need, u32(xoff), 0)
        else:
            x = np.zeros(n, dtype=np.int64)
        ns = (sec + ((x & 3) << 32)) * 1_000_000_000 + (x >> 2) % 1_000_000_000
        if name == "crtime":
            ns = np.where(extra >= 20, ns, np.iinfo(np.int64).min)
        out[name] = ns
    return out


class XattrEntry:
    """One extended attribute: its full name and where its value is."""

    __slots__ = ("name", "value_offset", "value_size", "value_inum", "inline_value")

    def __init__(
        self,
        name: str,
        value_offset: int,
        value_size: int,
        value_inum: int,
        inline_value: bytes | None,
    ) -> None:
        self.name = name
        self.value_offset = value_offset
        self.value_size = value_size
        self.value_inum = value_inum
        self.inline_value = inline_value

    def __repr__(self) -> str:
        return f"<XattrEntry {self.name} {self.value_size} bytes>"


def parse_xattr_entries(
    area: bytes, first: int, value_base: int, limit: int
) -> tuple[list[XattrEntry], str | None]:
    """Entries of an xattr area: ``area[first:]`` holds the entries; values are found at
    ``value_base + e_value_offs`` inside ``area``. Returns (entries, problem or None).
    """
    out: list[XattrEntry] = []
    pos = first
    end = len(area)
    for _ in range(limit):
        if pos + 4 > end or area[pos : pos + 4] == b"\0\0\0\0":
            return out, None
        if pos + 16 > end:
            return out, f"entry at {pos} runs past the end of the area"
        name_len, index, voff, vinum, vsize, _hash = _XATTR_ENTRY.unpack_from(area, pos)
        if pos + 16 + name_len > end:
            return out, f"entry name at {pos} runs past the end of the area"
        raw_name = area[pos + 16 : pos + 16 + name_len]
        prefix = XATTR_PREFIXES.get(index, f"index{index}." if index else "")
        name = prefix + raw_name.decode("utf-8", "backslashreplace")
        value = None
        if vinum == 0:
            vstart = value_base + voff
            if vsize and (vstart < 0 or vstart + vsize > end):
                return out, f"value of {name} at {vstart} (+{vsize}) outside the area"
            value = area[vstart : vstart + vsize]
        out.append(XattrEntry(name, value_base + voff, vsize, vinum, value))
        pos += (16 + name_len + 3) & ~3
    return out, "too many entries"
