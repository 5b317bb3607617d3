"""What a VDI reports: structures() and check() (header, block map, leaks), as
``qemu-img check`` does."""

from __future__ import annotations

from ...findings import check_row
from ...lazy import np
from ..base import (
    data_structures,
    leak_rows,
    structure_row,
)
from .structs import (
    BLOCK_ZERO,
    FIXED,
    IMAGE_TYPE_NAMES,
    KNOWN_FLAGS,
    PREHEADER_SIZE,
    SECTOR,
    VERSION_0,
)


class VdiReport:
    """Mixin of :class:`~vdinspect.containers.vdi.VdiImage`: its reports."""

    def structure_rows(self) -> list[dict]:
        h, p = self.header, self.path
        v = self.version
        rows = [
            structure_row(
                "pre-header", p, 0, PREHEADER_SIZE,
                f"{self.banner!r}, signature 0xbeda107f, version "
                f"{v >> 16}.{v & 0xFFFF}",
            ),
            structure_row(
                "header", p, PREHEADER_SIZE, h.cbHeader,
                f"{IMAGE_TYPE_NAMES[self.image_type]} image, {h.cBlocks} blocks "
                f"of {h.cbBlock} bytes",
            ),
            structure_row(
                "block map", p, h.offBlocks, 4 * h.cBlocks,
                f"{h.cBlocks} entries, {self.allocated_blocks} blocks allocated",
            ),
        ]
        if self.block_extra:
            stored = (self.block_map < BLOCK_ZERO) & ~self._past_eof
            for i in np.flatnonzero(stored)[:4096].tolist():
                rows.append(
                    structure_row(
                        f"block {i} extra", p, self._host(i) - self.block_extra, self.block_extra,
                        "private data in front of the block",
                    )
                )
        rows += data_structures(self.runs(), unit="blocks")
        return rows

    def check_rows(self) -> list[dict]:
        """Findings like ``qemu-img check`` (block map), plus header and layout warnings."""
        rows = self.findings_rows()
        h = self.header
        off = h.offBlocks

        def add(severity, structure, host_offset, message):
            r = check_row(severity, structure, host_offset, message)
            if r not in rows:
                rows.append(r)

        bm = self.block_map
        alloc = np.flatnonzero(bm < BLOCK_ZERO)
        for i, msg in self._bad_entries(100):
            add("error", "block map", off + 4 * i, msg)
        ok = alloc[bm[alloc] < h.cBlocks]
        order = np.argsort(bm[ok], kind="stable")
        srt = bm[ok][order]
        dup = np.flatnonzero(srt[1:] == srt[:-1]) + 1
        for k in dup[:100].tolist():
            i, first = int(ok[order[k]]), int(ok[order[k - 1]])
            add(
                "error",
                "block map",
                off + 4 * i,
                f"block {i} uses index {int(bm[i])}, also used by block {first}",
            )
        if len(ok) != h.cBlocksAllocated:
            add(
                "error",
                "header.cBlocksAllocated",
                self._at("cBlocksAllocated"),
                f"allocated blocks mismatch: the block map holds {len(ok)}, the header says "
                f"{h.cBlocksAllocated}",
            )
        for r in self._leak_rows(bm[alloc]):
            add(**r)
        if self.image_type == FIXED and len(ok) != h.cBlocks:
            add(
                "warning",
                "block map",
                off,
                f"fixed image with {len(ok)} of {h.cBlocks} blocks allocated",
            )
        for name, value in (("offBlocks", h.offBlocks), ("offData", h.offData)):
            if value % SECTOR and self.version != VERSION_0:  # version 0 packs them tight
                add(
                    "warning",
                    f"header.{name}",
                    self._at(name),
                    f"{name} {value:#x} is not sector-aligned",
                )
        if self.block_stride % SECTOR:
            add(
                "warning",
                "header.cbBlock",
                self._at("cbBlock"),
                f"blocks of {self.block_stride} bytes (with extra data) are not sector-aligned",
            )
        if h.fFlags & ~KNOWN_FLAGS:
            add(
                "warning",
                "header.fFlags",
                self._at("fFlags"),
                f"unknown image flags {h.fFlags & ~KNOWN_FLAGS:#x}",
            )
        for field in ("uuidCreate", "uuidModify"):
            if bytes(h[field]) == bytes(16):
                add("warning", f"header.{field}", self._at(field), f"{field} is all zeros")
        if not self.is_differencing and self.uuid_linkage is not None:
            add(
                "warning",
                "header.uuidLinkage",
                self._at("uuidLinkage"),
                f"a {self.subformat} image with a parent UUID ({self.uuid_linkage})",
            )
        lchs = h.LCHSGeometry
        if lchs is not None and lchs.cbSector != SECTOR:
            add(
                "warning",
                "header.LCHSGeometry",
                self._at("LCHSGeometry"),
                f"LCHS sector size {lchs.cbSector}, not 512",
            )
        return rows


    def _leak_rows(self, entries: np.ndarray, limit: int = 1000) -> list[dict]:
        """Slots of the data area (whole, or cut short by the end of the file) that no block
        map entry uses: one ``leak`` row each (QEMU's check counts no leaks for VDI)."""
        h, n, stride = self.header, self.file.size, self.block_stride
        if h.offData >= n:
            return []
        slots = -(-(n - h.offData) // stride)
        used = np.unique(entries[entries < slots]).astype(np.int64)
        starts = np.concatenate(([0], used + 1))
        ends = np.concatenate((used, [slots]))
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]

        def leaks():
            for a, b in zip(starts.tolist(), ends.tolist()):
                for slot in range(a, b):
                    at = h.offData + slot * stride
                    yield ("block", at, f"data block slot {slot} at {at:#x} is used by no "
                           "block map entry (leaked)")

        return leak_rows(leaks(), int((ends - starts).sum()), "block",
                         "leaked data block slots", limit)
