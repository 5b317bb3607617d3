"""VHD: Microsoft Virtual Hard Disk (Virtual PC, Virtual Server, Hyper-V, Disk2VHD, QEMU "vpc").

Facts from Microsoft's "Virtual Hard Disk Image Format Specification" (v1.0, 2006), checked
against QEMU block/vpc.c and real images. All integers are big-endian; a sector is 512 bytes.

- **Fixed** disk (type 2): the virtual disk byte for byte, then a 512-byte footer (old
  Virtual PC versions wrote a 511-byte one). Nothing marks the start of the file.
- **Dynamic** disk (type 3): a copy of the footer at offset 0, the dynamic disk header
  ("cxsparse") at ``footer.data_offset``, the block allocation table (BAT: one u32 per
  block, the block's host sector, 0xFFFFFFFF = not allocated), then blocks, then the
  footer. A block is a sector bitmap (one bit per sector, most significant bit first,
  padded to whole sectors) followed by ``block_size`` bytes of data. A sector whose bit is
  clear was never written and reads as zeros, whatever its data area holds.
- **Differencing** disk (type 4): a dynamic disk whose clear bits (and unallocated blocks)
  fall through to the parent, named by ``parent_unique_id`` and found through the parent
  locators (W2ku/W2ru UTF-16LE paths, MacX file URL) and the parent's Unicode name.

The virtual size has two rules: the CHS geometry (cylinders * heads * sectors * 512), which
Virtual PC, Virtual Server and old QEMU use, and ``current_size``, which Hyper-V, Disk2VHD
and newer writers use. :func:`size_rule_for` picks one as QEMU does; :func:`open_vhd` can
force either.

Damage: a bad checksum, or a footer lost at the end of a dynamic disk (whose copy at offset
0 is intact), is a :class:`CorruptImage` when strict; ``strict=False`` reads on (with the
copy) and ``check()`` reports it. Such faults are raised after the rest of the metadata is
checked, so a fault that stops salvage too (an absurd BAT size) is the one named.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import uuid
from functools import cached_property

from ...errors import CorruptImage, NotRecognized, UnsupportedFeature
from ...io import ByteSource, FileSource, LRUCache
from ...lazy import np
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
from ..runs import S_DAMAGED, S_DATA, S_UNALLOC, UNIT_CODES, UNIT_STATE, RunTable
from .check import VhdReport
from .structs import (
    BAT_ENTRY,
    BAT_UNUSED,
    COOKIE,
    DIFFERENCING,
    DISK_TYPES,
    DYNAMIC,
    DYNAMIC_COOKIE,
    DYNAMIC_HEADER_SIZE,
    E_BLOCK,
    E_MISPLACED,
    E_UNUSED,
    FEATURE_TEMPORARY,
    FIXED,
    FOOTER_CHECKSUM_AT,
    FOOTER_SIZE,
    FORMAT,
    HEADER_CHECKSUM_AT,
    LOCATOR_PREFERENCE,
    LOCATORS_AT,
    MAX_VIRTUAL_SIZE,
    OLD_FOOTER_SIZE,
    PLATFORM_NONE,
    SECTOR,
    DynamicDiskHeader,
    HardDiskFooter,
    ParentLocator,
    chs_size,
    size_note,
    size_rule_for,
    type_code,
    vhd_checksum,
    vhd_time,
)

MANY_RUNS = 16  # sector runs in a block above which its runs are built as columns

#: a block's read-plan code: data, not here (unused entry, or every bitmap bit clear), needs
#: the runs (misplaced), partly present (its sector bitmap decides, sector by sector)
P_DATA, P_HOLE, P_SLOW, P_PARTIAL = range(4)
PLAN_KINDS = [readplan.DATA, readplan.HOLE, readplan.SLOW, readplan.PARTIAL]
ONE_STATE_CODE = {S_DATA: P_DATA, S_UNALLOC: P_HOLE, S_DAMAGED: P_SLOW}  # a uniform block


class VhdImage(VhdReport, Image):
    """A VHD file: fixed, dynamic or differencing (``size_rule`` as in :func:`size_rule_for`)."""

    format = FORMAT

    def __init__(
        self,
        source: ByteSource,
        *,
        path: str | None = None,
        strict: bool = True,
        size_rule: str = "auto",
    ) -> None:
        super().__init__(source, path=path, strict=strict)
        self._blocks: LRUCache = LRUCache(1024)
        self.dynamic_header = None
        self.dynamic_header_offset: int | None = None
        self._raw_bat = b""
        self._used_blocks = 0
        self.block_size: int | None = None
        self.bitmap_size = 0
        self.locators: list[ParentLocator] = []
        self.parent_name: str | None = None
        self._deferred: CorruptImage | None = None
        self._read_footers()
        f = self.footer
        if f.disk_type not in (FIXED, DYNAMIC, DIFFERENCING):
            self.fail(UnsupportedFeature, f"disk type {f.disk_type} ({DISK_TYPES.get(f.disk_type, 'unknown')})", "footer.disk_type", self.footer_offset + 60)
        self.disk_type = f.disk_type
        self.subformat = DISK_TYPES[f.disk_type]
        self.size_chs = chs_size(f)
        self.size_current = f.current_size
        self.size_rule = size_rule_for(f, size_rule)
        chosen = self.size_chs if self.size_rule == "chs" else self.size_current
        self.size = chosen // SECTOR * SECTOR
        if self.size > MAX_VIRTUAL_SIZE:
            self.fail(CorruptImage, f"virtual size {self.size} is absurd ({self.size_rule} rule)", "footer.current_size"
                if self.size_rule == "current_size"
                else "footer.disk_geometry", self.footer_offset + (48 if self.size_rule == "current_size" else 56))
        if self.disk_type == FIXED:
            self._open_fixed()
        else:
            self._open_dynamic()
        if self._deferred is not None:
            raise self._deferred

    # --- footer --------------------------------------------------------------------

    def _deferred_problem(self, structure: str, offset: int | None, message: str) -> None:
        """A fault salvage mode works around (a checksum, a lost footer): under strict it is
        raised only after the rest of the metadata is checked, so a fatal fault is named first."""
        if self.strict and self._deferred is None:
            self._deferred = CorruptImage(message, path=self.path, structure=structure,
                                          offset=offset)
        self.finding("error", structure, offset, message)

    def _read_footers(self) -> None:
        f = self.file
        n = f.size
        if n < OLD_FOOTER_SIZE:
            self.fail(NotRecognized, f"file is {n} bytes, shorter than a VHD footer", "footer", 0)
        tail = f.read(n - min(n, FOOTER_SIZE), min(n, FOOTER_SIZE))
        end = None  # (offset, raw 512 bytes, length on disk)
        if len(tail) == FOOTER_SIZE and tail[:8] == COOKIE:
            end = (n - FOOTER_SIZE, tail, FOOTER_SIZE)
        elif tail[-OLD_FOOTER_SIZE:][:8] == COOKIE:
            end = (n - OLD_FOOTER_SIZE, tail[-OLD_FOOTER_SIZE:] + b"\0", OLD_FOOTER_SIZE)
        head = f.read(0, FOOTER_SIZE) if n >= FOOTER_SIZE else b""
        copy = head if head[:8] == COOKIE else None
        if end is not None and HardDiskFooter.parse(end[1]).disk_type == FIXED:
            copy = None  # a fixed disk's first bytes are guest data, whatever they say
        if end is not None and copy is not None and end[0] == 0:
            copy = None  # a lone footer (a dynamic disk cut down to its first sector)
        self.footer_copy = HardDiskFooter.parse(copy) if copy is not None else None
        self.footer_copy_raw = copy
        end_ok = end is not None and self._checksum_ok(end[1])
        copy_ok = copy is not None and self._checksum_ok(copy)
        if end is None and copy is None:
            self.fail(NotRecognized, 'no "conectix" footer at the end of the file or copy at its start', "footer", max(0, n - FOOTER_SIZE))
        self.footer_from_copy = end is None or (not end_ok and copy_ok)
        self.tail_footer = None if end is None else (end[0], end[2])  # (offset, length) at the end
        if self.footer_from_copy:
            # the footer at the end is missing or damaged, the copy at offset 0 is intact
            what = "missing" if end is None else "damaged (bad checksum)"
            at = max(0, n - FOOTER_SIZE) if end is None else end[0]
            self._deferred_problem("footer", at, f"the footer at the end of the file is {what}; the copy at offset 0 "
                "is intact (strict=False reads the disk with it)")
            raw, self.footer_offset, self.footer_length = copy, 0, FOOTER_SIZE
        else:
            raw, self.footer_offset, self.footer_length = end[1], end[0], end[2]
            if not end_ok:
                self._deferred_problem("footer", self.footer_offset, f"footer checksum is {self._stored(raw):#010x}, the bytes sum to "
                    f"{vhd_checksum(raw, FOOTER_CHECKSUM_AT):#010x}"
                    + ("; the copy at offset 0 is bad too" if copy is not None else ""))
        self.footer_raw = raw
        self.footer = HardDiskFooter.parse(raw)
        self.header = self.footer
        if self.footer_from_copy or self.footer.disk_type == FIXED:
            return
        if copy is None:
            self.finding("error", "footer copy", 0,
                         'no footer copy ("conectix") at offset 0 of a dynamic disk')
        elif not copy_ok:
            self.finding("error", "footer copy", 0,
                         f"footer copy checksum is {self._stored(copy):#010x}, the bytes "
                         f"sum to {vhd_checksum(copy, FOOTER_CHECKSUM_AT):#010x}")
        elif copy[:OLD_FOOTER_SIZE] != raw[:OLD_FOOTER_SIZE]:
            diff = [c.name for c in HardDiskFooter.subcons
                    if self.footer_copy[c.name] != self.footer[c.name]]
            self.finding("warning", "footer copy", 0,
                         f"footer copy at offset 0 differs from the footer ({', '.join(diff)})")

    @staticmethod
    def _stored(raw: bytes) -> int:
        return int.from_bytes(raw[FOOTER_CHECKSUM_AT : FOOTER_CHECKSUM_AT + 4], "big")

    def _checksum_ok(self, raw: bytes) -> bool:
        return self._stored(raw) == vhd_checksum(raw, FOOTER_CHECKSUM_AT)

    # --- fixed disks ---------------------------------------------------------------
    def _open_fixed(self) -> None:
        self.data_area = self.footer_offset  # the guest's bytes are all before the footer
        if self.data_area < self.size:
            self.problem("data", self.data_area, f"fixed disk holds {self.data_area} data bytes, the virtual size is "
                f"{self.size} ({self.size_rule} rule): the file is truncated")

    # --- dynamic and differencing disks --------------------------------------------
    def _open_dynamic(self) -> None:
        f, n = self.file, self.file.size
        off = self.footer.data_offset
        if off + HEADER_CHECKSUM_AT + 4 > n:
            self.fail(CorruptImage, f"dynamic disk header at {off:#x} lies past the end of the file ({n} bytes)", "footer.data_offset", self.footer_offset + 16)
        have = min(DYNAMIC_HEADER_SIZE, n - off)
        raw = f.read(off, have) + bytes(DYNAMIC_HEADER_SIZE - have)
        h = DynamicDiskHeader.parse(raw)
        if h.cookie != DYNAMIC_COOKIE:
            self.fail(CorruptImage, f'dynamic disk header cookie is {h.cookie!r}, not "cxsparse"', "dynamic disk header", off)
        if have < DYNAMIC_HEADER_SIZE:
            self._deferred_problem("dynamic disk header", off, f"dynamic disk header cut short: {have} of {DYNAMIC_HEADER_SIZE} bytes in the "
                "file (the rest reads as zeros)")
        stored = int.from_bytes(raw[HEADER_CHECKSUM_AT : HEADER_CHECKSUM_AT + 4], "big")
        if stored != vhd_checksum(raw, HEADER_CHECKSUM_AT):
            self._deferred_problem("dynamic disk header", off, f"dynamic disk header checksum is {stored:#010x}, the bytes sum to "
                f"{vhd_checksum(raw, HEADER_CHECKSUM_AT):#010x}")
        self.dynamic_header = h
        self.dynamic_header_offset = off
        self.dynamic_header_raw = raw
        bs = h.block_size
        if bs < SECTOR or not is_pow2(bs):
            self.fail(CorruptImage, f"block size {bs} is not a power of two of at least 512", "dynamic disk header.block_size", off + 32)
        self.block_size = self.cluster_size = bs
        self.sectors_per_block = bs // SECTOR
        self.bitmap_size = -(-self.sectors_per_block // 8 // SECTOR) * SECTOR or SECTOR
        mte = h.max_table_entries
        if h.table_offset + mte * 4 > n:
            self.problem("dynamic disk header.max_table_entries", off + 28, f"Max Table Entries too large ({mte}): a BAT of {mte * 4} "
                f"bytes at {h.table_offset:#x} does not fit in the {n}-byte file")
            # salvage: the entries the disk needs, as far as the file holds them
            mte = min(-(-self.size // bs), max(0, n - h.table_offset) // 4)
        self.blocks_needed = -(-self.size // bs)
        if mte < self.blocks_needed:
            self.problem("dynamic disk header.max_table_entries", off + 28, f"BAT has {mte} entries, {self.blocks_needed} blocks of {bs} bytes "
                f"are needed for {self.size} bytes (page table too small)")
        self.bat_offset = h.table_offset
        self._raw_bat = f.read(h.table_offset, mte * 4) if mte else b""
        # without numpy: the host sectors of the used entries (None: too many to loop over)
        starts = None
        if mte <= MAX_LIGHT_ENTRIES:
            starts = [v * SECTOR for v in struct.unpack(f">{mte}I", self._raw_bat)
                      if v != BAT_UNUSED]
        span = self.bitmap_size + bs
        if starts is None or (starts and max(starts) + span > n):
            used = np.flatnonzero(self.bat != BAT_UNUSED)
            ends = self.bat[used].astype(np.int64) * SECTOR + span
            past = used[ends > n]
            for i in past[:1].tolist():
                self.problem("BAT", h.table_offset + 4 * i, f"BAT entry {i} puts its block at {int(self.bat[i]) * SECTOR:#x}, "
                    f"which runs past the end of the file ({n} bytes)"
                    + (f"; {len(past)} such entries" if len(past) > 1 else ""))
        if self.disk_type == DIFFERENCING:
            self._read_parent_locators()
        if starts is not None and ranges_sound(starts, span, [(a, b) for _, a, b in
                                                              self._metadata()], n):
            self._used_blocks = len(starts)  # sound: the BAT is decoded on first use
        else:
            self._place_blocks()

    @cached_property
    def bat(self) -> np.ndarray | None:
        """The BAT (big-endian uint32 sector numbers), decoded on first use."""
        if self.dynamic_header is None:
            return None
        return np.frombuffer(self._raw_bat, dtype=BAT_ENTRY)

    @cached_property
    def _entry_kind(self) -> np.ndarray:
        """Per BAT entry: a block, unused, or misplaced (set at open when any is)."""
        return np.where(self.bat != BAT_UNUSED, E_BLOCK, E_UNUSED).astype(np.int8)

    def _place_blocks(self) -> None:
        """Which BAT entries' blocks can be read. A block (sector bitmap and data) that
        overlaps the file's own metadata (the footer copy at offset 0, the dynamic disk
        header, the BAT, parent locator data, the footer), as every entry of a zeroed BAT
        does, or the bytes of a block placed before it in the file (cross-linked), is at an
        impossible place: ``damaged``, never read. Strict mode refuses the image. So the
        blocks read are disjoint stretches of the file, and what salvage mode makes of them
        (runs, findings, structures) is bounded by the file's size."""
        n, bm, bs = self.file.size, self.bitmap_size, self.block_size
        used = np.flatnonzero(self.bat != BAT_UNUSED)
        self._used_blocks = len(used)
        if not len(used):
            return
        starts = self.bat[used].astype(np.int64) * SECTOR
        ends = starts + bm + bs
        meta = self._metadata()
        region, clash = misplaced(starts, ends, [(a, min(b, n)) for _, a, b in meta])
        bad = (region >= 0) | clash
        if not bad.any():
            return
        i = int(used[np.argmax(bad)])  # the first entry (in the BAT) at an impossible place
        j = int(region[np.argmax(bad)])
        first = (i, f"the {meta[j][0]} at {meta[j][1]:#x}" if j >= 0
                 else "the block of another BAT entry")
        self._entry_kind[used[bad]] = E_MISPLACED
        i, what = first
        count = int(bad.sum())
        if self.strict:
            self.fail(CorruptImage, f"BAT entry {i} puts its block at "
                      f"{int(self.bat[i]) * SECTOR:#x}, over {what}: an impossible place"
                      + (f"; {count} such entries" if count > 1 else ""),
                      "BAT", self.bat_offset + 4 * i)
        # salvage: check() lists each entry (_check_layout); this row says what became of them
        self.finding("warning", "BAT", self.bat_offset,
                     f"{count} BAT {'entries put their blocks' if count > 1 else 'entry puts its block'}"
                     " at an impossible place (over the file's metadata or another block): "
                     "read as damaged")

    def _read_parent_locators(self) -> None:
        h, n = self.dynamic_header, self.file.size
        name = h.parent_unicode_name.decode("utf-16-be", "replace").split("\0", 1)[0]
        self.parent_name = name or None
        for i, e in enumerate(h.parent_locator_entries):
            if e.platform_code == PLATFORM_NONE:
                continue
            where = self.dynamic_header_offset + LOCATORS_AT + 24 * i
            length = e.platform_data_length
            if e.platform_data_offset + length > n or length > 64 * 1024:
                self.problem("parent locator", where, f"parent locator {i} ({type_code(e.platform_code)}): {length} bytes at "
                    f"{e.platform_data_offset:#x} lie outside the file")
                self.locators.append(ParentLocator(i, e, None))
                continue
            data = self.file.read(e.platform_data_offset, length)
            self.locators.append(ParentLocator(i, e, data))

    # --- blocks --------------------------------------------------------------------
    def _block_states(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sector runs inside block ``i``: (first sector, end sector, state) arrays."""
        return self._blocks.get(i, lambda: self._decode_block(i))

    def _decode_block(self, i: int):
        """Block ``i``'s sector runs; a block all of one state gets that code in the read
        plan's table, so later reads of it need neither the bitmap nor this cache."""
        got = self._read_bitmap(i)
        if len(got[0]) == 1:
            self._plan_units()[0][i] = ONE_STATE_CODE[int(got[2][0])]
        return got

    def _read_bitmap(self, i: int):
        spb, n = self.sectors_per_block, self.file.size
        base = int(self.bat[i]) * SECTOR
        data = base + self.bitmap_size
        need = -(-spb // 8)
        if base + need > n:
            return _one_run(spb, S_DAMAGED)
        bitmap = self.file.read(base, need)
        if bitmap == b"\xff" * need and data + self.block_size <= n:
            return _one_run(spb, S_DATA)
        if not bitmap.strip(b"\0"):
            return _one_run(spb, S_UNALLOC)
        bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="big")[:spb]
        state = np.where(bits.view(bool), np.int8(S_DATA), np.int8(S_UNALLOC))
        whole = max(0, (n - data) // SECTOR)  # sectors whose data lies inside the file
        if whole < spb:
            state[whole:][state[whole:] == S_DATA] = S_DAMAGED
        cut = np.flatnonzero(state[1:] != state[:-1]) + 1
        starts = np.concatenate(([0], cut))
        stops = np.concatenate((cut, [spb]))
        return starts, stops, state[starts]

    def _runs(self, start: int, end: int):
        if self.disk_type == FIXED:
            return self._fixed_runs(start, end)
        # past the end of a too-small BAT (salvage mode only): damaged
        return table_runs(start, end, self.block_size, len(self.bat), self._entry_runs, DAMAGED)

    def _fixed_runs(self, start: int, end: int):
        """The data area, then anything past it (a file cut short) as damaged."""
        stop = min(end, self.data_area)
        if start < stop:
            yield Run(start, stop - start, DATA, host_file=self.path, host_offset=start,
                      source=self.file)
        if end > max(start, self.data_area):
            s = max(start, self.data_area)
            yield Run(s, end - s, DAMAGED)

    def _entry_runs(self, first: int, stop: int):
        """The runs of BAT entries ``first..stop-1``: stretches of unused or misplaced
        entries one run each, blocks one by one."""
        bs = self.block_size
        kind = self._entry_kind[first:stop]
        cut = np.flatnonzero(kind[1:] != kind[:-1]) + 1
        bounds = np.concatenate(([0], cut, [len(kind)])).tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            k = int(kind[a])
            if k == E_BLOCK:
                for i in range(first + a, first + b):
                    yield from self._block_runs(i)
            else:
                yield Run((first + a) * bs, (b - a) * bs,
                          UNALLOCATED if k == E_UNUSED else DAMAGED)

    def locate(self, offset: int, length: int) -> readplan.Located:
        """One BAT lookup for a read inside one block (a block partly present by its sector
        bitmap: one search of its sector runs); else the plan decides."""
        if self.disk_type == FIXED:
            return (self.file, offset) if offset + length <= self.data_area else None
        i, within = divmod(offset, self.block_size)
        state, host = self._plan_units()
        if within + length > self.block_size or i >= len(state):
            return None
        return readplan.locate_unit(PLAN_KINDS, state, host, i, within, length, self.file,
                                    self._locate_sectors)

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan: the BAT entry of each block (a block partly present by its
        sector bitmap: its cached sector runs)."""
        if self.disk_type == FIXED:
            return [(start, end, readplan.DATA, start, self.file)] if end <= self.data_area \
                else None
        state, host = self._plan_units()
        if -(-end // self.block_size) > len(state):
            return None
        return plan if readplan.plan_units(plan := [], PLAN_KINDS, state, host, 0,
                                           self.block_size, start, end, self.file,
                                           partial=self._plan_sectors) else None

    def _plan_units(self) -> tuple[np.ndarray, np.ndarray]:
        """Each block's read-plan code (an index into PLAN_KINDS) and data host offset:
        made once from the BAT; a block is P_PARTIAL until its sector bitmap is read, then
        P_DATA or P_HOLE when the bitmap is all set or all clear."""
        got = self.__dict__.get("_plan_table")
        if got is None:
            state = np.full(len(self.bat), P_PARTIAL, dtype=np.int8)
            state[self._entry_kind == E_UNUSED] = P_HOLE
            state[self._entry_kind == E_MISPLACED] = P_SLOW
            host = self.bat.astype(np.int64) * SECTOR + self.bitmap_size
            got = self._plan_table = (state, host)
        return got

    def _locate_sectors(self, i: int, within: int, length: int) -> readplan.Located:
        """:meth:`locate` inside block ``i`` from its sector runs (one search)."""
        starts, stops, states = self._block_states(i)
        j = int(np.searchsorted(stops, within // SECTOR, side="right"))
        if within + length > int(stops[j]) * SECTOR:  # the bitmap changes inside the read
            return None
        s = int(states[j])
        if s == S_UNALLOC:
            return readplan.HOLE
        h = int(self.bat[i]) * SECTOR + self.bitmap_size + within
        return (self.file, h) if s == S_DATA and h + length <= self.file.size else None

    def _plan_sectors(self, plan: readplan.Plan, i: int, pos: int, stop: int) -> bool:
        """Append the pieces of ``[pos, stop)`` inside block ``i`` from its sector runs;
        False where a sector needs the runs (damaged, cut short)."""
        vbase = i * self.block_size
        starts, stops, states = self._block_states(i)
        data = int(self.bat[i]) * SECTOR + self.bitmap_size
        j = int(np.searchsorted(stops, (pos - vbase) // SECTOR, side="right"))
        while pos < stop:
            s = int(states[j])
            b = min(stop, vbase + int(stops[j]) * SECTOR)
            if s == S_DATA:
                h = data + pos - vbase
                if h + (b - pos) > self.file.size:
                    return False
                readplan.add_piece(plan, pos, b, readplan.DATA, h, self.file)
            elif s == S_UNALLOC:
                readplan.add_piece(plan, pos, b, readplan.HOLE)
            else:
                return False
            pos = b
            j += 1
        return True

    def _block_runs(self, i: int):
        vbase = i * self.block_size
        starts, stops, states = self._block_states(i)
        data = int(self.bat[i]) * SECTOR + self.bitmap_size
        if len(starts) <= MANY_RUNS:
            yield from self._sector_runs(vbase, data, starts, stops, states)
            return
        # an alternating sector bitmap: columns, not objects (the sector where the file
        # ends, if it is here, one by one)
        at = data + starts * SECTOR
        room = self.file.size - at
        odd = (states == S_DAMAGED) & (room > 0) & (room < SECTOR)
        p = ~odd
        ok = states == S_DATA
        table = RunTable(
            (vbase + starts * SECTOR)[p], ((stops - starts) * SECTOR)[p], UNIT_CODES[states[p]],
            host=np.where(ok, at, -1)[p], src=np.where(ok, 0, -1)[p],
            sources=[(self.path, self.file)])
        yield table.with_runs(list(self._sector_runs(vbase, data, starts[odd], stops[odd],
                                                     states[odd])))

    def _sector_runs(self, vbase: int, data: int, starts, stops, states):
        """Run objects for the sector runs of one block (data of the block at ``data``)."""
        for a, b, s in zip(starts.tolist(), stops.tolist(), states.tolist()):
            if s == S_DATA:
                yield Run(vbase + a * SECTOR, (b - a) * SECTOR, DATA, host_file=self.path,
                          host_offset=data + a * SECTOR, source=self.file)
            elif s == S_DAMAGED and 0 < self.file.size - (data + a * SECTOR) < SECTOR:
                # the sector the file ends in: its first bytes are there
                room = self.file.size - (data + a * SECTOR)
                yield Run(vbase + a * SECTOR, room, DATA, host_file=self.path,
                          host_offset=data + a * SECTOR, source=self.file)
                yield Run(vbase + a * SECTOR + room, (b - a) * SECTOR - room, DAMAGED)
            else:
                yield Run(vbase + a * SECTOR, (b - a) * SECTOR, UNIT_STATE[s])

    # --- parents -------------------------------------------------------------------
    @property
    def unique_id(self) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(self.footer.unique_id))

    @property
    def parent_unique_id(self) -> uuid.UUID | None:
        if self.dynamic_header is None or self.disk_type != DIFFERENCING:
            return None
        return uuid.UUID(bytes=bytes(self.dynamic_header.parent_unique_id))

    @property
    def parent_time_stamp(self) -> dt.datetime | None:
        if self.disk_type != DIFFERENCING or not self.dynamic_header.parent_time_stamp:
            return None
        return vhd_time(self.dynamic_header.parent_time_stamp)

    def parent_paths(self) -> list[str]:
        """Every name the image gives its parent, best first (locators, then the header)."""
        by_code = {}
        for loc in self.locators:
            if loc.path:
                by_code.setdefault(loc.raw.platform_code, loc.path)
        out = [by_code[c] for c in LOCATOR_PREFERENCE if c in by_code]
        if self.parent_name:
            out.append(self.parent_name)
        seen: list[str] = []
        for p in out:
            if p not in seen:
                seen.append(p)
        return seen

    @property
    def parent_hint(self) -> ParentHint | None:
        if self.disk_type != DIFFERENCING:
            return None
        paths = self.parent_paths()
        if not paths:
            self.problem("dynamic disk header", self.dynamic_header_offset + 64, "differencing disk names no parent (no locator, no parent name)")
            return None
        return ParentHint(
            path=paths[0],
            format=FORMAT,
            uuid=str(self.parent_unique_id),
            alternatives=paths[1:],
            extra=dict(
                parent_time_stamp=self.parent_time_stamp,
                locators=[loc.as_dict() for loc in self.locators],
            ),
        )

    def verify_parent(self, parent: Image) -> None:
        """The parent's footer unique_id must be the child's parent_unique_id."""
        where = self.dynamic_header_offset + 40
        if not isinstance(parent, VhdImage):
            self.problem("dynamic disk header.parent_unique_id", where, f"parent {parent.path} is a {parent.format} image, not a VHD")
            return
        if parent.unique_id != self.parent_unique_id:
            self.problem("dynamic disk header.parent_unique_id", where, f"parent {parent.path} has unique id {parent.unique_id}, this "
                f"differencing disk expects {self.parent_unique_id}")
        ts = self.dynamic_header.parent_time_stamp
        if ts and ts != parent.footer.time_stamp:
            self.finding(
                "warning",
                "dynamic disk header.parent_time_stamp",
                where + 16,
                f"parent time stamp {vhd_time(ts):%Y-%m-%d %H:%M:%S} differs from the "
                f"parent's {parent.created:%Y-%m-%d %H:%M:%S} (the parent may have "
                "changed since this disk was made)",
            )
        if parent.size != self.size:
            self.finding(
                "warning",
                "footer.current_size",
                self.footer_offset + 48,
                f"virtual size {self.size} differs from the parent's {parent.size}",
            )

    # --- reports -------------------------------------------------------------------
    @property
    def created(self) -> dt.datetime:
        return vhd_time(self.footer.time_stamp)

    @property
    def allocated_blocks(self) -> int:
        return self._used_blocks  # counted at open (the BAT itself may not be decoded yet)

    def flags(self) -> list[str]:
        out = []
        if self.footer.features & FEATURE_TEMPORARY:
            out.append("temporary")
        if self.footer.saved_state:
            out.append("saved state")
        return out

    TABLES = ((r"bat", ">u4", "describe_bat_entry"),)

    def describe_bat_entry(self, v: int) -> str:
        """What a BAT entry says: unused, or the sector of a block's bitmap and data."""
        if v == BAT_UNUSED:
            return "unallocated block"
        return f"block (bitmap, then data) at sector {v} ({v * SECTOR:#x})"

    def info_fields(self) -> dict:
        f, h = self.footer, self.dynamic_header
        v = f.creator_version
        g = f.disk_geometry
        out = dict(
            created=self.created,
            uuid=str(self.unique_id),
            disk_type=self.subformat,
            creator_application=type_code(f.creator_application),
            creator_version=f"{v >> 16}.{v & 0xFFFF}",
            creator_host_os=type_code(f.creator_host_os),
            geometry=(g.cylinders, g.heads, g.sectors_per_track),
            size_chs=self.size_chs,
            size_current=self.size_current,
            size_rule=self.size_rule,
            size_note=size_note(f, self.size, self.file.size),
            original_size=f.original_size,
            saved_state=bool(f.saved_state),
            temporary=bool(f.features & FEATURE_TEMPORARY),
            block_size=self.block_size,
            max_table_entries=None if h is None else h.max_table_entries,
            allocated_blocks=None if h is None else self.allocated_blocks,
            footer_from_copy=self.footer_from_copy,
        )
        if self.disk_type == DIFFERENCING:
            out.update(
                parent_name=self.parent_name,
                parent_uuid=str(self.parent_unique_id),
                parent_time_stamp=self.parent_time_stamp,
                parent_locators=[loc.as_dict() for loc in self.locators],
            )
        return out


def open_image(
    source: ByteSource, *, path: str | None = None, strict: bool = True, size_rule: str = "auto"
) -> VhdImage:
    return VhdImage(source, path=path, strict=strict, size_rule=size_rule)


def open_vhd(path: str | os.PathLike, *, strict: bool = True, size_rule: str = "auto") -> VhdImage:
    """Open one VHD file with the size rule forced: ``"chs"``, ``"current_size"`` or ``"auto"``.

    ``vdinspect.open`` always uses ``"auto"``; wrap the result to get a Disk, e.g.
    ``Disk(Chain([open_vhd(p, size_rule="chs")]), path=p)``.
    """
    p = os.fspath(path)
    src = FileSource(p)
    try:
        return VhdImage(src, path=p, strict=strict, size_rule=size_rule)
    except BaseException:
        src.close()
        raise


def _one_run(spb: int, state: int):
    return (
        np.zeros(1, dtype=np.int64),
        np.full(1, spb, dtype=np.int64),
        np.full(1, state, dtype=np.int8),
    )
