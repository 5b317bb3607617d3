"""Parallels / Virtuozzo expandable image (the ``.hds`` file inside a ``.hdd`` bundle).

Facts from QEMU's docs/interop/parallels.txt, checked against QEMU block/parallels.c and
block/parallels-ext.c and against images written by Parallels and Virtuozzo (ploop). All
integers are little-endian; a sector is 512 bytes.

A file is a 64-byte header, the block allocation table (BAT: one u32 per cluster) and the
data area. ``tracks`` is the cluster size in sectors. A BAT entry of 0 means the cluster was
never written (zeros, or the parent's data when the image is a snapshot delta); otherwise
it says where the cluster lies in the file: in sectors for "WithoutFreeSpace" images (v1),
in clusters for "WithouFreSpacExt" images (v2, so large files stay addressable).

``ext_off`` (sectors) may point to the one-cluster Format Extension: a magic, an MD5 of
the rest of the cluster, then feature sections; the dirty bitmap feature keeps a bitmap
(one bit per ``granularity`` sectors, least significant bit first) in clusters named by an
L1 table of sector offsets (0 = all clear, 1 = all set).

The "plain" Parallels image (a raw file described by a DiskDescriptor.xml) is raw data and
is read by the raw reader; a snapshot delta is an expandable image opened with ``parent``.
"""

from __future__ import annotations

import hashlib
import os
import uuid as uuidlib

import numpy as np
from construct import Bytes, Int32ul, Int64ul, Struct

from ..errors import CorruptImage, NotRecognized, UnsupportedFeature
from ..io import ByteSource
from .base import (
    DAMAGED,
    DATA,
    UNALLOCATED,
    Image,
    ParentHint,
    Run,
    data_structures,
    leak_rows,
    misplaced,
)

FORMAT = "parallels"
MAGIC_V1 = b"WithoutFreeSpace"  # BAT in sectors, 32-bit sector count
MAGIC_V2 = b"WithouFreSpacExt"  # BAT in clusters, 64-bit sector count
HEADER_VERSION = 2
HEADER_SIZE = 64
SECTOR = 512
INUSE_OPEN = 0x746F6E59  # "Ynot": opened read/write and not closed (dirty)
INUSE_CLOSED = 0x312E3276  # "v2.1": closed cleanly
FLAG_EMPTY = 1 << 0  # "the image should be considered clear"
MAX_TRACKS = 0x7FFFFFFF // 513  # QEMU's limit on the cluster size, sectors
MAX_BAT_ENTRIES = 0x7FFFFFFF // 4  # QEMU's limit on the BAT ("catalog too large")
MAX_SECTORS = (1 << 63) // SECTOR - 1  # byte offsets must fit in int64

EXT_MAGIC = 0xAB234CEF23DCEA87
FEATURE_END = 0x0000000000000000
FEATURE_DIRTY_BITMAP = 0x20385FAE252CB34A
FEATURE_NAMES = {FEATURE_END: "end of features", FEATURE_DIRTY_BITMAP: "dirty bitmap"}
FEATURE_NECESSARY, FEATURE_TRANSIT = 1 << 0, 1 << 1

# --- on-disk structures ----------------------------------------------------------------

ParallelsHeader = Struct(
    "magic" / Bytes(16) * '"WithoutFreeSpace" (v1) or "WithouFreSpacExt" (v2)',
    "version" / Int32ul * "2",
    "heads" / Int32ul * "disk geometry for the guest: heads",
    "cylinders" / Int32ul * "disk geometry for the guest: cylinders",
    "tracks" / Int32ul * "cluster size, sectors",
    "bat_entries" / Int32ul * "entries in the BAT: disk size in clusters",
    "nb_sectors" / Int64ul * "disk size, sectors (v1: only the low 32 bits count)",
    "inuse" / Int32ul * "0x746F6E59 open, 0x312e3276 closed, 0 old software",
    "data_off" / Int32ul * "start of the data area, sectors (v1: 0 = right after the BAT)",
    "flags" / Int32ul * "bit 0: empty image",
    "ext_off" / Int64ul * "Format Extension cluster, sectors (0 = none)",
)  # 64 bytes; the BAT follows

FormatExtensionHeader = Struct(
    "magic" / Int64ul * "0xAB234CEF23DCEA87",
    "check_sum" / Bytes(16) * "MD5 of the rest of the extension cluster (from byte 24)",
)  # 24 bytes, then feature sections

FeatureHeader = Struct(
    "magic" / Int64ul * "feature: 0 end of features, 0x20385FAE252CB34A dirty bitmap",
    "flags" / Int64ul * "bit 0 NECESSARY, bit 1 TRANSIT",
    "data_size" / Int32ul * "bytes of feature data that follow",
    "unused32" / Int32ul * "alignment",
)  # 24 bytes, then data, padded to 8

DirtyBitmapFeature = Struct(
    "size" / Int64ul * "bitmap size: the disk size in sectors",
    "id" / Bytes(16) * "UUID for backup consistency checking",
    "granularity" / Int32ul * "sectors per bit (a power of two)",
    "l1_size" / Int32ul * "entries in the L1 table",
)  # 32 bytes, then l1_size u64 L1 entries: sector offsets of bitmap clusters (0/1 = all clear/set)

#: The BAT: ``bat_entries`` little-endian u32 (numpy dtype).
BAT_ENTRY = "<u4"


def probe(head: bytes) -> bool:
    """Expandable images start with one of the two magics and version 2 (as QEMU probes;
    20 bytes suffice, so a file cut inside its header is still ours and refused as such)."""
    return (
        len(head) >= 20
        and head[:16] in (MAGIC_V1, MAGIC_V2)
        and int.from_bytes(head[16:20], "little") == HEADER_VERSION
    )


def parse_header(data: bytes):
    """The 64-byte header (a construct Container) from a file's first bytes."""
    if len(data) < HEADER_SIZE:
        raise CorruptImage(
            f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte header",
            structure="header",
            offset=0,
        )
    return ParallelsHeader.parse(data[:HEADER_SIZE])


def _ranges(idx: np.ndarray) -> list[tuple[int, int]]:
    """Sorted indexes as inclusive (first, last) ranges."""
    if not len(idx):
        return []
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    firsts = np.concatenate(([idx[0]], idx[cut]))
    lasts = np.concatenate((idx[cut - 1], [idx[-1]]))
    return list(zip(firsts.tolist(), lasts.tolist()))


class DirtyBitmap:
    """A dirty bitmap from the Format Extension (``.raw`` keeps the parsed feature)."""

    def __init__(self, image: ParallelsImage, raw, l1: np.ndarray, host_offset: int) -> None:
        self.image = image
        self.raw = raw
        self.l1 = l1
        self.host_offset = host_offset  # of the feature data
        self.id = str(uuidlib.UUID(bytes=bytes(raw.id)))
        self.granularity = raw.granularity * SECTOR  # bytes of disk per bit
        self.bits = -(-raw.size * SECTOR // self.granularity) if raw.granularity else 0
        self._dirty: list[tuple[int, int]] | None = None

    @property
    def data_clusters(self) -> list[int]:
        """Host offsets of the clusters holding bitmap data (those inside the file)."""
        limit = self.image.file.size - self.image.cluster_size
        return [e * SECTOR for e in self.l1.tolist() if 1 < e and e * SECTOR <= limit]

    def dirty(self) -> list[tuple[int, int]]:
        """Dirty granules as inclusive (first, last) index ranges (units of ``granularity``)."""
        if self._dirty is None:
            self._dirty = self._read()
        return self._dirty

    def _read(self) -> list[tuple[int, int]]:
        img = self.image
        cs = img.cluster_size
        per = cs * 8  # bits per bitmap cluster
        out: list[tuple[int, int]] = []
        for k, e in enumerate(self.l1.tolist()):
            base = k * per
            n = min(per, self.bits - base)
            if n <= 0:
                break
            if e == 0:
                continue
            if e == 1:
                got = [(base, base + n - 1)]
            else:
                off = e * SECTOR
                if off + cs > img.file.size:
                    continue  # reported when the extension was read
                bits = np.unpackbits(
                    np.frombuffer(img.file.read(off, cs), dtype=np.uint8), bitorder="little"
                )[:n]
                got = [(a + base, b + base) for a, b in _ranges(np.flatnonzero(bits))]
            for a, b in got:
                if out and out[-1][1] + 1 == a:
                    out[-1] = (out[-1][0], b)
                else:
                    out.append((a, b))
        return out

    @property
    def dirty_bytes(self) -> int:
        return sum(b - a + 1 for a, b in self.dirty()) * self.granularity

    def as_dict(self) -> dict:
        return dict(
            id=self.id,
            granularity=self.granularity,
            size=self.raw.size * SECTOR,
            l1_size=self.raw.l1_size,
            dirty_clusters=", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in self.dirty()),
            dirty_bytes=self.dirty_bytes,
        )

    def __repr__(self) -> str:
        return f"<parallels DirtyBitmap {self.id} granularity={self.granularity}>"


class ParallelsImage(Image):
    """A Parallels expandable image; ``parent`` names the image below a snapshot delta."""

    format = FORMAT

    def __init__(
        self,
        source: ByteSource,
        *,
        path: str | None = None,
        strict: bool = True,
        parent: str | os.PathLike | Image | None = None,
        parent_format: str | None = None,
    ) -> None:
        super().__init__(source, path=path, strict=strict)
        if isinstance(parent, Image):
            self.parent_image: Image | None = parent
            parent = parent.path
        else:
            self.parent_image = None
        self.parent_path = None if parent is None else os.fspath(parent)
        self.parent_format = parent_format
        self.extension = None
        self.features: list[dict] = []
        self.bitmaps: list[DirtyBitmap] = []
        self._read_header()
        self._read_bat()
        if self.header.ext_off:
            self._read_extension()
        self._place_clusters()

    # --- header and BAT --------------------------------------------------------------

    def _problem(self, message: str, structure: str, offset: int | None) -> None:
        """CorruptImage when strict; a finding (and carry on) in salvage mode."""
        if self.strict:
            self.fail(CorruptImage, message, structure, offset)
        self.finding("error", structure, offset, message)

    def _read_header(self) -> None:
        f = self.file
        if f.size < HEADER_SIZE:
            self.fail(CorruptImage, f"file is {f.size} bytes, shorter than the header", "header", 0)
        h = parse_header(f.read(0, HEADER_SIZE))
        if h.magic not in (MAGIC_V1, MAGIC_V2):
            self.fail(NotRecognized, f"magic {h.magic!r} is not a Parallels magic", "header", 0)
        if h.version != HEADER_VERSION:
            self.fail(UnsupportedFeature, f"header version {h.version} (only 2 is known)", "header.version", 16)
        if h.tracks == 0:
            self.fail(CorruptImage, "zero sectors per track (tracks = 0): the cluster size is zero", "header.tracks", 28)
        if h.tracks > MAX_TRACKS:
            self.fail(CorruptImage, f"cluster of {h.tracks} sectors is too big (at most {MAX_TRACKS})", "header.tracks", 28)
        if h.bat_entries > MAX_BAT_ENTRIES:
            self.fail(CorruptImage, f"catalog too large: {h.bat_entries} BAT entries (at most {MAX_BAT_ENTRIES})", "header.bat_entries", 32)
        self.header = h
        self.ext_format = h.magic == MAGIC_V2
        self.version_name = "v2 (WithouFreSpacExt)" if self.ext_format else "v1 (WithoutFreeSpace)"
        self.tracks = h.tracks
        self.cluster_size = h.tracks * SECTOR
        self.off_multiplier = h.tracks if self.ext_format else 1  # BAT unit, sectors
        nb = h.nb_sectors if self.ext_format else h.nb_sectors & 0xFFFFFFFF
        if nb > MAX_SECTORS:
            self.fail(CorruptImage, f"disk of {nb} sectors is absurdly large", "header.nb_sectors", 36)
        self.nb_sectors = nb
        self.size = nb * SECTOR
        self.subformat = "expandable v2" if self.ext_format else "expandable v1"
        # where the data area starts (QEMU's parallels_test_data_off)
        bat_end = HEADER_SIZE + 4 * h.bat_entries
        min_off = -(-bat_end // SECTOR)
        if self.ext_format:
            min_off = -(-min_off // h.tracks) * h.tracks
        self.data_off_ok = (h.data_off == 0 and not self.ext_format) or (
            min_off <= h.data_off <= f.size // SECTOR
        )
        self.data_start = (h.data_off if self.data_off_ok and h.data_off else min_off) * SECTOR
        if bat_end > f.size:
            self.problem("BAT", HEADER_SIZE, f"BAT of {h.bat_entries} entries ({4 * h.bat_entries} bytes) runs past the end "
                f"of the file ({f.size} bytes)")

    def _read_bat(self) -> None:
        h, n, cs = self.header, self.file.size, self.cluster_size
        have = max(0, min(h.bat_entries, (n - HEADER_SIZE) // 4))
        self.bat_truncated = have < h.bat_entries
        raw = self.file.read(HEADER_SIZE, have * 4) if have else b""
        self.bat = np.frombuffer(raw, dtype=BAT_ENTRY)
        self.bat_hosts = self.bat.astype(np.int64) * (self.off_multiplier * SECTOR)
        used = np.flatnonzero(self.bat)
        i64 = used.astype(np.int64)
        need = np.where(i64 * cs < self.size, np.minimum(cs, self.size - i64 * cs), cs)
        past = used[self.bat_hosts[used] + need > n]
        self._past_eof = np.zeros(len(self.bat), dtype=bool)
        self._past_eof[past] = True
        # of those, the clusters that start inside the file (read up to its end)
        self._partial = np.zeros(len(self.bat), dtype=bool)
        self._partial[past[self.bat_hosts[past] < n]] = True
        if self.strict and len(past):
            i = int(past[0])
            self.fail(CorruptImage, f"BAT entry {i} puts cluster {i} at {int(self.bat_hosts[i]):#x}, past the end "
                f"of the file ({n} bytes)"
                + (f"; {len(past)} such entries" if len(past) > 1 else ""), "BAT", HEADER_SIZE + 4 * i)
        # salvage mode: those clusters read as damaged; check() lists them
        self._misplaced = np.zeros(len(self.bat), dtype=bool)

    def _place_clusters(self) -> None:
        """Clusters at an impossible place: before the data area (over the header or the
        BAT), over the format extension or a dirty bitmap's data, or over a cluster placed
        before them in the file (cross-linked: the first keeps it). They read as damaged, so
        the clusters read are disjoint stretches of the file and a small file cannot stand
        for millions of runs; check() lists them; strict mode refuses the image."""
        cs = self.cluster_size
        used = np.flatnonzero((self.bat != 0) & (~self._past_eof | self._partial))
        hosts = self.bat_hosts[used]
        meta = [(f"before the data area ({self.data_start:#x})", 0, self.data_start)]
        if self.extension is not None:
            meta.append(("over the format extension", self.header.ext_off * SECTOR,
                         self.header.ext_off * SECTOR + cs))
        for bm in self.bitmaps:
            meta += [(f"over the dirty bitmap {bm.id} data at {off:#x}", off, off + cs)
                     for off in bm.data_clusters]
        region, clash = misplaced(hosts, hosts + cs, [(a, b) for _, a, b in meta])
        bad = (region >= 0) | clash
        what = {}
        if bad.any():
            k = int(np.argmax(bad))
            what[int(used[k])] = (meta[int(region[k])][0] if region[k] >= 0
                                  else "over another cluster (duplicate offset)")
        self._misplaced[used[bad]] = True
        if what:
            i = min(what)
            count = int(bad.sum())
            if self.strict:
                self.fail(CorruptImage, f"BAT entry {i} puts cluster {i} at "
                          f"{int(self.bat_hosts[i]):#x}, {what[i]}: an impossible place"
                          + (f"; {count} such entries" if count > 1 else ""),
                          "BAT", HEADER_SIZE + 4 * i)
            # check() lists each entry; this row says what became of them
            self.finding("warning", "BAT", HEADER_SIZE,
                         f"{count} BAT {'entries put their clusters' if count > 1 else 'entry puts its cluster'}"
                         " at an impossible place (over the header, the BAT, the format "
                         "extension or another cluster): read as damaged")

    # --- format extension ------------------------------------------------------------
    def _read_extension(self) -> None:
        h, f, cs = self.header, self.file, self.cluster_size
        off = h.ext_off * SECTOR
        self.ext_offset = off
        where = "format extension"
        if off + cs > f.size or off < HEADER_SIZE:
            self.problem("header.ext_off", 56, f"format extension cluster at {off:#x} ({cs} bytes) lies outside the file "
                f"({f.size} bytes)")
            return
        cluster = f.read(off, cs)
        eh = FormatExtensionHeader.parse(cluster[:24])
        self.extension = eh
        self.extension_checksum_ok = hashlib.md5(cluster[24:], usedforsecurity=False).digest() == (
            eh.check_sum
        )
        if eh.magic != EXT_MAGIC:
            self.problem(where, off, f"format extension magic is {eh.magic:#018x}, not {EXT_MAGIC:#018x}")
            return
        if not self.extension_checksum_ok:
            self.problem(where, off + 8, "format extension checksum (MD5) does not match its contents")
        pos = 24
        while True:
            if pos + 24 > cs:
                self.problem(where, off + pos, "feature list runs to the end of the extension cluster without an end marker")
                return
            fh = FeatureHeader.parse(cluster[pos : pos + 24])
            at = off + pos
            if fh.data_size > cs - pos - 24:
                self.problem(where, at, f"feature {fh.magic:#018x} data ({fh.data_size} bytes) overruns the "
                    "extension cluster")
                return
            name = FEATURE_NAMES.get(fh.magic, "unknown")
            self.features.append(
                dict(
                    magic=fh.magic,
                    name=name,
                    flags=fh.flags,
                    host_offset=at,
                    length=24 + fh.data_size,
                )
            )
            if fh.magic == FEATURE_END:
                return
            data = cluster[pos + 24 : pos + 24 + fh.data_size]
            if fh.magic == FEATURE_DIRTY_BITMAP:
                self._read_bitmap(data, at + 24)
            else:
                self.finding(
                    "warning",
                    where,
                    at,
                    f"unknown feature {fh.magic:#018x} (flags {fh.flags:#x}) ignored",
                )
            pos += 24 + -(-fh.data_size // 8) * 8

    def _read_bitmap(self, data: bytes, at: int) -> None:
        cs, n = self.cluster_size, self.file.size
        what = "dirty bitmap"
        if len(data) < 32:
            self.problem(what, at, f"dirty bitmap feature of {len(data)} bytes (at least 32)")
            return
        raw = DirtyBitmapFeature.parse(data[:32])
        g = raw.granularity
        if g == 0 or g & (g - 1):
            self.problem(what, at + 24, f"bitmap granularity {g} sectors is not a power of two")
            return
        if raw.l1_size * 8 > len(data) - 32:
            self.problem(what, at + 28, f"L1 table of {raw.l1_size} entries exceeds the feature data")
            return
        if raw.size != self.nb_sectors:
            self.finding(
                "warning",
                what,
                at,
                f"bitmap size {raw.size} sectors differs from the disk's {self.nb_sectors}",
            )
        l1 = np.frombuffer(data[32 : 32 + 8 * raw.l1_size], dtype="<u8")
        bm = DirtyBitmap(self, raw, l1, at)
        words = -(-bm.bits // 64)
        want = -(-words * 8 // cs)
        if raw.l1_size != want:
            self.problem(what, at + 28, f"bitmap L1 table has {raw.l1_size} entries; {want} are needed for "
                f"{bm.bits} bits in {cs}-byte clusters")
        for k, e in enumerate(l1.tolist()):
            if e > 1 and e * SECTOR + cs > n:
                self.problem(what, at + 32 + 8 * k, f"bitmap L1 entry {k} puts a cluster at {e * SECTOR:#x}, past the end of "
                    f"the file ({n} bytes)")
        self.bitmaps.append(bm)

    # --- runs ------------------------------------------------------------------------
    def _runs(self, start: int, end: int):
        cs = self.cluster_size
        first, last = start // cs, -(-end // cs)
        stop = min(last, len(self.bat))
        if first < stop:
            e = self.bat[first:stop]
            host = self.bat_hosts[first:stop]
            alloc = e != 0
            bad = self._past_eof[first:stop] | self._misplaced[first:stop]
            partial = self._partial[first:stop] & ~self._misplaced[first:stop]
            brk = np.ones(len(e), dtype=bool)
            if len(e) > 1:
                same = (alloc[1:] == alloc[:-1]) & (bad[1:] == bad[:-1])
                cont = ~alloc[1:] | bad[1:] | (host[1:] == host[:-1] + cs)
                brk[1:] = ~(same & cont) | partial[1:] | partial[:-1]
            starts = np.flatnonzero(brk)
            stops = np.append(starts[1:], len(e))
            for a, b in zip(starts.tolist(), stops.tolist()):
                vs, ve = (first + a) * cs, (first + b) * cs
                if partial[a]:
                    yield from self._damaged_cluster(first + a)
                elif bad[a]:
                    yield Run(vs, ve - vs, DAMAGED)
                elif alloc[a]:
                    h = int(host[a])
                    yield Run(
                        vs, ve - vs, DATA, host_file=self.path, host_offset=h, source=self.file
                    )
                else:
                    yield Run(vs, ve - vs, UNALLOCATED)
        if stop < last:
            s = max(start, stop * cs)
            # past the BAT: unallocated when the BAT is just short of nb_sectors (QEMU reads
            # zeros or the parent), damaged when the file cut the BAT short
            yield Run(s, end - s, DAMAGED if self.bat_truncated else UNALLOCATED)

    def _damaged_cluster(self, i: int):
        cs, n = self.cluster_size, self.file.size
        host = int(self.bat_hosts[i])
        room = max(0, min(cs, n - host))
        if room:
            yield Run(i * cs, room, DATA, host_file=self.path, host_offset=host, source=self.file)
        yield Run(i * cs + room, cs - room, DAMAGED)

    # --- parents ---------------------------------------------------------------------
    @property
    def parent_hint(self) -> ParentHint | None:
        if self.parent_path is None:
            return None
        return ParentHint(path=self.parent_path, format=self.parent_format)

    # --- reports ---------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True when the header says the image was not closed correctly."""
        return self.header.inuse == INUSE_OPEN

    @property
    def allocated_clusters(self) -> int:
        return int(np.count_nonzero(self.bat))

    def flags(self) -> list[str]:
        out = []
        if self.dirty:
            out.append("in use (not closed correctly)")
        if self.header.flags & FLAG_EMPTY:
            out.append("empty image")
        return out

    def _inuse_name(self) -> str:
        v = self.header.inuse
        return {
            INUSE_OPEN: "open (not closed correctly)",
            INUSE_CLOSED: "closed",
            0: "none (written by software without Format Extension support)",
        }.get(v, f"invalid ({v:#010x})")

    def info_fields(self) -> dict:
        h = self.header
        out = dict(
            magic=h.magic.decode("latin-1"),
            version=self.version_name,
            heads=h.heads,
            cylinders=h.cylinders,
            tracks=h.tracks,
            bat_entries=h.bat_entries,
            nb_sectors=self.nb_sectors,
            in_use=self._inuse_name(),
            data_off=h.data_off,
            data_offset=self.data_start,
            header_flags=h.flags,
            ext_off=h.ext_off,
            allocated_clusters=self.allocated_clusters,
        )
        if h.ext_off:
            out.update(
                format_extension=self.extension is not None,
                extension_checksum_ok=getattr(self, "extension_checksum_ok", None),
                features=[f["name"] for f in self.features],
                bitmaps=[b.as_dict() for b in self.bitmaps],
            )
        if self.parent_path is not None:
            out["parent_file"] = self.parent_path
        return out

    def _image_end(self) -> int:
        """Where the last cluster the metadata uses ends (data, extension, bitmaps). A cluster
        cut short by the end of the file counts: its bytes in the file are read, not leaked
        (QEMU since 8.1 counts them as leaked, as its repair drops the entry)."""
        cs, n = self.cluster_size, self.file.size
        ok = (self.bat != 0) & (~self._past_eof | self._partial)
        end = int(self.bat_hosts[ok].max()) + cs if ok.any() else self.data_start
        if self.header.ext_off and self.header.ext_off * SECTOR + cs <= n:
            end = max(end, self.header.ext_off * SECTOR + cs)
        for bm in self.bitmaps:
            for off in bm.data_clusters:
                if off + cs <= n:
                    end = max(end, off + cs)
        return end

    def structures(self) -> list[dict]:
        h, p, cs = self.header, self.path, self.cluster_size
        rows = [
            dict(
                name="header",
                host_file=p,
                host_offset=0,
                length=HEADER_SIZE,
                description=f'"{h.magic.decode("latin-1")}": {h.bat_entries} clusters of '
                f"{cs} bytes",
            ),
            dict(
                name="BAT",
                host_file=p,
                host_offset=HEADER_SIZE,
                length=4 * h.bat_entries,
                description=f"{h.bat_entries} entries ({'clusters' if self.ext_format else 'sectors'}),"
                f" {self.allocated_clusters} clusters allocated",
            ),
        ]
        if self.extension is not None:
            rows.append(
                dict(
                    name="format extension",
                    host_file=p,
                    host_offset=h.ext_off * SECTOR,
                    length=cs,
                    description=", ".join(f["name"] for f in self.features) or "unreadable",
                )
            )
        for bm in self.bitmaps:
            dirty = bm.as_dict()["dirty_clusters"] or "none"
            rows.append(
                dict(
                    name=f"dirty bitmap {bm.id}",
                    host_file=p,
                    host_offset=bm.host_offset,
                    length=32 + 8 * bm.raw.l1_size,
                    description=f"feature and L1 table: {bm.granularity}-byte granules; dirty: "
                    + (dirty if len(dirty) <= 200 else dirty[:200] + "..."),
                )
            )
            for k, off in enumerate(bm.data_clusters):
                rows.append(
                    dict(
                        name=f"dirty bitmap {bm.id} data {k}",
                        host_file=p,
                        host_offset=off,
                        length=cs,
                        description=f"one bit per {bm.granularity} bytes of disk",
                    )
                )
        rows += data_structures(self.runs())
        return rows

    def check(self) -> list[dict]:
        """Findings like ``qemu-img check``: unclean, data_off, clusters outside the file,
        duplicates, leaks; plus the Format Extension's."""
        rows = self.findings_rows()
        h, n, cs = self.header, self.file.size, self.cluster_size

        def add(severity, structure, host_offset, message):
            r = dict(
                severity=severity, structure=structure, host_offset=host_offset, message=message
            )
            if r not in rows:
                rows.append(r)

        if self.dirty:
            add("error", "header.inuse", 44, "image was not closed correctly (in_use is set)")
        elif h.inuse not in (0, INUSE_CLOSED):
            add("warning", "header.inuse", 44, f"in_use is {h.inuse:#010x}, not a known value")
        if not self.data_off_ok:
            add(
                "error",
                "header.data_off",
                48,
                f"data_off field has incorrect value ({h.data_off} sectors; the data area "
                f"cannot start before sector {self.data_start // SECTOR} or past the file)",
            )
        if h.flags & FLAG_EMPTY:
            add(
                "warning",
                "header.flags",
                52,
                "empty-image flag set: Parallels treats the disk as clear; read here (as by "
                "QEMU) through the BAT",
            )
        if h.flags & ~FLAG_EMPTY:
            add("warning", "header.flags", 52, f"unknown header flags {h.flags & ~FLAG_EMPTY:#x}")
        if not self.ext_format and h.nb_sectors >> 32:
            add(
                "warning",
                "header.nb_sectors",
                36,
                f"high 32 bits of nb_sectors set in a v1 image ({h.nb_sectors:#x}); ignored",
            )
        if h.bat_entries * self.tracks < self.nb_sectors:
            add(
                "warning",
                "header.bat_entries",
                32,
                f"{h.bat_entries} BAT entries cover {h.bat_entries * cs} bytes of the "
                f"{self.size}-byte disk; the rest reads as unallocated",
            )
        used = np.flatnonzero(self.bat)
        hosts = self.bat_hosts[used]
        outside = used[hosts + cs > n]
        for i in outside[:100].tolist():
            add("error", "BAT", HEADER_SIZE + 4 * i, f"cluster {i} is outside image")
        low = used[(hosts < self.data_start) & (hosts + cs <= n)]
        for i in low[:100].tolist():
            add(
                "error",
                "BAT",
                HEADER_SIZE + 4 * i,
                f"cluster {i} at {int(self.bat_hosts[i]):#x} lies before the data area "
                f"({self.data_start:#x})",
            )
        odd = used[(hosts - self.data_start) % cs != 0]
        for i in odd[:100].tolist():
            add(
                "warning",
                "BAT",
                HEADER_SIZE + 4 * i,
                f"cluster {i} at {int(self.bat_hosts[i]):#x} is not cluster-aligned to the "
                "data area",
            )
        order = np.argsort(hosts, kind="stable")
        srt = hosts[order]
        for k in (np.flatnonzero(srt[1:] == srt[:-1]) + 1)[:100].tolist():
            i = int(used[order[k]])
            add("error", "BAT", HEADER_SIZE + 4 * i, f"duplicate offset in BAT entry {i}")
        meta = []
        if self.extension is not None:
            meta.append(("format extension", h.ext_off * SECTOR))
        for bm in self.bitmaps:
            meta += [(f"dirty bitmap {bm.id} data", off) for off in bm.data_clusters]
        for name, off in meta:
            hit = used[(hosts < off + cs) & (hosts + cs > off)]
            for i in hit[:16].tolist():
                add(
                    "error",
                    "BAT",
                    HEADER_SIZE + 4 * i,
                    f"cluster {i} at {int(self.bat_hosts[i]):#x} overlaps the {name} at {off:#x}",
                )
        end = self._image_end()
        if n > end:  # one row per cluster, as QEMU counts leaks
            count = -(-(n - end) // cs)
            leaks = ((("file", end + k * cs, f"space leaked at the end of the image {n - end} "
                       f"(cluster {k + 1} of {count} at {end + k * cs:#x})"))
                     for k in range(count))
            for r in leak_rows(leaks, count, "file", "leaked clusters"):
                add(**r)
        return rows


def open_image(
    source: ByteSource,
    *,
    path: str | None = None,
    strict: bool = True,
    parent: str | os.PathLike | Image | None = None,
    parent_format: str | None = None,
) -> ParallelsImage:
    return ParallelsImage(
        source, path=path, strict=strict, parent=parent, parent_format=parent_format
    )
