"""FAT12, FAT16 and FAT32.

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
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import struct

import numpy as np
from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Struct

from ..errors import CorruptImage, InvalidArgument, NotFound, NotRecognized
from ..io import ByteSource, LRUCache, MemorySource, damaged_through
from .base import DIR, FILE, Entry, FileSystem

# --- on-disk structures ----------------------------------------------------------------

BootSector = Struct(
    "BS_jmpBoot" / Bytes(3) * "jump to the boot code (EB xx 90 or E9 xx xx)",
    "BS_OEMName" / Bytes(8) * "name of the formatting system",
    "BPB_BytsPerSec" / Int16ul * "bytes per sector: 512, 1024, 2048 or 4096",
    "BPB_SecPerClus" / Int8ul * "sectors per cluster: a power of 2, 1..128",
    "BPB_RsvdSecCnt" / Int16ul * "reserved sectors before the first FAT (>= 1)",
    "BPB_NumFATs" / Int8ul * "copies of the FAT (usually 2)",
    "BPB_RootEntCnt" / Int16ul * "32-byte entries in the fixed root directory (0 on FAT32)",
    "BPB_TotSec16" / Int16ul * "sectors in the volume if < 65536, else 0",
    "BPB_Media" / Int8ul * "media descriptor (F8 fixed disk, F0 removable)",
    "BPB_FATSz16" / Int16ul * "sectors per FAT on FAT12/16 (0 on FAT32)",
    "BPB_SecPerTrk" / Int16ul * "sectors per track (CHS geometry)",
    "BPB_NumHeads" / Int16ul * "heads (CHS geometry)",
    "BPB_HiddSec" / Int32ul * "sectors before this volume on the disk",
    "BPB_TotSec32" / Int32ul * "sectors in the volume if BPB_TotSec16 is 0",
)  # 36 bytes, common to all FAT types

Fat16Ext = Struct(
    "BS_DrvNum" / Int8ul * "BIOS drive number (0x80 hard disk)",
    "BS_Reserved1" / Int8ul * "reserved (Windows NT keeps dirty bits here)",
    "BS_BootSig" / Int8ul * "0x29 when the next three fields are present",
    "BS_VolID" / Int32ul * "volume serial number",
    "BS_VolLab" / Bytes(11) * "volume label, space padded ('NO NAME    ' = none)",
    "BS_FilSysType" / Bytes(8) * "informational 'FAT12   ' / 'FAT16   '",
)  # bytes 36..61 on FAT12/16

Fat32Ext = Struct(
    "BPB_FATSz32" / Int32ul * "sectors per FAT",
    "BPB_ExtFlags" / Int16ul * "bits 0-3 active FAT, bit 7 set = mirroring disabled",
    "BPB_FSVer" / Int16ul * "version (0.0)",
    "BPB_RootClus" / Int32ul * "first cluster of the root directory",
    "BPB_FSInfo" / Int16ul * "sector of the FSInfo structure",
    "BPB_BkBootSec" / Int16ul * "sector of the backup boot sector (usually 6)",
    "BPB_Reserved" / Bytes(12) * "zero",
    "BS_DrvNum" / Int8ul * "BIOS drive number",
    "BS_Reserved1" / Int8ul * "reserved",
    "BS_BootSig" / Int8ul * "0x29 when the next three fields are present",
    "BS_VolID" / Int32ul * "volume serial number",
    "BS_VolLab" / Bytes(11) * "volume label, space padded",
    "BS_FilSysType" / Bytes(8) * "informational 'FAT32   '",
)  # bytes 36..89 on FAT32

FSInfo = Struct(
    "FSI_LeadSig" / Const(0x41615252, Int32ul) * "'RRaA'",
    "FSI_Reserved1" / Bytes(480) * "zero",
    "FSI_StrucSig" / Int32ul * "0x61417272 'rrAa'",
    "FSI_Free_Count" / Int32ul * "last known free cluster count (0xFFFFFFFF = unknown)",
    "FSI_Nxt_Free" / Int32ul * "hint: where to look for a free cluster",
    "FSI_Reserved2" / Bytes(12) * "zero",
    "FSI_TrailSig" / Int32ul * "0xAA550000",
)  # 512 bytes, FAT32 only

DirEntry = Struct(
    "DIR_Name" / Bytes(11) * "8.3 name, space padded; [0] 0xE5 deleted, 0x00 end, 0x05 = 0xE5",
    "DIR_Attr" / Int8ul * "R 0x01, H 0x02, S 0x04, volume 0x08, dir 0x10, archive 0x20",
    "DIR_NTRes" / Int8ul * "bit 3: base name lower case, bit 4: extension lower case",
    "DIR_CrtTimeTenth" / Int8ul * "creation time, units of 10 ms (0..199)",
    "DIR_CrtTime" / Int16ul * "creation time: hour<<11 | minute<<5 | seconds/2",
    "DIR_CrtDate" / Int16ul * "creation date: (year-1980)<<9 | month<<5 | day",
    "DIR_LstAccDate" / Int16ul * "last access date",
    "DIR_FstClusHI" / Int16ul * "high word of the first cluster (FAT32)",
    "DIR_WrtTime" / Int16ul * "last write time",
    "DIR_WrtDate" / Int16ul * "last write date",
    "DIR_FstClusLO" / Int16ul * "low word of the first cluster",
    "DIR_FileSize" / Int32ul * "size in bytes (0 for directories)",
)  # 32 bytes

LfnEntry = Struct(
    "LDIR_Ord" / Int8ul * "sequence number 1..20; 0x40 marks the last (first stored) entry",
    "LDIR_Name1" / Bytes(10) * "characters 1-5 (UCS-2)",
    "LDIR_Attr" / Int8ul * "0x0F",
    "LDIR_Type" / Int8ul * "0",
    "LDIR_Chksum" / Int8ul * "checksum of the short name this entry belongs to",
    "LDIR_Name2" / Bytes(12) * "characters 6-11",
    "LDIR_FstClusLO" / Int16ul * "0",
    "LDIR_Name3" / Bytes(4) * "characters 12-13",
)  # 32 bytes

ATTR_READ_ONLY, ATTR_HIDDEN, ATTR_SYSTEM = 0x01, 0x02, 0x04
ATTR_VOLUME_ID, ATTR_DIRECTORY, ATTR_ARCHIVE = 0x08, 0x10, 0x20
ATTR_LONG_NAME = 0x0F
LFN_LAST = 0x40
NT_LOWER_BASE, NT_LOWER_EXT = 0x08, 0x10
DELETED, KANJI_E5 = 0xE5, 0x05
FAT12_MAX_CLUSTERS, FAT16_MAX_CLUSTERS = 4084, 65524  # more than this: next type up
MAX_DIR_BYTES = 65536 * 32  # a directory holds at most 65536 entries
FSI_STRUC_SIG, FSI_TRAIL_SIG = 0x61417272, 0xAA550000
FAT16_CLEAN, FAT16_NO_ERROR = 0x8000, 0x4000
FAT32_CLEAN, FAT32_NO_ERROR = 0x08000000, 0x04000000
NO_NAME = b"NO NAME    "

_DIRENT = struct.Struct("<11sBBBHHHHHHHI")


def _attr_text(attr: int) -> str:
    """Attribute letters present, in the order R H S V D A."""
    return "".join(c for c, bit in zip("RHSVDA", (1, 2, 4, 8, 16, 32)) if attr & bit)


@functools.lru_cache(maxsize=8192)
def dos_datetime(date: int, time: int = 0, tenths: int = 0) -> dt.datetime | None:
    """A FAT date/time (and 10 ms count) as a datetime labelled UTC; None if invalid/zero."""
    if date == 0:
        return None
    day, month, year = date & 0x1F, (date >> 5) & 0x0F, 1980 + (date >> 9)
    sec2, minute, hour = time & 0x1F, (time >> 5) & 0x3F, time >> 11
    if tenths > 199:
        tenths = 0
    try:
        base = dt.datetime(year, month, day, hour, minute, 0, tzinfo=dt.UTC)
    except ValueError:
        return None
    if sec2 > 29:
        return None
    return base + dt.timedelta(seconds=sec2 * 2, milliseconds=tenths * 10)


def lfn_checksum(short: bytes) -> int:
    """The VFAT checksum of an 11-byte short name."""
    s = 0
    for c in short:
        s = (((s & 1) << 7) + (s >> 1) + c) & 0xFF
    return s


def lfn_first_byte(short: bytes, checksum: int) -> int:
    """The first byte a short name must have for its checksum to be ``checksum``.

    Each checksum step (rotate right, add a byte) can be undone, so the deleted entry's
    lost first byte follows from the checksum its long-name entries kept.
    """
    s = checksum
    for c in reversed(short[1:]):
        t = (s - c) & 0xFF
        s = ((t << 1) | (t >> 7)) & 0xFF
    return s


_SHORT_OK = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~") | set(range(0x80, 0x100))


# --- the file allocation table ---------------------------------------------------------------


class FatTable:
    """One copy of a FAT (12, 16 or 32 bits a cluster; exFAT uses 32), decoded with numpy.

    Entries are read in blocks of ``BLOCK`` clusters and cached, so a 1 GiB FAT32 table
    is never held whole. ``limit`` is the number of entries that exist (the highest valid
    cluster + 1); entries past the end of the source are out of range.
    """

    BLOCK = 1 << 20

    def __init__(
        self,
        source: ByteSource,
        offset: int,
        length: int,
        bits: int,
        limit: int,
        *,
        exfat: bool = False,
        name: str = "FAT",
    ) -> None:
        self.source = source
        self.offset = offset
        self.length = length
        self.bits = bits
        self.name = name
        self.exfat = exfat
        readable = max(0, min(length, source.size - offset))
        fits = readable * 8 // bits
        self.complete = fits >= limit
        self.limit = min(limit, fits)
        if exfat:
            self.eoc_min, self.bad = 0xFFFFFFF8, 0xFFFFFFF7
        else:
            mask = (1 << bits) - 1 if bits < 32 else 0x0FFFFFFF
            self.eoc_min, self.bad = mask - 7, mask - 8
        self._cache: LRUCache[np.ndarray] = LRUCache(8)

    def block(self, b: int) -> np.ndarray:
        """Entries [b*BLOCK, (b+1)*BLOCK) as uint32 (fewer at the end)."""
        return self._cache.get(b, lambda: self._load(b))

    def _load(self, b: int) -> np.ndarray:
        start = b * self.BLOCK
        stop = min(self.limit, start + self.BLOCK)
        if stop <= start:
            return np.zeros(0, dtype=np.uint32)
        if self.bits == 12:
            lo = start // 2 * 3
            hi = min((stop + 1) // 2 * 3, self.length, self.source.size - self.offset)
            raw = self.source.read(self.offset + lo, hi - lo)
            raw += bytes((-len(raw)) % 3)
            t = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
            pairs = np.empty((t.shape[0], 2), dtype=np.uint32)
            pairs[:, 0] = t[:, 0] | ((t[:, 1] & 0x0F) << 8)
            pairs[:, 1] = (t[:, 1] >> 4) | (t[:, 2] << 4)
            flat = pairs.reshape(-1)
            first = start - start // 2 * 2
            return flat[first : first + stop - start].copy()
        width = self.bits // 8
        raw = self.source.read(self.offset + start * width, (stop - start) * width)
        if width == 2:
            return np.frombuffer(raw, dtype="<u2").astype(np.uint32)
        arr = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
        if not self.exfat:
            arr &= 0x0FFFFFFF
        return arr

    def get(self, c: int) -> int:
        """The entry of cluster ``c`` (which must be < ``limit``)."""
        b, i = divmod(c, self.BLOCK)
        return int(self.block(b)[i])

    def values(self, start: int, stop: int) -> np.ndarray:
        """Entries [start, stop) clamped to the table, as one uint32 array."""
        stop = min(stop, self.limit)
        if stop <= start:
            return np.zeros(0, dtype=np.uint32)
        parts = []
        b = start // self.BLOCK
        while b * self.BLOCK < stop:
            arr = self.block(b)
            lo = max(start - b * self.BLOCK, 0)
            hi = min(stop - b * self.BLOCK, len(arr))
            parts.append(arr[lo:hi])
            b += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def is_eoc(self, v: int) -> bool:
        return v >= self.eoc_min

    def chain(
        self, first: int, max_clusters: int, max_cluster: int
    ) -> tuple[list[tuple[int, int]], str | None, bool]:
        """The runs (start, count) of the chain from ``first``, at most ``max_clusters``.

        Returns (runs, problem, ended): ``problem`` describes a loop, a free or bad cluster
        or an out-of-range link where the chain was cut (None if sound); ``ended`` is True
        when the chain reached its end-of-chain mark.
        """
        runs: list[tuple[int, int]] = []
        starts: list[int] = []  # sorted starts of the visited runs, for loop detection
        ends: dict[int, int] = {}
        total = 0
        c = first
        top = min(max_cluster, self.limit - 1)
        while total < max_clusters:
            if not 2 <= c <= top:
                return runs, f"cluster {c} is out of range (2..{max_cluster})", False
            # follow consecutive links c -> c+1 -> ... with growing numpy windows
            k = 0
            window = 64
            nxt = None
            while total + k < max_clusters:
                lo = c + k
                n = min(window, max_clusters - total - k, top + 1 - lo)
                if n <= 0:
                    break
                seg = self.values(lo, lo + n)
                bad = np.flatnonzero(seg != np.arange(lo + 1, lo + 1 + n, dtype=np.uint32))
                if bad.size:
                    k += int(bad[0]) + 1
                    nxt = int(seg[bad[0]])
                    break
                k += n
                window *= 4
            if nxt is None and total + k < max_clusters:
                # the run reached the last cluster linking onward: the next link is c+k
                nxt = c + k
            # loop check: visited runs are disjoint, so walk back from the last one that
            # starts inside [c, c+k) until one ends before c
            hit = None
            j = bisect.bisect_right(starts, c + k - 1) - 1
            while j >= 0 and ends[starts[j]] > c:
                hit = max(starts[j], c)
                j -= 1
            if hit is not None:
                if hit > c:
                    runs.append((c, hit - c))
                return runs, f"cluster chain loops back to cluster {hit}", False
            runs.append((c, k))
            bisect.insort(starts, c)
            ends[c] = c + k
            total += k
            if total >= max_clusters:
                return runs, None, nxt is not None and self.is_eoc(nxt)
            assert nxt is not None
            if self.is_eoc(nxt):
                return runs, None, True
            if nxt == 0:
                return runs, f"cluster {c + k - 1} links to a free cluster", False
            if nxt == self.bad:
                return runs, f"cluster {c + k - 1} links to a bad cluster", False
            c = nxt
        return runs, None, False

    def free_mask(self, start: int, stop: int) -> np.ndarray:
        return self.values(start, stop) == 0


def take_free(free_mask, first: int, needed: int, max_cluster: int) -> list[tuple[int, int]] | None:
    """The first ``needed`` free clusters from ``first`` on, as runs; None if too few.

    This is The Sleuth Kit's recovery of a deleted FAT file: its clusters are assumed to
    follow the first one, skipping clusters that are allocated now.
    """
    runs: list[tuple[int, int]] = []
    got = 0
    pos = first
    window = max(64, needed * 2)
    while got < needed and pos <= max_cluster:
        stop = min(max_cluster + 1, pos + window)
        idx = np.flatnonzero(free_mask(pos, stop))
        if idx.size:
            idx = idx[: needed - got] + pos
            breaks = np.flatnonzero(np.diff(idx) != 1)
            a = 0
            for b in list(breaks) + [len(idx) - 1]:
                s, n = int(idx[a]), int(b) - a + 1
                if runs and runs[-1][0] + runs[-1][1] == s:
                    runs[-1] = (runs[-1][0], runs[-1][1] + n)
                else:
                    runs.append((s, n))
                a = int(b) + 1
            got += len(idx)
        pos = stop
        window *= 4
    return runs if got >= needed else None


# --- small objects -------------------------------------------------------------------------


class FatDirent:
    """A short directory entry as found on disk, with the long-name entries before it."""

    __slots__ = ("offset", "data", "lfn")

    def __init__(self, offset: int, data: bytes, lfn: list[bytes] | None = None) -> None:
        self.offset = offset  # byte offset of the short entry in the volume
        self.data = data
        self.lfn = lfn or []

    @property
    def parsed(self):
        """The short entry parsed with :data:`DirEntry`."""
        return DirEntry.parse(self.data)

    @property
    def raw(self) -> bytes:
        return b"".join(self.lfn) + self.data

    def __repr__(self) -> str:
        return f"<FatDirent {self.data[:11]!r} at {self.offset:#x} +{len(self.lfn)} LFN>"


class _Key:
    """What the driver needs to find an entry's data again."""

    __slots__ = ("cluster", "size", "deleted", "root")

    def __init__(self, cluster: int, size: int, deleted: bool = False, root: bool = False):
        self.cluster = cluster
        self.size = size
        self.deleted = deleted
        self.root = root

    def __repr__(self) -> str:
        return f"<cluster {self.cluster}{' deleted' if self.deleted else ''}>"


class ClusterRuns(ByteSource):
    """A file's bytes laid out on cluster runs of a volume (reads go straight to the runs)."""

    def __init__(
        self,
        vol: ByteSource,
        heap: int,
        csize: int,
        runs: list[tuple[int, int]],
        size: int,
        name: str,
    ) -> None:
        self.vol = vol
        self.name = name
        self.starts: list[int] = []  # file offset where each run starts
        self.offsets: list[int] = []  # volume offset of each run
        self.lengths: list[int] = []
        pos = 0
        for start, count in runs:
            if pos >= size:
                break
            n = min(count * csize, size - pos)
            self.starts.append(pos)
            self.offsets.append(heap + (start - 2) * csize)
            self.lengths.append(n)
            pos += n
        self.size = pos

    def _pieces(self, offset: int, length: int):
        i = bisect.bisect_right(self.starts, offset) - 1
        while length > 0:
            local = offset - self.starts[i]
            n = min(length, self.lengths[i] - local)
            yield self.offsets[i] + local, n
            offset += n
            length -= n
            i += 1

    def _read(self, offset: int, length: int) -> bytes:
        return b"".join(self.vol.read(o, n) for o, n in self._pieces(offset, length))

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        pos = 0
        for o, n in self._pieces(offset, len(mv)):
            self.vol.readinto(o, mv[pos : pos + n])
            pos += n

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        return damaged_through(self.vol, zip(self.starts, self.offsets, self.lengths),
                               start, end)


def readable_runs(fs, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cluster runs (first, count) cut where the clusters leave ``fs.source`` (FAT, exFAT)."""
    out = []
    for s, n in runs:
        if fs.cluster_offset(s + n) > fs.source.size:
            fit = max(0, (fs.source.size - fs.cluster_offset(s)) // fs.cluster_size)
            if fit:
                out.append((s, fit))
            break
        out.append((s, n))
    return out


def cluster_source(
    vol: ByteSource, heap: int, csize: int, runs: list[tuple[int, int]], size: int, name: str
) -> ByteSource:
    """``size`` bytes (fewer if the runs end first) from cluster runs; cluster 2 at ``heap``."""
    src = ClusterRuns(vol, heap, csize, runs, size, name)
    if src.size == 0:
        return MemorySource(b"", name=name)
    return src


# --- the filesystem ---------------------------------------------------------------------------


def _valid_bpb(bs: bytes) -> str | None:
    """Why a 512-byte boot sector is not a usable FAT BPB (None if it is)."""
    if len(bs) < 512:
        return "shorter than 512 bytes"
    ssize = struct.unpack_from("<H", bs, 11)[0]
    spc, reserved, nfats = bs[13], struct.unpack_from("<H", bs, 14)[0], bs[16]
    if ssize not in (512, 1024, 2048, 4096):
        return f"bytes per sector {ssize} is not 512..4096"
    if spc == 0 or spc & (spc - 1):
        return f"sectors per cluster {spc} is not a power of 2"
    if reserved == 0:
        return "no reserved sectors"
    if nfats == 0:
        return "no FATs"
    fatsz = struct.unpack_from("<H", bs, 22)[0] or struct.unpack_from("<I", bs, 36)[0]
    if fatsz == 0:
        return "FAT size is 0"
    total = struct.unpack_from("<H", bs, 19)[0] or struct.unpack_from("<I", bs, 32)[0]
    if total == 0:
        return "total sectors is 0"
    return None


def find_backup_boot(source: ByteSource) -> int | None:
    """The byte offset of a usable FAT32 backup boot sector when sector 0 is unusable."""
    for ssize in (512, 1024, 2048, 4096):
        off = 6 * ssize
        if off + 512 > source.size:
            break
        bs = source.read(off, 512)
        if (
            bs[510:512] == b"\x55\xaa"
            and _valid_bpb(bs) is None
            and struct.unpack_from("<H", bs, 11)[0] == ssize
            and struct.unpack_from("<H", bs, 22)[0] == 0
        ):
            return off
    return None


class FatFileSystem(FileSystem):
    """A FAT12/16/32 volume (read-only)."""

    case_sensitive = False

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        super().__init__(source, name=name, strict=strict)
        self.boot_offset = 0
        self.backup_used = False
        self._read_boot()
        self._setup_fats()
        self._read_fsinfo()
        self._root_label: str | None = None
        self._root_entries_cache: list[Entry] | None = None
        self._checked = False
        self.list_dir(self.root())  # the root's volume-label entry wins over the BPB's
        self.label = self._root_label or self._boot_label

    # --- opening -----------------------------------------------------------------------

    def _read_boot(self) -> None:
        src = self.source
        if src.size < 512:
            raise NotRecognized(
                "volume smaller than one sector", path=self.name, structure="boot sector", offset=0
            )
        bs = src.read(0, 512)
        why = _valid_bpb(bs)
        if why is None and bs[510:512] != b"\x55\xaa" and bs[0] not in (0xEB, 0xE9):
            why = "no boot signature and no jump instruction"
        if why is not None:
            off = find_backup_boot(src)
            if off is None:
                raise NotRecognized(
                    f"not a FAT boot sector: {why}",
                    path=self.name,
                    structure="boot sector",
                    offset=0,
                )
            self.finding(
                "error",
                "boot sector",
                0,
                f"primary boot sector unusable ({why}); using the backup at byte {off:#x}",
            )
            self.backup_used = True
            self.boot_offset = off
            bs = src.read(off, 512)
        self.boot_raw = bs
        self.bpb = BootSector.parse(bs)
        b = self.bpb
        self.sector_size = ssize = b.BPB_BytsPerSec
        self.cluster_size = ssize * b.BPB_SecPerClus
        fat32_layout = b.BPB_FATSz16 == 0
        if fat32_layout:
            self.ext = Fat32Ext.parse(bs[36:90])
            fatsz = self.ext.BPB_FATSz32
        else:
            self.ext = Fat16Ext.parse(bs[36:62])
            fatsz = b.BPB_FATSz16
        total = b.BPB_TotSec16 or b.BPB_TotSec32
        self.total_sectors = total
        self.fat_sectors = fatsz
        self.fat_offset = b.BPB_RsvdSecCnt * ssize
        self.root_entries = 0 if fat32_layout else b.BPB_RootEntCnt
        root_secs = (self.root_entries * 32 + ssize - 1) // ssize
        self.root_offset = (b.BPB_RsvdSecCnt + b.BPB_NumFATs * fatsz) * ssize
        self.first_data_offset = self.root_offset  # TSK's "firstdatasect", for inode numbers
        self.heap_offset = self.root_offset + root_secs * ssize  # cluster 2
        data_secs = total - (b.BPB_RsvdSecCnt + b.BPB_NumFATs * fatsz + root_secs)
        if data_secs <= 0:
            self.fail(CorruptImage, f"the FATs and root directory ({total - data_secs} sectors) "
                f"do not fit in the volume ({total} sectors)", "BPB", 11)
        self.clusters = data_secs // b.BPB_SecPerClus
        if fat32_layout:
            self.fstype, bits = "fat32", 32
        elif self.clusters <= FAT12_MAX_CLUSTERS:
            self.fstype, bits = "fat12", 12
        else:
            self.fstype, bits = "fat16", 16
        self.bits = bits
        capacity = fatsz * ssize * 8 // bits
        if capacity < self.clusters + 2:
            self.finding(
                "warning",
                "BPB",
                0x16 if bits != 32 else 0x24,
                f"the FAT has room for {capacity} entries, fewer than the "
                f"{self.clusters + 2} the volume needs; clusters past it are unused",
            )
            self.clusters = max(0, capacity - 2)
        self.max_cluster = self.clusters + 1
        self.serial = self.ext.BS_VolID if self.ext.BS_BootSig in (0x28, 0x29) else None
        if self.serial is not None:
            self.uuid = f"{self.serial >> 16:04X}-{self.serial & 0xFFFF:04X}"
        lab = self.ext.BS_VolLab if self.ext.BS_BootSig == 0x29 else b""
        self._boot_label = (
            None if lab in (b"", NO_NAME) else (lab.decode("cp850", "replace").rstrip(" ") or None)
        )
        if total * ssize > self.source.size:
            self.finding(
                "warning",
                "BPB",
                0x13,
                f"the volume claims {total * ssize} bytes but only {self.source.size} are present",
            )
        if self.heap_offset > self.source.size:
            self.fail(CorruptImage, "the data area starts past the end of the volume", "BPB", 0x0E)
        if fat32_layout:
            rc = self.ext.BPB_RootClus
            if not 2 <= rc <= self.max_cluster:
                self.fail(CorruptImage, f"root cluster {rc} is out of range", "BPB_RootClus", 0x2C)

    def _setup_fats(self) -> None:
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
        if self.bits == 32 and self.ext.BPB_ExtFlags & 0x80:
            active = self.ext.BPB_ExtFlags & 0x0F
            if active >= len(self.fats):
                self.finding(
                    "error",
                    "BPB_ExtFlags",
                    0x28,
                    f"active FAT {active} does not exist; using FAT 1",
                )
                active = 0
        self.active = active
        fat = self.fats[active]
        if fat.limit < 2:
            self.fail(CorruptImage, "the FAT is not inside the volume", "FAT", fat.offset)
        damaged = self._fat_damage(fat)
        if damaged:
            others = [f for f in self.fats if f is not fat and not self._fat_damage(f)]
            if others and not self.strict:
                self.finding(
                    "error",
                    fat.name,
                    fat.offset,
                    f"{damaged}; using {others[0].name} instead (salvage)",
                )
                self.active = self.fats.index(others[0])
            else:
                self.finding("error", fat.name, fat.offset, damaged)
        self.fat = self.fats[self.active]
        if not self.fat.complete:
            msg = (
                f"{self.fat.name} is cut short by the end of the volume: clusters "
                f"from {self.fat.limit} on are unreadable"
            )
            if self.strict:
                self.fail(CorruptImage, msg, self.fat.name, self.fat.offset)
            self.finding("error", self.fat.name, self.fat.offset, msg)
        self.max_cluster = min(self.max_cluster, self.fat.limit - 1)

    def _fat_damage(self, fat: FatTable) -> str | None:
        """Why a FAT copy looks damaged (its first entry must repeat the media byte)."""
        if fat.limit < 2:
            return "not inside the volume"
        mask = (1 << self.bits) - 1 if self.bits < 32 else 0x0FFFFFFF
        e0 = fat.get(0)
        want = (mask & ~0xFF) | self.bpb.BPB_Media
        if e0 != want:
            return f"entry 0 is {e0:#x}, not {want:#x} (media descriptor)"
        return None

    def _read_fsinfo(self) -> None:
        self.fsinfo = None
        if self.bits != 32:
            return
        sec = self.ext.BPB_FSInfo
        if sec in (0, 0xFFFF):
            return
        off = self.boot_offset + sec * self.sector_size
        if off + 512 > self.source.size:
            self.finding("warning", "FSInfo", off, "FSInfo sector is past the end")
            return
        raw = self.source.read(off, 512)
        try:
            fi = FSInfo.parse(raw)
        except Exception:  # noqa: BLE001 - construct's ConstError: bad lead signature
            self.finding("warning", "FSInfo", off, "FSInfo lead signature is wrong")
            return
        if fi.FSI_StrucSig != FSI_STRUC_SIG or fi.FSI_TrailSig != FSI_TRAIL_SIG:
            self.finding("warning", "FSInfo", off, "FSInfo signatures are wrong")
            return
        self.fsinfo = fi
        self.fsinfo_offset = off

    # --- geometry helpers --------------------------------------------------------------
    def cluster_offset(self, c: int) -> int:
        """Byte offset of cluster ``c`` in the volume."""
        return self.heap_offset + (c - 2) * self.cluster_size

    def _inode(self, offset: int) -> int:
        return (offset - self.first_data_offset) // 32 + 3

    def _chain(self, first: int, max_clusters: int, what: str):
        """Runs of a chain, with FAT-copy fallback in salvage mode; records the problem."""
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

    def _readable(self, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return readable_runs(self, runs)

    # --- directories ----------------------------------------------------------------------
    def root(self) -> Entry:
        if self.bits == 32:
            first = self.ext.BPB_RootClus
        else:
            first = 0
        e = Entry(name="", kind=DIR, path="/", inode=2, key=_Key(first, 0, root=True))
        return e

    def _dir_id(self, entry: Entry):
        k = entry.key
        if k.root or k.cluster == 0:
            return ("cluster", self.ext.BPB_RootClus if self.bits == 32 else 0)
        return ("cluster", k.cluster)

    def _dir_bytes(self, entry: Entry) -> list[tuple[int, bytes]]:
        """The directory's content as (volume offset, bytes) segments."""
        k = entry.key
        if k.root and self.bits != 32:
            length = self.root_entries * 32
            avail = max(0, min(length, self.source.size - self.root_offset))
            if avail < length:
                self.finding(
                    "error",
                    "root directory",
                    self.root_offset,
                    "the root directory is cut short by the end of the volume",
                )
            return [(self.root_offset, self.source.read(self.root_offset, avail))]
        first = k.cluster
        if first == 0 and not k.root:  # a ".."-style reference to the root
            return self._dir_bytes(self.root())
        if k.deleted:
            if not self._is_free(first):
                return []
            runs = [(first, 1)]
        else:
            limit = max(1, MAX_DIR_BYTES // self.cluster_size)
            runs, problem, ended, _ = self._chain(first, limit, f"directory {entry.path}")
            if problem:
                self.finding(
                    "error",
                    "directory",
                    self.cluster_offset(first) if 2 <= first <= self.max_cluster else None,
                    f"{entry.path or '/'}: {problem}; listing what was read",
                )
            elif not ended:
                self.finding(
                    "warning",
                    "directory",
                    self.cluster_offset(first),
                    f"{entry.path or '/'}: longer than 65536 entries; rest ignored",
                )
        segs = []
        for s, n in self._readable(runs):
            off = self.cluster_offset(s)
            segs.append((off, self.source.read(off, n * self.cluster_size)))
        if sum(n for _, n in runs) > sum(n for _, n in self._readable(runs)):
            self.finding(
                "error",
                "directory",
                None,
                f"{entry.path or '/'}: clusters past the end of the volume",
            )
        return segs

    def _can_list_deleted_dir(self, entry: Entry) -> bool:
        return self._is_free(entry.key.cluster)

    def _is_free(self, c: int) -> bool:
        return 2 <= c <= self.max_cluster and self.fat.get(c) == 0

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.kind != DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a directory")
        is_root = entry.key.root
        if is_root and self._root_entries_cache is not None:
            return [e.copy() for e in self._root_entries_cache]
        out = self._parse_dir(entry, self._dir_bytes(entry))
        if is_root:
            self._root_entries_cache = out
            return [e.copy() for e in out]
        return out

    def _parse_dir(self, d: Entry, segs: list[tuple[int, bytes]]) -> list[Entry]:
        out: list[Entry] = []
        parent_deleted = d.deleted
        lfn: list[tuple[int, bytes]] = []  # (ordinal byte, raw entry), in disk order
        lfn_chk = -1
        csize = self.cluster_size
        is_root = d.key.root
        unpack = _DIRENT.iter_unpack
        for base, buf in segs:
            n = len(buf) // 32
            if not n:
                continue
            pos = 0
            for (
                name11,
                attr,
                ntres,
                ctenth,
                ctime,
                cdate,
                adate,
                hi,
                wtime,
                wdate,
                lo,
                size,
            ) in unpack(buf[: n * 32]):
                off = base + pos
                pos += 32
                b0 = name11[0]
                if b0 == 0:
                    break
                if attr & 0x3F == ATTR_LONG_NAME:
                    raw = buf[pos - 32 : pos]
                    ordb = raw[0]
                    chk = raw[13]
                    if (ordb != DELETED and ordb & LFN_LAST) or chk != lfn_chk or not lfn:
                        lfn = []
                        lfn_chk = chk
                    lfn.append((ordb, raw))
                    continue
                pending, lfn, lfn_chk = lfn, [], -1
                if attr & ATTR_VOLUME_ID:
                    if is_root and b0 != DELETED and self._root_label is None:
                        self._root_label = name11.decode("cp850", "replace").rstrip(" ")
                    continue
                deleted = b0 == DELETED or parent_deleted
                if name11 in (b".          ", b"..         "):
                    continue
                short = self._short_name(name11, ntres)
                long_name = None
                if pending:
                    long_name = self._long_name(name11, pending, off, d)
                if b0 == DELETED:
                    short = "_" + short[1:]  # the first byte is gone (fls shows "_" too)
                    if long_name:  # ... but the long name's checksum tells what it was
                        chk = [p for p in pending if p[0] == DELETED][0][1][13]
                        was = bytes([lfn_first_byte(name11, chk)]) + name11[1:]
                        short = self._short_name(was, ntres)
                    name = long_name or "_" + self._short_name(name11, ntres)[1:]
                else:
                    name = long_name or short
                first = (hi << 16 | lo) if self.bits == 32 else lo
                is_dir = bool(attr & ATTR_DIRECTORY)
                e = Entry(
                    name=name,
                    kind=DIR if is_dir else FILE,
                    size=size,
                    created=dos_datetime(cdate, ctime, ctenth),
                    modified=dos_datetime(wdate, wtime),
                    accessed=dos_datetime(adate),
                    inode=self._inode(off),
                    deleted=deleted,
                    raw=FatDirent(off, buf[pos - 32 : pos], [r for _, r in pending]),
                )
                e.extra = {
                    "attributes": _attr_text(attr),
                    "short_name": short,
                    "first_cluster": first,
                }
                if is_dir:
                    e.size = 0
                    e.key = _Key(first, 0, deleted)
                    if deleted:
                        free = self._is_free(first)
                        e.size = csize if free else 0
                        e.recoverable = free
                        e.allocated = 0
                    else:
                        e.size = self._dir_size(first)
                        e.allocated = e.size
                else:
                    e.key = _Key(first, size, deleted)
                    if deleted:
                        e.recoverable = self._recoverable(first, size)
                        e.allocated = 0
                    else:
                        e.allocated = -(-size // csize) * csize
                out.append(e)
        return out

    def _dir_size(self, first: int) -> int:
        if not 2 <= first <= self.max_cluster:
            return 0
        limit = max(1, MAX_DIR_BYTES // self.cluster_size)
        runs, _, _ = self.fat.chain(first, limit, self.max_cluster)
        return sum(n for _, n in runs) * self.cluster_size

    def _recoverable(self, first: int, size: int) -> bool:
        if size == 0:
            return True
        if not self._is_free(first):
            return False
        needed = -(-size // self.cluster_size)
        return take_free(self.fat.free_mask, first, needed, self.max_cluster) is not None

    @staticmethod
    def _short_name(name11: bytes, ntres: int) -> str:
        base = name11[:8]
        if base[:1] == b"\x05":
            base = b"\xe5" + base[1:]
        b = base.decode("cp850", "replace").rstrip(" ")
        x = name11[8:].decode("cp850", "replace").rstrip(" ")
        if ntres & NT_LOWER_BASE:
            b = b.lower()
        if ntres & NT_LOWER_EXT:
            x = x.lower()
        return f"{b}.{x}" if x else b

    def _long_name(
        self, name11: bytes, pending: list[tuple[int, bytes]], off: int, d: Entry
    ) -> str | None:
        """The long name the LFN entries before a short entry spell, if they belong to it."""
        deleted = name11[0] == DELETED
        # long-name slots of a deleted file may precede a live short entry that reused the
        # slot after them (and the other way round): use only slots in the same state
        pending = [p for p in pending if (p[0] == DELETED) == deleted]
        if not pending:
            return None
        chk = pending[0][1][13]
        if deleted:
            first = lfn_first_byte(name11, chk)
            if first not in _SHORT_OK or first == DELETED:
                return None
        else:
            if lfn_checksum(name11) != chk:
                self.finding(
                    "warning",
                    "directory",
                    off,
                    f"{d.path or '/'}: long name entries before "
                    f"{name11.decode('cp850', 'replace')!r} have checksum {chk:#04x}, "
                    f"not {lfn_checksum(name11):#04x}; using the short name",
                )
                return None
            # live sequence: ordinals count down to 1
            want = len(pending)
            for i, (ordb, _) in enumerate(pending):
                o = ordb & 0x1F
                if o != want - i or (i == 0) != bool(ordb & LFN_LAST):
                    self.finding(
                        "warning",
                        "directory",
                        off,
                        f"{d.path or '/'}: long name entries out of sequence "
                        f"before {name11!r}; using the short name",
                    )
                    return None
        units = b"".join(r[1:11] + r[14:26] + r[28:32] for _, r in reversed(pending))
        text = units.decode("utf-16-le", "replace")
        end = text.find("\0")
        if end >= 0:
            text = text[:end]
        return text or None

    # --- content ------------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        k: _Key = entry.key
        name = f"{self.name}:{entry.path or entry.name}"
        size = k.size
        if size == 0:
            return MemorySource(b"", name=name)
        csize = self.cluster_size
        needed = -(-size // csize)
        if k.deleted:
            runs = None
            if self._is_free(k.cluster):
                runs = take_free(self.fat.free_mask, k.cluster, needed, self.max_cluster)
            if runs is None:
                raise NotFound(
                    f"{self.name}: {entry.path or entry.name} is deleted and its "
                    "clusters are in use again; the content is not recoverable"
                )
            return cluster_source(
                self.source, self.heap_offset, csize, self._readable(runs), size, name
            )
        runs, problem, ended, _ = self._chain(k.cluster, needed, entry.path or entry.name)
        have = sum(n for _, n in runs)
        if problem is None and have < needed:
            problem = (
                f"the cluster chain ends after {have} clusters; the size "
                f"({size} bytes) needs {needed}"
            )
        readable = self._readable(runs)
        if problem is None and sum(n for _, n in readable) < have:
            problem = "the cluster chain runs past the end of the volume"
        if problem:
            where = self.cluster_offset(k.cluster) if 2 <= k.cluster <= self.max_cluster else None
            if self.strict:
                raise CorruptImage(
                    f"{entry.path or entry.name}: {problem}",
                    path=self.name,
                    structure="cluster chain",
                    offset=where,
                )
            self.finding(
                "error",
                "cluster chain",
                where,
                f"{entry.path or entry.name}: {problem}; content truncated",
            )
            size = min(size, sum(n for _, n in readable) * csize)
        return cluster_source(self.source, self.heap_offset, csize, readable, size, name)

    # --- reports ---------------------------------------------------------------------------
    def _fat1_flags(self) -> list[str]:
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

    def info(self) -> dict:
        b = self.bpb
        d = dict(
            fstype=self.fstype,
            label=self.label,
            uuid=self.uuid,
            boot_label=self._boot_label,
            root_label=self._root_label,
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
            flags=self._fat1_flags(),
            backup_boot_used=self.backup_used,
            tz_unknown=True,
            time_note="FAT stores local wall-clock times without a zone; they are shown "
            "in the UTC columns as they are",
        )
        if self.fsinfo is not None:
            fi = self.fsinfo
            d["fsinfo_free_count"] = None if fi.FSI_Free_Count == 0xFFFFFFFF else fi.FSI_Free_Count
            d["fsinfo_next_free"] = None if fi.FSI_Nxt_Free == 0xFFFFFFFF else fi.FSI_Nxt_Free
        return d

    def structures(self) -> list[dict]:
        ss = self.sector_size
        rows = [
            dict(
                name="boot sector",
                host_offset=self.boot_offset,
                length=ss,
                description=f"{self.fstype.upper()} boot sector and BIOS parameter block",
            )
        ]
        if self.bits == 32:
            if self.fsinfo is not None:
                rows.append(
                    dict(
                        name="FSInfo",
                        host_offset=self.fsinfo_offset,
                        length=ss,
                        description="free cluster count and next-free hint",
                    )
                )
            bk = self.ext.BPB_BkBootSec
            if bk not in (0, 0xFFFF):
                rows.append(
                    dict(
                        name="backup boot sector",
                        host_offset=bk * ss,
                        length=ss,
                        description="copy of the boot sector (and FSInfo after it)",
                    )
                )
        for f in self.fats:
            rows.append(
                dict(
                    name=f.name,
                    host_offset=f.offset,
                    length=f.length,
                    description=f"file allocation table, {self.bits}-bit entries"
                    + (" (active)" if f is self.fat else ""),
                )
            )
        if self.bits != 32:
            rows.append(
                dict(
                    name="root directory",
                    host_offset=self.root_offset,
                    length=self.root_entries * 32,
                    description=f"fixed root directory, {self.root_entries} entries",
                )
            )
        rows.append(
            dict(
                name="data area",
                host_offset=self.heap_offset,
                length=self.clusters * self.cluster_size,
                description=f"{self.clusters} clusters of {self.cluster_size} bytes from cluster 2",
            )
        )
        return rows

    def check(self) -> list[dict]:
        """Findings: boot sector copies, FAT copies, FSInfo, dirty bits, chains, lost clusters."""
        if not self._checked:
            self._checked = True
            self._check_volume()
        return list(self.findings)

    def _check_volume(self) -> None:
        flags = self._fat1_flags()
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
            if bk not in (0, 0xFFFF) and (bk + 1) * self.sector_size <= self.source.size:
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
            and self.fsinfo.FSI_Free_Count != 0xFFFFFFFF
            and self.fsinfo.FSI_Free_Count != free
        ):
            self.finding(
                "warning",
                "FSInfo",
                self.fsinfo_offset + 488,
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
        for s, n in runs:
            seg = used[s : s + n]
            if seg.any():
                self.finding(
                    "error",
                    "cluster chain",
                    self.cluster_offset(s),
                    f"{path}: cross-linked with another file at cluster "
                    f"{s + int(np.flatnonzero(seg)[0])}",
                )
            seg[:] = True

    # --- labels ----------------------------------------------------------------------------
    @property
    def volume_label(self) -> str | None:
        """The label Windows shows: the root's volume-label entry, else the boot sector's."""
        return self._root_label or self._boot_label


def open_filesystem(
    source: ByteSource, *, name: str | None = None, strict: bool = True
) -> FatFileSystem:
    """Open a FAT12/16/32 volume."""
    fs = FatFileSystem(source, name=name, strict=strict)
    if fs._root_label:
        fs.label = fs._root_label
    return fs
