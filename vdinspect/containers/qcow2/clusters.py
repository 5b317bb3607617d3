"""Guest clusters to host clusters: the L1 and L2 tables, subclusters, compressed clusters."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from functools import partial

from ...errors import CorruptImage, MissingDependency
from ...io.codecs import zstd_at_most
from ...lazy import np
from .. import readplan
from ..base import DAMAGED, DATA, UNALLOCATED, ZERO, Run
from ..runs import (
    S_COMP,
    S_DAMAGED,
    S_DATA,
    S_UNALLOC,
    S_ZERO,
    UNIT_CODES,
    UNIT_STATE,
    RunTable,
)
from .structs import (
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    MAX_L1_BYTES,
    QCOW_OFLAG_COMPRESSED,
    QCOW_OFLAG_COPIED,
    QCOW_OFLAG_ZERO,
)

#: S_* unit state -> read plan piece kind (compressed and damaged units take the runs)
PLAN_KINDS = [{S_UNALLOC: readplan.HOLE, S_ZERO: readplan.ZERO, S_DATA: readplan.DATA,
               S_COMP: readplan.INFLATE}.get(k, readplan.SLOW) for k in sorted(UNIT_STATE)]


#: bytes of L2 tables that ``runs()`` reads and decodes in one go (a buffer this small is
#: reused by malloc; a larger one is mapped afresh each time and costs page faults)
BULK_BYTES = 4 << 20

#: compressed clusters read together by one ``pread``: at most this many bytes, with gaps
#: between them of at most SPAN_GAP bytes
SPAN_BYTES = 4 << 20
SPAN_GAP = 64 << 10


class ClusterMap:
    """Mixin of :class:`Qcow2Image`: the mapping and reading of guest clusters."""

    def _read_table(self, offset: int, nbytes: int, what: str, dtype=">u8") -> np.ndarray:
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint64)
        if offset + nbytes > self.file.size:
            self.fail(CorruptImage, f"{what} ({nbytes} bytes) runs past the end of the file ({self.file.size} bytes)", what, offset)
        return np.frombuffer(self.file.read(offset, nbytes), dtype=dtype).astype(np.uint64)

    def _l1_problems(self, offset: int, n: int, what: str) -> tuple[int, list[str]]:
        """The entries the virtual size needs, and what is wrong with an L1 table."""
        cs = self.cluster_size
        need = -(-self.size // (cs * self.l2_entries)) if self.size else 0
        problems = []
        if n < need:
            problems.append(f"{what} has {n} entries, {need} needed for the virtual size")
        if n * 8 > MAX_L1_BYTES:
            problems.append(f"{what} of {n} entries is too large")
        if n and offset % cs:
            problems.append(f"{what} is not cluster-aligned")
        return need, problems

    def _l1_sound(self, offset: int, n: int, what: str) -> bool:
        """Strict mode: the checks :meth:`_read_l1` makes, raising as it would; True when
        the table may be decoded later. Salvage mode: False (read it now, with findings)."""
        if not self.strict:
            return False
        _need, problems = self._l1_problems(offset, n, what)
        if problems:
            self.fail(CorruptImage, problems[0], what, offset)
        if n and offset + n * 8 > self.file.size:
            self._read_table(offset, n * 8, what)  # raises: past the end of the file
        return True

    def _read_l1(self, offset: int, n: int, what: str) -> np.ndarray:
        cs = self.cluster_size
        need, problems = self._l1_problems(offset, n, what)
        if problems and (self.strict or need * 8 > MAX_L1_BYTES):
            self.fail(CorruptImage, problems[0], what, offset)
        if not problems and (self.strict or offset + n * 8 <= self.file.size):
            return self._read_table(offset, n * 8, what)
        # salvage: keep the entries that can be trusted, mark the others as damaged
        for message in problems:
            self.finding("error", what, offset, f"{message}: unusable entries read as damaged")
        length = max(need, min(n, MAX_L1_BYTES // 8))
        usable = 0 if n and offset % cs else min(n, length)
        have = min(usable, max(0, (self.file.size - offset) // 8))
        if have < usable:
            self.finding("error", what, offset, f"{what} truncated: {have} of {n} entries in file")
        t = np.full(length, np.uint64(1), dtype=np.uint64)  # 1 = unreadable marker (misaligned)
        if have:
            t[:have] = self._read_table(offset, have * 8, what)
        return t

    def _l2_units(self, l2_offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode one L2 table into per-unit (state, host offset, raw entry) arrays."""
        return self._l2_cache.get(l2_offset, lambda: self._decode_l2(l2_offset))

    def _decode_l2(self, l2_offset: int):
        cs = self.cluster_size
        n = self.l2_entries
        # a table cut short by the end of the file (salvage): its missing entries are lost
        have = max(0, min(cs, self.file.size - l2_offset)) // self.l2_entry_size
        data = self.file.read(l2_offset, have * self.l2_entry_size) if have else b""
        raw = np.frombuffer(data.ljust(cs, b"\0"), dtype=">u8").astype(np.uint64)
        if self.extended_l2:
            e = raw[0::2]
            bitmap = raw[1::2]
        else:
            e = raw
            bitmap = None
        state, host, bad = self._classify(e)
        if self.extended_l2:
            units_state, units_host = self._expand_subclusters(state, host, bitmap, bad)
            units_state.reshape(n, -1)[have:] = S_DAMAGED
            return units_state, units_host, e
        bad[have:] = True
        if bad.any():
            state = state.copy()
            state[bad] = S_DAMAGED
        return state, host, e

    def _classify(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """L2 entries (uint64, the cluster words) -> per-cluster state (S_*), host offset
        (-1 none) and whether the host cluster cannot be read (outside the file, misaligned)."""
        cs = self.cluster_size
        comp = (e & np.uint64(QCOW_OFLAG_COMPRESSED)) != 0
        off = (e & np.uint64(L2E_OFFSET_MASK)).astype(np.int64)
        zero_flag = (e & np.uint64(QCOW_OFLAG_ZERO)) != 0
        state = np.full(len(e), S_DATA, dtype=np.int8)
        has_offset = off != 0
        if self.data_file is not None:
            has_offset |= (e & np.uint64(QCOW_OFLAG_COPIED)) != 0
        state[~has_offset] = S_UNALLOC
        if self.version >= 3 and not self.extended_l2:
            state[zero_flag] = S_ZERO
        state[comp] = S_COMP
        coff = (e & np.uint64(self.coffset_mask)).astype(np.int64)
        host = np.where(comp, coff, off)
        host[(state == S_UNALLOC) | (state == S_ZERO)] = -1
        # a host cluster outside the file, or misaligned, cannot be read
        target_size = self.data_file.size if self.data_file is not None else self.file.size
        bad = (state == S_DATA) & ((off % cs != 0) | (off >= target_size))
        bad |= (state == S_COMP) & (coff >= self.file.size)
        return state, host, bad

    def _expand_subclusters(self, state, host, bitmap, bad):
        n, sc = len(state), self.subclusters
        alloc = ((bitmap[:, None] >> np.arange(32, dtype=np.uint64)) & np.uint64(1)) != 0
        zero = ((bitmap[:, None] >> np.arange(32, 64, dtype=np.uint64)) & np.uint64(1)) != 0
        us = np.repeat(state, sc).reshape(n, sc).copy()
        uh = np.repeat(host, sc).reshape(n, sc).copy()
        plain = state == S_DATA
        us[plain[:, None] & ~alloc] = S_UNALLOC
        us[zero & ~(state == S_COMP)[:, None]] = S_ZERO
        unalloc_cl = state == S_UNALLOC
        us[unalloc_cl[:, None] & ~zero] = S_UNALLOC
        uh[plain] += (np.arange(sc, dtype=np.int64) * self.subcluster_size)[None, :]
        uh[us != S_DATA] = np.where(us[us != S_DATA] == S_COMP, uh[us != S_DATA], -1)
        bad_units = bad[:, None] & ((us == S_DATA) | (us == S_COMP))
        bad_units |= unalloc_cl[:, None] & alloc  # allocated subcluster without a cluster
        us[bad_units] = S_DAMAGED
        return us.reshape(-1), uh.reshape(-1)

    def _damaged(self, start: int, end: int, structure: str, host: int | None, msg: str):
        if self.strict:
            self.fail(CorruptImage, msg, structure, host)
        self.finding("error", structure, host, msg)
        return Run(start, end - start, DAMAGED)

    def _runs(self, start: int, end: int):
        cs = self.cluster_size
        unit = self.subcluster_size
        span = cs * self.l2_entries  # virtual bytes covered by one L2 table
        l1 = self.l1
        i = start // span
        while i * span < end:
            vbase = i * span
            vstop = min(vbase + span, self.size)
            l1e = int(l1[i]) if i < len(l1) else 0
            l2_off = l1e & L1E_OFFSET_MASK
            if l2_off == 0:
                # a stretch of equal empty entries (or salvage markers) is one run: a sparse
                # or salvaged L1 of 4 Mi entries must not cost a Python step per entry
                j = self._l1_stretch_end(i)
                vstop = min(j * span, self.size)
                marker = l1e == 1 and not self.strict  # truncated L1 (salvage marker)
                yield Run(vbase, vstop - vbase, DAMAGED if marker else UNALLOCATED)
                i = j
                continue
            elif not self.extended_l2 and not l2_off % cs and l2_off + cs <= self.file.size:
                # sound tables in a row: read and decoded together (see _bulk_runs)
                offs = [l2_off]
                j = i + 1
                while j * span < end and len(offs) < BULK_BYTES // cs:
                    o = (int(l1[j]) if j < len(l1) else 0) & L1E_OFFSET_MASK
                    if o == 0 or o % cs or o + cs > self.file.size:
                        break
                    offs.append(o)
                    j += 1
                table = self._bulk_runs(i, offs, max(start, vbase), min(end, j * span))
                if table is not None:
                    yield table
                else:  # something to report: table by table, as the reads do
                    for k, o in enumerate(offs, i):
                        yield from self._runs_in_l2(k, o, k * span, max(start, k * span),
                                                    min(end, (k + 1) * span), unit)
                i = j
                continue
            elif l2_off % cs or l2_off + cs > self.file.size and (
                self.strict or l2_off >= self.file.size
            ):
                yield self._damaged(
                    vbase,
                    vstop,
                    "L1 table",
                    self.l1_table_offset + 8 * i,
                    f"L1 entry {i} points to an L2 table at {l2_off:#x}, "
                    + ("not cluster-aligned" if l2_off % cs else "past the end of the file"),
                )
            else:
                if l2_off + cs > self.file.size:  # salvage: the entries in the file are used
                    self.finding("error", "L2 table", l2_off, f"L2 table {i} at {l2_off:#x} is "
                                 f"cut short by the end of the file ({self.file.size} bytes)")
                yield from self._runs_in_l2(
                    i, l2_off, vbase, max(start, vbase), min(end, vstop), unit
                )
            i += 1

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan: one lookup per L2 table (decoded and cached), contiguous
        host clusters joined; None for anything unusual (the runs report it)."""
        return readplan.plan_tables(start, end, self.cluster_size * self.l2_entries,
                                    self._plan_table)

    def locate(self, offset: int, length: int) -> readplan.Located:
        """One L2 lookup for a read inside one (sub)cluster; else the plan decides."""
        unit = self.subcluster_size
        within = offset % unit
        if within + length > unit:  # subclusters of one cluster may still be one piece
            cs = self.cluster_size
            inside = unit < cs and offset % cs + length <= cs
            return readplan.single(self.plan(offset, offset + length)) if inside else None
        # the L1 entry read as _plan_table reads it, inline: this is the 4 KiB read's hot path
        i, r = divmod(offset, self.cluster_size * self.l2_entries)
        l1 = self.l1
        l1e = int(l1[i]) if i < len(l1) else 0
        l2_off = l1e & L1E_OFFSET_MASK
        if l2_off == 0:
            return None if l1e == 1 and not self.strict else readplan.HOLE
        if l2_off % self.cluster_size or l2_off + self.cluster_size > self.file.size:
            return None
        state, host, _raw = self._l2_units(l2_off)
        target = self.data_file if self.data_file is not None else self.file
        return readplan.locate_unit(PLAN_KINDS, state, host, r // unit, within, length, target)

    def _plan_table(self, i: int) -> readplan.Table:
        """What L1 entry ``i`` holds for a read plan (:data:`readplan.Table`)."""
        cs = self.cluster_size
        l1 = self.l1
        l1e = int(l1[i]) if i < len(l1) else 0
        l2_off = l1e & L1E_OFFSET_MASK
        if l2_off == 0:  # 1: a salvage marker, the runs say damaged
            return None if l1e == 1 and not self.strict else readplan.HOLE
        if l2_off % cs or l2_off + cs > self.file.size:
            return None
        state, host, raw = self._l2_units(l2_off)
        target = self.data_file if self.data_file is not None else self.file
        return (PLAN_KINDS, state, host, self.subcluster_size, target,
                self._compressed_at(host, raw, i * cs * self.l2_entries))

    def _compressed_at(self, host, raw, vbase: int):
        """For a read plan: unit ``i`` of an L2 table -> (loader of its inflated compressed
        cluster, the cluster's virtual start), keyed as the runs key it."""
        cs = self.cluster_size

        def at(i: int):
            k = i // self.subclusters
            h, e = int(host[i]), int(raw[k])
            nb = ((e >> self.csize_shift) & self.csize_mask) + 1
            start = vbase + k * cs
            run = Run(start, cs, DATA, host_file=self.path, host_offset=h, compressed=True,
                      source=self.file, extra=(start, nb * 512 - (h & 511)))
            return partial(self.inflated, run), start

        return at

    def _l1_stretch_end(self, i: int) -> int:
        """The first L1 index after ``i`` whose entry differs from entry ``i``."""
        l1 = self.l1
        if i >= len(l1):  # past the table: empty up to the end of the disk
            return max(i + 1, -(-self.size // (self.cluster_size * self.l2_entries)))
        changes = getattr(self, "_l1_changes", None)
        if changes is None:
            changes = self._l1_changes = np.flatnonzero(l1[1:] != l1[:-1]) + 1
        k = int(np.searchsorted(changes, i, side="right"))
        return int(changes[k]) if k < len(changes) else len(l1)

    def _bulk_runs(self, l1_index: int, offsets: list[int], start: int, end: int):
        """The runs of ``[start, end)`` over the sound L2 tables at ``offsets`` (of L1 entries
        ``l1_index``...; no extended L2) as one RunTable, or None when a cluster needs a
        finding (the tables then go one by one). Tables next to each other in the file are
        read together, only the nonzero entries are decoded (a zero entry is unallocated),
        and the runs come from those entries and the gaps between them."""
        cs = self.cluster_size
        buf = np.empty(len(offsets) * cs, dtype=np.uint8)
        mv = memoryview(buf)
        cuts = [0, *(np.flatnonzero(np.diff(offsets) != cs) + 1).tolist(), len(offsets)]
        for a, b in zip(cuts, cuts[1:]):
            self.file.readinto(offsets[a], mv[a * cs : b * cs])
        vbase = l1_index * self.l2_entries * cs
        first = (start - vbase) // cs
        last = -(-(end - vbase) // cs)
        pos = np.flatnonzero(buf.view(np.uint64)[first:last] != 0)  # in either byte order
        e = buf.view(">u8")[first:last][pos].astype(np.uint64)
        pos += first
        state, host, bad = self._classify(e)
        target = self.data_file if self.data_file is not None else self.file
        if (bad | ((state == S_DATA) & (host > target.size - cs))).any():
            return None
        # each entry covers its cluster; an unallocated filler covers each gap after one
        # (and the start, when it comes before the first entry)
        gap = np.append(pos[1:], last) > pos + 1
        lead = int(not len(pos) or pos[0] > first)
        idx = lead + np.arange(len(pos)) + np.cumsum(gap) - gap
        m = lead + len(pos) + int(gap.sum())
        at = np.full(m, first, dtype=np.int64)
        st = np.full(m, S_UNALLOC, dtype=np.int8)
        ho = np.full(m, -1, dtype=np.int64)
        raw = np.zeros(m, dtype=np.uint64)
        at[idx], st[idx], ho[idx], raw[idx] = pos, state, host, e
        at[idx[gap] + 1] = pos[gap] + 1
        brk = np.ones(len(at), dtype=bool)
        brk[1:] = ~((st[1:] == st[:-1]) & (st[1:] != S_COMP)
                    & ((st[1:] != S_DATA) | (ho[1:] == ho[:-1] + cs)))
        s, h, raw = st[brk], ho[brk], raw[brk]
        vs = vbase + at[brk] * cs
        ve = np.append(vs[1:], vbase + last * cs)
        comp = s == S_COMP
        nb = ((raw >> np.uint64(self.csize_shift)) & np.uint64(self.csize_mask)).astype(np.int64) + 1
        target_name = self.data_file_path if self.data_file is not None else self.path
        return RunTable(vs, ve - vs, UNIT_CODES[s], host=h, compressed=comp,
                        src=np.where(s == S_DATA, 0, np.where(comp, 1, -1)), x0=vs,
                        x1=np.where(comp, nb * 512 - (h & 511), 0),
                        sources=[(target_name, target), (self.path, self.file)])

    def _runs_in_l2(self, l1_index, l2_off, vbase, start, end, unit):
        state, host, _ = self._l2_units(l2_off)
        first = (start - vbase) // unit
        last = -(-(end - vbase) // unit)
        st = state[first:last]
        ho = host[first:last]
        units_per_cluster = self.subclusters
        idx = np.arange(first, last)
        brk = np.ones(len(st), dtype=bool)
        if len(st) > 1:
            same = st[1:] == st[:-1]
            contiguous = ho[1:] == ho[:-1] + unit
            comp = st[1:] == S_COMP
            cont_ok = np.where(
                comp,
                (ho[1:] == ho[:-1]) & (idx[1:] % units_per_cluster != 0),
                np.where(st[1:] == S_DATA, contiguous, True),
            )
            brk[1:] = ~(same & cont_ok)
        starts = np.flatnonzero(brk)
        stops = np.append(starts[1:], len(st))
        cs = self.cluster_size
        target = self.data_file if self.data_file is not None else self.file
        target_name = self.data_file_path if self.data_file is not None else self.path
        s = st[starts]
        h = ho[starts]
        vs = vbase + (first + starts) * unit
        ve = vbase + (first + stops) * unit
        # the common runs become columns at once; the rare ones (damaged, a data cluster
        # cut short by the end of the file) go through Python and findings
        odd = (s == S_DAMAGED) | ((s == S_DATA) & (target.size - h < ve - vs))
        k = (first + starts) // units_per_cluster
        raw = self._l2_units(l2_off)[2][k]
        comp = s == S_COMP
        nb = ((raw >> np.uint64(self.csize_shift)) & np.uint64(self.csize_mask)).astype(np.int64) + 1
        plain = ~odd
        table = RunTable(
            vs[plain], (ve - vs)[plain], UNIT_CODES[s[plain]],
            host=np.where(s == S_DATA, h, np.where(comp, h, -1))[plain],
            compressed=comp[plain],
            src=np.where(s == S_DATA, 0, np.where(comp, 1, -1))[plain],
            x0=(vbase + k * cs)[plain], x1=np.where(comp, nb * 512 - (h & 511), 0)[plain],
            sources=[(target_name, target), (self.path, self.file)])
        rare = [r for a in np.flatnonzero(odd).tolist()
                for r in self._odd_run(l1_index, l2_off, int(s[a]), int(vs[a]), int(ve[a]),
                                       int(h[a]), int(k[a]), target, target_name)]
        yield table.with_runs(rare)

    def _odd_run(self, l1_index, l2_off, s, vs, ve, h, k, target, target_name):
        """The runs of a damaged stretch, or of a data cluster cut short by end of file."""
        cs = self.cluster_size
        if s == S_DATA:
            room = target.size - h
            yield Run(vs, room, DATA, host_file=target_name, host_offset=h, source=target)
            if vs + room >= self.size:  # only past the virtual disk: never read
                yield Run(vs + room, ve - vs - room, ZERO)
            else:  # the file is cut short: QEMU reads zeros, we do not invent them
                yield self._damaged(
                    vs + room, ve, "data cluster", target.size - target.size % cs,
                    f"data cluster cut short by the end of the file ({target.size} "
                    f"bytes): its last {ve - vs - room} bytes are missing",
                )
            return
        e = int(self._l2_units(l2_off)[2][k])
        at = l2_off + k * self.l2_entry_size
        yield self._damaged(
            vs,
            ve,
            "L2 table",
            at,
            f"L2 entry {k} (table {l1_index}) lies past the end of the file: the L2 "
            "table is cut short" if at + self.l2_entry_size > self.file.size else
            f"L2 entry {k} (table {l1_index}) = {e:#018x} points "
            "outside the file or is misaligned",
        )

    def _read_compressed(self, run: Run) -> bytes:
        h = run.host_offset
        return self._inflate(run, self.file.read(h, min(run.extra[1], self.file.size - h)))

    def _inflate_many(self, runs: list[Run]) -> Iterator[bytes]:
        """Compressed clusters lying close together in the file (as a writer leaves them)
        are read with one ``pread`` of at most :data:`SPAN_BYTES`, then inflated in turn."""
        fsize = self.file.size
        k = 0
        while k < len(runs):
            lo = runs[k].host_offset
            hi = lo
            j = k
            while j < len(runs):
                h = runs[j].host_offset
                end = min(h + runs[j].extra[1], fsize)
                if h < lo or h > hi + SPAN_GAP or end - lo > SPAN_BYTES and j > k:
                    break
                hi = max(hi, end)
                j += 1
            span = memoryview(self.file.read(lo, hi - lo))
            for r in runs[k:j]:
                h = r.host_offset
                yield self._inflate(r, span[h - lo : min(h + r.extra[1], fsize) - lo])
            k = j

    def _inflate(self, run: Run, data) -> bytes:
        """The cluster of compressed ``run`` from its compressed bytes ``data``: exactly one
        cluster, or a damaged one reported (zeros in salvage mode)."""
        cs = self.cluster_size
        h = run.host_offset
        try:
            if self.header.compression_type == 1:
                out = zstd_decompress(data, cs)
            else:  # at most a cluster: a deflate bomb stops there
                out = zlib.decompressobj(-15).decompress(data, cs)
        except (zlib.error, ValueError) as e:
            out = b""
            err = str(e)
        else:
            err = f"inflates to {len(out)} bytes, not {cs}"
        if len(out) != cs:
            msg = f"compressed cluster at {h:#x} is damaged ({err})"
            if self.strict:
                self.fail(CorruptImage, msg, "compressed cluster", h)
            self.finding("error", "compressed cluster", h, msg)
            return bytes(cs)
        return out


def zstd_decompress(data: bytes, size: int) -> bytes:
    """A zstd cluster (``compression_type`` 1): at most ``size`` bytes, frames read across."""
    try:
        return zstd_at_most(data, size, across_frames=True)
    except ImportError as e:
        raise MissingDependency(
            "this QCOW2 image uses zstd compression; install the optional extra: "
            "pip install 'vdinspect[zstd]'"
        ) from e
