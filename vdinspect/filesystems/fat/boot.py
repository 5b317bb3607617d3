"""Opening a FAT volume: the boot sector (or its FAT32 backup), the FAT copies and FSInfo.

The BPB is checked, and the FAT type decided, by :func:`~.structs.check_bpb` (the one
check the filesystem probe uses too). A FAT32 volume whose boot sector is unusable is
opened from the backup boot sector (``BPB_BkBootSec``, sector 6). Of the FAT copies the
active one is used (``BPB_ExtFlags`` on FAT32, else the first); in salvage mode a copy
whose entry 0 does not repeat the media byte gives way to a sound one.
"""

from __future__ import annotations

from construct import ConstructError

from ...errors import CorruptImage, ImageError, NotRecognized
from ...findings import Findings
from ...io import ByteSource
from .clusters import FatTable
from .structs import (
    BPB_BYTSPERSEC_AT,
    BPB_EXTFLAGS_AT,
    BPB_FATSZ16_AT,
    BPB_FATSZ32_AT,
    BPB_ROOTCLUS_AT,
    BPB_RSVDSECCNT_AT,
    BPB_TOTSEC16_AT,
    EXT_FLAGS_ACTIVE,
    EXT_FLAGS_NO_MIRROR,
    FSI_STRUC_SIG,
    FSI_TRAIL_SIG,
    NO_NAME,
    NO_SECTOR,
    SECTOR_SIZES,
    FSInfo,
    check_bpb,
)

BOOT_SIGNATURE = b"\x55\xaa"  # the last two bytes of the boot sector
JUMPS = (0xEB, 0xE9)  # BS_jmpBoot[0]: a short or near jump
BACKUP_BOOT_SECTOR = 6  # where FAT32 formatters put the backup boot sector
SERIAL_SIGS = (0x28, 0x29)  # BS_BootSig values with BS_VolID present (0x29: also a label)


def boot_from_backup(fs: Findings, structure: str, backup: int | None,
                     exc: type[ImageError], unusable: str, why: str, copy: str) -> int:
    """The primary boot structure (at byte 0) is unusable (``why``): without a usable
    ``backup`` raise ``exc`` saying ``unusable``; else record an error saying the
    ``copy`` is used, set ``fs.backup_used`` and answer its offset (FAT32, exFAT)."""
    if backup is None:
        fs.fail(exc, unusable, structure, 0)
    fs.finding("error", structure, 0, f"{why}; using the {copy} at byte {backup:#x}")
    fs.backup_used = True
    return backup


def find_backup_boot(source: ByteSource) -> int | None:
    """The byte offset of a usable FAT32 backup boot sector when sector 0 is unusable."""
    for ssize in SECTOR_SIZES:
        off = BACKUP_BOOT_SECTOR * ssize
        if off + 512 > source.size:
            break
        bs = source.read(off, 512)
        if bs[510:512] != BOOT_SIGNATURE:
            continue
        g = check_bpb(bs)
        if not isinstance(g, str) and g.sector_size == ssize and g.fat32_layout:
            return off
    return None


class BootMixin:
    """Reading the boot sector, FAT copies and FSInfo (mixed into FatFileSystem)."""

    def read_boot(self) -> None:
        """Find a usable boot sector and set the volume geometry from its BPB."""
        src = self.source
        if src.size < 512:
            self.fail(NotRecognized, "volume smaller than one sector", "boot sector", 0)
        bs = src.read(0, 512)
        g = check_bpb(bs)
        why = g if isinstance(g, str) else None
        if why is None and bs[510:512] != BOOT_SIGNATURE and bs[0] not in JUMPS:
            why = "no boot signature and no jump instruction"
        if why is not None:
            off = find_backup_boot(src)
            self.boot_offset = boot_from_backup(
                self, "boot sector", off, NotRecognized, f"not a FAT boot sector: {why}",
                f"primary boot sector unusable ({why})", "backup")
            bs = src.read(off, 512)
            g = check_bpb(bs)
        self.boot_raw = bs
        self.geometry = g
        self.bpb = b = g.bpb
        self.ext = g.ext
        self.sector_size = ssize = g.sector_size
        self.cluster_size = self.block_size = ssize * b.BPB_SecPerClus
        total = self.total_sectors = g.total_sectors
        self.fat_sectors = g.fat_sectors
        self.fat_offset = b.BPB_RsvdSecCnt * ssize
        self.root_entries = g.root_entries
        self.root_offset = (b.BPB_RsvdSecCnt + b.BPB_NumFATs * g.fat_sectors) * ssize
        self.first_data_offset = self.root_offset  # TSK's "firstdatasect", for inode numbers
        self.heap_offset = self.root_offset + g.root_dir_sectors * ssize  # cluster 2
        if g.data_sectors <= 0:
            self.fail(CorruptImage, f"the FATs and root directory ({total - g.data_sectors} "
                      f"sectors) do not fit in the volume ({total} sectors)", "BPB",
                      BPB_BYTSPERSEC_AT)
        self.clusters = g.clusters
        self.fstype = g.fstype
        self.bits = bits = int(g.fstype[3:])
        capacity = g.fat_sectors * ssize * 8 // bits
        if capacity < self.clusters + 2:
            self.finding(
                "warning",
                "BPB",
                BPB_FATSZ16_AT if bits != 32 else BPB_FATSZ32_AT,
                f"the FAT has room for {capacity} entries, fewer than the "
                f"{self.clusters + 2} the volume needs; clusters past it are unused",
            )
            self.clusters = max(0, capacity - 2)
        self.max_cluster = self.clusters + 1
        self.serial = self.ext.BS_VolID if self.ext.BS_BootSig in SERIAL_SIGS else None
        if self.serial is not None:
            self.uuid = f"{self.serial >> 16:04X}-{self.serial & 0xFFFF:04X}"
        lab = self.ext.BS_VolLab if self.ext.BS_BootSig == SERIAL_SIGS[1] else b""
        self.boot_label = (
            None if lab in (b"", NO_NAME) else (lab.decode("cp850", "replace").rstrip(" ") or None)
        )
        if total * ssize > self.source.size:
            self.finding(
                "warning",
                "BPB",
                BPB_TOTSEC16_AT,
                f"the volume claims {total * ssize} bytes but only {self.source.size} are present",
            )
        if self.heap_offset > self.source.size:
            self.fail(CorruptImage, "the data area starts past the end of the volume", "BPB",
                      BPB_RSVDSECCNT_AT)
        if g.fat32_layout:
            rc = self.ext.BPB_RootClus
            if not 2 <= rc <= self.max_cluster:
                self.fail(CorruptImage, f"root cluster {rc} is out of range", "BPB_RootClus",
                          BPB_ROOTCLUS_AT)

    def setup_fats(self) -> None:
        """The FAT copies, and which one is used."""
        b = self.bpb
        size = self.fat_sectors * self.sector_size
        self.fats = [
            FatTable(
                self.source,
                self.fat_offset + k * size,
                size,
                self.bits,
                self.max_cluster + 1,
                name=f"FAT {k + 1}",
            )
            for k in range(b.BPB_NumFATs)
        ]
        active = 0
        if self.bits == 32 and self.ext.BPB_ExtFlags & EXT_FLAGS_NO_MIRROR:
            active = self.ext.BPB_ExtFlags & EXT_FLAGS_ACTIVE
            if active >= len(self.fats):
                self.finding(
                    "error",
                    "BPB_ExtFlags",
                    BPB_EXTFLAGS_AT,
                    f"active FAT {active} does not exist; using FAT 1",
                )
                active = 0
        self.active = active
        fat = self.fats[active]
        if fat.limit < 2:
            self.fail(CorruptImage, "the FAT is not inside the volume", "FAT", fat.offset)
        damaged = self.fat_damage(fat)
        if damaged:
            # the other copies are the volume's own redundancy (as the backup boot sector
            # is): a sound one is used in strict mode too, with an error finding
            others = [f for f in self.fats if f is not fat and not self.fat_damage(f)]
            if others:
                self.finding(
                    "error",
                    fat.name,
                    fat.offset,
                    f"{damaged}; using {others[0].name} instead",
                )
                self.active = self.fats.index(others[0])
            else:
                self.finding("error", fat.name, fat.offset, damaged)
        self.fat = self.fats[self.active]
        if not self.fat.complete:
            self.problem(
                self.fat.name,
                self.fat.offset,
                f"{self.fat.name} is cut short by the end of the volume: clusters "
                f"from {self.fat.limit} on are unreadable",
            )
        self.max_cluster = min(self.max_cluster, self.fat.limit - 1)

    def fat_damage(self, fat: FatTable) -> str | None:
        """Why a FAT copy looks damaged (its first entry must repeat the media byte)."""
        if fat.limit < 2:
            return "not inside the volume"
        e0 = fat.get(0)
        want = (fat.mask & ~0xFF) | self.bpb.BPB_Media
        if e0 != want:
            return f"entry 0 is {e0:#x}, not {want:#x} (media descriptor)"
        return None

    def read_fsinfo(self) -> None:
        """FAT32's FSInfo sector (free cluster count and hint), if it is sound."""
        self.fsinfo = None
        if self.bits != 32:
            return
        sec = self.ext.BPB_FSInfo
        if sec in NO_SECTOR:
            return
        off = self.boot_offset + sec * self.sector_size
        if off + 512 > self.source.size:
            self.finding("warning", "FSInfo", off, "FSInfo sector is past the end")
            return
        raw = self.source.read(off, 512)
        try:
            fi = FSInfo.parse(raw)
        except ConstructError:  # FSI_LeadSig is a Const: a wrong lead signature
            self.finding("warning", "FSInfo", off, "FSInfo lead signature is wrong")
            return
        if fi.FSI_StrucSig != FSI_STRUC_SIG or fi.FSI_TrailSig != FSI_TRAIL_SIG:
            self.finding("warning", "FSInfo", off, "FSInfo signatures are wrong")
            return
        self.fsinfo = fi
        self.fsinfo_offset = off
