"""The VHDX header section: the file identifier, the two headers (the valid one with the
higher sequence number is current) and the two region tables (copies of each other)."""

from __future__ import annotations

from ...errors import CorruptImage, NotRecognized, UnsupportedFeature
from .structs import (
    ENTRY_SIZE,
    HEADER_OFFSETS,
    HEADER_SECTION,
    HEADER_SIGNATURE,
    HEADER_SIZE,
    MAX_TABLE_ENTRIES,
    REGION_NAMES,
    REGION_REQUIRED,
    REGION_TABLE_OFFSETS,
    REGION_TABLE_SIGNATURE,
    REGION_TABLE_SIZE,
    SIGNATURE,
    FileIdentifier,
    RegionGuid,
    RegionTableEntryValues,
    RegionTableHeader,
    VhdxHeader,
    checksum_ok,
    guid_str,
    utf16_text,
)

M = 1 << 20
MAX_SALVAGED_REGION = 1 << 30  # longer regions running past the end of the file are corrupt


class HeaderSection:
    """Mixin of :class:`VhdxImage`: reads the first MiB and picks the current copies."""

    def _parse_file_identifier(self) -> None:
        f = self.file
        if f.size < 8 or f.read(0, 8) != SIGNATURE:
            self.fail(NotRecognized, "no vhdxfile signature", "file identifier", 0)
        if f.size < HEADER_SECTION:
            self.fail(CorruptImage, f"file is {f.size} bytes, shorter than the 1 MiB header section", "header section", 0)
        self.file_identifier = FileIdentifier.parse(f.read(0, FileIdentifier.sizeof()))
        self.creator = utf16_text(self.file_identifier.creator)

    def _parse_headers(self) -> None:
        self.headers: list = []
        self.header_valid: list[bool] = []
        for i, off in enumerate(HEADER_OFFSETS):
            block = self.file.read(off, HEADER_SIZE)
            h = VhdxHeader.parse(block)
            if h.signature != HEADER_SIGNATURE:
                why = "bad signature"
            elif not checksum_ok(block):
                why = "CRC-32C mismatch"
            elif h.version != 1:
                why = f"unknown version {h.version}"
            else:
                why = None
            self.headers.append(h)
            self.header_valid.append(why is None)
            if why is not None:
                self.finding(
                    "warning", f"header {i + 1}", off, f"header {i + 1} is not valid ({why})"
                )
        v1, v2 = self.header_valid
        if v1 and v2:
            h1, h2 = self.headers
            if h1.sequence_number == h2.sequence_number:
                cur = 0
                if VhdxHeader.build(h1) != VhdxHeader.build(h2):
                    self.finding(
                        "warning",
                        "header",
                        HEADER_OFFSETS[0],
                        "both headers have sequence number "
                        f"{h1.sequence_number} but differ; using header 1",
                    )
            else:
                cur = 0 if h1.sequence_number > h2.sequence_number else 1
        elif v1 or v2:
            cur = 0 if v1 else 1
            self.finding(
                "warning",
                f"header {2 - cur}",
                HEADER_OFFSETS[1 - cur],
                f"falling back to header {cur + 1} (header {2 - cur} is not valid)",
            )
        else:
            if self.strict:
                self.fail(CorruptImage, "neither header is valid", "header", HEADER_OFFSETS[0])
            sig = [h.signature == HEADER_SIGNATURE for h in self.headers]
            if not any(sig):
                self.fail(CorruptImage, "neither header has the head signature", "header", HEADER_OFFSETS[0])
            seqs = [h.sequence_number if s else -1 for h, s in zip(self.headers, sig)]
            cur = 0 if seqs[0] >= seqs[1] else 1
            self.finding(
                "error",
                "header",
                HEADER_OFFSETS[cur],
                f"neither header is valid; using header {cur + 1} anyway (salvage)",
            )
        self.current_header = cur
        self.header = self.headers[cur]

    def _parse_region_table(self, off: int):
        if off + REGION_TABLE_SIZE > self.host.size:
            return None, [], "past the end of the file"
        block = self.host.read(off, REGION_TABLE_SIZE)
        rh = RegionTableHeader.parse(block)
        if rh.signature != REGION_TABLE_SIGNATURE:
            return rh, [], "bad signature"
        if not checksum_ok(block):
            return rh, [], "CRC-32C mismatch"
        if rh.entry_count > MAX_TABLE_ENTRIES:
            return rh, [], f"{rh.entry_count} entries (at most 2047)"
        first = RegionTableHeader.sizeof()
        entries = [
            RegionTableEntryValues.parse(block[first + ENTRY_SIZE * i : first + ENTRY_SIZE * (i + 1)])
            for i in range(rh.entry_count)
        ]
        return rh, entries, None

    def _parse_region_tables(self) -> None:
        tables = [self._parse_region_table(off) for off in REGION_TABLE_OFFSETS]
        self.region_tables_valid = [t[2] is None for t in tables]
        for i, (_, _, why) in enumerate(tables):
            if why is not None:
                self.finding(
                    "warning",
                    f"region table {i + 1}",
                    REGION_TABLE_OFFSETS[i],
                    f"region table {i + 1} is not valid ({why})",
                )
        if tables[0][2] is None:
            cur = 0
            if tables[1][2] is None and [RegionTableEntryValues.build(e) for e in tables[0][1]] != [
                RegionTableEntryValues.build(e) for e in tables[1][1]
            ]:
                self.finding(
                    "warning",
                    "region table 2",
                    REGION_TABLE_OFFSETS[1],
                    "the two region tables differ; using region table 1",
                )
        elif tables[1][2] is None:
            cur = 1
            self.finding(
                "warning",
                "region table 1",
                REGION_TABLE_OFFSETS[0],
                "falling back to region table 2 (region table 1 is not valid)",
            )
        else:
            self.fail(CorruptImage, "neither region table is valid", "region table", REGION_TABLE_OFFSETS[0])
        self.current_region_table = cur
        self.region_table, self.regions = tables[cur][0], tables[cur][1]
        self._check_regions(cur)

    def _check_regions(self, cur: int) -> None:
        """The known regions of the current table: once each, aligned, inside the file, not
        overlapping each other or the log."""
        found: dict[bytes, object] = {}
        for i, r in enumerate(self.regions):
            where = REGION_TABLE_OFFSETS[cur] + RegionTableHeader.sizeof() + ENTRY_SIZE * i
            known = r.guid in REGION_NAMES
            if known and r.guid in found:
                self.fail(CorruptImage, f"{REGION_NAMES[r.guid]} region listed twice", "region table entry", where)
            if not known:
                if r.flags & REGION_REQUIRED:
                    self.fail(UnsupportedFeature, f"required region {guid_str(r.guid)} is not understood", "region table entry", where)
                continue
            found[r.guid] = r
            name = REGION_NAMES[r.guid]
            if r.file_offset % M or r.length % M or r.file_offset < HEADER_SECTION or not r.length:
                self.fail(CorruptImage, f"{name} region at {r.file_offset:#x} (+{r.length:#x}) is not "
                    "1 MiB-aligned or lies in the header section", "region table entry", where)
            if r.file_offset + r.length > self.host.size:
                msg = (f"{name} region ({r.length} bytes) runs past the end of the file "
                       f"({self.host.size} bytes)")
                if r.file_offset < self.host.size and r.length <= MAX_SALVAGED_REGION:
                    # the file is cut short inside the region: salvage mode keeps what it
                    # holds of it (every read is checked)
                    self.problem(f"{name} region", r.file_offset, msg)
                else:
                    self.fail(CorruptImage, msg, f"{name} region", r.file_offset)
        for g in RegionGuid:
            if g not in found:
                self.fail(CorruptImage, f"no {REGION_NAMES[g]} region in the region table", "region table", REGION_TABLE_OFFSETS[cur])
        self.bat_region = found[RegionGuid.BAT]
        self.metadata_region = found[RegionGuid.METADATA]
        spans = [
            (r.file_offset, r.file_offset + r.length, REGION_NAMES[r.guid]) for r in found.values()
        ]
        if self.has_log and self.header.log_length:
            lo = self.header.log_offset
            spans.append((lo, lo + self.header.log_length, "log"))
        spans.sort()
        for (_a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                self.problem(f"{bn} region", b0, f"{bn} region overlaps the {an} region")
