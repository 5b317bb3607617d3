"""The XFS superblock: geometry (block, sector, inode and directory block sizes, AGs),
features, and the arithmetic between inode numbers, fsblock numbers and byte offsets.

An inode number is ``agno << (agblklog + inopblog) | agbno << inopblog | index``; an
fsblock number (in extents and bmbt pointers) is ``agno << agblklog | agbno``. Both count
``agblklog`` bits for the AG-relative block even when ``sb_agblocks`` is not a power of two,
so an AG's byte offset is ``agno * agblocks * blocksize``, never ``fsblock * blocksize``.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from ...io import crc32c
from ...layout import flag_names, flag_values
from . import structs as S

FIELDS = [c.name for c in S.Superblock.subcons]


def crc_ok(block: bytes, at: int) -> bool:
    """True when the little-endian CRC-32C at ``at`` matches ``block`` with it zeroed."""
    n = S.CRC_FMT.size
    if len(block) < at + n:
        return False
    (stored,) = S.CRC_FMT.unpack_from(block, at)
    return crc32c(block[:at] + bytes(n) + block[at + n:]) == stored


@dataclass
class Geometry:
    """The superblock fields a reader needs, checked for sanity by :func:`parse`."""

    raw: dict
    version: int
    block_size: int
    sector_size: int
    inode_size: int
    dblocks: int
    agblocks: int
    agcount: int
    agblklog: int
    inopblog: int
    dir_block_size: int
    rootino: int
    logstart: int
    logblocks: int
    crc: bool
    ftype: bool
    bigtime: bool
    nrext64: bool
    sparse_inodes: bool
    features: list[str]

    @property
    def uuid(self) -> str:
        return str(uuidlib.UUID(bytes=self.raw["sb_uuid"]))

    @property
    def meta_uuid(self) -> bytes:
        """The UUID stamped in v5 metadata (sb_meta_uuid with META_UUID, else sb_uuid)."""
        if self.raw["sb_features_incompat"] & 0x4:
            return self.raw["sb_meta_uuid"]
        return self.raw["sb_uuid"]

    @property
    def label(self) -> str:
        return self.raw["sb_fname"].split(b"\0", 1)[0].decode("utf-8", "replace")

    # --- number arithmetic ------------------------------------------------------------
    def fsb_to_block(self, fsb: int) -> int:
        """A fsblock number (agno, agbno packed) as a linear block number on the volume."""
        return (fsb >> self.agblklog) * self.agblocks + (fsb & ((1 << self.agblklog) - 1))

    def fsb_valid(self, fsb: int, count: int = 1) -> bool:
        agno = fsb >> self.agblklog
        agbno = fsb & ((1 << self.agblklog) - 1)
        return agno < self.agcount and agbno + count <= self.agblocks and count >= 0

    def ino_split(self, ino: int) -> tuple[int, int, int]:
        """(agno, agbno, index in the block) of an inode number."""
        agino_bits = self.agblklog + self.inopblog
        agno = ino >> agino_bits
        agino = ino & ((1 << agino_bits) - 1)
        return agno, agino >> self.inopblog, agino & ((1 << self.inopblog) - 1)

    def ino_valid(self, ino: int) -> bool:
        agno, agbno, _i = self.ino_split(ino)
        return 0 < ino and agno < self.agcount and agbno < self.agblocks

    def ino_offset(self, ino: int) -> int:
        """Byte offset of an inode on the volume."""
        agno, agbno, idx = self.ino_split(ino)
        return (agno * self.agblocks + agbno) * self.block_size + idx * self.inode_size

    def agino_to_ino(self, agno: int, agino: int) -> int:
        return (agno << (self.agblklog + self.inopblog)) | agino

    def ag_offset(self, agno: int) -> int:
        return agno * self.agblocks * self.block_size


def feature_names(raw: dict) -> list[str]:
    """Names of the features the superblock turns on (v4 version bits, features2, v5)."""
    vflags = raw["sb_versionnum"] & ~S.VERSION_NUMBITS
    out = flag_names(S.VersionFlags, vflags)
    if vflags & flag_values(S.VersionFlags)["MOREBITS"]:
        out += flag_names(S.Features2, raw["sb_features2"])
    if raw["sb_versionnum"] & S.VERSION_NUMBITS == 5:
        for field, enum in (("sb_features_ro_compat", S.RoCompat),
                            ("sb_features_incompat", S.Incompat),
                            ("sb_features_log_incompat", S.LogIncompat)):
            out += flag_names(enum, raw[field])
    seen: set = set()
    return [n for n in out if not (n in seen or seen.add(n))]


def parse(head: bytes) -> tuple[Geometry | None, str | None]:
    """The geometry of a superblock sector, or (None, why it is not a usable one)."""
    if len(head) < S.SB_FMT.size:
        return None, "too short for a superblock"
    raw = dict(zip(FIELDS, S.SB_FMT.unpack_from(head, 0)))
    (raw["sb_crc"],) = S.CRC_FMT.unpack_from(head, S.SB_CRC_OFF)
    if raw["sb_magicnum"] != S.XFS_SB_MAGIC:
        return None, "no XFSB magic"
    version = raw["sb_versionnum"] & S.VERSION_NUMBITS
    if version not in (4, 5):
        return None, f"unsupported superblock version {version}"
    bs, blog = raw["sb_blocksize"], raw["sb_blocklog"]
    if not 9 <= blog <= 16 or bs != 1 << blog:
        return None, f"bad block size {bs} (log {blog})"
    ss, slog = raw["sb_sectsize"], raw["sb_sectlog"]
    if not 9 <= slog <= 15 or ss != 1 << slog or ss > bs:
        return None, f"bad sector size {ss}"
    isz, ilog = raw["sb_inodesize"], raw["sb_inodelog"]
    if not 8 <= ilog <= 11 or isz != 1 << ilog or isz > bs:
        return None, f"bad inode size {isz}"
    if raw["sb_inopblock"] != bs // isz or raw["sb_inopblog"] != blog - ilog:
        return None, "inodes per block disagrees with the block and inode sizes"
    agb, agc, agblog = raw["sb_agblocks"], raw["sb_agcount"], raw["sb_agblklog"]
    if agb < 1 or agc < 1 or not 1 <= agblog <= 31 or agb > 1 << agblog or (
            agblog > 1 and agb <= 1 << (agblog - 1)):
        return None, f"bad allocation group geometry ({agc} x {agb} blocks, log {agblog})"
    if raw["sb_dblocks"] > agc * agb or raw["sb_dblocks"] < (agc - 1) * agb:
        return None, f"sb_dblocks {raw['sb_dblocks']} disagrees with {agc} AGs of {agb}"
    if raw["sb_dirblklog"] + blog > 16:
        return None, f"directory block size 2^{raw['sb_dirblklog'] + blog} is too large"
    crc = version == 5
    f2 = raw["sb_features2"] if raw["sb_versionnum"] & 0x8000 else 0
    inc = raw["sb_features_incompat"] if crc else 0
    g = Geometry(
        raw=raw, version=version, block_size=bs, sector_size=ss, inode_size=isz,
        dblocks=raw["sb_dblocks"], agblocks=agb, agcount=agc, agblklog=agblog,
        inopblog=raw["sb_inopblog"], dir_block_size=bs << raw["sb_dirblklog"],
        rootino=raw["sb_rootino"], logstart=raw["sb_logstart"],
        logblocks=raw["sb_logblocks"], crc=crc,
        ftype=bool(inc & S.INCOMPAT_FTYPE) or bool(f2 & S.F2_FTYPE),
        bigtime=bool(inc & S.INCOMPAT_BIGTIME), nrext64=bool(inc & S.INCOMPAT_NREXT64),
        sparse_inodes=bool(inc & S.INCOMPAT_SPINODES), features=feature_names(raw))
    if not g.ino_valid(g.rootino):
        return None, f"root inode {g.rootino} is outside the filesystem"
    return g, None
