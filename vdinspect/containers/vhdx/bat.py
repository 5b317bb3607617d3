"""The VHDX block allocation table: payload blocks and sector bitmap blocks, and the
allocation runs they make.

The BAT interleaves one sector bitmap entry after every ``chunk_ratio`` payload entries.
It is decoded with numpy into per-block codes once; runs are cut from those codes, and
partially present blocks of a differencing file from their sector bitmap.
"""

from __future__ import annotations

import struct

from ...errors import CorruptImage
from ...lazy import SetBy, np
from .. import readplan
from ..base import DAMAGED, DATA, MAX_LIGHT_ENTRIES, UNALLOCATED, ZERO, Run, misplaced
from ..runs import RunTable, codes_for, unit_breaks
from .structs import (
    BAT_ENTRY_DTYPE,
    BAT_ENTRY_SIZE,
    BAT_OFFSET_SHIFT,
    BAT_STATE_MASK,
    HEADER_SECTION,
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PAYLOAD_BLOCK_NOT_PRESENT,
    PAYLOAD_BLOCK_PARTIALLY_PRESENT,
    PAYLOAD_BLOCK_UNDEFINED,
    PAYLOAD_BLOCK_UNMAPPED,
    PAYLOAD_BLOCK_UNMAPPED_V095,
    PAYLOAD_BLOCK_ZERO,
    RESERVED_STATE,
    SB_BLOCK_PRESENT,
    SECTOR_BITMAP_BLOCK,
    SECTORS_PER_CHUNK,
    PayloadBlockState,
)

MAX_FILE_OFFSET = 1 << 50  # BAT offsets are clipped here (past any real file)
MAX_SALVAGED_BAT = 1 << 20  # BAT entries a salvage open may stand in for when the file cut it

# per-block codes of the decoded BAT
B_UNALLOC, B_ZERO, B_DATA, B_PARTIAL, B_DAMAGED = 0, 1, 2, 3, 4
#: B_* block code -> read plan piece kind
PLAN_KINDS = [readplan.HOLE, readplan.ZERO, readplan.DATA, readplan.SLOW, readplan.SLOW]
#: B_* block code -> code of the ``state`` column of a RunTable (partial: never used)
RUN_CODES = codes_for({B_UNALLOC: UNALLOCATED, B_ZERO: ZERO, B_DATA: DATA, B_PARTIAL: DATA,
                       B_DAMAGED: DAMAGED})


def describe_bat_entry(v: int) -> str:
    """One BAT entry in words (the structure explorer's view): its state and offset."""
    state = v & BAT_STATE_MASK
    name = _STATE_WORDS.get(state, f"reserved state {state}")
    off = (v >> BAT_OFFSET_SHIFT) << BAT_OFFSET_SHIFT
    return name + (f", at {off:#x}" if off else "")


# the states of version 1 of the specification, without their prefix
_STATE_WORDS = {
    int(s): s.name.removeprefix("PAYLOAD_BLOCK_")
    for s in PayloadBlockState
    if s != PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED_V095
}


class BlockMap:
    """Mixin of :class:`VhdxImage`: the BAT, decoded, and the runs it maps."""

    def _read_bat(self) -> None:
        bs, lss = self.block_size, self.logical_sector_size
        self.chunk_ratio = cr = SECTORS_PER_CHUNK * lss // bs
        self.sectors_per_block = bs // lss
        nblocks = -(-self.size // bs)
        nbitmaps = -(-nblocks // cr)
        if self.has_parent:
            nentries = nbitmaps * (cr + 1)
        else:
            nentries = nblocks + (nblocks - 1) // cr if nblocks else 0
        self.payload_blocks = nblocks
        self.bat_entries = nentries
        br = self.bat_region
        if nentries * BAT_ENTRY_SIZE > br.length:
            self.fail(CorruptImage, f"BAT region of {br.length} bytes is too small for {nentries} entries", "BAT", br.file_offset)
        have = nentries
        cut = br.file_offset + nentries * BAT_ENTRY_SIZE > self.host.size
        if cut and not self.strict and nentries <= MAX_SALVAGED_BAT:
            have = max(0, (self.host.size - br.file_offset) // BAT_ENTRY_SIZE)  # salvage: a cut-short BAT
        self._raw_bat = self.host_read(br.file_offset, have * BAT_ENTRY_SIZE, "BAT") if have else b""
        self.bat_have = have
        # nothing in the entries is refused at open (bad ones read as damaged, check()
        # lists them): they are decoded on first use (``info`` needs none of it: no numpy)

    # what _decode_bat sets
    bat = SetBy("_decode_bat")
    payload_state = SetBy("_decode_bat")
    payload_offset = SetBy("_decode_bat")
    bitmap_state = SetBy("_decode_bat")
    bitmap_offset = SetBy("_decode_bat")
    bitmap_index = SetBy("_decode_bat")
    block_code = SetBy("_decode_bat")
    _misplaced = SetBy("_decode_bat")

    def _decode_bat(self) -> None:
        """The BAT's entries as per-block columns: states, host offsets, block codes."""
        nentries, nblocks, have = self.bat_entries, self.payload_blocks, self.bat_have
        cr, br = self.chunk_ratio, self.bat_region
        nbitmaps = -(-nblocks // cr)
        bat = np.zeros(nentries, dtype=np.uint64)
        bat[:have] = np.frombuffer(self._raw_bat, dtype=BAT_ENTRY_DTYPE)
        self.bat = bat
        mask, shift = np.uint64(BAT_STATE_MASK), np.uint64(BAT_OFFSET_SHIFT)
        most = np.uint64(MAX_FILE_OFFSET >> BAT_OFFSET_SHIFT)
        k = np.arange(nblocks, dtype=np.int64)
        pidx = k + k // cr
        pe = bat[pidx]
        pstate = (pe & mask).astype(np.int8)
        poff = np.minimum(pe >> shift, most).astype(np.int64) << BAT_OFFSET_SHIFT
        self.payload_state = pstate
        self.payload_offset = poff
        # sector bitmap entries (one per chunk; the last may be absent in a non-diff file)
        sidx = np.arange(nbitmaps, dtype=np.int64) * (cr + 1) + cr
        sidx = sidx[sidx < nentries]
        se = bat[sidx]
        self.bitmap_state = (se & mask).astype(np.int8)
        self.bitmap_offset = np.minimum(se >> shift, most).astype(np.int64) << BAT_OFFSET_SHIFT
        self.bitmap_index = sidx

        code = np.full(nblocks, B_UNALLOC, dtype=np.int8)
        if self.has_parent:
            code[pstate == PAYLOAD_BLOCK_NOT_PRESENT] = B_UNALLOC
            for s in (
                PAYLOAD_BLOCK_UNDEFINED,
                PAYLOAD_BLOCK_ZERO,
                PAYLOAD_BLOCK_UNMAPPED,
                PAYLOAD_BLOCK_UNMAPPED_V095,
            ):
                code[pstate == s] = B_ZERO
        else:
            code[pstate == PAYLOAD_BLOCK_ZERO] = B_ZERO
        code[pstate == PAYLOAD_BLOCK_FULLY_PRESENT] = B_DATA
        code[pstate == PAYLOAD_BLOCK_PARTIALLY_PRESENT] = B_PARTIAL
        code[pstate == RESERVED_STATE] = B_DAMAGED
        hsize = self.host.size
        present = (code == B_DATA) | (code == B_PARTIAL)
        bad = present & ((poff < HEADER_SECTION) | (poff >= hsize))
        # a partially present block needs its chunk's sector bitmap block
        sb_ok = np.zeros(nbitmaps, dtype=bool)
        n_sb = len(self.bitmap_state)
        sb_ok[:n_sb] = (
            (self.bitmap_state == SB_BLOCK_PRESENT)
            & (self.bitmap_offset >= HEADER_SECTION)
            & (self.bitmap_offset + SECTOR_BITMAP_BLOCK <= hsize)
        )
        bad |= (code == B_PARTIAL) & ~sb_ok[k // cr] if nblocks else np.zeros(0, dtype=bool)
        bad |= pidx >= have  # entries lost with the end of the file
        code[bad] = B_DAMAGED
        # blocks over the file's own regions or over another block (cross-linked) are
        # damaged too, never read (containers.base.misplaced)
        starts, lens, labels = self.allocated_spans()
        h = self.header
        own = [(0, HEADER_SECTION), (br.file_offset, br.file_offset + br.length),
               (self.metadata_region.file_offset,
                self.metadata_region.file_offset + self.metadata_region.length)]
        if h.log_length:
            own.append((h.log_offset, h.log_offset + h.log_length))
        region, clash = misplaced(starts, starts + lens, own)
        wrong = labels[(region >= 0) | clash]
        self._misplaced = np.zeros(nblocks, dtype=bool)
        self._misplaced[wrong[wrong >= 0]] = True
        self._misplaced |= (code == B_PARTIAL) & np.isin(k // cr, -1 - wrong[wrong < 0])
        code[self._misplaced & ((code == B_DATA) | (code == B_PARTIAL))] = B_DAMAGED
        self.block_code = code

    def payload_states_light(self) -> list[int] | None:
        """Without numpy: each payload block's BAT state (what ``payload_state`` holds),
        or None when the table is too large to loop over in Python."""
        if "payload_state" in self.__dict__ or self.bat_entries > MAX_LIGHT_ENTRIES:
            return None
        e = struct.unpack(f"<{self.bat_have}Q", self._raw_bat)
        cr, have = self.chunk_ratio, self.bat_have
        return [e[i] & BAT_STATE_MASK if i < have else 0
                for i in (k + k // cr for k in range(self.payload_blocks))]

    def block_problem(self, k: int) -> str:
        """Why payload block ``k`` is damaged, in words."""
        st = int(self.payload_state[k])
        off = int(self.payload_offset[k])
        if k + k // self.chunk_ratio >= self.bat_have:
            return (f"BAT entry for payload block {k} lies past the end of the file "
                    f"({self.host.size} bytes): the BAT is cut short")
        if st == RESERVED_STATE:
            return f"BAT entry for payload block {k} has the reserved state {RESERVED_STATE}"
        if self._misplaced[k] and HEADER_SECTION <= off < self.host.size:
            return (f"payload block {k} at {off:#x} (or its sector bitmap block) overlaps the "
                    "file's own regions or another block: an impossible place")
        if st == PAYLOAD_BLOCK_PARTIALLY_PRESENT and HEADER_SECTION <= off < self.host.size:
            return f"payload block {k} is partially present but its sector bitmap block is missing"
        where = "past the end of the file" if off >= self.host.size else "inside the header section"
        return f"BAT entry for payload block {k} points to {off:#x}, {where}"

    def bat_entry_offset(self, k: int) -> int:
        """Host offset of payload block ``k``'s BAT entry."""
        return self.bat_region.file_offset + BAT_ENTRY_SIZE * (k + k // self.chunk_ratio)

    def bitmap_entry_offset(self, c: int) -> int:
        """Host offset of sector bitmap block ``c``'s BAT entry."""
        return self.bat_region.file_offset + BAT_ENTRY_SIZE * int(self.bitmap_index[c])

    # --- runs ------------------------------------------------------------------------
    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan: one BAT entry per payload block (partially present blocks
        and damaged ones take the runs)."""
        return plan if readplan.plan_units(
            plan := [], PLAN_KINDS, self.block_code, self.payload_offset, 0, self.block_size,
            start, end, self.host) else None

    def locate(self, offset: int, length: int) -> readplan.Located:
        """One BAT lookup for a read inside one payload block; else the plan decides."""
        b, within = divmod(offset, self.block_size)
        if within + length > self.block_size or b >= len(self.block_code):
            return None
        return readplan.locate_unit(PLAN_KINDS, self.block_code, self.payload_offset, b,
                                    within, length, self.host)

    def _runs(self, start: int, end: int):
        bs = self.block_size
        size = self.size
        b = start // bs
        last = -(-end // bs)
        code, off = self.block_code, self.payload_offset
        step = 1 << 16
        while b < last:
            stop = min(last, b + step)
            st = code[b:stop]
            ho = off[b:stop]
            alone = (st == B_PARTIAL) | (st == B_DAMAGED)  # each a run of its own
            starts = np.flatnonzero(unit_breaks(st, ho, bs, B_DATA, alone))
            stops = np.append(starts[1:], len(st))
            # the common stretches become columns at once; partially present, damaged and
            # cut short blocks go one by one (findings, sector bitmaps)
            c = st[starts]
            vs = (b + starts) * bs
            ve = np.minimum((b + stops) * bs, size)
            h = ho[starts].astype(np.int64)
            data = c == B_DATA
            odd = (c == B_PARTIAL) | (c == B_DAMAGED) | (data & (self.host.size - h < ve - vs))
            p = ~odd
            table = RunTable(vs[p], (ve - vs)[p], RUN_CODES[c[p]],
                             host=np.where(data, h, -1)[p], src=np.where(data, 0, -1)[p],
                             sources=[(self.path, self.host)])
            rare = [r for a, z in zip(starts[odd].tolist(), stops[odd].tolist())
                    for r in self._odd_runs(int(st[a]), b + a, (b + a) * bs,
                                            min((b + z) * bs, size), int(ho[a]))]
            yield table.with_runs(rare)
            b = stop

    def _odd_runs(self, c: int, k: int, vs: int, ve: int, host: int):
        """Runs of a stretch the columns leave out: partially present or damaged block
        ``k``, or blocks cut short by the end of the file."""
        if c == B_DATA:
            yield from self._data_run(vs, ve, host)
        elif c == B_PARTIAL:
            yield from self._partial_runs(k, vs, ve)
        else:
            self.problem("BAT", self.bat_entry_offset(k), self.block_problem(k))
            yield Run(vs, ve - vs, DAMAGED)

    def _data_run(self, vs: int, ve: int, host: int):
        room = self.host.size - host
        if room < ve - vs:  # the last block is cut short by the end of the file
            if room > 0:
                yield Run(vs, room, DATA, host_file=self.path, host_offset=host, source=self.host)
            # the file is cut short: QEMU reads zeros, we do not invent them
            self.problem("payload block", max(host, self.host.size), f"payload block data for disk bytes {vs + max(room, 0):#x}..{ve:#x} "
                          f"lies past the end of the file ({self.host.size} bytes): the file "
                          "is cut short")
            yield Run(vs + max(room, 0), ve - vs - max(room, 0), DAMAGED)
        else:
            yield Run(vs, ve - vs, DATA, host_file=self.path, host_offset=host, source=self.host)

    def _block_sector_runs(self, k: int) -> list[tuple[int, int, bool]]:
        """(first sector, end sector, present) runs of payload block ``k``'s sector bitmap."""

        def load():
            cr, spb = self.chunk_ratio, self.sectors_per_block
            sb = int(self.bitmap_offset[k // cr])
            at = sb + (k % cr) * (spb // 8)
            raw = self.host_read(at, spb // 8, "sector bitmap block")
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
            edges = np.flatnonzero(np.diff(bits)) + 1
            s = np.concatenate([[0], edges]).tolist()
            e = np.concatenate([edges, [spb]]).tolist()
            return [(a, z, bool(bits[a])) for a, z in zip(s, e)]

        return self.bitmap_cache.get(k, load)

    def _partial_runs(self, k: int, vs: int, ve: int):
        lss = self.logical_sector_size
        bstart = k * self.block_size
        host = int(self.payload_offset[k])
        for a, z, present in self._block_sector_runs(k):
            rs, re = bstart + a * lss, min(bstart + z * lss, ve)
            if rs >= ve:
                break
            if present:
                yield from self._data_run(rs, re, host + a * lss)
            else:
                yield Run(rs, re - rs, UNALLOCATED)

    def allocated_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Host ranges the BAT points to, unchecked: (starts, lengths, labels) where a label
        k >= 0 is payload block k and -1 - c is sector bitmap block c."""
        st = self.payload_state
        ks = np.flatnonzero(
            (st == PAYLOAD_BLOCK_FULLY_PRESENT) | (st == PAYLOAD_BLOCK_PARTIALLY_PRESENT)
        )
        cs = np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT)
        starts = np.concatenate([self.payload_offset[ks], self.bitmap_offset[cs]])
        lens = np.concatenate(
            [np.full(len(ks), self.block_size, np.int64), np.full(len(cs), SECTOR_BITMAP_BLOCK)]
        )
        labels = np.concatenate([ks, -1 - cs])
        return starts.astype(np.int64), lens.astype(np.int64), labels
