"""The exFAT boot region: main and backup copies, their checksum, and the volume geometry.

A boot region is 12 sectors: the boot sector, 8 extended boot sectors, the OEM
parameters, a reserved sector and the checksum sector (the boot checksum repeated); the
backup region follows at sector 12. When the main region is unusable the backup is used.
"""

from __future__ import annotations

import numpy as np

from ...errors import CorruptImage, NotRecognized
from ..fat.boot import boot_from_backup
from ..fat.clusters import FatTable
from .structs import (
    BOOT_AT,
    BOOT_CHECKSUM_SKIP,
    BOOT_REGION_SECTORS,
    BOOT_SIGNATURE,
    CHECKSUM_DTYPE,
    CHECKSUM_SECTOR,
    EXFAT_NAME,
    FILE_SYSTEM_NAME,
    MAX_SECTOR_SHIFT,
    MIN_SECTOR_SHIFT,
    MUST_BE_ZERO,
    BootSector,
    FatEntry,
    boot_sector_problem,
)

FIRST_FAT_SECTOR = 2 * BOOT_REGION_SECTORS  # the FAT starts after both boot regions
FAT_ENTRY0, FAT_ENTRY1 = 0xFFFFFFF8, 0xFFFFFFFF  # what FatEntry[0] and [1] must hold


def boot_checksum(region: bytes, sector_size: int) -> int:
    """The exFAT boot checksum of sectors 0..10 (VolumeFlags and PercentInUse skipped)."""
    c = 0
    for i, b in enumerate(region[: CHECKSUM_SECTOR * sector_size]):
        if i in BOOT_CHECKSUM_SKIP:
            continue
        c = ((c >> 1) | ((c & 1) << 31)) + b & 0xFFFFFFFF
    return c


class BootMixin:
    """Reading the boot region and the FATs (mixed into :class:`~.filesystem.ExfatFileSystem`)."""

    def fat_damage(self, fat: FatTable) -> str | None:
        """Why a FAT copy looks damaged: FatEntry[0] must be the media type F8h followed
        by FFh bytes, FatEntry[1] FFFFFFFFh (exFAT specification, 4.1)."""
        if fat.limit < 2:
            return f"{fat.name} is not inside the volume"
        e0, e1 = fat.get(0), fat.get(1)
        if (e0, e1) != (FAT_ENTRY0, FAT_ENTRY1):
            return (f"{fat.name}: entries 0 and 1 are {e0:#010x} {e1:#010x}, not "
                    f"{FAT_ENTRY0:#010x} {FAT_ENTRY1:#010x}")
        return None

    def region_problem(self, base: int) -> tuple[str | None, bytes, int]:
        """(why the boot region at ``base`` is unusable or None, its 12 sectors, sector size)."""
        if base + 512 > self.source.size:
            return "past the end of the volume", b"", 512
        bs = self.source.read(base, 512)
        why = boot_sector_problem(bs)
        if why is not None:
            return why, bs, 512
        shift = bs[BOOT_AT["BytesPerSectorShift"]]
        ss = 1 << shift
        if base + BOOT_REGION_SECTORS * ss > self.source.size:
            return "the boot region is cut short", bs, ss
        region = self.source.read(base, BOOT_REGION_SECTORS * ss)
        if any(region[MUST_BE_ZERO]):
            return "MustBeZero is not zero", region, ss
        if region[BOOT_SIGNATURE] != b"\x55\xaa":
            return "boot signature is not 55 AA", region, ss
        want = boot_checksum(region, ss)
        got = np.frombuffer(region[CHECKSUM_SECTOR * ss : (CHECKSUM_SECTOR + 1) * ss],
                            dtype=CHECKSUM_DTYPE)
        if not (got == want).all():
            return (
                (f"boot checksum {int(got[0]):#010x} does not match the computed {want:#010x}"),
                region,
                ss,
            )
        return None, region, ss

    def read_boot(self) -> None:
        """Find a usable boot region and set the geometry and FATs from it."""
        why, region, ss = self.region_problem(0)
        self.boot_offset = 0
        if why is not None:
            found = None
            for shift in range(MIN_SECTOR_SHIFT, MAX_SECTOR_SHIFT + 1):
                w2, r2, s2 = self.region_problem(BOOT_REGION_SECTORS << shift)
                if w2 is None and s2 == 1 << shift:
                    found = (BOOT_REGION_SECTORS << shift, r2, s2)
                    break
            exc = NotRecognized if region[FILE_SYSTEM_NAME] != EXFAT_NAME else CorruptImage
            self.boot_offset = boot_from_backup(
                self, "main boot region", found and found[0], exc,
                f"not a usable exFAT boot region: {why}", why, "backup boot region")
            _, region, ss = found
        self.region = region
        self.boot = b = BootSector.parse(region[: BootSector.sizeof()])
        self.sector_size = ss
        self.cluster_size = self.block_size = ss << b.SectorsPerClusterShift
        self.heap_offset = b.ClusterHeapOffset * ss
        self.clusters = b.ClusterCount
        self.max_cluster = self.clusters + 1
        self.uuid = f"{b.VolumeSerialNumber >> 16:04X}-{b.VolumeSerialNumber & 0xFFFF:04X}"
        if b.NumberOfFats not in (1, 2):
            self.fail(CorruptImage, f"NumberOfFats is {b.NumberOfFats}", "boot sector",
                      BOOT_AT["NumberOfFats"])
        fat_end = (b.FatOffset + b.NumberOfFats * b.FatLength) * ss
        if b.FatOffset < FIRST_FAT_SECTOR or fat_end > self.heap_offset:
            self.fail(CorruptImage, "the FAT is not between the boot regions and the heap",
                      "boot sector", BOOT_AT["FatOffset"])
        if b.FatLength * ss // FatEntry.sizeof() < self.clusters + 2:
            self.fail(CorruptImage, "the FAT is smaller than the cluster count needs",
                      "boot sector", BOOT_AT["FatLength"])
        heap_end = self.heap_offset + self.clusters * self.cluster_size
        if b.VolumeLength * ss < heap_end:
            self.finding("warning", "boot sector", BOOT_AT["VolumeLength"],
                         "the cluster heap ends past VolumeLength")
        if heap_end > self.source.size:
            msg = (
                f"the volume is cut short: the heap needs {heap_end} bytes, "
                f"{self.source.size} are present"
            )
            self.problem("boot sector", BOOT_AT["ClusterCount"], msg)
        self.active = int(b.VolumeFlags.ActiveFat) if b.NumberOfFats == 2 else 0
        size = b.FatLength * ss
        self.fats = [
            FatTable(
                self.source,
                (b.FatOffset + k * b.FatLength) * ss,
                size,
                8 * FatEntry.sizeof(),
                self.clusters + 2,
                exfat=True,
                name=f"FAT {k + 1}",
            )
            for k in range(b.NumberOfFats)
        ]
        self.fat = self.fats[self.active]
        damaged = self.fat_damage(self.fat)
        if damaged:
            bad = self.fat
            # TexFAT's second FAT: the other copy is used when the active one is damaged
            others = [f for f in self.fats if f is not bad and not self.fat_damage(f)]
            if others:
                damaged += f"; using {others[0].name} instead"
                self.active = self.fats.index(others[0])
                self.fat = others[0]
            self.finding("error", bad.name, bad.offset, damaged)
        self.max_cluster = min(self.max_cluster, self.fat.limit - 1)
        rc = b.FirstClusterOfRootDirectory
        if not 2 <= rc <= self.max_cluster:
            self.fail(CorruptImage, f"root directory cluster {rc} is out of range",
                      "boot sector", BOOT_AT["FirstClusterOfRootDirectory"])

