"""What a VHDX file holds, where (``structures()``), and what is wrong with it (``check()``):
bad checksums and fallbacks, the replayed log, bad or overlapping BAT entries."""

from __future__ import annotations

from ...findings import check_row
from ...lazy import np
from ..base import structure_row
from .bat import B_DAMAGED, B_DATA, B_PARTIAL
from .structs import (
    BAT_ENTRY_SIZE,
    HEADER_OFFSETS,
    HEADER_SECTION,
    HEADER_SIZE,
    METADATA_NAMES,
    METADATA_TABLE_SIZE,
    PAYLOAD_BLOCK_PARTIALLY_PRESENT,
    REGION_TABLE_OFFSETS,
    REGION_TABLE_SIZE,
    SB_BLOCK_NOT_PRESENT,
    SB_BLOCK_PRESENT,
    SECTOR_BITMAP_BLOCK,
    guid_str,
)

K = 1 << 10
MAX_OVERLAP_ROWS = 1000  # overlap findings listed per kind


class Reports:
    """Mixin of :class:`VhdxImage`: ``structures()`` and ``check()``."""

    def structure_rows(self) -> list[dict]:
        rows: list[dict] = []

        def row(name: str, off: int, length: int, desc: str) -> None:
            rows.append(structure_row(name, self.path, off, length, desc))

        row("file identifier", 0, 64 * K, f"vhdxfile, creator {self.creator!r}")
        # the two copies of the header and of the region table: which one is in use
        for name, offsets, size, current, other, valid, what in (
            ("header", HEADER_OFFSETS, HEADER_SIZE, self.current_header, "valid",
             self.header_valid, lambda i: f"sequence {self.headers[i].sequence_number}"),
            ("region table", REGION_TABLE_OFFSETS, REGION_TABLE_SIZE,
             self.current_region_table, "copy", self.region_tables_valid,
             lambda i: f"{len(self.regions)} entries"),
        ):
            for i, off in enumerate(offsets):
                state = ("current" if i == current else other) if valid[i] else "not valid"
                row(f"{name} {i + 1}", off, size, f"{what(i)}, {state}")
        h = self.header
        if h.log_length:
            if self.log_replay:
                what = f"{self.log_replay['entries']} entries replayed in memory"
            else:
                what = "LogGuid set, nothing to replay" if self.has_log else "empty"
            row("log", h.log_offset, h.log_length, what)
            for e in self.log_entries:
                row(
                    f"log entry {e.sequence_number}",
                    h.log_offset + e.log_offset,
                    e.length,
                    f"{len(e.descriptors)} descriptors",
                )
        mr = self.metadata_region
        row("metadata region", mr.file_offset, mr.length, f"{len(self.metadata_entries)} items")
        row(
            "metadata table",
            mr.file_offset,
            METADATA_TABLE_SIZE,
            f"{self.metadata_table.entry_count} entries",
        )
        for me in self.metadata_entries:
            name = METADATA_NAMES.get(me.item_id, f"item {guid_str(me.item_id)}")
            row(f"metadata: {name}", mr.file_offset + me.offset, me.length, f"flags {me.flags:#x}")
        row(
            "BAT",
            self.bat_region.file_offset,
            self.bat_entries * BAT_ENTRY_SIZE,
            f"{self.payload_blocks} payload blocks of {self.block_size} bytes, "
            f"chunk ratio {self.chunk_ratio}",
        )
        for c in np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT).tolist():
            row(
                f"sector bitmap block {c}",
                int(self.bitmap_offset[c]),
                SECTOR_BITMAP_BLOCK,
                f"sectors of payload blocks {c * self.chunk_ratio}..",
            )
        self._payload_rows(row)
        return rows

    def _payload_rows(self, row) -> None:
        """Rows of the payload blocks, coalesced into contiguous host ranges."""
        bs = self.block_size
        ks = np.flatnonzero((self.block_code == B_DATA) | (self.block_code == B_PARTIAL))
        if len(ks):
            offs = self.payload_offset[ks]
            order = np.argsort(offs, kind="stable")
            offs, ks = offs[order], ks[order]
            brk = np.ones(len(offs), dtype=bool)
            brk[1:] = offs[1:] != offs[:-1] + bs
            starts = np.flatnonzero(brk)
            stops = np.append(starts[1:], len(offs))
            for a, z in zip(starts.tolist(), stops.tolist()):
                row(
                    "payload blocks",
                    int(offs[a]),
                    (z - a) * bs,
                    f"{z - a} blocks from block {int(ks[a])}",
                )

    def check_rows(self) -> list[dict]:
        """Findings: bad checksums and fallbacks, the replayed log, bad or overlapping BAT
        entries."""
        rows = self.findings_rows()

        def add(sev, structure, off, msg):
            row = check_row(sev, structure, off, msg)
            if row not in rows:
                rows.append(row)

        if self.log_replay:
            r = self.log_replay
            spans = ", ".join(
                f"[{s:#x}, {e:#x}){' zero' if z else ''}" for s, e, z in r["ranges"][:20]
            )
            more = f" and {len(r['ranges']) - 20} more" if len(r["ranges"]) > 20 else ""
            add(
                "info",
                "log",
                self.header.log_offset,
                f"replayed {r['entries']} log entries (sequence {r['first_sequence']}.."
                f"{r['last_sequence']}: {r['data_sectors']} data sectors, {r['zero_ranges']} "
                f"zero ranges) in memory over file ranges {spans}{more}; the file is unchanged",
            )
        try:
            self._check_bat(add)
        except Exception as e:  # never raise from check()
            add("error", "BAT", self.bat_region.file_offset, f"BAT check failed: {e}")
        return rows

    def _check_bat(self, add) -> None:
        bs = self.block_size
        hsize = self.host.size
        st = self.payload_state
        off = self.payload_offset
        for k in np.flatnonzero(self.block_code == B_DAMAGED).tolist():
            add("error", "BAT", self.bat_entry_offset(k), self.block_problem(k))
        data = np.flatnonzero(self.block_code == B_DATA)
        short = data[(off[data] + bs > hsize) & (off[data] < hsize)]
        for k in short.tolist():
            add(
                "warning",
                "BAT",
                self.bat_entry_offset(k),
                f"payload block {k} at {int(off[k]):#x} is cut short by the end of the file; "
                "its tail reads as zeros",
            )
        if not self.has_parent:
            for k in np.flatnonzero(st == PAYLOAD_BLOCK_PARTIALLY_PRESENT).tolist():
                add(
                    "error",
                    "BAT",
                    self.bat_entry_offset(k),
                    f"payload block {k} is PARTIALLY_PRESENT in a file without a parent",
                )
            for c in np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT).tolist():
                add(
                    "warning",
                    "BAT",
                    self.bitmap_entry_offset(c),
                    f"sector bitmap block {c} is present in a file without a parent",
                )
        bad_sb = (self.bitmap_state != SB_BLOCK_NOT_PRESENT) & (
            self.bitmap_state != SB_BLOCK_PRESENT
        )
        for c in np.flatnonzero(bad_sb).tolist():
            add(
                "error",
                "BAT",
                self.bitmap_entry_offset(c),
                f"sector bitmap entry {c} has the reserved state {int(self.bitmap_state[c])}",
            )
        for c in np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT).tolist():
            o = int(self.bitmap_offset[c])
            if o < HEADER_SECTION or o + SECTOR_BITMAP_BLOCK > hsize:
                add(
                    "error",
                    "BAT",
                    self.bitmap_entry_offset(c),
                    f"sector bitmap block {c} at {o:#x} lies outside the file",
                )
        self._check_overlaps(add)

    def _check_overlaps(self, add) -> None:
        """Allocated blocks overlapping each other or the file's own regions."""
        hsize = self.host.size
        starts, lens, labels = self.allocated_spans()
        keep = starts < hsize
        starts, lens, labels = starts[keep], lens[keep], labels[keep]
        if not len(starts):
            return
        h = self.header
        fixed = [
            (0, HEADER_SECTION, "header section"),
            (self.bat_region.file_offset, self.bat_region.length, "BAT region"),
            (self.metadata_region.file_offset, self.metadata_region.length, "metadata region"),
        ]
        if h.log_length:
            fixed.append((h.log_offset, h.log_length, "log"))

        def name(label: int) -> str:
            return f"payload block {label}" if label >= 0 else f"sector bitmap block {-1 - label}"

        order = np.argsort(starts, kind="stable")
        ss, ee, ll = starts[order], starts[order] + lens[order], labels[order]
        running_end = np.maximum.accumulate(ee)
        over = np.flatnonzero(ss[1:] < running_end[:-1]) + 1
        for i in over[:MAX_OVERLAP_ROWS].tolist():
            add(
                "error",
                "BAT",
                int(ss[i]),
                f"{name(int(ll[i]))} at {int(ss[i]):#x} overlaps another block",
            )
        for fs, fn, fname in fixed:
            hit = np.flatnonzero((ss < fs + fn) & (ee > fs))
            for i in hit[:MAX_OVERLAP_ROWS].tolist():
                add(
                    "error",
                    "BAT",
                    int(ss[i]),
                    f"{name(int(ll[i]))} at {int(ss[i]):#x} overlaps the {fname}",
                )
