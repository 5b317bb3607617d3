"""ESX Server sparse extents ("COWD"): the vmfsSparse redo logs of ESX snapshots.

Facts from VMware's "Virtual Disk Format 1.1" technical note (ESX Server Sparse Extents),
cross-checked with QEMU's block/vmdk.c (``VMDK3Header``). A 2048-byte header; a grain
directory of ``numGDEntries`` 32-bit sector offsets of grain tables; every grain table has
4096 entries, each the sector offset of a grain (0 = not in this extent).
"""

from __future__ import annotations

from ...errors import CorruptImage
from ...findings import check_row
from ...layout import offset_of
from ...lazy import SetBy, np
from ..base import structure_row
from ..runs import S_DAMAGED, S_DATA, S_UNALLOC
from .extent import MAX_GD_ENTRIES, GrainTableExtent
from .structs import COWD_GT_ENTRIES, COWD_MAGIC, SECTOR, COWDChild, COWDHeader, COWDRoot

UNCLEAN_AT = offset_of(COWDHeader, "uncleanShutdown")  # 1648

MAX_GRAIN_SECTORS = 0x200000  # 1 GiB, QEMU's limit


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


class CowdExtent(GrainTableExtent):
    """A COWD sparse extent; ``header`` is the parsed 2048-byte header."""

    kind = "VMFSSPARSE"
    gt_entries = COWD_GT_ENTRIES
    gt_bytes = COWD_GT_ENTRIES * 4

    def __init__(self, image, index, line, start, size, path, source) -> None:
        super().__init__(image, index, line, start, size or 0, path, source)
        fsize = source.size
        if fsize < COWDHeader.sizeof():
            self.fail(
                CorruptImage,
                f"file is {fsize} bytes, shorter than the 2048-byte COWD header",
                "COWD header",
                0,
            )
        h = COWDHeader.parse(source.read(0, COWDHeader.sizeof()))
        if h.magicNumber != COWD_MAGIC:
            self.fail(CorruptImage, "bad magic (not 'COWD')", "COWD header", 0)
        self.header = h
        if not 1 <= h.grainSize <= MAX_GRAIN_SECTORS:
            self.fail(
                CorruptImage,
                f"grainSize {h.grainSize} sectors is absurd",
                "COWD header.grainSize",
                16,
            )
        self.grain_bytes = h.grainSize * SECTOR
        self.capacity = h.numSectors * SECTOR
        if not size:
            self.size = self.capacity
        need = -(-h.numSectors // (COWD_GT_ENTRIES * h.grainSize))
        n = h.numGDEntries
        if n > MAX_GD_ENTRIES:
            self.fail(CorruptImage, f"numGDEntries {n} is absurd", "COWD header.numGDEntries", 24)
        self.gd_offset = h.gdOffset * SECTOR
        if n < need:
            msg = f"numGDEntries {n} is too small: {need} grain tables cover {h.numSectors} sectors"
            if image.strict:
                self.fail(CorruptImage, msg, "COWD header.numGDEntries", 24)
            self.finding("error", "COWD header.numGDEntries", 24, msg)
        if self.gd_offset < COWDHeader.sizeof() and n or self.gd_offset + 4 * n > fsize:
            msg = (
                f"grain directory of {n} entries at {self.gd_offset:#x} is not inside the "
                f"file ({fsize} bytes)"
            )
            if image.strict:
                self.fail(CorruptImage, msg, "grain directory", self.gd_offset)
            self.finding("error", "grain directory", self.gd_offset, msg)
            self.gd = np.full(max(n, need), -1, dtype=np.int64)
        else:  # read at open (a short file fails here), decoded on first use (no findings)
            self._gd_bytes = source.read(self.gd_offset, 4 * n)
            self._gd_need = need
        self.gd_raw_count = n
        self._init_tables()

    #: host offset of each grain table (0: none, -1: outside the file), decoded when used
    gd = SetBy("_decode_gd")

    def _decode_gd(self) -> None:
        raw = np.frombuffer(self._gd_bytes, dtype="<u4").astype(np.int64)
        off = raw * SECTOR
        fsize = self.source.size
        ok = (raw == 0) | ((off >= COWDHeader.sizeof()) & (off + self.gt_bytes <= fsize))
        gd = np.where(ok, off, -1)
        if self._gd_need > len(raw):
            gd = np.concatenate([gd, np.full(self._gd_need - len(raw), -1, dtype=np.int64)])
        self.gd = gd

    def gd_entry_offset(self, i: int) -> int | None:
        """Host offset of grain directory entry ``i``."""
        return self.gd_offset + 4 * i if i < self.gd_raw_count else None

    def _read_gt(self, i: int, raw: bytes | None = None) -> np.ndarray:
        if raw is None:
            raw = self.source.read(int(self.gd[i]), self.gt_bytes)
        return np.frombuffer(raw, dtype="<u4").astype(np.uint64)

    def _decode(self, i: int, e: np.ndarray):
        host = e.astype(np.int64) * SECTOR
        state = np.full(len(e), S_DATA, dtype=np.int8)
        state[e == 0] = S_UNALLOC
        state[(e != 0) & (host >= self.source.size)] = S_DAMAGED
        host[state == S_UNALLOC] = 0
        return state, host, np.zeros(len(e), dtype=np.int64)

    @property
    def parent_file_name(self) -> str | None:
        """The parent name in the header's union (child redo logs), if it reads as one."""
        name = _cstr(COWDChild.parse(self.header.u).parentFileName)
        return name if name and name.isprintable() else None

    def structure_rows(self) -> list[dict]:
        """Header, grain directory, grain tables and data grains."""
        h, p = self.header, self.path
        rows = [
            structure_row(
                "COWD header",
                p,
                0,
                COWDHeader.sizeof(),
                f"ESX sparse, {h.numSectors} sectors, grain {h.grainSize} sectors",
            ),
            structure_row(
                "grain directory",
                p,
                self.gd_offset,
                4 * self.gd_raw_count,
                f"{self.gd_raw_count} entries",
            ),
        ]
        return rows + self.grain_table_rows() + self.data_rows()

    def check_rows(self) -> list[dict]:
        """Unclean shutdown, unusable GD entries, bad or shared grains."""
        rows = []
        if self.header.uncleanShutdown:
            rows.append(
                check_row(
                    "warning", "COWD header.uncleanShutdown", UNCLEAN_AT,
                    self.label + "unclean shutdown flag "
                    "set: the redo log was not closed cleanly",
                )
            )
        rows += self.unusable_gd_rows()
        meta = [
            (0, COWDHeader.sizeof(), "COWD header"),
            (self.gd_offset, 4 * self.gd_raw_count, "grain directory"),
        ]
        meta += [(int(o), self.gt_bytes, "grain table") for o in self.gd[self.gd > 0].tolist()]
        return rows + self.table_checks(meta)

    def info_fields(self) -> dict:
        """The extent's row in ``info()['extents']``, with the COWD header fields."""
        d = super().info_fields()
        h = self.header
        root = COWDRoot.parse(h.u[:12])
        d.update(
            cowd_version=h.version,
            cowd_flags=h.flags,
            grain_size=self.grain_bytes,
            capacity=self.capacity,
            generation=h.generation,
            name=_cstr(h.name),
            description=_cstr(h.description),
            unclean_shutdown=bool(h.uncleanShutdown),
            geometry=(root.cylinders, root.heads, root.sectors),
        )
        return d
