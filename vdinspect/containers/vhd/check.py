"""What a VHD reports: structures() and check() (footers, the BAT, block placement,
leaks), as ``qemu-img check`` would."""

from __future__ import annotations

from ...findings import check_row
from ...lazy import np
from ..base import (
    leak_rows,
    structure_row,
    unused_spans,
)
from .structs import (
    BAT_UNUSED,
    DIFFERENCING,
    DYNAMIC_HEADER_SIZE,
    E_BLOCK,
    FEATURE_RESERVED,
    FIXED,
    FOOTER_SIZE,
    FORMAT_VERSION,
    HOST_OS,
    MAX_FINDINGS,
    NO_DATA_OFFSET,
    OLD_FOOTER_SIZE,
    PLATFORMS,
    SECTOR,
    type_code,
)


class VhdReport:
    """Mixin of :class:`~vdinspect.containers.vhd.VhdImage`: its reports."""

    def _metadata(self) -> list[tuple[str, int, int]]:
        """The file's own structures a block may not overlap: (name, start, end)."""
        meta = [("footer copy", 0, FOOTER_SIZE),
                ("dynamic disk header", self.dynamic_header_offset,
                 self.dynamic_header_offset + DYNAMIC_HEADER_SIZE),
                ("BAT", self.bat_offset, self.bat_offset + len(self._raw_bat))]
        if self.tail_footer is not None:
            meta.append(("footer", self.tail_footer[0], self.tail_footer[0] + self.tail_footer[1]))
        meta += [(f"parent locator {loc.platform}", loc.host_offset,
                  loc.host_offset + loc.raw.platform_data_length)
                 for loc in self.locators if loc.data is not None]
        return meta

    def structure_rows(self) -> list[dict]:
        p, f = self.path, self.footer
        rows = []

        def row(name, off, length, desc):
            if off >= self.file.size:  # metadata pointing past the end: check() reports it
                return
            rows.append(structure_row(name, p, off, length, desc))

        if self.disk_type == FIXED:
            row("data", 0, min(self.data_area, self.size), "the virtual disk, byte for byte")
        else:
            h = self.dynamic_header
            if self.footer_copy is not None:
                row("footer copy", 0, FOOTER_SIZE, "copy of the footer")
            row(
                "dynamic disk header",
                self.dynamic_header_offset,
                DYNAMIC_HEADER_SIZE,
                f'"cxsparse": {h.max_table_entries} blocks of {h.block_size} bytes',
            )
            for loc in self.locators:
                if loc.data is None:  # outside the file (check() says so)
                    continue
                row(
                    f"parent locator {loc.platform}",
                    loc.host_offset,
                    loc.space,
                    loc.path or PLATFORMS.get(loc.raw.platform_code, "unknown platform"),
                )
            n_bat = h.max_table_entries * 4
            row(
                "BAT",
                self.bat_offset,
                -(-n_bat // SECTOR) * SECTOR,
                f"{h.max_table_entries} entries, {self.allocated_blocks} blocks allocated",
            )
            # blocks at an impossible place are left out (check() lists them)
            for i in np.flatnonzero(self._entry_kind == E_BLOCK).tolist():
                base = int(self.bat[i]) * SECTOR
                row(
                    f"block {i} bitmap",
                    base,
                    self.bitmap_size,
                    f"sector bitmap of guest {i * self.block_size:#x}..",
                )
                row(
                    f"block {i} data",
                    base + self.bitmap_size,
                    self.block_size,
                    f"guest {i * self.block_size:#x}..",
                )
        if self.footer_from_copy:
            return rows
        row(
            "footer",
            self.footer_offset,
            self.footer_length,
            f"{self.subformat} disk, creator {type_code(f.creator_application)!r} on "
            f"{HOST_OS.get(f.creator_host_os, type_code(f.creator_host_os) or '?')}"
            + (" (511-byte footer)" if self.footer_length == OLD_FOOTER_SIZE else ""),
        )
        return rows

    def check_rows(self) -> list[dict]:
        """Findings: checksums, the footer copy, BAT entries past the end or overlapping,
        leaked blocks."""
        rows = self.findings_rows()
        seen = {tuple(r.values()) for r in rows}

        def add(severity, structure, host_offset, message):
            r = check_row(severity, structure, host_offset, message)
            if tuple(r.values()) not in seen:
                seen.add(tuple(r.values()))
                rows.append(r)

        f, fo = self.footer, self.footer_offset
        if f.file_format_version != FORMAT_VERSION:
            add(
                "warning",
                "footer.file_format_version",
                fo + 12,
                f"file format version {f.file_format_version:#010x}, not 0x00010000",
            )
        if not f.features & FEATURE_RESERVED:
            add("warning", "footer.features", fo + 8, "reserved feature bit 1 is not set")
        if self.footer_length == OLD_FOOTER_SIZE:
            add("info", "footer", fo, "511-byte footer (written by an old Virtual PC)")
        if f.saved_state:
            add(
                "info",
                "footer.saved_state",
                fo + 84,
                "the virtual machine was saved (hibernated) with this disk in use",
            )
        if self.disk_type == FIXED:
            if self.data_area != f.current_size:
                add(
                    "warning",
                    "data",
                    0,
                    f"the file holds {self.data_area} data bytes, "
                    f"current_size says {f.current_size}",
                )
            if f.data_offset != NO_DATA_OFFSET:
                add(
                    "warning",
                    "footer.data_offset",
                    fo + 16,
                    f"data offset of a fixed disk is {f.data_offset:#x}, not all ones",
                )
            return rows
        h = self.dynamic_header
        if h.header_version != FORMAT_VERSION:
            add(
                "warning",
                "dynamic disk header.header_version",
                self.dynamic_header_offset + 24,
                f"header version {h.header_version:#010x}, not 0x00010000",
            )
        # a BAT problem met while opening (same structure and offset) is listed once
        opened = {(r["severity"], r["structure"], r["host_offset"]) for r in self.findings}
        for r in self._check_layout():
            if (r["severity"], r["structure"], r["host_offset"]) not in opened:
                add(**r)
        if self.disk_type == DIFFERENCING and not self.parent_paths():
            add(
                "error",
                "dynamic disk header",
                self.dynamic_header_offset + 64,
                "differencing disk names no parent",
            )
        for r in self._leak_rows():
            add(**r)
        return rows

    def _leak_rows(self) -> list[dict]:
        """Blocks no BAT entry points to. A stretch of the file that no structure uses (footer
        and its copy, header, locators' reserved space, BAT in whole sectors, blocks) and
        that is at least one block long (sector bitmap + data) holds that many leaked
        blocks: one ``leak`` row each, the last taking the stretch's remainder. Shorter
        stretches are padding, not leaks: Virtual PC pads the BAT to 4 KiB, Hyper-V and
        Windows put the first block's data on a 4 KiB boundary, and a lost block leaves a
        whole block unused."""
        n, stride = self.file.size, self.bitmap_size + self.block_size
        ranges = [
            (self.dynamic_header_offset, self.dynamic_header_offset + DYNAMIC_HEADER_SIZE),
            (self.bat_offset, self.bat_offset + -(-len(self.bat) * 4 // SECTOR) * SECTOR),
        ]
        if self.footer_copy is not None:
            ranges.append((0, FOOTER_SIZE))
        if self.tail_footer is not None:
            ranges.append((self.tail_footer[0], self.tail_footer[0] + self.tail_footer[1]))
        ranges += [
            (loc.host_offset, loc.host_offset + loc.space)
            for loc in self.locators
            if loc.data is not None
        ]
        blocks = self.bat[self.bat != BAT_UNUSED].astype(np.int64) * SECTOR
        ranges = [(min(a, n), min(b, n)) for a, b in ranges]  # garbage offsets: past the file
        starts = np.concatenate([np.array([a for a, _ in ranges], dtype=np.int64), blocks])
        ends = np.concatenate([np.array([b for _, b in ranges], dtype=np.int64), blocks + stride])
        gaps = [(a, b) for a, b in unused_spans(starts, ends, 0, n) if b - a >= stride]
        total = sum((b - a) // stride for a, b in gaps)

        def leaks():
            for a, b in gaps:
                count = (b - a) // stride
                for k in range(count):
                    at = a + k * stride
                    size = stride if k < count - 1 else b - at
                    yield (
                        "block",
                        at,
                        f"{size} bytes at {at:#x} (room for a block: sector bitmap and "
                        f"{self.block_size} data bytes) are used by no BAT entry and no "
                        "structure (leaked)",
                    )

        return leak_rows(leaks(), total, "block", "leaked blocks")

    def _check_layout(self) -> list[dict]:
        """BAT entries past the end of the file, and host regions that overlap."""
        n, bs, bm = self.file.size, self.block_size, self.bitmap_size
        out = []
        used = np.flatnonzero(self.bat != BAT_UNUSED)
        starts = self.bat[used].astype(np.int64) * SECTOR
        ends = starts + bm + bs
        past = used[ends > n]
        for i, s in zip(past[:MAX_FINDINGS].tolist(), starts[ends > n][:MAX_FINDINGS].tolist()):
            out.append(
                check_row(
                    "error", "BAT", self.bat_offset + 4 * i,
                    f"BAT entry {i}: block at {s:#x} runs past the end of the file "
                    f"({n} bytes)",
                )
            )
        if len(past) > MAX_FINDINGS:
            out.append(
                check_row(
                    "error", "BAT", self.bat_offset,
                    f"{len(past) - MAX_FINDINGS} more BAT entries point past the end "
                    "of the file",
                )
            )
        meta = (
            []
            if self.footer_from_copy
            else [("footer", self.footer_offset, self.footer_offset + self.footer_length)]
        )
        meta += [
            (
                "dynamic disk header",
                self.dynamic_header_offset,
                self.dynamic_header_offset + DYNAMIC_HEADER_SIZE,
            ),
            ("BAT", self.bat_offset, self.bat_offset + len(self.bat) * 4),
        ]
        if self.footer_copy is not None:
            meta.append(("footer copy", 0, FOOTER_SIZE))
        for loc in self.locators:
            if loc.data is None:
                continue
            meta.append(
                (
                    f"parent locator {loc.platform}",
                    loc.host_offset,
                    loc.host_offset + loc.raw.platform_data_length,
                )
            )
        order = np.argsort(starts, kind="stable")
        s_sorted, e_sorted, idx = starts[order], ends[order], used[order]
        for name, a, b in meta:
            if b <= a:
                continue
            hit = np.flatnonzero((s_sorted < b) & (e_sorted > a))[:16]
            for k in hit.tolist():
                i = int(idx[k])
                out.append(
                    check_row(
                        "error", "BAT", self.bat_offset + 4 * i,
                        f"BAT entry {i}: block at {int(s_sorted[k]):#x} overlaps "
                        f"the {name} at {a:#x}",
                    )
                )
        for (n1, a1, b1), (n2, a2, b2) in _pairs(meta):
            if a1 < b1 and a2 < b2 and a1 < b2 and a2 < b1:
                out.append(
                    check_row("error", n2, a2, f"the {n2} at {a2:#x} overlaps the {n1} at {a1:#x}")
                )
        if len(s_sorted) > 1:
            cummax = np.maximum.accumulate(e_sorted)
            # the block reaching furthest among those starting before each one
            holder = np.maximum.accumulate(
                np.where(e_sorted == cummax, np.arange(len(e_sorted)), 0)
            )
            clash = np.flatnonzero(s_sorted[1:] < cummax[:-1]) + 1
            for k in clash[:MAX_FINDINGS].tolist():
                i, j = int(idx[k]), int(holder[k - 1])
                out.append(
                    check_row(
                        "error", "BAT", self.bat_offset + 4 * i,
                        f"BAT entry {i}: block at {int(s_sorted[k]):#x} overlaps "
                        f"another block (that of BAT entry {int(idx[j])} at "
                        f"{int(s_sorted[j]):#x})",
                    )
                )
        return out


def _pairs(items: list):
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            yield items[i], items[j]
