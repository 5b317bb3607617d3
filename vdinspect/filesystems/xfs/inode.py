"""XFS inodes: the core (versions 1, 2 and 3), times, and where the two forks lie.

The literal area follows the core (100 bytes for v1/v2, 176 for v3). The data fork takes
all of it, or the first ``di_forkoff * 8`` bytes when there is an attribute fork, which
takes the rest. A fork is device (rdev), local (bytes in the inode), extents (16-byte
records) or btree (a bmbt root).
"""

from __future__ import annotations

import stat as statmod

from ..entry import ns_to_datetime  # noqa: F401 (re-exported)
from . import structs as S

_FIELDS = S.DINODE_FIELDS
_V2 = S.DINODE_V2_FMT
_V3 = S.DINODE_V3_FMT
_BIGTIME_NS = S.BIGTIME_EPOCH_OFFSET * 10**9


def decode_time(raw: int, bigtime: bool) -> int:
    """Nanoseconds since the Unix epoch of an on-disk timestamp."""
    if bigtime:
        return raw - _BIGTIME_NS
    sec = raw >> 32
    if sec >= 1 << 31:
        sec -= 1 << 32
    return sec * 10**9 + (raw & 0xFFFFFFFF)


class Inode:
    """One parsed inode: the core's fields in ``f``, the forks as byte strings."""

    __slots__ = ("number", "offset", "raw", "f", "version", "data_fork", "attr_fork",
                 "nextents", "anextents", "bigtime", "crc_bad")

    def __init__(self, number: int, offset: int, raw: bytes) -> None:
        self.number = number
        self.offset = offset
        self.raw = raw
        self.version = raw[4]
        v3 = self.version >= 3
        fmt = _V3 if v3 else _V2
        self.f = dict(zip(_FIELDS, fmt.unpack_from(raw, 0)))
        lit = S.DINODE_V3_SIZE if v3 else S.DINODE_V2_SIZE
        forkoff = self.f["di_forkoff"] * 8
        if forkoff:
            self.data_fork = raw[lit:lit + forkoff]
            self.attr_fork = raw[lit + forkoff:]
        else:
            self.data_fork = raw[lit:]
            self.attr_fork = b""
        flags2 = self.f.get("di_flags2", 0) if v3 else 0
        if flags2 & S.DIFLAG2_NREXT64:
            self.nextents = self.f["di_big_nextents"]
            self.anextents = self.f["di_nextents"]
        else:
            self.nextents = self.f["di_nextents"]
            self.anextents = self.f["di_anextents"]
        self.bigtime = bool(flags2 & S.DIFLAG2_BIGTIME)
        self.crc_bad = False

    # --- checks -----------------------------------------------------------------
    def problem(self, *, v5: bool, forkoff_limit: int) -> str | None:
        """Why this inode cannot be used (bad magic, version, fork offset), or None."""
        if self.f["di_magic"] != S.XFS_DINODE_MAGIC:
            return "bad inode magic"
        if self.version not in (1, 2, 3) or (v5 and self.version != 3) or (
                not v5 and self.version == 3):
            return f"bad inode version {self.version}"
        if self.f["di_forkoff"] * 8 > forkoff_limit:
            return f"attribute fork offset {self.f['di_forkoff'] * 8} is past the inode"
        return None

    # --- fields ----------------------------------------------------------------------
    @property
    def mode(self) -> int:
        return self.f["di_mode"]

    @property
    def ftype(self) -> int:
        return self.f["di_mode"] & 0o170000

    @property
    def is_dir(self) -> bool:
        return statmod.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return statmod.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return statmod.S_ISLNK(self.mode)

    @property
    def format(self) -> int:
        return self.f["di_format"]

    @property
    def aformat(self) -> int:
        return self.f["di_aformat"]

    @property
    def size(self) -> int:
        return self.f["di_size"]

    @property
    def links(self) -> int:
        return self.f["di_onlink"] if self.version == 1 else self.f["di_nlink"]

    @property
    def uid(self) -> int:
        return self.f["di_uid"]

    @property
    def gid(self) -> int:
        return self.f["di_gid"]

    @property
    def nblocks(self) -> int:
        return self.f["di_nblocks"]

    def times_ns(self) -> tuple[int, int, int, int | None]:
        """(atime, mtime, ctime, crtime) in ns since the epoch; crtime None before v3."""
        bt = self.bigtime
        f = self.f
        cr = decode_time(f["di_crtime"], bt) if self.version >= 3 else None
        return (decode_time(f["di_atime"], bt), decode_time(f["di_mtime"], bt),
                decode_time(f["di_ctime"], bt), cr)

    @property
    def rdev(self) -> int | None:
        """The device number of a device inode (data fork format DEV)."""
        if self.format == S.FMT_DEV and len(self.data_fork) >= S.DINODE_DEV_FMT.size:
            return S.DINODE_DEV_FMT.unpack_from(self.data_fork)[0]
        return None
