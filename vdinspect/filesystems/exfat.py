"""exFAT.

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
"""

from __future__ import annotations

import bisect
import datetime as dt
import struct

import numpy as np
from construct import Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ..errors import CorruptImage, InvalidArgument, NotFound, NotRecognized
from ..io import ByteSource, Concat, MemorySource, Zero
from .base import DIR, FILE, Entry, FileSystem
from .fat import FatTable, _attr_text, cluster_source, dos_datetime, readable_runs, take_free

# --- on-disk structures ----------------------------------------------------------------

BootSector = Struct(
    "JumpBoot" / Bytes(3) * "EB 76 90",
    "FileSystemName" / Bytes(8) * "'EXFAT   '",
    "MustBeZero" / Bytes(53) * "zero (where a FAT BPB would be)",
    "PartitionOffset" / Int64ul * "sectors before the volume on the disk (0 = ignore)",
    "VolumeLength" / Int64ul * "sectors in the volume",
    "FatOffset" / Int32ul * "sector of the first FAT",
    "FatLength" / Int32ul * "sectors per FAT",
    "ClusterHeapOffset" / Int32ul * "sector of cluster 2",
    "ClusterCount" / Int32ul * "clusters in the heap",
    "FirstClusterOfRootDirectory" / Int32ul * "first cluster of the root directory",
    "VolumeSerialNumber" / Int32ul * "volume serial number",
    "FileSystemRevision" / Int16ul * "major.minor as two bytes (1.00)",
    "VolumeFlags" / Int16ul * "bit 0 active FAT, 1 volume dirty, 2 media failure",
    "BytesPerSectorShift" / Int8ul * "log2 of the sector size (9..12)",
    "SectorsPerClusterShift" / Int8ul * "log2 of sectors per cluster (sum with above <= 25)",
    "NumberOfFats" / Int8ul * "1, or 2 for TexFAT",
    "DriveSelect" / Int8ul * "INT 13h drive number",
    "PercentInUse" / Int8ul * "percentage of clusters in use (0xFF = unknown)",
    "Reserved" / Bytes(7) * "zero",
    "BootCode" / Bytes(390) * "boot code",
    "BootSignature" / Int16ul * "0xAA55",
)  # 512 bytes (the rest of a larger sector is padding)

FileEntry = Struct(
    "EntryType" / Int8ul * "0x85 (0x05 deleted)",
    "SecondaryCount" / Int8ul * "secondary entries that follow (2..18)",
    "SetChecksum" / Int16ul * "checksum of the whole set, these two bytes excluded",
    "FileAttributes" / Int16ul * "R 0x01, H 0x02, S 0x04, dir 0x10, archive 0x20",
    "Reserved1" / Int16ul * "zero",
    "CreateTimestamp" / Int32ul * "date<<16 | time, as FAT packs them",
    "LastModifiedTimestamp" / Int32ul * "date<<16 | time",
    "LastAccessedTimestamp" / Int32ul * "date<<16 | time",
    "Create10msIncrement" / Int8ul * "0..199 units of 10 ms",
    "LastModified10msIncrement" / Int8ul * "0..199 units of 10 ms",
    "CreateUtcOffset" / Int8ul * "bit 7 valid; bits 0-6 signed 15-minute steps",
    "LastModifiedUtcOffset" / Int8ul * "as above",
    "LastAccessedUtcOffset" / Int8ul * "as above",
    "Reserved2" / Bytes(7) * "zero",
)  # 32 bytes

StreamExtensionEntry = Struct(
    "EntryType" / Int8ul * "0xC0 (0x40 deleted)",
    "GeneralSecondaryFlags" / Int8ul * "bit 0 AllocationPossible, bit 1 NoFatChain",
    "Reserved1" / Int8ul * "zero",
    "NameLength" / Int8ul * "name length in UTF-16 units (1..255)",
    "NameHash" / Int16ul * "hash of the up-cased name",
    "Reserved2" / Int16ul * "zero",
    "ValidDataLength" / Int64ul * "bytes written; the rest reads as zeros",
    "Reserved3" / Int32ul * "zero",
    "FirstCluster" / Int32ul * "first cluster (0 = no clusters)",
    "DataLength" / Int64ul * "size in bytes",
)  # 32 bytes

FileNameEntry = Struct(
    "EntryType" / Int8ul * "0xC1 (0x41 deleted)",
    "GeneralSecondaryFlags" / Int8ul * "zero",
    "FileName" / Bytes(30) * "15 UTF-16 units",
)

AllocationBitmapEntry = Struct(
    "EntryType" / Int8ul * "0x81",
    "BitmapFlags" / Int8ul * "bit 0: 0 = first bitmap, 1 = second (TexFAT)",
    "Reserved" / Bytes(18) * "zero",
    "FirstCluster" / Int32ul * "first cluster of the bitmap",
    "DataLength" / Int64ul * "bytes (ceil(ClusterCount / 8))",
)

UpcaseTableEntry = Struct(
    "EntryType" / Int8ul * "0x82",
    "Reserved1" / Bytes(3) * "zero",
    "TableChecksum" / Int32ul * "checksum of the table's bytes",
    "Reserved2" / Bytes(12) * "zero",
    "FirstCluster" / Int32ul * "first cluster of the table",
    "DataLength" / Int64ul * "bytes",
)

VolumeLabelEntry = Struct(
    "EntryType" / Int8ul * "0x83 (0x03 = no label)",
    "CharacterCount" / Int8ul * "label length in UTF-16 units (0..11)",
    "VolumeLabel" / Bytes(22) * "11 UTF-16 units",
    "Reserved" / Bytes(8) * "zero",
)

VolumeGuidEntry = Struct(
    "EntryType" / Int8ul * "0xA0",
    "SecondaryCount" / Int8ul * "0",
    "SetChecksum" / Int16ul * "checksum of this entry",
    "GeneralPrimaryFlags" / Int16ul * "zero",
    "VolumeGuid" / Bytes(16) * "GUID (Windows byte order)",
    "Reserved" / Bytes(10) * "zero",
)

T_END, T_BITMAP, T_UPCASE, T_LABEL, T_FILE, T_GUID = 0x00, 0x81, 0x82, 0x83, 0x85, 0xA0
T_STREAM, T_NAME = 0xC0, 0xC1
IN_USE = 0x80
FLAG_ALLOC_POSSIBLE, FLAG_NO_FAT_CHAIN = 0x01, 0x02
VOL_ACTIVE_FAT, VOL_DIRTY, VOL_MEDIA_FAILURE = 0x01, 0x02, 0x04
MAX_DIR_BYTES = 64 << 20  # read at most this much of a directory (the spec allows 256 MiB;
# 2 million entries is far beyond real folders and keeps a hostile one bounded)
MAX_UPCASE_BYTES = 2 * 65536 + 4096

_U16 = struct.Struct("<H")


def boot_checksum(region: bytes, sector_size: int) -> int:
    """The exFAT boot checksum of sectors 0..10 (VolumeFlags and PercentInUse skipped)."""
    c = 0
    for i, b in enumerate(region[: 11 * sector_size]):
        if i in (106, 107, 112):
            continue
        c = ((c >> 1) | ((c & 1) << 31)) + b & 0xFFFFFFFF
    return c


def set_checksum(data: bytes) -> int:
    """The checksum of a directory entry set (bytes 2 and 3 of the first entry skipped)."""
    c = 0
    for i, b in enumerate(data):
        if i in (2, 3):
            continue
        c = ((c >> 1) | ((c & 1) << 15)) + b & 0xFFFF
    return c


def table_checksum(data: bytes) -> int:
    """The checksum of the up-case table."""
    c = 0
    for b in data:
        c = ((c >> 1) | ((c & 1) << 31)) + b & 0xFFFFFFFF
    return c


def name_hash(upcased: bytes) -> int:
    """The NameHash of an up-cased UTF-16-LE name."""
    h = 0
    for b in upcased:
        h = ((h >> 1) | ((h & 1) << 15)) + b & 0xFFFF
    return h


def exfat_time(stamp: int, tens: int, offset: int) -> tuple[dt.datetime | None, int | None]:
    """(UTC datetime, UTC offset in minutes or None) of an exFAT timestamp."""
    t = dos_datetime(stamp >> 16, stamp & 0xFFFF, tens)
    if offset & 0x80:
        steps = offset & 0x7F
        if steps >= 64:
            steps -= 128
        minutes = steps * 15
        if t is not None:
            t = t - dt.timedelta(minutes=minutes)
        return t, minutes
    return t, None


def decompress_upcase(data: bytes) -> np.ndarray:
    """The 65536-entry up-case mapping from the (compressed) table's bytes."""
    units = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2")
    table = np.arange(65536, dtype=np.uint16)
    pos = 0
    i = 0
    n = len(units)
    vals = units.tolist()
    while i < n and pos < 65536:
        v = vals[i]
        if v == 0xFFFF and i + 1 < n:
            pos += vals[i + 1]  # a run of characters that map to themselves
            i += 2
            continue
        table[pos] = v
        pos += 1
        i += 1
    return table


class _Key:
    __slots__ = ("cluster", "size", "valid", "contiguous", "deleted", "root")

    def __init__(self, cluster, size, valid, contiguous, deleted=False, root=False):
        self.cluster = cluster
        self.size = size
        self.valid = valid
        self.contiguous = contiguous
        self.deleted = deleted
        self.root = root

    def __repr__(self) -> str:
        return f"<cluster {self.cluster}{' contiguous' if self.contiguous else ''}>"


class EntrySet:
    """A directory entry set as found on disk (``raw`` holds its bytes)."""

    __slots__ = ("offset", "raw")

    def __init__(self, offset: int, raw: bytes) -> None:
        self.offset = offset
        self.raw = raw

    @property
    def file(self):
        return FileEntry.parse(self.raw[:32])

    @property
    def stream(self):
        return StreamExtensionEntry.parse(self.raw[32:64])

    def __repr__(self) -> str:
        return f"<EntrySet {len(self.raw) // 32} entries at {self.offset:#x}>"


class ExfatFileSystem(FileSystem):
    """An exFAT volume (read-only)."""

    fstype = "exfat"
    case_sensitive = False

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        super().__init__(source, name=name, strict=strict)
        self.backup_used = False
        self._read_boot()
        self.label = None
        self.guid: str | None = None
        self.bitmap: np.ndarray | None = None
        self.upcase: np.ndarray | None = None
        self._root_cache: list[Entry] | None = None
        self._checked = False
        self._scan_root()

    # --- boot region -------------------------------------------------------------------

    def _region_problem(self, base: int) -> tuple[str | None, bytes, int]:
        """(why the boot region at ``base`` is unusable or None, its 12 sectors, sector size)."""
        if base + 512 > self.source.size:
            return "past the end of the volume", b"", 512
        bs = self.source.read(base, 512)
        if bs[3:11] != b"EXFAT   ":
            return "no 'EXFAT' name", bs, 512
        shift = bs[108]
        if not 9 <= shift <= 12:
            return f"BytesPerSectorShift {shift} is not 9..12", bs, 512
        if shift + bs[109] > 25:
            return "the cluster size is over 32 MiB", bs, 512
        ss = 1 << shift
        if base + 12 * ss > self.source.size:
            return "the boot region is cut short", bs, ss
        region = self.source.read(base, 12 * ss)
        if any(region[11:64]):
            return "MustBeZero is not zero", region, ss
        if region[510:512] != b"\x55\xaa":
            return "boot signature is not 55 AA", region, ss
        want = boot_checksum(region, ss)
        got = np.frombuffer(region[11 * ss : 12 * ss], dtype="<u4")
        if not (got == want).all():
            return (
                (f"boot checksum {int(got[0]):#010x} does not match the computed {want:#010x}"),
                region,
                ss,
            )
        return None, region, ss

    def _read_boot(self) -> None:
        why, region, ss = self._region_problem(0)
        self.boot_offset = 0
        if why is not None:
            found = None
            for shift in range(9, 13):
                w2, r2, s2 = self._region_problem(12 << shift)
                if w2 is None and s2 == 1 << shift:
                    found = (12 << shift, r2, s2)
                    break
            if found is None:
                raise (NotRecognized if region[3:11] != b"EXFAT   " else CorruptImage)(
                    f"not a usable exFAT boot region: {why}",
                    path=self.name,
                    structure="main boot region",
                    offset=0,
                )
            self.finding(
                "error",
                "main boot region",
                0,
                f"{why}; using the backup boot region at byte {found[0]:#x}",
            )
            self.backup_used = True
            self.boot_offset, region, ss = found
        self.region = region
        self.boot = b = BootSector.parse(region[:512])
        self.sector_size = ss
        self.cluster_size = ss << b.SectorsPerClusterShift
        self.heap_offset = b.ClusterHeapOffset * ss
        self.clusters = b.ClusterCount
        self.max_cluster = self.clusters + 1
        self.uuid = f"{b.VolumeSerialNumber >> 16:04X}-{b.VolumeSerialNumber & 0xFFFF:04X}"
        if b.NumberOfFats not in (1, 2):
            self.fail(CorruptImage, f"NumberOfFats is {b.NumberOfFats}", "boot sector", 110)
        fat_end = (b.FatOffset + b.NumberOfFats * b.FatLength) * ss
        if b.FatOffset < 24 or fat_end > self.heap_offset:
            self.fail(CorruptImage, "the FAT is not between the boot regions and the heap", "boot sector", 80)
        if b.FatLength * ss // 4 < self.clusters + 2:
            self.fail(CorruptImage, "the FAT is smaller than the cluster count needs", "boot sector", 84)
        heap_end = self.heap_offset + self.clusters * self.cluster_size
        if b.VolumeLength * ss < heap_end:
            self.finding("warning", "boot sector", 72, "the cluster heap ends past VolumeLength")
        if heap_end > self.source.size:
            msg = (
                f"the volume is cut short: the heap needs {heap_end} bytes, "
                f"{self.source.size} are present"
            )
            if self.strict:
                self.fail(CorruptImage, msg, "boot sector", 92)
            self.finding("error", "boot sector", 92, msg)
        self.active = b.VolumeFlags & VOL_ACTIVE_FAT if b.NumberOfFats == 2 else 0
        size = b.FatLength * ss
        self.fats = [
            FatTable(
                self.source,
                (b.FatOffset + k * b.FatLength) * ss,
                size,
                32,
                self.clusters + 2,
                exfat=True,
                name=f"FAT {k + 1}",
            )
            for k in range(b.NumberOfFats)
        ]
        self.fat = self.fats[self.active]
        self.max_cluster = min(self.max_cluster, self.fat.limit - 1)
        rc = b.FirstClusterOfRootDirectory
        if not 2 <= rc <= self.max_cluster:
            self.fail(CorruptImage, f"root directory cluster {rc} is out of range", "boot sector", 96)

    # --- geometry ---------------------------------------------------------------------------
    def cluster_offset(self, c: int) -> int:
        return self.heap_offset + (c - 2) * self.cluster_size

    def _inode(self, offset: int) -> int:
        return (offset - self.heap_offset) // 32 + 3

    def _readable(self, runs):
        return readable_runs(self, runs)

    def free_mask(self, start: int, stop: int) -> np.ndarray:
        """True where clusters [start, stop) are free in the allocation bitmap."""
        stop = min(stop, self.max_cluster + 1)
        if self.bitmap is None or stop <= start:
            return np.zeros(max(0, stop - start), dtype=bool)
        lo, hi = start - 2, stop - 2
        bits = self.bitmap[lo:hi]
        out = np.ones(hi - lo, dtype=bool)
        out[: len(bits)] = ~bits
        return out

    def _is_free(self, c: int) -> bool:
        return 2 <= c <= self.max_cluster and bool(self.free_mask(c, c + 1)[0])

    def _runs(self, k: _Key, nbytes: int, what: str):
        """(runs, problem) for ``nbytes`` of a stream; contiguous or by the FAT."""
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
            if not self._is_free(c):
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

    # --- root scan: bitmap, up-case table, label -----------------------------------------------
    def _scan_root(self) -> None:
        root = self.root()
        raw = self._dir_raw(root)
        bitmaps = {}
        upcase = None
        for off, ent in self._iter_slots(raw):
            t = ent[0]
            if t == T_END:
                break
            if t == T_BITMAP:
                bm = AllocationBitmapEntry.parse(ent)
                bitmaps.setdefault(bm.BitmapFlags & 1, (off, bm))
            elif t == T_UPCASE and upcase is None:
                upcase = (off, UpcaseTableEntry.parse(ent))
            elif t == T_LABEL and self.label is None:
                lab = VolumeLabelEntry.parse(ent)
                n = min(lab.CharacterCount, 11)
                self.label = lab.VolumeLabel[: 2 * n].decode("utf-16-le", "replace") or None
            elif t == T_GUID and self.guid is None:
                g = VolumeGuidEntry.parse(ent)
                if set_checksum(ent) != g.SetChecksum:
                    self.finding("warning", "volume GUID entry", off, "set checksum mismatch")
                import uuid as uuidlib

                self.guid = str(uuidlib.UUID(bytes_le=g.VolumeGuid))
        want = self.active if self.active in bitmaps else 0
        if want not in bitmaps:
            msg = "no allocation bitmap entry in the root directory"
            if self.strict:
                self.fail(CorruptImage, msg, "root directory", self.cluster_offset(self.boot.FirstClusterOfRootDirectory))
            self.finding(
                "error", "root directory", None, msg + "; every cluster is treated as in use"
            )
        else:
            off, bm = bitmaps[want]
            self.bitmap_entry = (off, bm)
            self._load_bitmap(off, bm)
        if upcase is None:
            self.finding(
                "warning",
                "root directory",
                None,
                "no up-case table; names compare with Unicode case folding",
            )
        else:
            self._load_upcase(*upcase)

    def _load_bitmap(self, off: int, bm) -> None:
        need = (self.clusters + 7) // 8
        if bm.DataLength < need:
            msg = f"the allocation bitmap has {bm.DataLength} bytes, {need} are needed"
            if self.strict:
                self.fail(CorruptImage, msg, "allocation bitmap entry", off)
            self.finding("error", "allocation bitmap entry", off, msg)
        eff = self.max_cluster - 1  # clusters the FAT (and so the volume) really has
        length = min(bm.DataLength, need, (eff + 7) // 8)
        k = _Key(bm.FirstCluster, length, length, False)
        runs, problem = self._runs(k, length, "allocation bitmap")
        if problem:
            msg = f"allocation bitmap: {problem}"
            if self.strict:
                self.fail(CorruptImage, msg, "allocation bitmap", off)
            self.finding("error", "allocation bitmap", off, msg)
        src = cluster_source(
            self.source, self.heap_offset, self.cluster_size, self._readable(runs), length, "bitmap"
        )
        data = src.read(0, src.size)
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        full = np.ones(eff, dtype=bool)  # unreadable tail: treat as in use
        n = min(len(bits), eff)
        full[:n] = bits[:n].astype(bool)
        self.bitmap = full

    def _load_upcase(self, off: int, up) -> None:
        length = min(up.DataLength, MAX_UPCASE_BYTES)
        k = _Key(up.FirstCluster, length, length, False)
        runs, problem = self._runs(k, length, "up-case table")
        if problem:
            self.finding("error", "up-case table", off, f"{problem}; using case folding")
            return
        self._upcase_runs = runs
        src = cluster_source(
            self.source, self.heap_offset, self.cluster_size, self._readable(runs), length, "upcase"
        )
        data = src.read(0, src.size)
        if table_checksum(data) != up.TableChecksum:
            self.finding(
                "error", "up-case table", off, "table checksum mismatch; using case folding"
            )
            return
        self.upcase = decompress_upcase(data)

    def _name_key(self, name: str) -> str:
        if self.upcase is None:
            return name.casefold()
        units = np.frombuffer(name.encode("utf-16-le", "surrogatepass"), dtype="<u2")
        return self.upcase[units].tobytes().decode("utf-16-le", "surrogatepass")

    def _same(self, a: str, b: str) -> bool:
        return self._name_key(a) == self._name_key(b)

    # --- directories ------------------------------------------------------------------------------
    def root(self) -> Entry:
        rc = self.boot.FirstClusterOfRootDirectory
        return Entry(name="", kind=DIR, path="/", inode=2, key=_Key(rc, 0, 0, False, root=True))

    def _dir_id(self, entry: Entry):
        return ("cluster", entry.key.cluster)

    def _can_list_deleted_dir(self, entry: Entry) -> bool:
        runs, problem = self._runs(entry.key, min(entry.key.size, MAX_DIR_BYTES), "")
        return problem is None and bool(runs)

    def _dir_raw(self, entry: Entry) -> list[tuple[int, bytes]]:
        k: _Key = entry.key
        if k.root:
            runs, problem, ended = self.fat.chain(
                k.cluster, MAX_DIR_BYTES // self.cluster_size, self.max_cluster
            )
            if problem:
                self.finding(
                    "error",
                    "root directory",
                    self.cluster_offset(k.cluster),
                    f"/: {problem}; listing what was read",
                )
        else:
            nbytes = min(k.size, MAX_DIR_BYTES)
            if k.size > MAX_DIR_BYTES:
                self.finding(
                    "warning",
                    "directory",
                    None,
                    f"{entry.path}: larger than {MAX_DIR_BYTES >> 20} MiB; the rest is not read",
                )
            runs, problem = self._runs(k, nbytes, entry.path)
            if problem:
                self.finding(
                    "error",
                    "directory",
                    self.cluster_offset(k.cluster) if 2 <= k.cluster <= self.max_cluster else None,
                    f"{entry.path}: {problem}; listing what was read",
                )
            runs = runs or []
        readable = self._readable(runs)
        if sum(n for _, n in readable) < sum(n for _, n in runs):
            self.finding(
                "error",
                "directory",
                None,
                f"{entry.path or '/'}: clusters past the end of the volume",
            )
        out = []
        for s, n in readable:
            off = self.cluster_offset(s)
            out.append((off, self.source.read(off, n * self.cluster_size)))
        return out

    class _Slots:
        """A directory's 32-byte slots over one buffer, with their volume offsets."""

        def __init__(self, segs: list[tuple[int, bytes]]) -> None:
            self.buf = b"".join(b for _, b in segs)
            self.n = len(self.buf) // 32
            self.starts = []  # slot index where each segment starts
            self.bases = []
            pos = 0
            for base, b in segs:
                self.starts.append(pos)
                self.bases.append(base)
                pos += len(b) // 32

        def __len__(self) -> int:
            return self.n

        def entry(self, i: int) -> bytes:
            return self.buf[32 * i : 32 * i + 32]

        def offset(self, i: int) -> int:
            k = bisect.bisect_right(self.starts, i) - 1
            return self.bases[k] + 32 * (i - self.starts[k])

    @classmethod
    def _iter_slots(cls, segs):
        slots = cls._Slots(segs)
        for i in range(len(slots)):
            yield slots.offset(i), slots.entry(i)

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.kind != DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a directory")
        if entry.key.root and self._root_cache is not None:
            return [e.copy() for e in self._root_cache]
        out = self._parse(entry, self._dir_raw(entry))
        if entry.key.root:
            self._root_cache = out
            return [e.copy() for e in out]
        return out

    def _parse(self, d: Entry, segs) -> list[Entry]:
        slots = self._Slots(segs)
        buf = slots.buf
        out: list[Entry] = []
        n = len(slots)
        i = 0
        where = d.path or "/"
        while i < n:
            t = buf[32 * i]
            if t == T_END:
                break
            if t & 0x7F != T_FILE & 0x7F:
                i += 1
                continue
            off, ent = slots.offset(i), slots.entry(i)
            deleted = not t & IN_USE
            sc = ent[1]
            if sc < 2 or sc > 18 or i + sc >= n:
                if not deleted:
                    self.finding(
                        "error",
                        "directory",
                        off,
                        f"{where}: file entry with {sc} secondary entries",
                    )
                i += 1
                continue
            sec = [slots.entry(i + j) for j in range(1, sc + 1)]
            state = 0 if deleted else IN_USE
            if sec[0][0] != (T_STREAM & 0x7F) | state:
                if not deleted:
                    self.finding(
                        "error",
                        "directory",
                        off,
                        f"{where}: file entry not followed by a stream extension",
                    )
                i += 1
                continue
            nnames = 0
            for s in sec[1:]:
                if s[0] == (T_NAME & 0x7F) | state:
                    nnames += 1
                else:
                    break
            if nnames == 0 or any(s[0] & IN_USE != state for s in sec):
                if not deleted:
                    self.finding(
                        "error", "directory", off, f"{where}: entry set without file name entries"
                    )
                i += 1
                continue
            raw = ent + b"".join(sec)
            fixed = (
                raw
                if not deleted
                else bytes(b | IN_USE if k % 32 == 0 else b for k, b in enumerate(raw))
            )
            fe = FileEntry.parse(ent)
            ok = set_checksum(fixed) == fe.SetChecksum
            st = StreamExtensionEntry.parse(sec[0])
            units = b"".join(s[2:32] for s in sec[1 : 1 + nnames])
            name = units[: 2 * st.NameLength].decode("utf-16-le", "replace")
            if not ok:
                if deleted:
                    i += 1  # slots partly reused: not a whole deleted set
                    continue
                self.finding(
                    "error", "directory", off, f"{where}: set checksum mismatch for {name!r}"
                )
            if not deleted and self.upcase is not None:
                up = self.upcase[np.frombuffer(units[: 2 * st.NameLength], dtype="<u2")]
                if name_hash(up.tobytes()) != st.NameHash:
                    self.finding(
                        "warning", "directory", off, f"{where}: name hash mismatch for {name!r}"
                    )
            out.append(self._entry(d, off, raw, fe, st, name, deleted or d.deleted))
            i += 1 + sc
        return out

    def _entry(self, d: Entry, off: int, raw: bytes, fe, st, name: str, deleted: bool) -> Entry:
        created, c_off = exfat_time(fe.CreateTimestamp, fe.Create10msIncrement, fe.CreateUtcOffset)
        modified, m_off = exfat_time(
            fe.LastModifiedTimestamp, fe.LastModified10msIncrement, fe.LastModifiedUtcOffset
        )
        accessed, a_off = exfat_time(fe.LastAccessedTimestamp, 0, fe.LastAccessedUtcOffset)
        is_dir = bool(fe.FileAttributes & 0x10)
        contiguous = bool(st.GeneralSecondaryFlags & FLAG_NO_FAT_CHAIN)
        first = st.FirstCluster
        size = st.DataLength
        valid = min(st.ValidDataLength, size)
        if st.ValidDataLength > size and not deleted:
            self.finding(
                "warning",
                "stream extension",
                off + 32,
                f"{name!r}: ValidDataLength is larger than DataLength",
            )
        key = _Key(first, size, valid, contiguous, deleted)
        e = Entry(
            name=name,
            kind=DIR if is_dir else FILE,
            size=size,
            created=created,
            modified=modified,
            accessed=accessed,
            inode=self._inode(off),
            deleted=deleted,
            key=key,
            raw=EntrySet(off, raw),
        )
        csize = self.cluster_size
        if deleted:
            e.allocated = 0
            runs, problem = self._runs(key, size, name) if size else ([], None)
            e.recoverable = problem is None
        else:
            e.allocated = -(-size // csize) * csize
        e.extra = {
            "attributes": _attr_text(fe.FileAttributes),
            "first_cluster": first,
            "no_fat_chain": contiguous,
            "valid_size": valid,
            "created_utc_offset": c_off,
            "modified_utc_offset": m_off,
            "accessed_utc_offset": a_off,
        }
        return e

    # --- content ---------------------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        k: _Key = entry.key
        name = f"{self.name}:{entry.path or entry.name}"
        if k.size == 0:
            return MemorySource(b"", name=name)
        what = entry.path or entry.name
        # NoFatChain streams and deleted ones: the clusters for ``size`` bytes; the
        # valid part is read, the rest is zeros
        runs, problem = self._runs(k, k.valid, what)
        if k.deleted and problem:
            raise NotFound(
                f"{self.name}: {what} is deleted and its clusters are in use "
                "again; the content is not recoverable"
            )
        size = k.size
        heap_bytes = (self.max_cluster - 1) * self.cluster_size
        if size > heap_bytes and problem is None:
            problem = f"DataLength {size} is larger than the cluster heap ({heap_bytes})"
        readable = self._readable(runs or [])
        if problem is None and sum(n for _, n in readable) < sum(n for _, n in runs):
            problem = "the clusters run past the end of the volume"
        valid = k.valid
        if problem:
            at = self.cluster_offset(k.cluster) if 2 <= k.cluster <= self.max_cluster else None
            if self.strict:
                raise CorruptImage(
                    f"{what}: {problem}", path=self.name, structure="cluster chain", offset=at
                )
            self.finding("error", "cluster chain", at, f"{what}: {problem}; content truncated")
            valid = min(valid, sum(n for _, n in readable) * self.cluster_size)
            size = valid
        data = cluster_source(
            self.source, self.heap_offset, self.cluster_size, readable, valid, name
        )
        if size > valid:
            return Concat([data, Zero(size - valid)], name=name)
        return data

    # --- reports -----------------------------------------------------------------------------------
    def flags(self) -> list[str]:
        f = []
        if self.boot.VolumeFlags & VOL_DIRTY:
            f.append("dirty")
        if self.boot.VolumeFlags & VOL_MEDIA_FAILURE:
            f.append("media failure")
        return f

    def free_clusters(self) -> int | None:
        if self.bitmap is None:
            return None
        return int(np.count_nonzero(~self.bitmap))

    def info(self) -> dict:
        b = self.boot
        rev = b.FileSystemRevision
        return dict(
            fstype="exfat",
            label=self.label,
            uuid=self.uuid,
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
            percent_in_use=None if b.PercentInUse == 0xFF else b.PercentInUse,
            flags=self.flags(),
            backup_boot_used=self.backup_used,
            tz_unknown=False,
            time_note="exFAT times carry a UTC offset: converted to UTC where it is recorded, "
            "else shown as wall-clock time",
        )

    def structures(self) -> list[dict]:
        ss = self.sector_size
        b = self.boot
        rows = [
            dict(
                name="main boot region",
                host_offset=0,
                length=12 * ss,
                description="boot sector, extended boot sectors, OEM parameters, checksum",
            ),
            dict(
                name="backup boot region",
                host_offset=12 * ss,
                length=12 * ss,
                description="copy of the main boot region",
            ),
        ]
        for f in self.fats:
            rows.append(
                dict(
                    name=f.name,
                    host_offset=f.offset,
                    length=f.length,
                    description="file allocation table (32-bit entries)",
                )
            )
        rows.append(
            dict(
                name="cluster heap",
                host_offset=self.heap_offset,
                length=self.clusters * self.cluster_size,
                description=f"{self.clusters} clusters of {self.cluster_size} bytes",
            )
        )
        if getattr(self, "bitmap_entry", None):
            bm = self.bitmap_entry[1]
            rows.append(
                dict(
                    name="allocation bitmap",
                    host_offset=self.cluster_offset(bm.FirstCluster),
                    length=bm.DataLength,
                    description="one bit per cluster",
                )
            )
        rows.append(
            dict(
                name="root directory",
                host_offset=self.cluster_offset(b.FirstClusterOfRootDirectory),
                length=self.cluster_size,
                description="first cluster of the root directory",
            )
        )
        return rows

    def check(self) -> list[dict]:
        """Findings: boot regions, dirty flags, set checksums, chains vs the bitmap."""
        if not self._checked:
            self._checked = True
            self._check_volume()
        return list(self.findings)

    def _check_volume(self) -> None:
        if self.boot.VolumeFlags & VOL_DIRTY:
            self.finding("warning", "boot sector", 106, "the volume is marked dirty")
        if self.boot.VolumeFlags & VOL_MEDIA_FAILURE:
            self.finding("warning", "boot sector", 106, "the volume recorded a media failure")
        if not self.backup_used:
            why, backup, _ = self._region_problem(12 * self.sector_size)
            if why is not None:
                self.finding("warning", "backup boot region", 12 * self.sector_size, why)
            else:
                a, b = bytearray(self.region), bytearray(backup)
                for i in (106, 107, 112):
                    a[i] = b[i] = 0
                ss = self.sector_size
                if a[: 11 * ss] != b[: 11 * ss]:
                    self.finding(
                        "warning",
                        "backup boot region",
                        12 * ss,
                        "the backup boot region differs from the main one",
                    )
        if self.bitmap is None:
            return
        used = np.zeros(self.max_cluster + 1, dtype=bool)

        def mark(first, runs, path):
            for s, n in runs:
                seg = used[s : s + n]
                if seg.any():
                    self.finding(
                        "error",
                        "cluster chain",
                        self.cluster_offset(s),
                        f"{path}: cross-linked at cluster {s + int(np.flatnonzero(seg)[0])}",
                    )
                seg[:] = True

        rc = self.boot.FirstClusterOfRootDirectory
        runs, _, _ = self.fat.chain(rc, MAX_DIR_BYTES // self.cluster_size, self.max_cluster)
        mark(rc, runs, "/")
        for _, bm in [getattr(self, "bitmap_entry", (None, None))]:
            if bm is not None:
                r, _ = self._runs(
                    _Key(bm.FirstCluster, bm.DataLength, bm.DataLength, False),
                    bm.DataLength,
                    "bitmap",
                )
                mark(bm.FirstCluster, r or [], "allocation bitmap")
        for e in self.iter_entries("/", deleted=False):
            k = e.key
            if not k.size or not k.cluster:
                continue
            runs, problem = self._runs(k, k.size, e.path)
            if problem:
                self.finding("error", "cluster chain", None, f"{e.path}: {problem}")
            mark(k.cluster, runs or [], e.path)
        if getattr(self, "_upcase_runs", None):
            mark(0, self._upcase_runs, "up-case table")
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


def open_filesystem(
    source: ByteSource, *, name: str | None = None, strict: bool = True
) -> ExfatFileSystem:
    """Open an exFAT volume."""
    return ExfatFileSystem(source, name=name, strict=strict)
