"""What an exFAT volume says about itself: ``info()``, ``structures()`` and ``check()``.

``check()`` compares the main boot region with its backup, reads the volume flags, and
marks every cluster reachable from the root, the bitmap, the up-case table and the files
to compare with the allocation bitmap (clusters in use but free there, and the reverse).
"""

from __future__ import annotations

import numpy as np

from ...containers.base import structure_row
from ...errors import VDInspectError
from ..fat.clusters import claim_runs, mark_runs
from .entries import MAX_DIR_BYTES, ExfatKey
from .structs import BOOT_AT, BOOT_CHECKSUM_SKIP, BOOT_REGION_SECTORS, CHECKSUM_SECTOR

PERCENT_UNKNOWN = 0xFF  # PercentInUse not known


class ReportMixin:
    """``info``/``structures``/``check`` of :class:`~.filesystem.ExfatFileSystem`."""

    def flags(self) -> list[str]:
        """"dirty" and "media failure" when VolumeFlags says so."""
        f = []
        if self.boot.VolumeFlags.VolumeDirty:
            f.append("dirty")
        if self.boot.VolumeFlags.MediaFailure:
            f.append("media failure")
        return f

    def free_clusters(self) -> int | None:
        """Clusters free in the allocation bitmap (None without one)."""
        if self.bitmap is None:
            return None
        return int(np.count_nonzero(~self.bitmap))

    def info_fields(self) -> dict:
        b = self.boot
        rev = b.FileSystemRevision
        return dict(
            fstype="exfat",
            label=self.label,
            uuid=self.uuid,
            size=b.VolumeLength * self.sector_size,
            block_size=self.cluster_size,
            dirty=bool(self.boot.VolumeFlags.VolumeDirty),
            guid=self.guid,
            revision=f"{rev >> 8}.{rev & 0xFF:02d}",
            sector_size=self.sector_size,
            cluster_size=self.cluster_size,
            clusters=self.clusters,
            free_clusters=self.free_clusters(),
            volume_length=b.VolumeLength * self.sector_size,
            partition_offset=b.PartitionOffset,
            fats=b.NumberOfFats,
            active_fat=self.active + 1,
            percent_in_use=None if b.PercentInUse == PERCENT_UNKNOWN else b.PercentInUse,
            flags=self.flags(),
            backup_boot_used=self.backup_used,
            tz_unknown=False,
            time_note="exFAT times carry a UTC offset: converted to UTC where it is recorded, "
            "else shown as wall-clock time",
        )

    def structure_rows(self) -> list[dict]:
        ss = self.sector_size
        b = self.boot
        rows = [
            structure_row(
                "main boot region", self.name, 0, BOOT_REGION_SECTORS * ss,
                "boot sector, extended boot sectors, OEM parameters, checksum",
            ),
            structure_row(
                "backup boot region", self.name, BOOT_REGION_SECTORS * ss, BOOT_REGION_SECTORS * ss,
                "copy of the main boot region",
            ),
        ]
        for f in self.fats:
            rows.append(
                structure_row(
                    f.name, self.name, f.offset, f.length,
                    "file allocation table (32-bit entries)",
                )
            )
        rows.append(
            structure_row(
                "cluster heap", self.name, self.heap_offset, self.clusters * self.cluster_size,
                f"{self.clusters} clusters of {self.cluster_size} bytes",
            )
        )
        if self.bitmap_entry:
            bm = self.bitmap_entry[1]
            rows.append(
                structure_row(
                    "allocation bitmap", self.name, self.cluster_offset(bm.FirstCluster), bm.DataLength,
                    "one bit per cluster",
                )
            )
        rows.append(
            structure_row(
                "root directory", self.name, self.cluster_offset(b.FirstClusterOfRootDirectory), self.cluster_size,
                "first cluster of the root directory",
            )
        )
        return rows

    def reached_clusters(self, report: bool = False) -> np.ndarray:
        """True for every cluster the root, the bitmap, the up-case table and the live
        files and folders hold (indexed by cluster number); with ``report``, cross links
        and broken chains become findings."""
        used = np.zeros(self.max_cluster + 1, dtype=bool)

        def mark(first, runs, path):
            for s, c in claim_runs(used, runs):
                if report:
                    self.finding("error", "cluster chain", self.cluster_offset(s),
                                 f"{path}: cross-linked at cluster {c}")

        rc = self.boot.FirstClusterOfRootDirectory
        runs, _, _ = self.fat.chain(rc, MAX_DIR_BYTES // self.cluster_size, self.max_cluster)
        mark(rc, runs, "/")
        for _, bm in [self.bitmap_entry or (None, None)]:
            if bm is not None:
                r, _ = self.stream_runs(
                    ExfatKey(bm.FirstCluster, bm.DataLength, bm.DataLength, False),
                    bm.DataLength,
                    "bitmap",
                )
                mark(bm.FirstCluster, r or [], "allocation bitmap")
        if runs and self.readable(runs) == runs:
            try:
                self.read_ahead([(self.cluster_offset(s), n * self.cluster_size)
                                 for s, n in runs])
            except VDInspectError:  # the listings read and report it themselves
                self.ahead = {}
        held: list[tuple[int, int]] = []
        if not report:  # the scan: its listings are kept for the walk that follows
            self.listings = {}
        try:
            if report:
                for e in self.iter_entries("/", deleted=False):
                    k = e.key
                    if not k.size or not k.cluster:
                        continue
                    runs, problem = self.stream_runs(k, k.size, e.path)
                    if problem:
                        self.finding("error", "cluster chain", None, f"{e.path}: {problem}")
                    mark(k.cluster, runs or [], e.path)
            else:  # no cross links to report: the runs are marked together below
                held = self.reached_runs()
        finally:
            self.ahead = {}
        if held:
            mark_runs(used, held)
        if self.upcase_runs:
            mark(0, self.upcase_runs, "up-case table")
        return used

    def run_checks(self) -> None:
        """Findings: boot regions, dirty flags, set checksums, chains vs the bitmap."""
        flags = BOOT_AT["VolumeFlags"]
        if self.boot.VolumeFlags.VolumeDirty:
            self.finding("warning", "boot sector", flags, "the volume is marked dirty")
        if self.boot.VolumeFlags.MediaFailure:
            self.finding("warning", "boot sector", flags, "the volume recorded a media failure")
        if not self.backup_used:
            backup_at = BOOT_REGION_SECTORS * self.sector_size
            why, backup, _ = self.region_problem(backup_at)
            if why is not None:
                self.finding("warning", "backup boot region", backup_at, why)
            else:
                a, b = bytearray(self.region), bytearray(backup)
                for i in BOOT_CHECKSUM_SKIP:
                    a[i] = b[i] = 0
                ss = self.sector_size
                if a[: CHECKSUM_SECTOR * ss] != b[: CHECKSUM_SECTOR * ss]:
                    self.finding(
                        "warning",
                        "backup boot region",
                        BOOT_REGION_SECTORS * ss,
                        "the backup boot region differs from the main one",
                    )
        if self.bitmap is None:
            return
        used = self.reached_clusters(report=True)
        inuse = self.bitmap
        reach = used[2 : 2 + len(inuse)]
        missing = int(np.count_nonzero(reach & ~inuse))
        if missing:
            self.finding(
                "error",
                "allocation bitmap",
                None,
                f"{missing} clusters in use by files are marked free in the bitmap",
            )
        lost = int(np.count_nonzero(inuse & ~reach))
        if lost:
            self.finding(
                "warning",
                "allocation bitmap",
                None,
                f"{lost} clusters are marked in use but belong to no file",
            )
