"""The ext2/3/4 superblock: its feature flags and codes, and its checksum; the layout is
declared once in :mod:`vdinspect.volumes.ext_layout` (the probe reads it too).

Facts from the Linux kernel's "ext4 Data Structures and Algorithms"
(Documentation/filesystems/ext4/), cross-checked against e2fsprogs' behaviour (mke2fs,
dumpe2fs, debugfs). Everything on disk is little-endian. The superblock lives at byte 1024
of the volume; backups sit at the start of some block groups (every group, or groups 0, 1
and the powers of 3, 5 and 7 with sparse_super, or the two listed in ``s_backup_bgs``
with sparse_super2). The group descriptor table follows the superblock's block.
"""

from __future__ import annotations

from ...io.checksums import crc32c
from ...layout import flag_values, leaves, plain
from ...units import is_pow2, uuid_text
from ...volumes.ext_layout import (  # noqa: F401 (re-exported)
    COMPAT,
    EXT_MAGIC,
    INCOMPAT,
    RO_COMPAT,
    SUPERBLOCK_OFFSET,
    SUPERBLOCK_SIZE,
    ChecksumType,
    CompatFeatures,
    CreatorOS,
    ErrorPolicy,
    FsState,
    HashVersion,
    IncompatFeatures,
    RoCompatFeatures,
    Superblock,
    SuperblockFlags,
    blkid_type,
    feature_names,
)

_C, _I, _R = COMPAT, INCOMPAT, RO_COMPAT
COMPAT_HAS_JOURNAL, COMPAT_SPARSE_SUPER2 = _C["has_journal"], _C["sparse_super2"]
COMPAT_ORPHAN_FILE = _C["orphan_file"]
INCOMPAT_COMPRESSION, INCOMPAT_FILETYPE = _I["compression"], _I["filetype"]
INCOMPAT_RECOVER, INCOMPAT_JOURNAL_DEV = _I["needs_recovery"], _I["journal_dev"]
INCOMPAT_META_BG, INCOMPAT_64BIT, INCOMPAT_MMP = _I["meta_bg"], _I["64bit"], _I["mmp"]
INCOMPAT_CSUM_SEED, INCOMPAT_CASEFOLD = _I["metadata_csum_seed"], _I["casefold"]
RO_COMPAT_SPARSE_SUPER, RO_COMPAT_LARGE_FILE = _R["sparse_super"], _R["large_file"]
RO_COMPAT_BTREE_DIR, RO_COMPAT_HUGE_FILE = _R["btree_dir"], _R["huge_file"]
RO_COMPAT_GDT_CSUM, RO_COMPAT_BIGALLOC = _R["uninit_bg"], _R["bigalloc"]
RO_COMPAT_METADATA_CSUM = _R["metadata_csum"]
_S = flag_values(FsState)
STATE_VALID, STATE_ERROR, STATE_ORPHAN = _S["valid"], _S["error"], _S["orphan"]
#: incompat features this reader understands (compression is read as metadata only)
INCOMPAT_SUPPORTED = sum(_I.values()) & ~INCOMPAT_JOURNAL_DEV


#: the superblock with its codes and flags read as integers (what the reader computes with)
SUPERBLOCK_VALUES = plain(Superblock)
#: byte offset of each superblock field (for findings that point at a field)
SB_AT = {leaf.name: leaf.offset for leaf in leaves(Superblock)}

# --- checksums -------------------------------------------------------------------------


def ext4_chksum(seed: int, data: bytes) -> int:
    """The kernel's ``ext4_chksum``: raw crc32c from register ``seed``, no inversions
    (the standard CRC-32C with both inversions undone)."""
    return crc32c(data, seed ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def superblock_checksum(raw: bytes) -> int:
    """crc32c of the superblock's first 1020 bytes, as metadata_csum stores it."""
    return ext4_chksum(0xFFFFFFFF, raw[: SB_AT["s_checksum"]])


# --- the decoded superblock -----------------------------------------------------------


class SuperblockInfo:
    """The superblock's numbers that the reader uses, checked for sanity.

    ``problems`` lists what is wrong (empty when the superblock is usable); ``.raw`` is the
    construct Container and ``.data`` the 1024 bytes.
    """

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = bytes(data)
        self.offset = offset
        self.raw = sb = SUPERBLOCK_VALUES.parse(self.data)
        self.problems: list[str] = []
        self.magic_ok = sb.s_magic == EXT_MAGIC
        self.compat = sb.s_feature_compat
        self.incompat = sb.s_feature_incompat
        self.ro_compat = sb.s_feature_ro_compat
        self.is_64bit = bool(self.incompat & INCOMPAT_64BIT)
        self.log_block_size = sb.s_log_block_size
        self.block_size = 1024 << min(sb.s_log_block_size, 16)
        self.cluster_ratio = 1
        if self.ro_compat & RO_COMPAT_BIGALLOC and sb.s_log_cluster_size >= sb.s_log_block_size:
            self.cluster_ratio = 1 << min(sb.s_log_cluster_size - sb.s_log_block_size, 20)
        self.blocks_count = sb.s_blocks_count_lo | (
            sb.s_blocks_count_hi << 32 if self.is_64bit else 0
        )
        self.free_blocks = sb.s_free_blocks_count_lo | (
            sb.s_free_blocks_count_hi << 32 if self.is_64bit else 0
        )
        self.reserved_blocks = sb.s_r_blocks_count_lo | (
            sb.s_r_blocks_count_hi << 32 if self.is_64bit else 0
        )
        self.inodes_count = sb.s_inodes_count
        self.first_data_block = sb.s_first_data_block
        self.blocks_per_group = sb.s_blocks_per_group
        self.inodes_per_group = sb.s_inodes_per_group
        self.rev_level = sb.s_rev_level
        self.inode_size = sb.s_inode_size if sb.s_rev_level >= 1 else 128
        self.first_ino = sb.s_first_ino if sb.s_rev_level >= 1 else 11
        self.desc_size = (sb.s_desc_size or 32) if self.is_64bit else 32
        self.group_count = 0
        self.uuid = uuid_text(sb.s_uuid)
        self.label = sb.s_volume_name.split(b"\0", 1)[0].decode("utf-8", "replace") or None
        self.metadata_csum = bool(self.ro_compat & RO_COMPAT_METADATA_CSUM)
        self.gdt_csum = bool(self.ro_compat & RO_COMPAT_GDT_CSUM) and not self.metadata_csum
        if self.incompat & INCOMPAT_CSUM_SEED:
            self.csum_seed = sb.s_checksum_seed
        else:
            self.csum_seed = ext4_chksum(0xFFFFFFFF, bytes(sb.s_uuid))
        self.checksum_ok = None
        if self.metadata_csum:
            self.checksum_ok = superblock_checksum(self.data) == sb.s_checksum
        self._validate()

    def _validate(self) -> None:
        sb = self.raw
        p = self.problems
        if not self.magic_ok:
            p.append(f"bad magic {sb.s_magic:#06x} (expected 0xef53)")
            return
        if sb.s_log_block_size > 6:
            p.append(f"block size 1024 << {sb.s_log_block_size} is out of range")
        if self.ro_compat & RO_COMPAT_BIGALLOC and sb.s_log_cluster_size < sb.s_log_block_size:
            p.append("cluster size smaller than the block size")
        if self.cluster_ratio > 1 << 16:
            p.append(f"cluster ratio {self.cluster_ratio} is out of range")
        bits = 8 * self.block_size
        if not 0 < self.blocks_per_group <= bits * self.cluster_ratio:
            p.append(f"blocks per group {self.blocks_per_group} out of range")
        elif self.cluster_ratio > 1 and (
            sb.s_clusters_per_group * self.cluster_ratio != self.blocks_per_group
        ):
            p.append("blocks per group != clusters per group x cluster ratio")
        if not 0 < self.inodes_per_group <= bits:
            p.append(f"inodes per group {self.inodes_per_group} out of range")
        if self.rev_level >= 1 and (
            self.inode_size < 128
            or not is_pow2(self.inode_size)
            or self.inode_size > self.block_size
        ):
            p.append(f"inode size {self.inode_size} is not a power of two in 128..block size")
        if self.is_64bit and (
            self.desc_size < 32 or self.desc_size > 1024 or not is_pow2(self.desc_size)
        ):
            p.append(f"group descriptor size {self.desc_size} invalid")
        if self.first_data_block >= max(self.blocks_count, 1):
            p.append(f"first data block {self.first_data_block} beyond the block count")
        if self.block_size == 1024 and self.cluster_ratio == 1 and self.first_data_block != 1:
            p.append(f"first data block {self.first_data_block} (expected 1 for 1 KiB blocks)")
        if self.rev_level >= 1 and not 1 <= self.first_ino <= self.inodes_count:
            p.append(f"first inode {self.first_ino} out of range")
        if p:
            return
        self.group_count = -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)
        if self.group_count * self.inodes_per_group != self.inodes_count:
            p.append(
                f"inode count {self.inodes_count} != {self.group_count} groups x "
                f"{self.inodes_per_group} inodes per group"
            )

    # --- layout helpers ------------------------------------------------------------
    def group_first_block(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def has_super(self, g: int) -> bool:
        """Whether block group ``g`` holds a copy of the superblock and descriptors."""
        if g == 0:
            return True
        if self.compat & COMPAT_SPARSE_SUPER2:
            return g in tuple(self.raw.s_backup_bgs)
        if not self.ro_compat & RO_COMPAT_SPARSE_SUPER or g == 1:
            return True
        if g % 2 == 0:
            return False
        for base in (3, 5, 7):
            n = g
            while n % base == 0:
                n //= base
            if n == 1:
                return True
        return False

    @property
    def desc_per_block(self) -> int:
        return self.block_size // self.desc_size

    @property
    def gdt_blocks(self) -> int:
        return -(-self.group_count // self.desc_per_block)

    def descriptor_blocks(self, backup_group: int | None = None) -> list[int]:
        """Block numbers of the descriptor table, in order (primary, or at a backup group)."""
        sb_block = (
            1024 // self.block_size
            if backup_group is None
            else (self.group_first_block(backup_group))
        )
        first_meta = self.gdt_blocks
        if self.incompat & INCOMPAT_META_BG:
            first_meta = min(self.raw.s_first_meta_bg, self.gdt_blocks)
        out = [sb_block + 1 + i for i in range(first_meta)]
        dpb = self.desc_per_block
        for i in range(first_meta, self.gdt_blocks):
            g = i * dpb
            if backup_group is not None:
                g += 1  # a meta group's first backup lives in its second group
            out.append(self.group_first_block(g) + (1 if self.has_super(g) else 0))
        return out

    def time(self, name: str) -> int:
        """A superblock timestamp with its high bits, seconds since the epoch."""
        return self.raw[f"s_{name}"] | (self.raw.get(f"s_{name}_hi", 0) << 32)


def backup_candidates(source_size: int) -> list[tuple[int, int, int]]:
    """Where backup superblocks usually are: (byte offset, block size, group).

    Groups 1, 3, 5, 7, 9, 25, 27 and the last group (where sparse_super2 keeps its
    second copy) with mke2fs's default of 8 x block size blocks per group, for every
    block size; ``SuperblockInfo.raw.s_block_group_nr`` confirms a hit.
    """
    out = set()
    for bs in (1024, 2048, 4096, 8192, 16384, 32768, 65536):
        first = 1 if bs == 1024 else 0
        per_group = 8 * bs
        last = -(-(source_size // bs - first) // per_group) - 1  # sparse_super2's second
        for g in (1, 3, 5, 7, 9, 25, 27, last):
            off = (first + g * per_group) * bs
            if g > 0 and off + SUPERBLOCK_SIZE <= source_size:
                out.add((off, bs, g))
    return sorted(out)


def fs_kind(sb: SuperblockInfo) -> str:
    """ext2, ext3 or ext4, decided from the features as blkid does (the probe's rule; an
    external journal's features, which blkid calls jbd, read as ext4 here)."""
    kind = blkid_type(sb.compat, sb.incompat, sb.ro_compat)
    return "ext4" if kind == "jbd" else kind
