"""The XFS superblock, declared once (big-endian; ``sb_crc`` is little-endian).

Declared here, below the filesystem drivers, because both the probe (``probes.py``) and
the evidence of a partition scan read it as well as the XFS driver
(``vdinspect.filesystems.xfs``, which re-exports it from its ``structs`` module). Names
follow the Linux kernel's ``xfs_format.h`` (``struct xfs_dsb``) and the "XFS Algorithms &
Data Structures" book.
"""

from __future__ import annotations

from construct import Bytes, Int8ub, Int16ub, Int32ub, Int32ul, Int64ub, Struct

XFS_SB_MAGIC = 0x58465342  # "XFSB"

Superblock = Struct(
    "sb_magicnum" / Int32ub * "XFSB",
    "sb_blocksize" / Int32ub * "filesystem block size, bytes (512 to 65536)",
    "sb_dblocks" / Int64ub * "blocks in the data device",
    "sb_rblocks" / Int64ub * "blocks in the realtime device",
    "sb_rextents" / Int64ub * "realtime extents",
    "sb_uuid" / Bytes(16) * "filesystem UUID",
    "sb_logstart" / Int64ub * "first block of an internal log (0 = external log)",
    "sb_rootino" / Int64ub * "root directory inode number",
    "sb_rbmino" / Int64ub * "realtime bitmap inode",
    "sb_rsumino" / Int64ub * "realtime summary inode",
    "sb_rextsize" / Int32ub * "realtime extent size, blocks",
    "sb_agblocks" / Int32ub * "blocks per allocation group (the last may be shorter)",
    "sb_agcount" / Int32ub * "allocation groups",
    "sb_rbmblocks" / Int32ub * "realtime bitmap blocks",
    "sb_logblocks" / Int32ub * "log size, blocks",
    "sb_versionnum" / Int16ub * "low 4 bits: version (4 or 5); high bits: v4 feature flags",
    "sb_sectsize" / Int16ub * "sector size, bytes",
    "sb_inodesize" / Int16ub * "inode size, bytes (256 to 2048)",
    "sb_inopblock" / Int16ub * "inodes per block",
    "sb_fname" / Bytes(12) * "label, NUL padded",
    "sb_blocklog" / Int8ub * "log2 of sb_blocksize",
    "sb_sectlog" / Int8ub * "log2 of sb_sectsize",
    "sb_inodelog" / Int8ub * "log2 of sb_inodesize",
    "sb_inopblog" / Int8ub * "log2 of sb_inopblock",
    "sb_agblklog" / Int8ub * "log2 of sb_agblocks, rounded up: bits of agbno in numbers",
    "sb_rextslog" / Int8ub * "log2 of sb_rextents",
    "sb_inprogress" / Int8ub * "mkfs has not finished",
    "sb_imax_pct" / Int8ub * "max % of space for inodes",
    "sb_icount" / Int64ub * "allocated inodes",
    "sb_ifree" / Int64ub * "free inodes",
    "sb_fdblocks" / Int64ub * "free data blocks",
    "sb_frextents" / Int64ub * "free realtime extents",
    "sb_uquotino" / Int64ub * "user quota inode",
    "sb_gquotino" / Int64ub * "group quota inode",
    "sb_qflags" / Int16ub * "quota flags",
    "sb_flags" / Int8ub * "misc flags",
    "sb_shared_vn" / Int8ub * "shared version number (0)",
    "sb_inoalignmt" / Int32ub * "inode chunk alignment, blocks",
    "sb_unit" / Int32ub * "stripe unit, blocks",
    "sb_width" / Int32ub * "stripe width, blocks",
    "sb_dirblklog" / Int8ub * "log2 of directory block size in filesystem blocks",
    "sb_logsectlog" / Int8ub * "log2 of the log sector size",
    "sb_logsectsize" / Int16ub * "log sector size, bytes",
    "sb_logsunit" / Int32ub * "log stripe unit, bytes",
    "sb_features2" / Int32ub * "more v4 feature flags (MOREBITS)",
    "sb_bad_features2" / Int32ub * "copy of sb_features2 (an old alignment bug)",
    "sb_features_compat" / Int32ub * "v5 compatible features",
    "sb_features_ro_compat" / Int32ub * "v5 read-only compatible features",
    "sb_features_incompat" / Int32ub * "v5 incompatible features",
    "sb_features_log_incompat" / Int32ub * "v5 log incompatible features",
    "sb_crc" / Int32ul * "CRC-32C of the sector with this field zeroed (v5)",
    "sb_spino_align" / Int32ub * "sparse inode chunk alignment, blocks",
    "sb_pquotino" / Int64ub * "project quota inode",
    "sb_lsn" / Int64ub * "last write log sequence number",
    "sb_meta_uuid" / Bytes(16) * "UUID stamped in metadata (META_UUID feature)",
)  # 264 bytes

XFS_SB_MAGIC_BYTES = XFS_SB_MAGIC.to_bytes(4, "big")  # b"XFSB", as sb_magicnum is stored
