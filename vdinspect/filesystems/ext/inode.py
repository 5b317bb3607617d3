"""ext2/3/4 inodes: the record, its flags, times and checksum.

The inode table of each block group holds ``s_inodes_per_group`` records of
``s_inode_size`` bytes (128 on revision 0); inode ``n`` is record ``(n - 1) %
inodes_per_group`` of group ``(n - 1) // inodes_per_group``. The first 128 bytes are the
classic ext2 inode; ``i_extra_isize`` more bytes carry nanoseconds, epoch bits, the
creation time and the checksum's high half, and the rest of the record holds in-inode
extended attributes. Extended attributes may also live in one block (``i_file_acl``) and,
with ea_inode, in inodes of their own.
"""

from __future__ import annotations

from construct import Bytes, Container, FlagsEnum, Int16ul, Int32ul, Struct

from ...layout import flag_values, numpy_dtype, offset_of, size_of, struct_format
from ...lazy import np
from ..entry import EPOCH, ns_to_datetime  # noqa: F401 (re-exported)

# --- codes and flags -------------------------------------------------------------------

InodeFlags = FlagsEnum(
    Int32ul,
    secrm=0x1,
    unrm=0x2,
    compr=0x4,  # e2compr: compressed file
    sync=0x8,
    immutable=0x10,
    append=0x20,
    nodump=0x40,
    noatime=0x80,
    dirty=0x100,
    comprblk=0x200,  # e2compr: compressed clusters
    nocompr=0x400,
    encrypt=0x800,
    index=0x1000,
    imagic=0x2000,
    journal_data=0x4000,
    notail=0x8000,
    dirsync=0x10000,
    topdir=0x20000,
    huge_file=0x40000,
    extents=0x80000,
    verity=0x100000,
    ea_inode=0x200000,
    dax=0x2000000,
    inline_data=0x10000000,
    projinherit=0x20000000,
    casefold=0x40000000,
)
_F = flag_values(InodeFlags)
FL_ENCRYPT, FL_INDEX, FL_HUGE_FILE = _F["encrypt"], _F["index"], _F["huge_file"]
FL_EXTENTS, FL_VERITY, FL_EA_INODE = _F["extents"], _F["verity"], _F["ea_inode"]
FL_INLINE_DATA, FL_CASEFOLD = _F["inline_data"], _F["casefold"]
FL_COMPRESSED_ANY = _F["compr"] | _F["comprblk"]  # e2compr

# i_mode file types (POSIX)
S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK = 0o170000, 0o140000, 0o120000, 0o100000, 0o60000
S_IFDIR, S_IFCHR, S_IFIFO = 0o40000, 0o20000, 0o10000

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
    "i_flags" / InodeFlags * "EXT4_*_FL inode flags",
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

#: the classic inode and its extra fields as one layout (records are 128 bytes or more)
InodeLarge = Struct(*Inode.subcons, *InodeExtra.subcons)
INODE_CLASSIC = Inode.sizeof()  # 128: where the extra fields start
I_BLOCK_SIZE = size_of(Inode, "i_block")  # 60: fast symlinks and inline data live here

# fast decoders for the hot path, generated from the layouts above
_INODE = struct_format(Inode)
_TIMES = struct_format(Inode, "i_atime", "i_ctime", "i_mtime")
_EXTRA_TIMES = struct_format(
    InodeLarge, "i_ctime_extra", "i_mtime_extra", "i_atime_extra", "i_crtime", "i_crtime_extra"
)
_CSUM_LO = struct_format(Inode, "l_i_checksum_lo")
_CSUM_HI = struct_format(InodeLarge, "i_checksum_hi")
_EXTRA_ISIZE_AT = offset_of(InodeLarge, "i_extra_isize")
#: bytes of extra fields a record needs (i_extra_isize) to hold the named field
EXTRA_NEEDED = {
    name: offset_of(InodeLarge, name) + 4 - INODE_CLASSIC
    for name in ("i_ctime_extra", "i_mtime_extra", "i_atime_extra", "i_crtime", "i_crtime_extra")
}
EXTRA_NEEDED["i_checksum_hi"] = offset_of(InodeLarge, "i_checksum_hi") + 2 - INODE_CLASSIC


def inode_dtype(inode_size: int) -> np.dtype:
    """The numpy record of an inode of ``inode_size`` bytes (the fields that fit)."""
    return numpy_dtype(InodeLarge, inode_size)

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
        if len(raw) > INODE_CLASSIC:
            extra = raw[_EXTRA_ISIZE_AT] | (raw[_EXTRA_ISIZE_AT + 1] << 8)
            if not 4 <= extra <= len(raw) - INODE_CLASSIC:
                extra = 0
        self.extra_isize = extra
        self._times = None

    def times(self) -> tuple[int, int, int, int | None]:
        """(atime, ctime, mtime, crtime) in nanoseconds since the epoch."""
        t = self._times
        if t is None:
            raw = self.raw
            atime, ctime, mtime = _TIMES.unpack_from(raw, 0)
            ext = self.extra_isize
            if ext >= EXTRA_NEEDED["i_crtime_extra"]:
                c_x, m_x, a_x, crtime, cr_x = _EXTRA_TIMES.unpack_from(raw, 0)
                t = (
                    _time(atime, a_x),
                    _time(ctime, c_x),
                    _time(mtime, m_x),
                    _time(crtime, cr_x),
                )
            else:
                padded = raw[: INODE_CLASSIC + ext].ljust(_EXTRA_TIMES.size, b"\0")
                c_x, m_x, a_x, crtime, _cr = _EXTRA_TIMES.unpack_from(padded, 0)
                need = EXTRA_NEEDED
                t = (
                    decode_time(atime, a_x if ext >= need["i_atime_extra"] else None),
                    decode_time(ctime, c_x if ext >= need["i_ctime_extra"] else None),
                    decode_time(mtime, m_x if ext >= need["i_mtime_extra"] else None),
                    decode_time(crtime, None) if ext >= need["i_crtime"] else None,
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
        lo = _CSUM_LO.unpack_from(self.raw, 0)[0]
        if self.extra_isize >= EXTRA_NEEDED["i_checksum_hi"]:
            lo |= _CSUM_HI.unpack_from(self.raw, 0)[0] << 16
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
        return not any(self.raw[:INODE_CLASSIC])

    def parsed(self) -> Container:
        """The construct view of the record (classic part, then the extra fields)."""
        base = Inode.parse(self.raw[:INODE_CLASSIC])
        if self.extra_isize:
            size = InodeExtra.sizeof()
            base.extra = InodeExtra.parse(
                self.raw[INODE_CLASSIC : INODE_CLASSIC + size].ljust(size, b"\0")
            )
        return base

    def __repr__(self) -> str:
        return f"<InodeRecord {self.number} mode={self.mode:o} size={self.size}>"


def decode_times_bulk(records: np.ndarray, inode_size: int = 0) -> dict[str, np.ndarray]:
    """Times of many inode records at once (an (n, inode_size) uint8 array, or records
    of a dtype holding some fields of :func:`inode_dtype`, with ``inode_size``): arrays of
    nanoseconds since the epoch for atime, ctime, mtime, crtime (crtime: int64 min where
    the record has no creation time)."""
    if records.dtype.names:
        rec, n, isz = records.ravel(), len(records), inode_size
    else:
        n, isz = records.shape
        rec = np.ascontiguousarray(records).view(inode_dtype(isz)).ravel()
    have = rec.dtype.names

    def signed(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.int64)
        return np.where(v >= 1 << 31, v - (1 << 32), v)

    if isz > INODE_CLASSIC:
        extra = rec["i_extra_isize"].astype(np.int64)
        extra = np.where((extra >= 4) & (extra <= isz - INODE_CLASSIC), extra, 0)
    else:
        extra = np.zeros(n, dtype=np.int64)
    nat = np.iinfo(np.int64).min
    out = {}
    for name in ("atime", "ctime", "mtime", "crtime"):
        sec_field, x_field = f"i_{name}", f"i_{name}_extra"
        if sec_field not in have:  # i_crtime: the record is too short
            out[name] = np.full(n, nat, dtype=np.int64)
            continue
        sec = signed(rec[sec_field])
        if x_field in have:
            x = np.where(extra >= EXTRA_NEEDED[x_field], rec[x_field].astype(np.int64), 0)
        else:
            x = np.zeros(n, dtype=np.int64)
        ns = (sec + ((x & 3) << 32)) * 1_000_000_000 + (x >> 2) % 1_000_000_000
        if name == "crtime":
            ns = np.where(extra >= EXTRA_NEEDED["i_crtime"], ns, nat)
        out[name] = ns
    return out
