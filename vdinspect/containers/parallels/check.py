"""What a Parallels image reports: structures() and check() (BAT entries, overlaps, leaks,
the Format Extension), as ``qemu-img check`` does."""

from __future__ import annotations

from ...findings import check_row
from ...lazy import np
from ..base import data_structures, leak_rows, structure_row
from .structs import FLAG_EMPTY, HEADER_SIZE, INUSE_CLOSED, SECTOR


class ParallelsReport:
    """Mixin of :class:`~vdinspect.containers.parallels.ParallelsImage`: its reports."""

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

    def structure_rows(self) -> list[dict]:
        h, p, cs = self.header, self.path, self.cluster_size
        rows = [
            structure_row(
                "header", p, 0, HEADER_SIZE,
                f'"{h.magic.decode("latin-1")}": {h.bat_entries} clusters of '
                f"{cs} bytes",
            ),
            structure_row(
                "BAT", p, HEADER_SIZE, 4 * h.bat_entries,
                f"{h.bat_entries} entries ({'clusters' if self.ext_format else 'sectors'}),"
                f" {self.allocated_clusters} clusters allocated",
            ),
        ]
        if self.extension is not None:
            rows.append(
                structure_row(
                    "format extension", p, h.ext_off * SECTOR, cs,
                    ", ".join(f["name"] for f in self.features) or "unreadable",
                )
            )
        for bm in self.bitmaps:
            dirty = bm.as_dict()["dirty_clusters"] or "none"
            rows.append(
                structure_row(
                    f"dirty bitmap {bm.id}", p, bm.host_offset, 32 + 8 * bm.raw.l1_size,
                    f"feature and L1 table: {bm.granularity}-byte granules; dirty: "
                    + (dirty if len(dirty) <= 200 else dirty[:200] + "..."),
                )
            )
            for k, off in enumerate(bm.data_clusters):
                rows.append(
                    structure_row(
                        f"dirty bitmap {bm.id} data {k}", p, off, cs,
                        f"one bit per {bm.granularity} bytes of disk",
                    )
                )
        rows += data_structures(self.runs())
        return rows

    def check_rows(self) -> list[dict]:
        """Findings like ``qemu-img check``: unclean, data_off, clusters outside the file,
        duplicates, leaks; plus the Format Extension's."""
        rows = self.findings_rows()
        h, n, cs = self.header, self.file.size, self.cluster_size

        def add(severity, structure, host_offset, message):
            r = check_row(severity, structure, host_offset, message)
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
