"""What a FAT volume says about itself: ``info()``, ``structures()`` and ``check()``.

``check()`` compares what fsck.fat compares: the boot sector with its backup, the FAT
copies with each other, FSInfo's free count with the FAT, the clean-shutdown and
hard-error bits of FAT[1], every file's chain (loops, cross links, length against the
size) and clusters in use that belong to no file.
"""

from __future__ import annotations

import numpy as np

from ...containers.base import structure_row
from ..base import DIR, FILE
from .clusters import FatTable, claim_runs
from .directory import LOST_CLUSTER
from .structs import (
    FAT16_CLEAN,
    FAT16_NO_ERROR,
    FAT32_CLEAN,
    FAT32_NO_ERROR,
    FSI_FREE_COUNT_AT,
    FSI_UNKNOWN,
    MAX_DIR_BYTES,
    NO_SECTOR,
)


class ReportMixin:
    """``info``/``structures``/``check`` of :class:`~.filesystem.FatFileSystem` (mixed in)."""

    def fat1_flags(self) -> list[str]:
        """"dirty" and "hard error" when FAT[1]'s clean-shutdown / no-error bits are clear."""
        flags = []
        if self.bits == 12:
            return flags
        v = self.fat.get(1)
        clean, ok = (
            (FAT16_CLEAN, FAT16_NO_ERROR) if self.bits == 16 else (FAT32_CLEAN, FAT32_NO_ERROR)
        )
        if not v & clean:
            flags.append("dirty")
        if not v & ok:
            flags.append("hard error")
        return flags

    def free_clusters(self) -> int:
        """Clusters marked free in the (active) FAT."""
        n = 0
        b = 0
        while b * FatTable.BLOCK <= self.max_cluster:
            lo = max(2, b * FatTable.BLOCK)
            hi = min(self.max_cluster + 1, (b + 1) * FatTable.BLOCK)
            if hi > lo:
                n += int(np.count_nonzero(self.fat.values(lo, hi) == 0))
            b += 1
        return n

    def info_fields(self) -> dict:
        b = self.bpb
        d = dict(
            fstype=self.fstype,
            label=self.label,
            uuid=self.uuid,
            size=self.total_sectors * self.sector_size,
            block_size=self.cluster_size,
            dirty="dirty" in self.fat1_flags(),
            boot_label=self.boot_label,
            root_label=self.root_label,
            oem_name=b.BS_OEMName.decode("cp850", "replace").rstrip(),
            sector_size=self.sector_size,
            cluster_size=self.cluster_size,
            clusters=self.clusters,
            free_clusters=self.free_clusters(),
            total_sectors=self.total_sectors,
            hidden_sectors=b.BPB_HiddSec,
            reserved_sectors=b.BPB_RsvdSecCnt,
            fats=b.BPB_NumFATs,
            fat_sectors=self.fat_sectors,
            active_fat=self.active + 1,
            root_entries=self.root_entries if self.bits != 32 else None,
            root_cluster=self.ext.BPB_RootClus if self.bits == 32 else None,
            media=f"{b.BPB_Media:#04x}",
            flags=self.fat1_flags(),
            backup_boot_used=self.backup_used,
            tz_unknown=True,
            time_note="FAT stores local wall-clock times without a zone; they are shown "
            "in the UTC columns as they are",
        )
        if self.fsinfo is not None:
            fi = self.fsinfo
            d["fsinfo_free_count"] = None if fi.FSI_Free_Count == FSI_UNKNOWN else fi.FSI_Free_Count
            d["fsinfo_next_free"] = None if fi.FSI_Nxt_Free == FSI_UNKNOWN else fi.FSI_Nxt_Free
        return d

    def structure_rows(self) -> list[dict]:
        ss = self.sector_size
        rows = [
            structure_row(
                "boot sector", self.name, self.boot_offset, ss,
                f"{self.fstype.upper()} boot sector and BIOS parameter block",
            )
        ]
        if self.bits == 32:
            if self.fsinfo is not None:
                rows.append(
                    structure_row(
                        "FSInfo", self.name, self.fsinfo_offset, ss,
                        "free cluster count and next-free hint",
                    )
                )
            bk = self.ext.BPB_BkBootSec
            if bk not in NO_SECTOR:
                rows.append(
                    structure_row(
                        "backup boot sector", self.name, bk * ss, ss,
                        "copy of the boot sector (and FSInfo after it)",
                    )
                )
        for f in self.fats:
            rows.append(
                structure_row(
                    f.name, self.name, f.offset, f.length,
                    f"file allocation table, {self.bits}-bit entries"
                    + (" (active)" if f is self.fat else ""),
                )
            )
        if self.bits != 32:
            rows.append(
                structure_row(
                    "root directory", self.name, self.root_offset, self.root_entries * 32,
                    f"fixed root directory, {self.root_entries} entries",
                )
            )
        rows.append(
            structure_row(
                "data area", self.name, self.heap_offset, self.clusters * self.cluster_size,
                f"{self.clusters} clusters of {self.cluster_size} bytes from cluster 2",
            )
        )
        return rows

    def run_checks(self) -> None:
        """Findings: boot sector copies, FAT copies, FSInfo, dirty bits, chains, lost clusters."""
        flags = self.fat1_flags()
        fat1 = self.fat.offset + (self.bits // 8 if self.bits != 12 else 1)
        if "dirty" in flags:
            self.finding(
                "warning",
                "FAT[1]",
                fat1,
                "the volume was not unmounted cleanly (clean-shutdown bit clear)",
            )
        if "hard error" in flags:
            self.finding(
                "error",
                "FAT[1]",
                fat1,
                "the driver recorded a disk I/O error (hard-error bit clear)",
            )
        if self.bits == 32 and not self.backup_used:
            bk = self.ext.BPB_BkBootSec
            if bk not in NO_SECTOR and (bk + 1) * self.sector_size <= self.source.size:
                copy = self.source.read(bk * self.sector_size, 512)
                if copy != self.boot_raw:
                    self.finding(
                        "warning",
                        "backup boot sector",
                        bk * self.sector_size,
                        "the backup boot sector differs from the primary",
                    )
        # FAT copies
        top = self.max_cluster + 1
        for other in self.fats:
            if other is self.fat:
                continue
            diff = 0
            first = None
            step = FatTable.BLOCK
            for lo in range(0, top, step):
                a = self.fat.values(lo, min(top, lo + step))
                b = other.values(lo, min(top, lo + step))
                n = min(len(a), len(b))
                dif = np.flatnonzero(a[:n] != b[:n])
                if dif.size:
                    diff += int(dif.size)
                    if first is None:
                        first = lo + int(dif[0])
                diff += abs(len(a) - len(b))
            if diff:
                self.finding(
                    "warning",
                    other.name,
                    other.offset,
                    f"{other.name} differs from {self.fat.name} in {diff} entries "
                    f"(first at cluster {first})",
                )
        # reachable clusters, chains, cross links, lost clusters
        used = np.zeros(top, dtype=bool)
        if self.bits == 32:
            self._mark(used, self.ext.BPB_RootClus, None, "/")
        for e in self.iter_entries("/", deleted=False):
            k = e.key
            if k.cluster == LOST_CLUSTER:  # /$Lost is not on the volume
                continue
            if k.cluster == 0:
                if e.kind == FILE and k.size:
                    self.finding(
                        "error",
                        "directory",
                        e.raw.offset,
                        f"{e.path}: {k.size} bytes but no first cluster",
                    )
                continue
            if e.kind == DIR:
                self._mark(used, k.cluster, None, e.path)
            else:
                self._mark(used, k.cluster, k.size, e.path)
        fat = self.fat.values(2, top)
        lost = int(np.count_nonzero((fat != 0) & (fat != self.fat.bad) & ~used[2:]))
        if lost:
            self.finding(
                "warning",
                "FAT",
                self.fat.offset,
                f"{lost} clusters are marked in use but belong to no file",
            )
        free = int(np.count_nonzero(fat == 0))
        if (
            self.fsinfo is not None
            and self.fsinfo.FSI_Free_Count != FSI_UNKNOWN
            and self.fsinfo.FSI_Free_Count != free
        ):
            self.finding(
                "warning",
                "FSInfo",
                self.fsinfo_offset + FSI_FREE_COUNT_AT,
                f"free cluster count is {self.fsinfo.FSI_Free_Count}, the FAT has {free}",
            )

    def _mark(self, used: np.ndarray, first: int, size: int | None, path: str) -> None:
        if size is None:
            limit = max(1, MAX_DIR_BYTES // self.cluster_size)
        else:
            limit = -(-size // self.cluster_size) if size else 1
        runs, problem, ended = self.fat.chain(first, limit + 1, self.max_cluster)
        where = self.cluster_offset(first) if 2 <= first <= self.max_cluster else None
        if problem:
            self.finding("error", "cluster chain", where, f"{path}: {problem}")
        have = sum(n for _, n in runs)
        if size is not None and not problem:
            need = -(-size // self.cluster_size)
            if have < need:
                self.finding(
                    "error",
                    "cluster chain",
                    where,
                    f"{path}: {size} bytes need {need} clusters, the chain has {have}",
                )
            elif have > need and need:
                self.finding(
                    "warning",
                    "cluster chain",
                    where,
                    f"{path}: the chain is longer than the size needs",
                )
        for s, c in claim_runs(used, runs):
            self.finding(
                "error",
                "cluster chain",
                self.cluster_offset(s),
                f"{path}: cross-linked with another file at cluster {c}",
            )
