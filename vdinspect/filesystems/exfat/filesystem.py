"""exFAT: the reader class and how a stream's clusters are found.

Facts from Microsoft's "exFAT file system specification", checked against exfatprogs,
the Linux kernel driver and The Sleuth Kit. The volume starts with the main boot region
(boot sector, 8 extended boot sectors, OEM parameters, a reserved sector and the boot
checksum sector: 12 sectors), then its backup (sectors 12..23), the FAT (32-bit entries)
and the cluster heap. Everything else lives in the heap: the allocation bitmap (one bit
per cluster: the FAT is only used for fragmented files), the up-case table (how names
compare without case) and the directories, made of 32-byte entries grouped in sets: a
File entry (0x85), a Stream Extension (0xC0: size, first cluster, NoFatChain flag) and
File Name entries (0xC1, 15 UTF-16 units each), protected by a set checksum. Clearing
bit 7 of the entry types (0x05, 0x40, 0x41) deletes a set.

Times: each timestamp has a 10 ms increment and a UTC offset byte. When the offset is
marked valid the time is converted to real UTC; otherwise (as on FAT) the wall-clock
value is stored in the UTC columns unchanged. The offsets are kept in the extra columns
``created_utc_offset``/``modified_utc_offset``/``accessed_utc_offset`` (minutes east of
UTC, NA when not recorded).

Inode numbers follow The Sleuth Kit: the root is 2, every 32-byte slot of the cluster
heap is ``(byte offset - heap offset) / 32 + 3``; a file's inode is its File entry's slot.

The class is put together from one mixin per concern: :mod:`.boot` (boot region, FATs),
:mod:`.entries` (directory entry sets, listing), :mod:`.bitmap` (allocation bitmap),
:mod:`.upcase` (up-case table) and :mod:`.report`; chains are ``fat.clusters``.
"""

from __future__ import annotations

from ...errors import CorruptImage, InvalidArgument, NotFound
from ...io import ByteSource, Concat, MemorySource, Zero
from ..base import DIR, Entry, FileSystem
from ..fat.clusters import cluster_source, readable_runs, take_free
from .bitmap import BitmapMixin
from .boot import BootMixin
from .columns import ExfatColumnsMixin
from .entries import DirectoryMixin, ExfatKey
from .report import ReportMixin
from .scan import ScanMixin
from .sets import SetsMixin
from .structs import ENTRY_SIZE
from .upcase import UpcaseMixin

Runs = list[tuple[int, int]]  # cluster runs: (first cluster, count)


class ExfatFileSystem(BootMixin, DirectoryMixin, BitmapMixin, UpcaseMixin, ReportMixin,
                      ScanMixin, SetsMixin, ExfatColumnsMixin, FileSystem):
    """An exFAT volume (read-only)."""

    fstype = "exfat"
    case_sensitive = False

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        super().__init__(source, name=name, strict=strict)
        self.backup_used = False
        self.read_boot()
        self.scan_root()
        self._lost = None  # lost directories are looked for on first listing (.scan)

    # --- geometry ---------------------------------------------------------------------------
    def cluster_offset(self, c: int) -> int:
        """Byte offset of cluster ``c`` in the volume."""
        return self.heap_offset + (c - 2) * self.cluster_size

    def inode_of(self, offset: int) -> int:
        """The Sleuth Kit's inode number of the directory entry at volume byte ``offset``."""
        return (offset - self.heap_offset) // ENTRY_SIZE + 3

    def readable(self, runs: Runs) -> Runs:
        """``runs`` cut where the clusters leave the volume."""
        return readable_runs(self, runs)

    def stream_runs(self, k: ExfatKey, nbytes: int, what: str) -> tuple[Runs | None, str | None]:
        """(runs, problem) for ``nbytes`` of a stream; contiguous or by the FAT.

        A deleted stream's runs are None when its clusters are in use again.
        """
        needed = -(-nbytes // self.cluster_size)
        if needed == 0:
            return [], None
        c = k.cluster
        if k.deleted:
            if k.contiguous:
                if (
                    c < 2
                    or c + needed - 1 > self.max_cluster
                    or not self.free_mask(c, c + needed).all()
                ):
                    return None, "clusters in use again"
                return [(c, needed)], None
            if not self.is_free(c):
                return None, "first cluster in use again"
            runs = take_free(self.free_mask, c, needed, self.max_cluster)
            return (runs, None) if runs is not None else (None, "not enough free clusters")
        if k.contiguous:
            if not 2 <= c or c + needed - 1 > self.max_cluster:
                return [], f"clusters {c}..{c + needed - 1} are out of range"
            return [(c, needed)], None
        runs, problem, _ = self.fat.chain(c, needed, self.max_cluster)
        have = sum(n for _, n in runs)
        if problem is None and have < needed:
            problem = f"the cluster chain ends after {have} clusters; {needed} are needed"
        return runs, problem

    # --- content ---------------------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        k: ExfatKey = entry.key
        name = f"{self.name}:{entry.path or entry.name}"
        if k.size == 0:
            return MemorySource(b"", name=name)
        what = entry.path or entry.name
        # NoFatChain streams and deleted ones: the clusters for ``size`` bytes; the
        # valid part is read, the rest is zeros
        runs, problem = self.stream_runs(k, k.valid, what)
        if k.deleted and problem:
            raise NotFound(
                f"{self.name}: {what} is deleted and its clusters are in use "
                "again; the content is not recoverable"
            )
        size = k.size
        heap_bytes = (self.max_cluster - 1) * self.cluster_size
        if size > heap_bytes and problem is None:
            problem = f"DataLength {size} is larger than the cluster heap ({heap_bytes})"
        readable = self.readable(runs or [])
        if problem is None and sum(n for _, n in readable) < sum(n for _, n in runs):
            problem = "the clusters run past the end of the volume"
        valid = k.valid
        if problem:
            at = self.cluster_offset(k.cluster) if 2 <= k.cluster <= self.max_cluster else None
            if self.strict:
                self.fail(CorruptImage, f"{what}: {problem}", "cluster chain", at)
            self.finding("error", "cluster chain", at, f"{what}: {problem}; content truncated")
            valid = min(valid, sum(n for _, n in readable) * self.cluster_size)
            size = valid
        data = cluster_source(
            self.source, self.heap_offset, self.cluster_size, readable, valid, name
        )
        if size > valid:
            return Concat([data, Zero(size - valid)], name=name)
        return data


def open_filesystem(
    source: ByteSource, *, name: str | None = None, strict: bool = True
) -> ExfatFileSystem:
    """Open an exFAT volume."""
    return ExfatFileSystem(source, name=name, strict=strict)

