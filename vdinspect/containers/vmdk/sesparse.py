"""ESXi space-efficient sparse extents (seSparse), read-only.

VMware has not published this layout; the facts come from QEMU's block/vmdk.c (which reads
it with strict checks). A constant header and a volatile header (512 bytes each), then a
journal, a grain directory of 64-bit entries, grain tables of 4096 64-bit entries, a free
bitmap, a back map and the grains. A grain directory entry is 0 (no table) or
``0x10000000 << 32 | table index``. A grain table entry's top nibble is its type:
0 unallocated, 1 SCSI-unmapped and 2 zero (both read as zeros), 3 allocated (the grain index
is split across the other bits).
"""

from __future__ import annotations

from ...errors import CorruptImage, UnsupportedFeature
from ...lazy import SetBy, np
from ..base import structure_row
from ..runs import S_DAMAGED, S_DATA, S_UNALLOC, S_ZERO
from .extent import MAX_GD_ENTRIES, GrainTableExtent
from .structs import (
    SECTOR,
    SESPARSE_CONST_MAGIC,
    SESPARSE_GDE_ALLOCATED,
    SESPARSE_GTE_ALLOCATED,
    SESPARSE_GTE_UNALLOCATED,
    SESPARSE_GTE_UNMAPPED,
    SESPARSE_GTE_ZERO,
    SESPARSE_VERSION,
    SESPARSE_VOLATILE_MAGIC,
    SESparseConstHeader,
    SESparseVolatileHeader,
)

SESPARSE_MAGIC_BYTES = SESPARSE_CONST_MAGIC.to_bytes(8, "little")


def probe_sesparse(head: bytes) -> bool:
    """The constant header's magic and version."""
    return (
        len(head) >= 16
        and head[:8] == SESPARSE_MAGIC_BYTES
        and int.from_bytes(head[8:16], "little") == SESPARSE_VERSION
    )


class SeSparseExtent(GrainTableExtent):
    """An seSparse extent; ``header`` is the constant header, ``volatile`` the other."""

    kind = "SESPARSE"
    entry_size = 8

    def __init__(self, image, index, line, start, size, path, source) -> None:
        super().__init__(image, index, line, start, size or 0, path, source)
        fsize = source.size
        if fsize < 2 * SECTOR:
            self.fail(
                CorruptImage,
                f"file is {fsize} bytes, too short for seSparse headers",
                "seSparse const header",
                0,
            )
        h = SESparseConstHeader.parse(source.read(0, SECTOR))
        if h.magic != SESPARSE_CONST_MAGIC:
            self.fail(
                CorruptImage, f"bad const header magic {h.magic:#x}", "seSparse const header", 0
            )
        if h.version != SESPARSE_VERSION:
            self.fail(
                UnsupportedFeature,
                f"seSparse version {h.version:#018x}",
                "seSparse const header.version",
                8,
            )
        if h.grain_size != 8 or h.grain_table_size != 64:
            self.fail(
                UnsupportedFeature,
                f"grain size {h.grain_size} / grain table size {h.grain_table_size} "
                "sectors (only 8 / 64 are known)",
                "seSparse const header",
                24,
            )
        if h.flags:
            self.fail(
                UnsupportedFeature,
                f"seSparse flags {h.flags:#x}",
                "seSparse const header.flags",
                40,
            )
        self.header = h
        voff = h.volatile_header_offset * SECTOR
        if voff < SECTOR or voff + SECTOR > fsize:
            self.fail(
                CorruptImage, "volatile header outside the file", "seSparse volatile header", voff
            )
        v = SESparseVolatileHeader.parse(source.read(voff, SECTOR))
        if v.magic != SESPARSE_VOLATILE_MAGIC:
            self.fail(
                CorruptImage,
                f"bad volatile header magic {v.magic:#x}",
                "seSparse volatile header",
                voff,
            )
        self.volatile = v
        if v.replay_journal:
            msg = "the journal must be replayed (the extent is dirty); read without it"
            if image.strict:
                self.fail(
                    UnsupportedFeature, msg, "seSparse volatile header.replay_journal", voff + 24
                )
            self.finding("error", "seSparse volatile header.replay_journal", voff + 24, msg)
        for name, at in (
            ("grain_dir_offset", 128),
            ("grain_tables_offset", 144),
            ("grains_offset", 192),
        ):
            if h[name] * SECTOR > fsize:
                self.fail(
                    CorruptImage,
                    f"{name} {h[name]:#x} sectors is past the end of the file",
                    f"seSparse const header.{name}",
                    at,
                )
        self.grain_bytes = h.grain_size * SECTOR
        self.gt_entries = h.grain_table_size * SECTOR // 8
        self.gt_bytes = h.grain_table_size * SECTOR
        self.capacity = h.capacity * SECTOR
        if h.capacity >= 1 << 54:
            self.fail(
                CorruptImage,
                f"capacity {h.capacity} sectors is absurd",
                "seSparse const header.capacity",
                16,
            )
        if not size:
            self.size = self.capacity
        need = -(-h.capacity // (self.gt_entries * h.grain_size))
        n = h.grain_dir_size * SECTOR // 8
        self.gd_offset = h.grain_dir_offset * SECTOR
        if n > MAX_GD_ENTRIES:
            self.fail(
                CorruptImage,
                f"grain directory of {n} entries is absurd",
                "seSparse const header.grain_dir_size",
                136,
            )
        if n < need:
            self.fail(
                CorruptImage,
                f"grain directory has {n} entries, {need} needed",
                "seSparse const header.grain_dir_size",
                136,
            )
        if self.gd_offset < 2 * SECTOR or self.gd_offset + 8 * n > fsize:
            self.fail(
                CorruptImage,
                f"grain directory of {n} entries is not inside the file",
                "grain directory",
                self.gd_offset,
            )
        # read at open (a short file fails here), decoded on first use (no findings)
        self._gd_bytes = source.read(self.gd_offset, 8 * n)
        self.grains_offset = h.grains_offset * SECTOR
        self._init_tables()

    #: the grain directory's raw entries, and each grain table's host offset (0: none, -1:
    #: not an allocated entry or outside the file), decoded when first used
    gd_raw = SetBy("_decode_gd")
    gd = SetBy("_decode_gd")

    def _decode_gd(self) -> None:
        h = self.header
        raw = np.frombuffer(self._gd_bytes, dtype="<u8")
        self.gd_raw = raw
        alloc = (raw >> np.uint64(32)) == np.uint64(SESPARSE_GDE_ALLOCATED)
        index = (raw & np.uint64(0xFFFFFFFF)).astype(np.int64)
        off = (h.grain_tables_offset + index * h.grain_table_size) * SECTOR
        ok = alloc & (off + self.gt_bytes <= self.source.size)
        self.gd = np.where(raw == 0, 0, np.where(ok, off, -1)).astype(np.int64)

    def gd_entry_offset(self, i: int) -> int | None:
        """Host offset of grain directory entry ``i``."""
        return self.gd_offset + 8 * i

    def _read_gt(self, i: int, raw: bytes | None = None) -> np.ndarray:
        if raw is None:
            raw = self.source.read(int(self.gd[i]), self.gt_bytes)
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def _decode(self, i: int, e: np.ndarray):
        kind = (e >> np.uint64(60)).astype(np.int8)
        state = np.full(len(e), S_DAMAGED, dtype=np.int8)
        state[(kind == SESPARSE_GTE_UNALLOCATED) & (e == 0)] = S_UNALLOC
        state[(kind == SESPARSE_GTE_UNMAPPED) | (kind == SESPARSE_GTE_ZERO)] = S_ZERO
        grain = ((e & np.uint64(0x0FFF000000000000)) >> np.uint64(48)) | (
            (e & np.uint64(0x0000FFFFFFFFFFFF)) << np.uint64(12)
        )
        host = self.grains_offset + grain.astype(np.int64) * self.grain_bytes
        allocated = kind == SESPARSE_GTE_ALLOCATED
        state[allocated] = S_DATA
        state[allocated & ((host >= self.source.size) | (host < 0))] = S_DAMAGED
        host[~allocated] = 0
        return state, host, np.zeros(len(e), dtype=np.int64)

    def bad_entry_message(self, i: int, k: int) -> str:
        """Why entry ``k`` of grain table ``i`` cannot be used."""
        e = int(self._read_gt(i)[k])
        return f"grain table {i} entry {k} = {e:#018x} is invalid or points past the end of file"

    def structure_rows(self) -> list[dict]:
        """Headers, journal, grain directory and tables, bitmaps, data."""
        h, p = self.header, self.path
        rows = [
            structure_row(
                "seSparse const header",
                p,
                0,
                SECTOR,
                f"seSparse, {h.capacity} sectors, grain {h.grain_size} sectors",
            ),
            structure_row(
                "seSparse volatile header",
                p,
                h.volatile_header_offset * SECTOR,
                h.volatile_header_size * SECTOR,
                "free grain table, journal state",
            ),
        ]
        for name, off, size in (
            ("journal header", h.journal_header_offset, h.journal_header_size),
            ("journal", h.journal_offset, h.journal_size),
            ("grain directory", h.grain_dir_offset, h.grain_dir_size),
            ("free bitmap", h.free_bitmap_offset, h.free_bitmap_size),
            ("back map", h.backmap_offset, h.backmap_size),
        ):
            if size:
                rows.append(structure_row(name, p, off * SECTOR, size * SECTOR, f"{size} sectors"))
        return rows + self.grain_table_rows() + self.data_rows()

    def bad_gd_message(self, count: int, i: int) -> str:
        return (f"{count} grain directory entries are invalid or point outside the file "
                f"(first: entry {i} = {int(self.gd_raw[i]):#018x})")

    def check_rows(self) -> list[dict]:
        """Unusable GD entries, bad or shared grains."""
        rows = self.unusable_gd_rows()
        h = self.header
        meta = [
            (0, 2 * SECTOR, "headers"),
            (self.gd_offset, h.grain_dir_size * SECTOR, "grain directory"),
            (h.grain_tables_offset * SECTOR, h.grain_tables_size * SECTOR, "grain table area"),
        ]
        return rows + self.table_checks(meta)

    def info_fields(self) -> dict:
        """The extent's row in ``info()['extents']``."""
        d = super().info_fields()
        d.update(
            grain_size=self.grain_bytes,
            capacity=self.capacity,
            replay_journal=bool(self.volatile.replay_journal),
        )
        return d
