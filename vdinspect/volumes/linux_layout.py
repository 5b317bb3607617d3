"""Volume signatures blkid knows from Linux systems, declared once: the swap header, the
LUKS1 and LUKS2 headers, the md RAID 1.x superblock and the ZFS uberblock.

Declared here, below the recovery scan, because both the probe (``probes.py``) and the
scan's evidence (``recovery/scan``) read them. Sources: linux include/linux/swap.h
(``union swap_header``); the LUKS1 on-disk format specification 1.2.3 and the LUKS2
on-disk format (cryptsetup docs); linux include/uapi/linux/raid/md_p.h
(``struct mdp_superblock_1``); the OpenZFS on-disk specification (``uberblock_t``).
"""

from __future__ import annotations

from construct import Bytes, Int16ub, Int32ub, Int32ul, Int64ub, Int64ul, Struct

# --- Linux swap ---------------------------------------------------------------------------

SWAP_MAGIC = b"SWAPSPACE2"  # the last 10 bytes of the first page (version 1 header)
SWAP_MAGIC_V0 = b"SWAP-SPACE"  # the same place, the old (version 0) bitmap format
SWAP_HEADER_AT = 1024  # the header follows 1024 bytes of boot block
SWAP_PAGE_SIZES = (4096, 8192, 16384, 65536)  # page sizes the signature is looked for at
SwapHeader = Struct(
    "version" / Int32ul * "1",
    "last_page" / Int32ul * "last usable page; the area is last_page + 1 pages",
    "nr_badpages" / Int32ul * "bad pages listed after the header",
    "sws_uuid" / Bytes(16) * "UUID",
    "sws_volume" / Bytes(16) * "label, NUL padded",
)

# --- LUKS ---------------------------------------------------------------------------------

LUKS_MAGIC = b"LUKS\xba\xbe"
LUKS2_SECONDARY_MAGIC = b"SKUL\xba\xbe"

#: how every LUKS header starts (LUKS2 kept LUKS1's first 8 bytes so that old tools see it)
LuksHeaderStart = Struct(
    "magic" / Bytes(6) * 'LUKS\\xba\\xbe (LUKS2\'s secondary header: SKUL\\xba\\xbe)',
    "version" / Int16ub * "1 or 2",
)

Luks1Header = Struct(
    *LuksHeaderStart.subcons,
    "cipherName" / Bytes(32) * "cipher name, NUL padded",
    "cipherMode" / Bytes(32) * "cipher mode, NUL padded",
    "hashSpec" / Bytes(32) * "hash name, NUL padded",
    "payloadOffset" / Int32ub * "start of the encrypted data, 512-byte sectors",
    "keyBytes" / Int32ub * "master key length, bytes",
    "mkDigest" / Bytes(20) * "master key digest",
    "mkDigestSalt" / Bytes(32) * "salt of the digest",
    "mkDigestIterations" / Int32ub * "PBKDF2 iterations of the digest",
    "uuid" / Bytes(40) * "UUID as text, NUL padded",
)  # 208 bytes, then 8 key slots

Luks2BinaryHeader = Struct(
    *LuksHeaderStart.subcons,
    "hdr_size" / Int64ub * "binary header plus JSON area, bytes",
    "seqid" / Int64ub * "sequence id, increased on every update",
    "label" / Bytes(48) * "label, NUL padded",
    "checksum_alg" / Bytes(32) * "checksum algorithm, NUL padded",
    "salt" / Bytes(64) * "salt, unique per header",
    "uuid" / Bytes(40) * "UUID as text, NUL padded",
    "subsystem" / Bytes(48) * "owner subsystem label",
    "hdr_offset" / Int64ub * "offset of this header from the device start, bytes",
)  # 256 bytes used of 4096

# --- md RAID (superblock format 1.x) ------------------------------------------------------

MD_SB_MAGIC = 0xA92B4EFC
MD_SB_PLACES = ((4096, "1.2"), (0, "1.1"))  # superblock offset from the start -> format
MdSuperblock1 = Struct(
    "magic" / Int32ul * "0xa92b4efc",
    "major_version" / Int32ul * "1",
    "feature_map" / Int32ul * "features in use",
    "pad0" / Int32ul * "always 0",
    "set_uuid" / Bytes(16) * "UUID of the array",
    "set_name" / Bytes(32) * "name of the array, NUL padded",
    "ctime" / Int64ul * "creation time: seconds (low 40 bits) and microseconds",
)  # the head of the 256-byte superblock; per-device fields follow

# --- ZFS ----------------------------------------------------------------------------------

UBERBLOCK_MAGIC = 0x00BAB10C  # "oo-ba-bloc", in the byte order of the pool that wrote it
UBERBLOCK_ARRAY_AT = 0x20000  # the uberblock ring in each vdev label: 128 KiB in
UBERBLOCK_SLOT = 1024  # the smallest uberblock slot (2 ** ashift, ashift >= 10)
UberblockHead = Struct(
    "ub_magic" / Int64ul * "UBERBLOCK_MAGIC (little-endian pool) or byte-swapped",
    "ub_version" / Int64ul * "SPA version",
    "ub_txg" / Int64ul * "transaction group of this uberblock",
)
