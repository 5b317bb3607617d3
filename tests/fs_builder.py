"""Build FAT and exFAT images from the specifications' structures, for tests.

Independent of vdinspect's drivers (nothing here imports them): the checksums, the 12-bit
FAT packing and the entry layouts are written again from Microsoft's FAT (fatgen103) and
exFAT specifications, so a test can check a driver's answers against the data it built.
Clean images from here are also checked by fsck.fat / fsck.exfat and The Sleuth Kit.

:class:`FatImage` makes FAT12/16/32 volumes from scratch, including hostile ones (names
with separators, directory loops, looping chains, sizes the chain cannot back).
:class:`ExfatImage` fills a volume made by ``mkfs.exfat`` (boot region, FAT, bitmap, up-case
table) with entry sets written here; there is no mtools for exFAT.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import subprocess
import uuid as uuidlib
from dataclasses import dataclass, field

from tests.tools import fls_lines

SECTOR = 512
DEFAULT_TIME = dt.datetime(2021, 3, 4, 5, 6, 8)


# --- shared bits ---------------------------------------------------------------------------


def dos_date(t: dt.datetime) -> int:
    return ((t.year - 1980) << 9) | (t.month << 5) | t.day


def dos_time(t: dt.datetime) -> int:
    return (t.hour << 11) | (t.minute << 5) | (t.second // 2)


def lfn_checksum(short11: bytes) -> int:
    s = 0
    for c in short11:
        s = ((s >> 1) | ((s & 1) << 7)) + c & 0xFF
    return s


def short_entry(
    name11: bytes,
    attr: int,
    cluster: int,
    size: int,
    *,
    ntres: int = 0,
    created: dt.datetime | None = DEFAULT_TIME,
    created_tenths: int = 0,
    modified: dt.datetime | None = DEFAULT_TIME,
    accessed: dt.datetime | None = DEFAULT_TIME,
) -> bytes:
    """A 32-byte 8.3 directory entry."""
    assert len(name11) == 11
    cd = dos_date(created) if created else 0
    ct = dos_time(created) if created else 0
    md = dos_date(modified) if modified else 0
    mt = dos_time(modified) if modified else 0
    ad = dos_date(accessed) if accessed else 0
    return struct.pack(
        "<11sBBBHHHHHHHI",
        name11,
        attr,
        ntres,
        created_tenths,
        ct,
        cd,
        ad,
        cluster >> 16,
        mt,
        md,
        cluster & 0xFFFF,
        size,
    )


def lfn_entries(name: str, short11: bytes, *, checksum: int | None = None) -> list[bytes]:
    """The VFAT long-name entries for ``name``, in the order they are stored (last first)."""
    units = name.encode("utf-16-le", "surrogatepass")
    n = len(units) // 2
    count = max(1, math.ceil(n / 13))
    units += b"\0\0" if n % 13 else b""
    units += b"\xff\xff" * (count * 13 - len(units) // 2)
    chk = lfn_checksum(short11) if checksum is None else checksum
    out = []
    for i in range(count, 0, -1):
        part = units[(i - 1) * 26 : i * 26]
        order = i | (0x40 if i == count else 0)
        out.append(
            bytes([order]) + part[:10] + bytes([0x0F, 0, chk]) + part[10:22] + b"\0\0" + part[22:26]
        )
    return out


def short11(base: str, ext: str = "") -> bytes:
    return base.encode("ascii").ljust(8, b" ")[:8] + ext.encode("ascii").ljust(3, b" ")[:3]


def _oem(text: str) -> bytes:
    """Basis-name characters: "+,;=[]" and what code page 850 lacks become "_"."""
    out = b""
    for c in text:
        if c in "+,;=[]" or c < " ":
            out += b"_"
        else:
            try:
                out += c.encode("cp850")
            except UnicodeEncodeError:
                out += b"_"
    return out


def basis_short11(name: str, tail: int) -> bytes:
    """The short name fatgen103's "Basis-Name Generation" gives a long name, with the
    numeric tail ``~tail``: spaces and leading periods removed, upper case, the extension
    after the last period (3 characters), the base cut to make room for the tail."""
    s = name.upper().replace(" ", "").lstrip(".")
    base, dot, ext = s.rpartition(".")
    if not dot:
        base, ext = s, ""
    t = f"~{tail}".encode()
    b = _oem(base.replace(".", ""))[: 8 - len(t)] + t
    return b.ljust(8, b" ") + _oem(ext)[:3].ljust(3, b" ")


# --- FAT -------------------------------------------------------------------------------------


@dataclass
class FatDir:
    """A directory being built: its entries, and (after layout) its clusters."""

    name: str
    parent: FatDir | None
    entries: list = field(default_factory=list)
    clusters: list[int] = field(default_factory=list)
    deleted: bool = False

    @property
    def first(self) -> int:
        return self.clusters[0] if self.clusters else 0


@dataclass
class FatFile:
    data: bytes
    clusters: list[int]
    size: int


class FatImage:
    """A FAT12/16/32 volume written from scratch.

    Files are placed in allocation order (``fragment=True`` interleaves them with a gap);
    directories get their clusters when :meth:`build` lays them out.
    """

    def __init__(
        self,
        bits: int = 16,
        sectors: int = 8192,
        spc: int = 1,
        root_entries: int = 512,
        label: str = "BUILT",
        nfats: int = 2,
        media: int = 0xF8,
        serial: int = 0x1234ABCD,
    ) -> None:
        self.bits = bits
        self.sectors = sectors
        self.spc = spc
        self.csize = spc * SECTOR
        self.nfats = nfats
        self.media = media
        self.serial = serial
        self.label = label
        self.reserved = 32 if bits == 32 else 1
        self.root_entries = 0 if bits == 32 else root_entries
        root_secs = self.root_entries * 32 // SECTOR
        fatsz = 1
        while True:
            clusters = (sectors - self.reserved - nfats * fatsz - root_secs) // spc
            need = math.ceil((clusters + 2) * bits / 8 / SECTOR)
            if need <= fatsz:
                break
            fatsz = need
        self.fatsz = fatsz
        self.clusters = clusters
        self.root_offset = (self.reserved + nfats * fatsz) * SECTOR
        self.heap = self.root_offset + root_secs * SECTOR
        mask = {12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}[bits]
        self.eoc = mask
        self.fat = [0] * (clusters + 2)
        self.fat[0] = (mask & ~0xFF) | media
        self.fat[1] = mask
        self.next = 2
        self.buf = bytearray(sectors * SECTOR)
        self.root = FatDir("", None)
        if bits == 32:
            self.root.clusters = self.alloc(1)
            self.link(self.root.clusters)
        self.post: list = []  # callables run after layout (hostile patches)
        self.fat_overrides: dict[int, int] = {}
        self.fat2_overrides: dict[int, int] = {}

    # allocation
    def alloc(self, n: int, gap: int = 0) -> list[int]:
        out = []
        for _ in range(n):
            if self.next > self.clusters + 1:
                raise ValueError("volume full")
            out.append(self.next)
            self.next += 1 + gap
        return out

    def link(self, clusters: list[int]) -> None:
        for a, b in zip(clusters, clusters[1:]):
            self.fat[a] = b
        if clusters:
            self.fat[clusters[-1]] = self.eoc

    def coff(self, c: int) -> int:
        return self.heap + (c - 2) * self.csize

    def write(self, clusters: list[int], data: bytes) -> None:
        for i, c in enumerate(clusters):
            chunk = data[i * self.csize : (i + 1) * self.csize]
            self.buf[self.coff(c) : self.coff(c) + len(chunk)] = chunk

    # entries
    def _names(self, d: FatDir, name: str, short: bytes | None, lfn: bool | None):
        if lfn is None:
            lfn = True
        if short is None:  # as Windows and Linux make it (the numeric tail keeps it unique)
            short = (basis_short11(name, len(d.entries) + 1) if lfn
                     else short11(f"F{len(d.entries):07d}", "BIN"))
        return short, (name if lfn else None)

    def add_file(
        self,
        d: FatDir,
        name: str,
        data: bytes = b"",
        *,
        short: bytes | None = None,
        lfn: bool | None = None,
        attr: int = 0x20,
        ntres: int = 0,
        size: int | None = None,
        fragment: bool = False,
        deleted: bool = False,
        loop: bool = False,
        created: dt.datetime = DEFAULT_TIME,
        created_tenths: int = 0,
        modified: dt.datetime = DEFAULT_TIME,
        accessed: dt.datetime = DEFAULT_TIME,
        lfn_checksum: int | None = None,
        cluster: int | None = None,
    ) -> FatFile:
        """A file entry (and its data, unless deleted: then the clusters stay free)."""
        short, long_name = self._names(d, name, short, lfn)
        n = math.ceil(len(data) / self.csize)
        clusters = self.alloc(n, gap=1 if fragment else 0)
        self.write(clusters, data)
        if not deleted:
            self.link(clusters)
            if loop and clusters:
                self.fat[clusters[-1]] = clusters[0]
        f = FatFile(data, clusters, len(data) if size is None else size)
        first = cluster if cluster is not None else (clusters[0] if clusters else 0)
        d.entries.append(
            (
                "file",
                short,
                long_name,
                attr,
                ntres,
                first,
                f.size,
                deleted,
                (created, created_tenths, modified, accessed),
                lfn_checksum,
            )
        )
        return f

    def mkdir(
        self,
        d: FatDir,
        name: str,
        *,
        short: bytes | None = None,
        lfn: bool | None = None,
        deleted: bool = False,
    ) -> FatDir:
        short, long_name = self._names(d, name, short, lfn)
        sub = FatDir(name, d, deleted=deleted)
        d.entries.append(("dir", short, long_name, sub, deleted))
        return sub

    def dir_ref(self, d: FatDir, name: str, target: FatDir, *, short: bytes | None = None) -> None:
        """A directory entry that points at another directory's first cluster (a loop)."""
        short, long_name = self._names(d, name, short, True)
        d.entries.append(("ref", short, long_name, target))

    def raw(self, d: FatDir, entry: bytes) -> None:
        d.entries.append(("raw", entry))

    # layout
    def _dirs(self, d: FatDir):
        """Every directory below ``d`` (iteratively: trees may be thousands deep)."""
        stack = [d]
        while stack:
            x = stack.pop()
            yield x
            stack.extend(e[3] for e in reversed(x.entries) if e[0] == "dir")

    def _serialize(self, d: FatDir) -> bytes:
        out = bytearray()
        if d is not self.root:
            parent = 0 if d.parent is self.root else d.parent.first  # the root is 0
            out += short_entry(b".          ", 0x10, d.first, 0)
            out += short_entry(b"..         ", 0x10, parent, 0)
        if d is self.root and self.label:
            out += short_entry(
                self.label.encode("ascii").ljust(11)[:11], 0x08, 0, 0, created=None, accessed=None
            )
        for e in d.entries:
            kind = e[0]
            if kind == "raw":
                out += e[1]
                continue
            short, long_name = e[1], e[2]
            if kind == "file":
                _, _, _, attr, ntres, first, size, deleted, times, chk = e
                created, tenths, modified, accessed = times
                ent = short_entry(
                    short,
                    attr,
                    first,
                    size,
                    ntres=ntres,
                    created=created,
                    created_tenths=tenths,
                    modified=modified,
                    accessed=accessed,
                )
            elif kind == "dir":
                sub, deleted, chk = e[3], e[4], None
                ent = short_entry(short, 0x10, sub.first, 0)
            else:  # ref
                target, deleted, chk = e[3], False, None
                ent = short_entry(short, 0x10, target.first, 0)
            lfns = lfn_entries(long_name, short, checksum=chk) if long_name else []
            if deleted:
                lfns = [b"\xe5" + x[1:] for x in lfns]
                ent = b"\xe5" + ent[1:]
            for x in lfns:
                out += x
            out += ent
        return bytes(out)

    def build(self) -> bytes:
        """Lay out directories, write FATs, boot sector (FSInfo, backup) and return the image."""
        dirs = list(self._dirs(self.root))
        for d in dirs:
            if d is self.root and self.bits != 32:
                continue
            size = len(self._serialize(d)) + 32
            n = max(1, math.ceil(size / self.csize))
            if d is self.root:
                more = n - len(d.clusters)
                if more > 0:
                    d.clusters += self.alloc(more)
            else:
                d.clusters = self.alloc(n)
            if not d.deleted:
                self.link(d.clusters)
        for d in dirs:
            data = self._serialize(d)
            if d is self.root and self.bits != 32:
                assert len(data) <= self.root_entries * 32, "root directory full"
                self.buf[self.root_offset : self.root_offset + len(data)] = data
            else:
                self.write(d.clusters, data)
        for c, v in self.fat_overrides.items():
            self.fat[c] = v
        for k in range(self.nfats):
            table = list(self.fat)
            if k == 1:
                for c, v in self.fat2_overrides.items():
                    table[c] = v
            raw = self._fat_bytes(table)[: self.fatsz * SECTOR]
            off = (self.reserved + k * self.fatsz) * SECTOR
            self.buf[off : off + len(raw)] = raw
        self._boot()
        for fn in self.post:
            fn(self)
        return bytes(self.buf)

    def _fat_bytes(self, table: list[int]) -> bytes:
        if self.bits == 16:
            return struct.pack(f"<{len(table)}H", *table)
        if self.bits == 32:
            return struct.pack(f"<{len(table)}I", *table)
        out = bytearray(math.ceil(len(table) * 3 / 2) + 1)
        for n, v in enumerate(table):
            off = n * 3 // 2
            if n % 2 == 0:
                out[off] = v & 0xFF
                out[off + 1] = (out[off + 1] & 0xF0) | (v >> 8)
            else:
                out[off] = (out[off] & 0x0F) | ((v & 0x0F) << 4)
                out[off + 1] = v >> 4
        return bytes(out)

    def _boot(self) -> None:
        b = bytearray(SECTOR)
        b[0:3] = b"\xeb\x3c\x90" if self.bits != 32 else b"\xeb\x58\x90"
        b[3:11] = b"VDTEST  "
        tot16 = self.sectors if self.sectors < 65536 and self.bits != 32 else 0
        struct.pack_into(
            "<HBHBHHBHHHII",
            b,
            11,
            SECTOR,
            self.spc,
            self.reserved,
            self.nfats,
            self.root_entries,
            tot16,
            self.media,
            self.fatsz if self.bits != 32 else 0,
            32,
            2,
            0,
            0 if tot16 else self.sectors,
        )
        label = self.label.encode("ascii").ljust(11)[:11] if self.label else b"NO NAME    "
        if self.bits == 32:
            struct.pack_into(
                "<IHHIHH12xBBBI11s8s",
                b,
                36,
                self.fatsz,
                0,
                0,
                self.root.clusters[0],
                1,
                6,
                0x80,
                0,
                0x29,
                self.serial,
                label,
                b"FAT32   ",
            )
        else:
            struct.pack_into(
                "<BBBI11s8s",
                b,
                36,
                0x80,
                0,
                0x29,
                self.serial,
                label,
                f"FAT{self.bits}   ".encode(),
            )
        b[510:512] = b"\x55\xaa"
        self.buf[0:SECTOR] = b
        if self.bits == 32:
            fi = bytearray(SECTOR)
            free = sum(1 for v in self.fat[2:] if v == 0)
            struct.pack_into("<I", fi, 0, 0x41615252)
            struct.pack_into("<III", fi, 484, 0x61417272, free, self.next)
            struct.pack_into("<I", fi, 508, 0xAA550000)
            self.buf[SECTOR : 2 * SECTOR] = fi
            self.buf[6 * SECTOR : 7 * SECTOR] = b
            self.buf[7 * SECTOR : 8 * SECTOR] = fi


# --- exFAT -----------------------------------------------------------------------------------


def exfat_set_checksum(data: bytes) -> int:
    c = 0
    for i, byte in enumerate(data):
        if i in (2, 3):
            continue
        c = ((c >> 1) | ((c & 1) << 15)) + byte & 0xFFFF
    return c


def exfat_name_hash(name: str) -> int:
    """NameHash over the up-cased name (one unit for one unit, as the up-case table maps)."""
    up = "".join(c.upper() if len(c.upper()) == 1 else c for c in name)
    h = 0
    for b in up.encode("utf-16-le"):
        h = ((h >> 1) | ((h & 1) << 15)) + b & 0xFFFF
    return h


def exfat_boot_checksum(region: bytes, ss: int) -> int:
    c = 0
    for i, byte in enumerate(region[: 11 * ss]):
        if i in (106, 107, 112):
            continue
        c = ((c >> 1) | ((c & 1) << 31)) + byte & 0xFFFFFFFF
    return c


def exfat_stamp(t: dt.datetime) -> tuple[int, int]:
    """(timestamp, 10 ms increment) of a wall-clock datetime."""
    stamp = (dos_date(t) << 16) | dos_time(t)
    tens = (t.second % 2) * 100 + t.microsecond // 10000
    return stamp, tens


@dataclass
class ExfatNode:
    """A file or directory written by :class:`ExfatImage`."""

    name: str
    first: int
    clusters: list[int]
    size: int
    slot: int  # byte offset of its File entry in the volume
    entries: int
    is_dir: bool = False
    contiguous: bool = True
    slots: list[int] = field(default_factory=list)  # offsets of its entries
    next_slot: int = 0  # directories: next free slot offset
    data: bytes = b""


class ExfatImage:
    """Fill a ``mkfs.exfat``-made volume with files, directories and deleted entry sets."""

    def __init__(self, image: bytes) -> None:
        self.buf = bytearray(image)
        b = self.buf
        self.ss = 1 << b[108]
        self.csize = self.ss << b[109]
        self.fat_off = struct.unpack_from("<I", b, 80)[0] * self.ss
        self.heap = struct.unpack_from("<I", b, 88)[0] * self.ss
        self.count = struct.unpack_from("<I", b, 92)[0]
        root_c = struct.unpack_from("<I", b, 96)[0]
        self.bitmap_first = None
        root_clusters = self._chain(root_c)
        for c in root_clusters:
            base = self.coff(c)
            for i in range(0, self.csize, 32):
                t = b[base + i]
                if t == 0x81:
                    self.bitmap_first = struct.unpack_from("<I", b, base + i + 20)[0]
        assert self.bitmap_first is not None, "no allocation bitmap"
        self.root = ExfatNode("", root_c, root_clusters, 0, 0, 0, is_dir=True, contiguous=False)
        self.root.next_slot = self._first_free_slot(root_clusters)

    def coff(self, c: int) -> int:
        return self.heap + (c - 2) * self.csize

    def fat_get(self, c: int) -> int:
        return struct.unpack_from("<I", self.buf, self.fat_off + 4 * c)[0]

    def fat_set(self, c: int, v: int) -> None:
        struct.pack_into("<I", self.buf, self.fat_off + 4 * c, v)

    def _chain(self, c: int) -> list[int]:
        out = []
        while 2 <= c < self.count + 2 and len(out) <= self.count:
            out.append(c)
            c = self.fat_get(c)
        return out

    def _first_free_slot(self, clusters: list[int]) -> int:
        for c in clusters:
            for i in range(0, self.csize, 32):
                if self.buf[self.coff(c) + i] == 0:
                    return self.coff(c) + i
        raise ValueError("directory full")

    def bit(self, c: int) -> bool:
        i = c - 2
        return bool(self.buf[self.coff(self.bitmap_first) + i // 8] >> (i % 8) & 1)

    def set_bit(self, c: int, on: bool) -> None:
        i = c - 2
        off = self.coff(self.bitmap_first) + i // 8
        if on:
            self.buf[off] |= 1 << (i % 8)
        else:
            self.buf[off] &= ~(1 << (i % 8)) & 0xFF

    def alloc(self, n: int, gap: int = 0) -> list[int]:
        """``n`` free clusters: one contiguous run, or (gap > 0) spread with free gaps."""
        if gap == 0:
            run = 0
            for c in range(2, self.count + 2):
                run = 0 if self.bit(c) else run + 1
                if run == n:
                    out = list(range(c - n + 1, c + 1))
                    for x in out:
                        self.set_bit(x, True)
                    return out
            if n == 0:
                return []
            raise ValueError("no contiguous run free")
        out = []
        c = 2
        while len(out) < n:
            if c >= self.count + 2:
                raise ValueError("volume full")
            if not self.bit(c) and (not out or c > out[-1] + gap):
                out.append(c)
                self.set_bit(c, True)
            c += 1
        return out

    def _slot_after(self, d: ExfatNode, off: int) -> int:
        """The slot after ``off`` inside directory ``d`` (following its clusters)."""
        nxt = off + 32
        for i, c in enumerate(d.clusters):
            if self.coff(c) <= off < self.coff(c) + self.csize:
                if nxt < self.coff(c) + self.csize:
                    return nxt
                if i + 1 < len(d.clusters):
                    return self.coff(d.clusters[i + 1])
                raise ValueError("directory full")
        raise ValueError("slot not in directory")

    def _write_set(self, d: ExfatNode, entries: list[bytearray]) -> list[int]:
        data = b"".join(entries)
        chk = exfat_set_checksum(data)
        struct.pack_into("<H", entries[0], 2, chk)
        slots = []
        off = d.next_slot
        for e in entries:
            self.buf[off : off + 32] = e
            slots.append(off)
            off = self._slot_after(d, off)
        d.next_slot = off
        return slots

    def add(
        self,
        d: ExfatNode,
        name: str,
        data: bytes = b"",
        *,
        is_dir: bool = False,
        fragment: bool = False,
        attr: int | None = None,
        created: dt.datetime = DEFAULT_TIME,
        modified: dt.datetime = DEFAULT_TIME,
        accessed: dt.datetime = DEFAULT_TIME,
        utc_offset_min: int | None = None,
        valid: int | None = None,
        dir_clusters: int = 1,
    ) -> ExfatNode:
        """Write a file (or an empty directory) and its entry set into ``d``."""
        if is_dir:
            n = dir_clusters
            clusters = self.alloc(n)
            for c in clusters:
                self.buf[self.coff(c) : self.coff(c) + self.csize] = bytes(self.csize)
            size = n * self.csize
            contiguous = True
        else:
            n = math.ceil(len(data) / self.csize)
            clusters = self.alloc(n, gap=1 if fragment else 0)
            for i, c in enumerate(clusters):
                chunk = data[i * self.csize : (i + 1) * self.csize]
                self.buf[self.coff(c) : self.coff(c) + len(chunk)] = chunk
            size = len(data)
            contiguous = not fragment
        if not contiguous:
            for a, b in zip(clusters, clusters[1:]):
                self.fat_set(a, b)
            self.fat_set(clusters[-1], 0xFFFFFFFF)
        first = clusters[0] if clusters else 0
        units = name.encode("utf-16-le")
        nname = math.ceil(len(units) / 30)
        fe = bytearray(32)
        fe[0] = 0x85
        fe[1] = 1 + nname
        struct.pack_into("<H", fe, 4, attr if attr is not None else (0x10 if is_dir else 0x20))
        tz = 0 if utc_offset_min is None else 0x80 | ((utc_offset_min // 15) & 0x7F)
        cs, ct = exfat_stamp(created)
        ms, mt = exfat_stamp(modified)
        as_, _ = exfat_stamp(accessed)
        struct.pack_into("<IIIBBBBB", fe, 8, cs, ms, as_, ct, mt, tz, tz, tz)
        se = bytearray(32)
        se[0] = 0xC0
        se[1] = 0x01 | (0x02 if contiguous and clusters else 0)
        se[3] = len(name)
        struct.pack_into("<H", se, 4, exfat_name_hash(name))
        struct.pack_into("<Q", se, 8, size if valid is None else valid)
        struct.pack_into("<IQ", se, 20, first, size)
        names = []
        for i in range(nname):
            ne = bytearray(32)
            ne[0] = 0xC1
            part = units[i * 30 : (i + 1) * 30]
            ne[2 : 2 + len(part)] = part
            names.append(ne)
        slots = self._write_set(d, [fe, se] + names)
        node = ExfatNode(
            name,
            first,
            clusters,
            size,
            slots[0],
            len(slots),
            is_dir=is_dir,
            contiguous=contiguous,
            slots=slots,
            data=data,
        )
        if is_dir:
            node.next_slot = self.coff(first)
        return node

    def delete(self, node: ExfatNode, *, free: bool = True) -> None:
        """Mark the entry set deleted (bit 7 of each type cleared) and free its clusters."""
        for off in node.slots:
            self.buf[off] &= 0x7F
        if free:
            for c in node.clusters:
                self.set_bit(c, False)

    def add_guid(self, d: ExfatNode, guid: uuidlib.UUID) -> None:
        e = bytearray(32)
        e[0] = 0xA0
        e[6:22] = guid.bytes_le
        self._write_set(d, [e])

    def fix_boot_checksum(self, base: int = 0) -> None:
        region = bytes(self.buf[base : base + 12 * self.ss])
        c = exfat_boot_checksum(region, self.ss)
        self.buf[base + 11 * self.ss : base + 12 * self.ss] = struct.pack("<I", c) * (self.ss // 4)

    def image(self) -> bytes:
        return bytes(self.buf)


# --- independent readers (The Sleuth Kit) --------------------------------------------------


@dataclass
class FlsRow:
    """One line of ``fls -r -p``: name type (r, d, -), deleted marker, inode, path."""

    type: str
    deleted: bool
    inode: int
    path: str


TSK_SPECIAL = (
    "$MBR",
    "$FAT1",
    "$FAT2",
    "$OrphanFiles",
    "$ALLOC_BITMAP",
    "$UPCASE_TABLE",
    "$VOLUME_GUID",
    "$EMPTY_VOLUME_LABEL",
)


def fls(path, offset: int = 0) -> list[FlsRow]:
    """``fls -r -p`` rows, without TSK's virtual files, orphans and volume-label entries."""
    cmd = ["fls", "-r", "-p"] + (["-o", str(offset)] if offset else []) + [str(path)]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8")
    rows = []
    for r in fls_lines(out):
        p = r["path"]
        if p.split("/", 1)[0] in TSK_SPECIAL or p.endswith("(Volume Label Entry)"):
            continue
        rows.append(FlsRow(r["dtype"], r["deleted"], r["inode"], p))
    return rows


def icat(path, inode: int, offset: int = 0) -> bytes:
    """``icat`` of an inode (deleted ones too: TSK's recovery)."""
    cmd = ["icat"] + (["-o", str(offset)] if offset else []) + [str(path), str(inode)]
    return subprocess.run(cmd, capture_output=True, check=True).stdout
