"""FAT12, FAT16 and FAT32: the reader class and how a file's bytes are found.

Facts from Microsoft's "FAT: General Overview of On-Disk Format" (fatgen103), checked
against dosfstools, mtools and The Sleuth Kit. A FAT volume is: reserved sectors (boot
sector with the BIOS parameter block, on FAT32 also FSInfo and a backup boot sector), one
or more copies of the file allocation table, on FAT12/16 a fixed root directory, then the
data area cut into clusters numbered from 2. The FAT holds, per cluster, the next cluster
of its chain (0 free, an end-of-chain mark, or the bad-cluster mark); FAT12 packs two
12-bit entries into three bytes. Directories are arrays of 32-byte entries: an 8.3 short
entry per file, preceded by VFAT long-name entries (UCS-2, 13 characters each, with a
checksum of the short name).

Times: FAT stores the local wall-clock time of the machine that wrote the file and no
time zone. vdinspect puts these wall-clock values in the UTC columns unchanged (a file
written at 14:00 in Paris shows 14:00 UTC); the real zone is unknown, and ``info()``
says so with ``tz_unknown=True``. Created times have 10 ms resolution, modified times
2 s, accessed times are a date only.

Inode numbers follow The Sleuth Kit: the root directory is 2 and every 32-byte slot after
the FATs is numbered by its position, ``(byte offset - first data sector offset) / 32 + 3``,
so a file's ``inode`` is what ``fls`` prints for it (the slot of its short entry).

Deleted entries (first byte 0xE5) are listed with ``deleted=True``; their long names are
recovered when the checksum still matches a possible first character. Their content is
recovered as The Sleuth Kit does: ``size`` bytes from the first cluster on, skipping
clusters that are allocated now; ``recoverable`` says whether the first cluster is free
and enough free clusters follow.

The class is put together from one mixin per concern: :mod:`.boot` (boot sector, FATs,
FSInfo), :mod:`.directory` (listing), :mod:`.recovery` (deleted files) and :mod:`.report`
(``info``/``structures``/``check``); cluster chains are :mod:`.clusters`.
"""

from __future__ import annotations

from ...errors import CorruptImage, InvalidArgument, NotFound
from ...io import ByteSource, MemorySource
from ..base import DIR, Entry, FileSystem, free_runs
from .boot import BootMixin
from .clusters import FatTable, cluster_source, readable_runs
from .columns import ColumnsMixin
from .directory import DirectoryMixin, FatKey
from .recovery import RecoveryMixin
from .report import ReportMixin
from .scan import ScanMixin
from .structs import DIRENT

Runs = list[tuple[int, int]]  # cluster runs: (first cluster, count)


class FatFileSystem(ColumnsMixin, BootMixin, DirectoryMixin, RecoveryMixin, ReportMixin, ScanMixin,
                    FileSystem):
    """A FAT12/16/32 volume (read-only)."""

    case_sensitive = False

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        super().__init__(source, name=name, strict=strict)
        self.boot_offset = 0
        self.backup_used = False
        self.read_boot()
        self.setup_fats()
        self.read_fsinfo()
        self.list_dir(self.root())  # the root's volume-label entry wins over the BPB's
        self.label = self.root_label or self.boot_label
        self._lost = None  # lost directories are looked for on first listing (.scan)

    def free_ranges(self) -> list[tuple[int, int]]:
        """The clusters the FAT marks free, as (offset, length) byte ranges of the volume."""
        step = 1 << 20
        masks = ((self.cluster_offset(c), self.fat.free_mask(c, min(c + step, self.max_cluster + 1)))
                 for c in range(2, self.max_cluster + 1, step))
        return free_runs(masks, self.cluster_size, self.source.size)

    # --- geometry ---------------------------------------------------------------------
    def cluster_offset(self, c: int) -> int:
        """Byte offset of cluster ``c`` in the volume."""
        return self.heap_offset + (c - 2) * self.cluster_size

    def inode_of(self, offset: int) -> int:
        """The Sleuth Kit's inode number of the directory entry at volume byte ``offset``."""
        return (offset - self.first_data_offset) // DIRENT.size + 3

    def chain_runs(
        self, first: int, max_clusters: int, what: str
    ) -> tuple[Runs, str | None, bool, FatTable]:
        """Runs of a chain, with FAT-copy fallback in salvage mode; records the problem.

        Returns (runs, problem, ended, the FAT copy used), as :meth:`FatTable.chain` does.
        """
        runs, problem, ended = self.fat.chain(first, max_clusters, self.max_cluster)
        used = self.fat
        if problem and not self.strict:
            for other in self.fats:
                if other is self.fat:
                    continue
                r2, p2, e2 = other.chain(first, max_clusters, self.max_cluster)
                if p2 is None:
                    self.finding(
                        "error",
                        self.fat.name,
                        self.fat.offset,
                        f"{what}: {problem}; {other.name} has a sound chain, used it",
                    )
                    return r2, None, e2, other
        return runs, problem, ended, used

    def readable(self, runs: Runs) -> Runs:
        """``runs`` cut where the clusters leave the volume."""
        return readable_runs(self, runs)

    # --- content ------------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        k: FatKey = entry.key
        what = entry.path or entry.name
        name = f"{self.name}:{what}"
        size = k.size
        if size == 0:
            return MemorySource(b"", name=name)
        csize = self.cluster_size
        needed = -(-size // csize)
        if k.deleted:
            runs = self.deleted_runs(k.cluster, needed)
            if runs is None:
                raise NotFound(
                    f"{self.name}: {what} is deleted and its "
                    "clusters are in use again; the content is not recoverable"
                )
            return cluster_source(
                self.source, self.heap_offset, csize, self.readable(runs), size, name
            )
        runs, problem, ended, _ = self.chain_runs(k.cluster, needed, what)
        have = sum(n for _, n in runs)
        if problem is None and have < needed:
            problem = (
                f"the cluster chain ends after {have} clusters; the size "
                f"({size} bytes) needs {needed}"
            )
        readable = self.readable(runs)
        if problem is None and sum(n for _, n in readable) < have:
            problem = "the cluster chain runs past the end of the volume"
        if problem:
            where = self.cluster_offset(k.cluster) if 2 <= k.cluster <= self.max_cluster else None
            if self.strict:
                self.fail(CorruptImage, f"{what}: {problem}", "cluster chain", where)
            self.finding("error", "cluster chain", where, f"{what}: {problem}; content truncated")
            size = min(size, sum(n for _, n in readable) * csize)
        return cluster_source(self.source, self.heap_offset, csize, readable, size, name)

    # --- labels ----------------------------------------------------------------------------
    @property
    def volume_label(self) -> str | None:
        """The label Windows shows: the root's volume-label entry, else the boot sector's."""
        return self.root_label or self.boot_label


def open_filesystem(
    source: ByteSource, *, name: str | None = None, strict: bool = True
) -> FatFileSystem:
    """Open a FAT12/16/32 volume."""
    fs = FatFileSystem(source, name=name, strict=strict)
    if fs.root_label:
        fs.label = fs.root_label
    return fs
