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
import struct
from functools import cached_property

from construct import Container

from ...errors import CorruptImage, NotRecognized, UnsupportedFeature
from ...io import ByteSource
from ...lazy import LazyArray, np
from ...units import is_pow2
from .. import readplan
from ..base import (
    DAMAGED,
    DATA,
    MAX_LIGHT_ENTRIES,
    UNALLOCATED,
    Image,
    ParentHint,
    Run,
    misplaced,
    ranges_sound,
    table_runs,
)
from ..runs import STATE_CODE, UNALLOCATED_CODE, unit_runs
from .bitmap import DirtyBitmap
from .check import ParallelsReport
from .structs import (
    BAT_ENTRY,
    EXT_MAGIC,
    FEATURE_DIRTY_BITMAP,
    FEATURE_END,
    FEATURE_NAMES,
    FLAG_EMPTY,
    FORMAT,
    HEADER_SIZE,
    HEADER_VERSION,
    INUSE_CLOSED,
    INUSE_OPEN,
    MAGIC_V1,
    MAGIC_V2,
    MAX_BAT_ENTRIES,
    MAX_SECTORS,
    MAX_TRACKS,
    SECTOR,
    DirtyBitmapFeature,
    FeatureHeader,
    FormatExtensionHeader,
    ParallelsHeader,
)


def parse_header(data: bytes) -> Container:
    """The 64-byte header (a construct Container) from a file's first bytes."""
    if len(data) < HEADER_SIZE:
        raise CorruptImage(
            f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte header",
            structure="header",
            offset=0,
        )
    return ParallelsHeader.parse(data[:HEADER_SIZE])


DATA_CODE, DAMAGED_CODE = STATE_CODE[DATA], STATE_CODE[DAMAGED]
#: run state code of a cluster's state in ``_runs``: bit 0 allocated, bit 1 bad
RUN_CODES = LazyArray(lambda: np.array([UNALLOCATED_CODE, DATA_CODE, DAMAGED_CODE, DAMAGED_CODE],
                                        dtype=np.int8))


#: read-plan piece kind of each cluster code of ``_plan_units``: data, free, damaged
PLAN_KINDS = [readplan.DATA, readplan.HOLE, readplan.SLOW]

class ParallelsImage(ParallelsReport, Image):
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
        self._allocated: int | None = None  # BAT entries in use, once counted
        self._read_header()
        hosts = self._read_bat()
        if self.header.ext_off:
            self._read_extension()
        if hosts is None or not ranges_sound(hosts, self.cluster_size, [
                (a, b) for _, a, b in self._metadata()], self.file.size):
            self._place_clusters()
        # else: the BAT is decoded on first use (``info`` needs none of it: no numpy)

    # --- header and BAT --------------------------------------------------------------

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

    def _read_bat(self) -> list[int] | None:
        """Read the BAT; the host offsets of its clusters when none runs past the end of
        the file and the table is small (checked without numpy), else None (checked here)."""
        h, n, cs = self.header, self.file.size, self.cluster_size
        have = max(0, min(h.bat_entries, (n - HEADER_SIZE) // 4))
        self.bat_truncated = have < h.bat_entries
        self._raw_bat = self.file.read(HEADER_SIZE, have * 4) if have else b""
        # without numpy: the host offsets of the used entries (None: too many to loop over)
        hosts = None
        if have <= MAX_LIGHT_ENTRIES:
            unit = self.off_multiplier * SECTOR
            hosts = [v * unit for v in struct.unpack(f"<{have}I", self._raw_bat) if v]
            self._allocated = len(hosts)
            if not hosts or max(hosts) + cs <= n:
                return hosts  # none past the end of the file: checked further by the caller
        self._check_bat()
        return None

    @cached_property
    def bat(self) -> np.ndarray:
        """The BAT (little-endian uint32 offsets, in units of ``off_multiplier`` sectors),
        decoded on first use."""
        return np.frombuffer(self._raw_bat, dtype=BAT_ENTRY)

    @cached_property
    def bat_hosts(self) -> np.ndarray:
        """Each BAT entry's host offset, bytes (0: unallocated)."""
        return self.bat.astype(np.int64) * (self.off_multiplier * SECTOR)

    # the masks _check_bat and _place_clusters set at open: for a sound BAT, none set
    @cached_property
    def _past_eof(self) -> np.ndarray:
        return np.zeros(len(self.bat), dtype=bool)

    @cached_property
    def _partial(self) -> np.ndarray:
        return np.zeros(len(self.bat), dtype=bool)

    @cached_property
    def _misplaced(self) -> np.ndarray:
        return np.zeros(len(self.bat), dtype=bool)

    def _check_bat(self) -> None:
        """Entries whose clusters run past the end of the file: raise when strict."""
        n, cs = self.file.size, self.cluster_size
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

    def _metadata(self) -> list[tuple[str, int, int]]:
        """Where no cluster may lie: (what, start, end) of the header and BAT, the format
        extension, the dirty bitmaps' data."""
        cs = self.cluster_size
        meta = [(f"before the data area ({self.data_start:#x})", 0, self.data_start)]
        if self.extension is not None:
            meta.append(("over the format extension", self.header.ext_off * SECTOR,
                         self.header.ext_off * SECTOR + cs))
        for bm in self.bitmaps:
            meta += [(f"over the dirty bitmap {bm.id} data at {off:#x}", off, off + cs)
                     for off in bm.data_clusters]
        return meta

    def _place_clusters(self) -> None:
        """Clusters at an impossible place: before the data area (over the header or the
        BAT), over the format extension or a dirty bitmap's data, or over a cluster placed
        before them in the file (cross-linked: the first keeps it). They read as damaged, so
        the clusters read are disjoint stretches of the file and a small file cannot stand
        for millions of runs; check() lists them; strict mode refuses the image."""
        cs = self.cluster_size
        used = np.flatnonzero((self.bat != 0) & (~self._past_eof | self._partial))
        hosts = self.bat_hosts[used]
        meta = self._metadata()
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
        if not is_pow2(g):
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
    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan: one BAT entry per cluster (damaged or cut-short clusters
        take the runs)."""
        state = self._plan_units()
        if -(-end // self.cluster_size) > len(state):
            return None
        return plan if readplan.plan_units(plan := [], PLAN_KINDS, state, self.bat_hosts, 0,
                                           self.cluster_size, start, end, self.file) else None

    def locate(self, offset: int, length: int) -> readplan.Located:
        """One BAT lookup for a read inside one cluster; else the plan decides."""
        i, within = divmod(offset, self.cluster_size)
        state = self._plan_units()
        if within + length > self.cluster_size or i >= len(state):
            return None
        return readplan.locate_unit(PLAN_KINDS, state, self.bat_hosts, i, within, length,
                                    self.file)

    def _plan_units(self) -> np.ndarray:
        """Each cluster's read-plan code (an index into PLAN_KINDS), made once from the BAT
        and the damage found at open."""
        state = self.__dict__.get("_plan_state")
        if state is None:
            state = np.where(self.bat == 0, 1, 0).astype(np.int8)
            state[self._past_eof | self._misplaced | self._partial] = 2
            self._plan_state = state
        return state

    def _runs(self, start: int, end: int):
        # past the BAT: unallocated when the BAT is just short of nb_sectors (QEMU reads
        # zeros or the parent), damaged when the file cut the BAT short
        return table_runs(start, end, self.cluster_size, len(self.bat), self._cluster_runs,
                          DAMAGED if self.bat_truncated else UNALLOCATED)

    def _cluster_runs(self, first: int, stop: int):
        """The runs of clusters ``first..stop-1`` (cut short by the end of the file, which
        makes them bad: one by one)."""
        host = self.bat_hosts[first:stop]
        alloc = self.bat[first:stop] != 0
        bad = self._past_eof[first:stop] | self._misplaced[first:stop]
        partial = self._partial[first:stop] & ~self._misplaced[first:stop]
        state = alloc.astype(np.int8) | bad.astype(np.int8) << 1  # 1: data in this file
        yield unit_runs(first, self.cluster_size, state, host, 1, RUN_CODES, partial,
                        [(self.path, self.file)], self._damaged_cluster)

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
        if self._allocated is None:
            self._allocated = int(np.count_nonzero(self.bat))
        return self._allocated

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

    TABLES = ((r"bat", "<u4", "describe_bat_entry"),)

    def describe_bat_entry(self, v: int) -> str:
        """What a BAT entry says: a cluster offset in the header's units, or nothing."""
        return f"cluster at offset unit {v}" if v else "unallocated cluster"

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
