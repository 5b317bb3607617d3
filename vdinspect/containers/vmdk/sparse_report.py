"""What a hosted sparse extent reports: flags, its metadata, structures() and check()
(directories, grain tables, stream markers, leaks), as ``qemu-img check`` does."""

from __future__ import annotations

from ...findings import check_row
from ...layout import offset_of
from ...lazy import np
from ..base import leak_rows, structure_row, unused_spans
from ..runs import S_COMP, S_DATA
from .extent import MAX_ENTRY_ROWS
from .structs import (
    FLAG_NAMES,
    FLAG_NL_DETECT,
    FOOTER_BYTES,
    GRAIN_MARKER_SIZE,
    MARKER_EOS,
    MARKER_FOOTER,
    MARKER_TYPES,
    NEWLINE_CHECK,
    SECTOR,
    SparseExtentHeader,
    marker_name,
)

HEADER_UNCLEAN_AT = offset_of(SparseExtentHeader, "uncleanShutdown")
HEADER_NEWLINE_AT = offset_of(SparseExtentHeader, "singleEndLineChar")


class SparseReport:
    """Mixin of :class:`~vdinspect.containers.vmdk.sparse.SparseExtent`: its reports."""

    @property
    def flag_names(self) -> list[str]:
        """The header's flags by name."""
        f = self.header.flags
        names = [name for bit, name in FLAG_NAMES.items() if f & bit]
        unknown = f & ~sum(FLAG_NAMES)
        if unknown:
            names.append(f"unknown flags {unknown:#x}")
        return names

    def descriptor_location(self) -> tuple[int, int] | None:
        """(offset, length) in bytes of the embedded descriptor."""
        h = self.file_header
        if not h.descriptorOffset or not h.descriptorSize:
            return None
        return h.descriptorOffset * SECTOR, h.descriptorSize * SECTOR

    def metadata(self) -> list[tuple[int, int, str]]:
        """(offset, length, name) of the metadata regions of the file."""
        out = [(0, SECTOR, "sparse header")]
        loc = self.descriptor_location()
        if loc:
            out.append((loc[0], loc[1], "embedded descriptor"))
        for name, off in (
            ("grain directory", self.gd_offset),
            ("redundant grain directory", self.rgd_offset),
        ):
            if off:
                out.append((off, self.n_gd * 4, name))
        for d, name in (
            (self.gd_primary, "grain table"),
            (self.gd_redundant, "redundant grain table"),
        ):
            if d is None:
                continue
            for off in np.unique(d[d > 0]).tolist():
                out.append((off * SECTOR, self.gt_bytes, name))
        return out

    def structure_rows(self) -> list[dict]:
        """Header, descriptor, directories, tables, footer, markers, data."""
        h, p, fh = self.header, self.path, self.file_header
        rows = [
            structure_row(
                "sparse header",
                p,
                0,
                SECTOR,
                f"hosted sparse v{fh.version}, {h.capacity} sectors, grain "
                f"{h.grainSize} sectors, flags: {', '.join(self.flag_names) or 'none'}",
            )
        ]
        loc = self.descriptor_location()
        if loc:
            rows.append(structure_row("embedded descriptor", p, loc[0], loc[1], "text descriptor"))
        if self.rgd_offset:
            rows.append(
                structure_row(
                    "redundant grain directory",
                    p,
                    self.rgd_offset,
                    self.n_gd * 4,
                    f"{self.n_gd} entries",
                )
            )
        if self.gd_offset:
            rows.append(
                structure_row("grain directory", p, self.gd_offset, self.n_gd * 4,
                              f"{self.n_gd} entries")
            )
        for d, name in (
            (self.gd_primary, "grain table"),
            (self.gd_redundant, "redundant grain table"),
        ):
            if d is not None:
                rows += self.grain_table_rows(d, name, SECTOR)
        if self.footer_offset is not None:
            fsize = self.source.size
            rows.append(
                structure_row("footer marker", p, fsize - FOOTER_BYTES, SECTOR,
                              "announces the footer")
            )
            rows.append(
                structure_row(
                    "footer",
                    p,
                    fsize - 2 * SECTOR,
                    SECTOR,
                    "copy of the header with the real gdOffset",
                )
            )
            rows.append(structure_row("end-of-stream marker", p, fsize - SECTOR, SECTOR,
                                      "end of stream"))
        if self.compressed:
            rows += self._stream_rows()
        else:
            rows += self.data_rows()
        return rows

    def _stream_rows(self) -> list[dict]:
        p = self.path
        items, _ = self.walk_markers()
        rows, span = [], None
        fsize = self.source.size
        footer_at = fsize - FOOTER_BYTES if self.footer_offset is not None else None
        for kind, pos, val, size in items:
            if kind == "grain":
                end = -(-(pos + GRAIN_MARKER_SIZE + size) // SECTOR) * SECTOR
                if span is not None and span[1] == pos:
                    span[1], span[2] = end, span[2] + 1
                else:
                    if span is not None:
                        rows.append(span)
                    span = [pos, end, 1]
                continue
            if span is not None:
                rows.append(span)
                span = None
            if pos in (footer_at, fsize - SECTOR) and kind in (MARKER_FOOTER, MARKER_EOS):
                continue  # already listed with the footer
            rows.append(
                structure_row(
                    marker_name(kind),
                    p,
                    pos,
                    SECTOR,
                    f"{val} sectors of metadata follow" if val else "marker",
                )
            )
        if span is not None:
            rows.append(span)
        out = []
        for r in rows:
            if isinstance(r, list):
                out.append(
                    structure_row(
                        "compressed grains",
                        p,
                        r[0],
                        r[1] - r[0],
                        f"{r[2]} grains, each behind a grain marker",
                    )
                )
            else:
                out.append(r)
        return out

    def check_rows(self) -> list[dict]:
        """Flags, newline test, directory entries and copies, table entries, leaked space,
        stream markers."""
        h, rows = self.header, []
        label = self.label
        if self.file_header.uncleanShutdown:
            rows.append(
                check_row(
                    "warning", "sparse header.uncleanShutdown", HEADER_UNCLEAN_AT,
                    label + "unclean shutdown flag set: the extent was not closed cleanly",
                )
            )
        nl = (h.singleEndLineChar, h.nonEndLineChar, h.doubleEndLineChar1, h.doubleEndLineChar2)
        if h.flags & FLAG_NL_DETECT and nl != NEWLINE_CHECK:
            in_footer = h is not self.file_header and self.footer_offset is not None
            rows.append(
                check_row(
                    "error", "sparse header",
                    (self.footer_offset if in_footer else 0) + HEADER_NEWLINE_AT,
                    label + "newline check bytes are wrong: the file was "
                    "probably copied in text mode and is corrupt",
                )
            )
        rows += self._unusable_gd_rows()
        rows += self._directory_checks()
        rows += self.table_checks(self.metadata())
        if self.compressed:
            rows += self._stream_checks()
        elif not self.rebuilt:
            rows += self._leak_rows()
        return rows

    def _unusable_gd_rows(self) -> list[dict]:
        """Grain directory entries whose grain table lies outside the file in every copy
        (keyed like the finding a salvage read of their span records)."""
        if self.gd_primary is None and self.gd_redundant is None:
            return []  # the whole directory is outside the file: reported when opened
        bad = np.flatnonzero(self.gd < 0)
        rows = []
        for i in bad[:MAX_ENTRY_ROWS].tolist():
            vals = [
                f"{name} {int(d[i]):#x}"
                for name, d in (("primary", self.gd_primary), ("redundant", self.gd_redundant))
                if d is not None
            ]
            rows.append(
                check_row(
                    "error", self.gd_name, self.gd_entry_offset(i),
                    self.label + f"grain directory entry {i} ({', '.join(vals)} "
                    f"sectors) names no grain table inside the file ({self.source.size:#x} "
                    f"bytes): extent bytes {i * self.gt_span:#x}.. are lost",
                )
            )
        if len(bad) > MAX_ENTRY_ROWS:
            rows.append(
                self._more_row(self.gd_name, len(bad), "grain directory entries are unusable")
            )
        return rows

    def _leak_rows(self) -> list[dict]:
        """Space after the metadata (``overHead``) that no grain table entry and no
        structure uses: one ``leak`` row per grain of it (as QEMU counts leaked clusters)."""
        fsize, g = self.source.size, self.grain_bytes
        start = self.file_header.overHead * SECTOR
        if start >= fsize:
            return []
        # structures are clipped to the file (a garbage header field may place one past
        # it, even past what an int64 holds): only space inside the file can leak
        meta = [(o, min(o + n, fsize)) for o, n, _ in self.metadata() if n > 0 and 0 <= o < fsize]
        starts = [np.array([a for a, _ in meta], dtype=np.int64)]
        for _, state, host in self.all_tables():
            starts.append(host[state == S_DATA])
        ends = [np.array([b for _, b in meta], dtype=np.int64)] + [h + g for h in starts[1:]]
        gaps = unused_spans(np.concatenate(starts), np.concatenate(ends), start, fsize)

        def leaks():
            for a, b in gaps:
                for off in range(a, b, g):
                    yield ("grain", off, self.label + f"{min(g, b - off)} bytes at {off:#x} "
                           "are used by no grain table entry and no structure (leaked)")

        total = sum(-(-(b - a) // g) for a, b in gaps)
        return leak_rows(leaks(), total, "grain", "leaked grains", MAX_ENTRY_ROWS)

    def _directory_checks(self) -> list[dict]:
        rows = []
        p, r = self.gd_primary, self.gd_redundant
        if p is None or r is None:
            return rows
        pz, rz = p == 0, r == 0
        for i in np.flatnonzero(pz != rz)[:20].tolist():
            rows.append(
                check_row(
                    "error", "grain directory", self.gd_offset + 4 * i,
                    self.label + f"grain directory entry {i}: primary "
                    f"{int(p[i]):#x}, redundant {int(r[i]):#x} (one is missing)",
                )
            )
        fsize, gtb = self.source.size, self.gt_bytes
        both = np.flatnonzero(~pz & ~rz & (p != r))
        both = both[(p[both] * SECTOR + gtb <= fsize) & (r[both] * SECTOR + gtb <= fsize)]
        for c in range(0, len(both), 4096):  # compare the two copies, 4096 tables at a time
            ids = both[c : c + 4096]
            ta = self.read_tables(p[ids] * SECTOR).view("<u4")
            tb = self.read_tables(r[ids] * SECTOR).view("<u4")
            for row_ in np.flatnonzero((ta != tb).any(axis=1)).tolist():
                i = int(ids[row_])
                diff = np.flatnonzero(ta[row_] != tb[row_])
                k = int(diff[0])
                a, b = int(p[i]) * SECTOR, int(r[i]) * SECTOR
                rows.append(
                    check_row(
                        "error", "grain table", a + 4 * k,
                        self.label + f"grain table {i}: {len(diff)} entries differ "
                        f"from the redundant copy at {b:#x} (first: entry {k}, "
                        f"{int(ta[row_, k]):#x} vs {int(tb[row_, k]):#x})",
                    )
                )
                # an entry past the end of the file in one copy (reads take the other's)
                va, vb = self._entries_valid(ta[row_]), self._entries_valid(tb[row_])
                copies = (("primary", a, ta, va, "redundant", vb), ("redundant", b, tb, vb,
                                                                    "primary", va))
                for name, at, t, ok, other, other_ok in copies:
                    for k in diff[~ok[diff]][:MAX_ENTRY_ROWS].tolist():
                        e = int(t[row_, k])
                        then = (f"reads use the {other} copy's entry" if other_ok[k]
                                else f"the {other} copy's entry is unusable too")
                        rows.append(
                            check_row(
                                "error", "grain table", at + 4 * k,
                                self.label + f"{name} grain table {i} entry {k} = "
                                f"{e:#x} points to {e * SECTOR:#x}, past the end of the file "
                                f"({fsize:#x}); {then}",
                            )
                        )
        return rows

    def _stream_checks(self) -> list[dict]:
        rows = []
        label = self.label
        items, problem = self.walk_markers()
        if problem is not None:
            rows.append(
                check_row("error", "stream", problem[0], label + problem[1])
            )
        unknown = [(pos, kind) for kind, pos, _, _ in items
                   if kind != "grain" and kind not in MARKER_TYPES]
        if unknown:
            pos, kind = unknown[0]
            rows.append(
                check_row("info", "stream", pos,
                          label + f"{len(unknown)} metadata markers of types the VMDK "
                          f"specification does not name (first: type {kind} at {pos:#x}) "
                          "were skipped by their sector counts, as qemu-img ignores them")
            )
        if not self.has_markers:
            return rows
        grains = {pos: lba for kind, pos, lba, _ in items if kind == "grain"}
        referenced: dict[int, set[int]] = {}  # grain host offset -> LBAs mapped to it
        g = self.grain_bytes
        for i, state, host in self.all_tables():
            for k in np.flatnonzero(state == S_COMP).tolist():
                lba = (i * self.gt_entries + k) * g // SECTOR
                referenced.setdefault(int(host[k]), set()).add(lba)
        # one row per grain, keyed like the finding a read of that grain records
        if problem is None:
            missing = [off for off in referenced if off not in grains]
            self._capped_rows(
                rows, missing, "error", "compressed grain",
                lambda off: f"compressed grain at {off:#x} is damaged: a grain table entry "
                "points there, but no grain marker starts there",
                "grain table entries point where no marker starts", label)
        wrong = [off for off, lbas in referenced.items() if off in grains and lbas - {grains[off]}]
        self._capped_rows(
            rows, wrong, "error", "grain marker",
            lambda off: f"grain marker at {off:#x} says LBA {grains[off]}, a grain table entry "
            f"maps it at LBA {', '.join(str(x) for x in sorted(referenced[off] - {grains[off]}))}",
            "grain markers carry another LBA than their entry", label)
        unref = [] if self.rebuilt else [off for off in grains if off not in referenced]
        self._capped_rows(
            rows, unref, "leak", "grain",
            lambda off: f"the grain at {off:#x} in the stream is referenced by no grain table "
            "entry (leaked)",
            "leaked grains", label)
        return rows

    def _capped_rows(self, rows: list, offsets: list, severity: str, structure: str,
                     message, more: str, label: str) -> None:
        """One row per offset (up to MAX_ENTRY_ROWS, then a row counting the rest)."""
        for off in offsets[:MAX_ENTRY_ROWS]:
            rows.append(check_row(severity, structure, off, label + message(off)))
        if len(offsets) > MAX_ENTRY_ROWS:
            rows.append(self._more_row(structure, len(offsets), more))

    def info_fields(self) -> dict:
        """The extent's row in ``info()['extents']``, with header fields."""
        d = super().info_fields()
        h, fh = self.header, self.file_header
        d.update(
            sparse_version=fh.version,
            flags=self.flag_names,
            grain_size=self.grain_bytes,
            capacity=self.capacity,
            compressed=self.compressed,
            zeroed_grain=self.zeroed_grain,
            unclean_shutdown=bool(fh.uncleanShutdown),
            gd_offset=self.gd_offset,
            rgd_offset=self.rgd_offset,
            overhead=h.overHead * SECTOR,
            footer=self.footer_offset is not None,
        )
        return d
