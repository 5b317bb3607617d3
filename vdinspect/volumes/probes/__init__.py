"""Filesystem magic probes: what a volume holds, with its label and UUID where cheap.

Each probe reads a few small blocks at fixed places and answers like ``blkid -p`` does
(TYPE, LABEL, UUID formatted as blkid prints them; md RAID's UUID as mdadm prints it), and
FAT volumes are named ``fat12``/``fat16``/``fat32`` (blkid's TYPE=vfat plus its VERSION),
decided from the BPB by counting clusters as the FAT specification says
(``fat_layout.check_bpb``, shared with the FAT driver: at exactly 4084 clusters that is
FAT12, where blkid says FAT16).
Places and fields come from each format's specification, read through the layouts
declared once in ``volumes/*_layout.py``, and are checked against util-linux's expected
outputs (tests/ts/blkid) and real mkfs tools. The probes live by family (``windows``,
``linux``, ``media``); this module holds the order in which they are tried."""

from __future__ import annotations

import struct
import sys

from ...errors import EncryptedImage, VDInspectError
from ...io import ByteSource, read_inside
from ..signatures import (
    BITLOCKER_OEM,
    BOOT_SIGNATURE,
    BOOT_SIGNATURE_AT,
    DESCRIPTORS_AT,
    EXFAT_NAME,
    GPT_SIGNATURE,
    GPT_SIGNATURE_AT,
    ISO_STANDARD_ID,
    NTFS_OEM,
    OEM_ID_AT,
    REFS_OEM,
    STANDARD_ID_AT,
    VRS_NSR_IDS,
    VRS_OTHER_IDS,
)
from .base import FsInfo

#: probe name -> the family module that defines it, imported when first asked for (a
#: family's layouts declare construct Structs: an ext4 volume never declares NTFS's)
FAMILY = {
    **dict.fromkeys(("probe_btrfs", "probe_ext", "probe_luks", "probe_lvm2", "probe_md",
                     "probe_swap", "probe_xfs"), "linux"),
    **dict.fromkeys(("probe_apfs", "probe_hfs", "probe_iso9660", "probe_udf", "probe_zfs"),
                    "media"),
    **dict.fromkeys(("probe_exfat", "probe_fat", "probe_ntfs", "fat_geometry"), "windows"),
}


def __getattr__(name: str):
    """A probe of a family not imported yet (PEP 562): ``probes.probe_ext`` as before."""
    if name not in FAMILY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{FAMILY[name]}"), name)
    globals()[name] = value
    return value


def probe_errors() -> tuple[type[BaseException], ...]:
    """What a probe of untrusted bytes may raise: construct's errors only once a family
    imported construct (none can come from it before)."""
    errors = (VDInspectError, ValueError, IndexError, struct.error)
    construct = sys.modules.get("construct")
    return errors if construct is None else (*errors, construct.ConstructError)


__all__ = [
    "ENCRYPTED", "FsInfo", "apply", "disk_signature", "encryption_error",
    "is_filesystem_boot_sector", "probe", "probe_apfs", "probe_btrfs", "probe_exfat",
    "probe_ext", "probe_fat", "probe_hfs", "probe_iso9660", "probe_luks", "probe_lvm2",
    "probe_md", "probe_ntfs", "probe_swap", "probe_udf", "probe_xfs", "probe_zfs",
]

# --- the order of probing ----------------------------------------------------------------


def probe(src: ByteSource) -> FsInfo | None:
    """The filesystem (or volume signature) on ``src``, or None if nothing is recognised.

    A family is imported only when its probe is asked: NTFS and exFAT only under their
    OEM name, ISO 9660 and UDF only under a recognition-sequence identifier."""
    head = read_inside(src, 0, min(src.size, 4096))
    if not head:
        return None
    bs = head[:512]
    oem = bs[OEM_ID_AT]
    if len(bs) == 512 and oem in (NTFS_OEM, EXFAT_NAME):
        from .windows import probe_exfat, probe_ntfs

        r = probe_ntfs(src, bs) or probe_exfat(src, bs)
        if r is not None:
            return r
    from . import linux

    r = linux.probe_md(src) or linux.probe_luks(src, head) or linux.probe_lvm2(src)
    if r is not None:
        return r
    if oem == BITLOCKER_OEM:
        return FsInfo("BitLocker")
    if oem.startswith(REFS_OEM):
        return FsInfo("refs")
    r = (_probe_optical(src) or linux.probe_xfs(src, head) or linux.probe_ext(src)
         or linux.probe_btrfs(src))
    if r is not None:
        return r
    from .media import probe_apfs, probe_hfs, probe_zfs

    r = probe_hfs(src) or probe_apfs(src, head) or probe_zfs(src) or linux.probe_swap(src)
    if r is not None or len(bs) < 512:
        return r
    from .windows import probe_fat

    return probe_fat(src, bs)


def _probe_optical(src: ByteSource) -> FsInfo | None:
    """ISO 9660, else UDF: both need a known identifier in the first descriptor."""
    first = read_inside(src, DESCRIPTORS_AT + STANDARD_ID_AT.start,
                        STANDARD_ID_AT.stop - STANDARD_ID_AT.start)
    if first not in (ISO_STANDARD_ID, *VRS_NSR_IDS, *VRS_OTHER_IDS):
        return None
    from .media import probe_iso9660, probe_udf

    return probe_iso9660(src) or probe_udf(src)


#: probe type -> (the encryption scheme, the key material that would open it): volumes
#: that hold ciphertext, never read as a filesystem
ENCRYPTED = {
    "BitLocker": ("BitLocker (Windows full-volume encryption)",
                  "the 48-digit recovery password, a user password, or the startup key "
                  "(.BEK file) of one of its key protectors"),
    "crypto_LUKS": ("LUKS (Linux dm-crypt)",
                    "the passphrase or key file of one of its key slots"),
    "apfs_encrypted": ("APFS encryption (FileVault)",
                       "the password of a user its keybag lists, or its recovery key"),
}


def encryption_error(fstype: str | None, where: str | None) -> EncryptedImage | None:
    """The EncryptedImage for a volume a probe named ``fstype``, or None if it is not an
    encrypted one (LUKS's version goes into the scheme when known)."""
    if fstype not in ENCRYPTED:
        return None
    scheme, needs = ENCRYPTED[fstype]
    return EncryptedImage("the volume is encrypted; vdinspect does not decrypt",
                          scheme=scheme, needs=needs, path=where, structure="volume header",
                          offset=0)


def disk_signature(src: ByteSource) -> str | None:
    """What marks ``src`` as a disk or volume: ``"gpt"``, ``"mbr"`` (the 55AA boot signature,
    which FAT/NTFS/exFAT boot sectors carry too), a filesystem type, or None when nothing
    known is there (a raw image that may be no disk at all: a mistyped path, a format we
    do not know)."""
    at = GPT_SIGNATURE_AT.start  # (signatures.py: no layout declared to look)
    for sector in (512, 4096):  # the GPT header is in LBA 1
        if read_inside(src, sector + at, len(GPT_SIGNATURE)) == GPT_SIGNATURE:
            return "gpt"
    if read_inside(src, BOOT_SIGNATURE_AT.start, len(BOOT_SIGNATURE)) == BOOT_SIGNATURE:
        return "mbr"
    try:
        info = probe(src)
    except probe_errors():
        return None
    return None if info is None else info.type


def is_filesystem_boot_sector(sector0: bytes) -> bool:
    """True when sector 0 is a FAT, exFAT or NTFS boot sector (not a partition table)."""
    if len(sector0) < 512:
        return False
    if sector0[OEM_ID_AT] in (NTFS_OEM, EXFAT_NAME):
        return True
    from .windows import fat_geometry

    return fat_geometry(sector0[:512]) is not None


def apply(ctx, vol, src: ByteSource) -> None:
    """Probe ``src`` and fill ``vol``'s filesystem, label, uuid and fs_version."""
    try:
        info = probe(src)
    except probe_errors() as e:
        ctx.finding(
            "warning",
            "filesystem probe",
            vol.start,
            f"probing {vol.key or 'the volume'} failed: {e}",
        )
        return
    if info is None:
        return
    vol.filesystem = info.type
    vol.label = info.label
    vol.uuid = info.uuid
    vol.fs_version = info.version

