"""The NTFS boot sector (the BIOS parameter block) and the volume geometry it gives.

Facts from the Linux-NTFS project documentation ("Boot sector") cross-checked with
mkntfs and Windows-made volumes. The boot sector is sector 0 of the volume; a copy sits
in the last sector (the sector just past ``total_sectors``). The layout is declared once in
:mod:`vdinspect.volumes.ntfs_layout` (the probe reads it too).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...layout import offset_of
from ...units import is_pow2
from ...volumes.ntfs_layout import (  # noqa: F401 (re-exported)
    NTFS_OEM,
    BootSector,
    cluster_sectors,
    record_size,
)

BOOT_SECTOR_SIZE = BootSector.sizeof()
_OEM_AT = offset_of(BootSector, "oem_id")


@dataclass(frozen=True)
class Geometry:
    """Sizes and places the boot sector gives, in bytes."""

    sector_size: int
    cluster_size: int
    total_sectors: int
    mft_lcn: int
    mftmirr_lcn: int
    record_size: int
    index_record_size: int
    serial: int
    boot_offset: int  # where this boot sector was read (0, or the backup's place)

    @property
    def volume_size(self) -> int:
        return self.total_sectors * self.sector_size

    @property
    def clusters(self) -> int:
        return self.total_sectors * self.sector_size // self.cluster_size

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:016X}"


def parse_boot(raw: bytes, offset: int = 0) -> tuple[Geometry | None, str]:
    """The geometry of a boot sector, or (None, why it is not a usable NTFS boot sector)."""
    if len(raw) < BOOT_SECTOR_SIZE:
        return None, "short read"
    oem = raw[_OEM_AT : _OEM_AT + len(NTFS_OEM)]
    if oem != NTFS_OEM:
        return None, f"OEM id is {oem!r}, not 'NTFS    '"
    bs = BootSector.parse(raw[:BOOT_SECTOR_SIZE])
    ssize = bs.bytes_per_sector
    if not is_pow2(ssize) or not 256 <= ssize <= 4096:
        return None, f"bytes per sector {ssize} is not a power of two in 256..4096"
    spc = cluster_sectors(bs.sectors_per_cluster)
    if not is_pow2(spc):
        return None, f"sectors per cluster {bs.sectors_per_cluster:#x} is not a power of two"
    csize = ssize * spc
    if csize > 1 << 21:
        return None, f"cluster size {csize} is larger than 2 MiB"
    rsize = record_size(bs.clusters_per_mft_record, csize)
    isize = record_size(bs.clusters_per_index_record, csize)
    if not is_pow2(rsize) or not 256 <= rsize <= 65536:
        return None, f"MFT record size {rsize} (from {bs.clusters_per_mft_record}) is not sane"
    if not is_pow2(isize) or not 256 <= isize <= 1 << 21:
        return None, f"index record size {isize} is not sane"
    if bs.total_sectors == 0:
        return None, "total sectors is 0"
    clusters = bs.total_sectors * ssize // csize
    if not 0 < bs.mft_lcn < clusters or not 0 < bs.mftmirr_lcn < clusters:
        return None, f"$MFT/$MFTMirr clusters {bs.mft_lcn}/{bs.mftmirr_lcn} outside the volume"
    return Geometry(
        ssize,
        csize,
        bs.total_sectors,
        bs.mft_lcn,
        bs.mftmirr_lcn,
        rsize,
        isize,
        bs.volume_serial_number,
        offset,
    ), ""
