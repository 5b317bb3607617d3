"""Extents: the pieces a VMDK disk is made of, and the grain-table machinery they share.

An extent covers ``size`` bytes of the virtual disk from ``start``. ``runs(start, end)``
works in extent-local byte offsets; the image shifts the runs to disk offsets.
Sparse extents map grains through a grain directory (GD) of grain tables (GTs); each
format decodes its entries into per-grain states with numpy (see ``_decode``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, NoReturn

from ...errors import CorruptImage
from ...findings import check_row
from ...io import ByteSource, LRUCache
from ...lazy import SetBy, np
from .. import readplan
from ..base import DAMAGED, DATA, UNALLOCATED, ZERO, RowViews, Run, structure_row
from ..runs import (
    S_COMP,
    S_DAMAGED,
    S_DATA,
    UNIT_CODES,
    RunTable,
    unit_breaks,
)

if TYPE_CHECKING:
    from .descriptor import ExtentLine
    from .image import VmdkImage

#: S_* grain state -> read plan piece kind (compressed and damaged grains take the runs)
PLAN_KINDS = [readplan.HOLE, readplan.ZERO, readplan.DATA, readplan.INFLATE, readplan.SLOW]

#: QEMU's limit on grain directory entries (32 Mi): more is a corrupt header
MAX_GD_ENTRIES = 32 << 20
#: a grain table is read together with its contiguous neighbours, up to this many
PREFETCH_GTS = 64
#: grain tables are scanned for emptiness this many bytes at a time
EMPTY_READ = 8 << 20
#: at most this many of the used grain tables met while scanning are decoded at once
LEARN_KEEP = 64
#: check() lists at most this many problems of each kind per extent (and counts the rest)
MAX_ENTRY_ROWS = 1000


class _TableCache(LRUCache):
    """An LRU cache of decoded grain tables that can say what it holds."""

    def __contains__(self, key) -> bool:
        return key in self._items


class Extent(RowViews):
    """One extent line of the descriptor (or the single extent of a bare sparse file)."""

    kind = "?"

    def __init__(
        self,
        image: VmdkImage,
        index: int,
        line: ExtentLine | None,
        start: int,
        size: int,
        path: str | None = None,
        source: ByteSource | None = None,
    ) -> None:
        self.image = image
        self.index = index
        self.line = line
        self.start = start  # virtual byte offset of the extent in the disk
        self.size = size  # bytes
        self.path = path  # the host file (None for ZERO extents)
        self.source = source

    @property
    def end(self) -> int:
        """Virtual byte offset just past the extent."""
        return self.start + self.size

    @property
    def label(self) -> str:
        """How findings name this extent's file."""
        if self.path is None or self.path == self.image.path:
            return ""
        return os.path.basename(self.path) + ": "

    def runs(self, start: int, end: int) -> Iterator[Run | RunTable]:
        """Yield runs over extent-local ``[start, end)``."""
        raise NotImplementedError

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan of extent-local ``[start, end)``, or None (take the runs)."""
        return None

    def locate(self, start: int, length: int) -> readplan.Located:
        """Where extent-local ``[start, start+length)`` is, as ``Image.locate`` answers."""
        return readplan.single(self.plan(start, start + length))

    def structure_rows(self) -> list[dict]:
        """This extent's on-disk structures as ``structures()`` rows."""
        return []

    def check_rows(self) -> list[dict]:
        """This extent's integrity findings as ``check()`` rows."""
        return []

    def info_fields(self) -> dict:
        """The extent's row in ``info()['extents']``."""
        line = self.line
        return dict(
            index=self.index,
            access=line.access if line else "RW",
            type=line.type if line else self.kind,
            file=line.filename if line else (os.path.basename(self.path) if self.path else None),
            path=self.path,
            start=self.start,
            size=self.size,
            offset=line.offset * 512 if line and self.kind == "FLAT" else None,
        )

    # helpers for subclasses ------------------------------------------------------------
    def fail(self, exc_type, message: str, structure: str, offset: int | None) -> NoReturn:
        """Raise ``exc_type`` naming this extent's file, the structure and offset."""
        raise exc_type(
            message, path=self.path or self.image.path, structure=structure, offset=offset
        )

    def finding(self, severity: str, structure: str, offset: int | None, message: str) -> None:
        """Record a finding on the image, naming this extent's file."""
        self.image.finding(severity, structure, offset, self.label + message)

    def damaged(self, start: int, end: int, structure: str, offset: int | None, msg: str) -> Run:
        """A ``damaged`` run (salvage) or CorruptImage (strict)."""
        if self.image.strict:
            self.fail(CorruptImage, msg, structure, offset)
        self.finding("error", structure, offset, msg)
        return Run(start, end - start, DAMAGED)

    def __repr__(self) -> str:
        name = os.path.basename(self.path) if self.path else ""
        return f"<{type(self).__name__} {name} start={self.start} size={self.size}>"


class FlatExtent(Extent):
    """Raw sectors of a host file from ``offset`` (FLAT, VMFS and the raw-device types)."""

    kind = "FLAT"

    def __init__(self, image, index, line, start, size, path, source, offset: int) -> None:
        super().__init__(image, index, line, start, size, path, source)
        self.offset = offset
        avail = source.size - offset
        if avail < size:
            msg = (
                f"flat extent needs {size} bytes from offset {offset:#x}; the file has "
                f"{max(avail, 0)} (it is truncated)"
            )
            if image.strict:
                self.fail(CorruptImage, msg, f"extent {index}", offset)
            self.finding("error", f"extent {index}", offset, msg)

    def runs(self, start: int, end: int) -> Iterator[Run | RunTable]:
        """Yield runs over extent-local ``[start, end)``."""
        avail = max(0, self.source.size - self.offset)
        if start < avail:
            stop = min(end, avail)
            yield Run(
                start,
                stop - start,
                DATA,
                host_file=self.path,
                host_offset=self.offset + start,
                source=self.source,
            )
        if end > avail:
            s = max(start, avail)
            yield self.damaged(
                s,
                end,
                f"extent {self.index}",
                self.source.size,
                "flat extent file ends before the extent does",
            )

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        if self.offset + end > self.source.size:
            return None
        return [(start, end, readplan.DATA, self.offset + start, self.source)]

    def structure_rows(self) -> list[dict]:
        """This extent's on-disk structures as ``structures()`` rows."""
        return [
            structure_row(
                f"flat extent {self.index}",
                self.path,
                self.offset,
                self.size,
                f"raw sectors of disk bytes {self.start:#x}..{self.end:#x}",
            )
        ]


class ZeroExtent(Extent):
    """A ZERO extent: sectors that read as zeros and are stored nowhere."""

    kind = "ZERO"

    def runs(self, start: int, end: int) -> Iterator[Run | RunTable]:
        """Yield runs over extent-local ``[start, end)``."""
        yield Run(start, end - start, ZERO)

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        return [(start, end, readplan.ZERO, 0, None)]


class MissingExtent(Extent):
    """An extent whose file is missing (salvage mode): everything ``damaged``."""

    kind = "missing"

    def runs(self, start: int, end: int) -> Iterator[Run | RunTable]:
        """Yield runs over extent-local ``[start, end)``."""
        yield Run(start, end - start, DAMAGED)


class GrainTableExtent(Extent):
    """A sparse extent: grain directory -> grain tables -> grains.

    Subclasses set ``grain_bytes``, ``gt_entries``, ``gt_bytes``, ``gd`` (int64 host byte
    offsets of the grain tables; 0 = none, -1 = unusable) and implement ``_read_gt`` and
    ``_decode``.
    """

    grain_bytes: int
    gt_entries: int
    gt_bytes: int
    gd: np.ndarray
    compressed = False

    def _init_tables(self) -> None:
        self._gt_cache = _TableCache(256)

    # per grain directory entry, made when first used (the directory may be decoded late)
    _empty = SetBy("_table_masks")
    _known = SetBy("_table_masks")

    def _table_masks(self) -> None:
        self._empty = np.zeros(len(self.gd), dtype=bool)  # grain table holds only zeros
        self._known = self.gd <= 0  # emptiness learned (nothing to learn without a table)

    @property
    def gt_span(self) -> int:
        """Virtual bytes covered by one grain table."""
        return self.grain_bytes * self.gt_entries

    # --- tables ------------------------------------------------------------------------
    def _read_gt(self, i: int, raw: bytes | None = None) -> np.ndarray:
        """The raw entries (uint64) of grain table ``i``."""
        raise NotImplementedError

    def _decode(self, i: int, entries: np.ndarray):
        """Per-grain (state int8, host int64, compressed bound int64) arrays of table ``i``."""
        raise NotImplementedError

    def _gt(self, i: int):
        return self._gt_cache.get(i, lambda: self._decode(i, self._read_gt(i)))

    def _prefetch(self, i: int, last: int) -> None:
        """Read grain table ``i`` and its contiguous successors (up to ``last``) at once."""
        if i in self._gt_cache:
            return
        gd, n = self.gd, 1
        base = int(gd[i])
        stop = min(last + 1, len(gd), i + PREFETCH_GTS)
        while (
            i + n < stop
            and int(gd[i + n]) == base + n * self.gt_bytes
            and (i + n) not in self._gt_cache
        ):
            n += 1
        if n == 1 or base <= 0:
            return
        data = self.source.read(base, n * self.gt_bytes)
        for k in range(n):
            chunk = data[k * self.gt_bytes : (k + 1) * self.gt_bytes]
            self._gt_cache.get(
                i + k, lambda k=k, c=chunk: self._decode(i + k, self._read_gt(i + k, c))
            )

    def _structure_marks(self, gt_offset: int) -> list[int]:
        """Host offsets where structures start, besides the grains (bounds compressed grains)."""
        return [gt_offset, self.source.size]

    def _compressed_bounds(self, host: np.ndarray, comp: np.ndarray, gt_offset: int) -> np.ndarray:
        """For each compressed grain, the bytes its record occupies: up to the next grain or
        structure (exact for the sector-padded, back-to-back records streams are made of),
        at most two grains."""
        bound = np.zeros(len(host), dtype=np.int64)
        if not comp.any():
            return bound
        fsize = self.source.size
        marks = np.array(self._structure_marks(gt_offset), dtype=np.int64)
        cands = np.unique(np.concatenate([host[host > 0], marks]))
        h = host[comp]
        nxt = cands[np.searchsorted(cands, h, side="right").clip(max=len(cands) - 1)]
        nxt = np.where(nxt > h, nxt, fsize)
        cap = 2 * self.grain_bytes + 512
        bound[comp] = np.minimum(nxt - h, cap).clip(min=0)
        return bound

    # --- runs ----------------------------------------------------------------------------
    def _learn(self, i0: int, i1: int) -> None:
        """Learn which grain tables in ``[i0, i1]`` hold only zeros, reading them in bulk."""
        sel = np.flatnonzero(~self._known[i0 : i1 + 1]) + i0
        if not len(sel):
            return
        offs = self.gd[sel]
        order = np.argsort(offs, kind="stable")
        sel, offs = sel[order], offs[order]
        per = max(1, EMPTY_READ // self.gt_bytes)
        brk = (np.flatnonzero(np.diff(offs) != self.gt_bytes) + 1).tolist()
        for a, b in zip([0, *brk], [*brk, len(sel)]):
            for c in range(a, b, per):
                ids = sel[c : min(b, c + per)]
                raw = self.source.read(int(offs[c]), len(ids) * self.gt_bytes)
                table = np.frombuffer(raw, dtype=np.uint8).reshape(len(ids), self.gt_bytes)
                empty = ~table.any(axis=1)
                self._empty[ids] = empty
                self._known[ids] = True
                used = np.flatnonzero(~empty)
                if len(used) <= LEARN_KEEP:  # decode the few used ones now: no second read
                    for k in used.tolist():
                        i, chunk = int(ids[k]), table[k].tobytes()
                        self._gt_cache.get(
                            i, lambda i=i, c=chunk: self._decode(i, self._read_gt(i, c))
                        )

    def read_tables(self, offsets: np.ndarray) -> np.ndarray:
        """The bytes of the grain tables at ``offsets`` (one row each), contiguous ones read
        together."""
        out = np.zeros((len(offsets), self.gt_bytes), dtype=np.uint8)
        if not len(offsets):
            return out
        order = np.argsort(offsets, kind="stable")
        offs = offsets[order]
        brk = (np.flatnonzero(np.diff(offs) != self.gt_bytes) + 1).tolist()
        for a, b in zip([0, *brk], [*brk, len(offs)]):
            raw = self.source.read(int(offs[a]), (b - a) * self.gt_bytes)
            out[order[a:b]] = np.frombuffer(raw, dtype=np.uint8).reshape(b - a, self.gt_bytes)
        return out

    def runs(self, start: int, end: int) -> Iterator[Run | RunTable]:
        """Yield runs over extent-local ``[start, end)``."""
        span, gd, n = self.gt_span, self.gd, len(self.gd)
        i0, i1 = start // span, (end - 1) // span
        if i0 < n:
            j1 = min(i1, n - 1)
            self._learn(i0, j1)
            # 0: absent or all-zero grain table, 1: unusable GD entry, 2: a table to read
            seg = gd[i0 : j1 + 1]
            kind = np.full(len(seg), 2, dtype=np.int8)  # int8 throughout: up to 32 Mi entries
            kind[seg < 0] = 1
            kind[(seg == 0) | self._empty[i0 : j1 + 1]] = 0
            edges = (np.flatnonzero(np.diff(kind)) + 1).tolist()
            for a, b in zip([0, *edges], [*edges, len(kind)]):
                s, e = max(start, (i0 + a) * span), min(end, (i0 + b) * span)
                if kind[a] == 0:
                    yield Run(s, e - s, UNALLOCATED)
                elif kind[a] == 1:
                    more = f" (and the {b - a - 1} entries after it)" if b - a > 1 else ""
                    yield self.damaged(
                        s,
                        e,
                        self.gd_name,
                        self.gd_entry_offset(i0 + a),
                        f"grain directory entry {i0 + a} is unusable (points outside the "
                        f"file){more}",
                    )
                else:
                    for i in range(i0 + a, i0 + b):
                        vbase = i * span
                        self._prefetch(i, j1)
                        yield from self._runs_in_gt(
                            i, vbase, max(start, vbase), min(end, vbase + span)
                        )
        if end > n * span:  # past the grain directory (descriptor larger than capacity)
            s = max(start, n * span)
            yield Run(s, end - s, UNALLOCATED)

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """One lookup per grain table (decoded and cached), contiguous grains joined."""
        return readplan.plan_tables(start, end, self.gt_span, self._plan_table)

    def locate(self, start: int, length: int) -> readplan.Located:
        """One grain table lookup for a read inside one grain; else the plan decides."""
        g = self.grain_bytes
        within = start % g
        if within + length > g:
            return None
        # the directory entry read as _plan_table reads it, inline: the 4 KiB read's hot path
        i, r = divmod(start, self.gt_span)
        if i >= len(self.gd):
            return readplan.HOLE
        e = int(self.gd[i])
        if e < 0:
            return None
        if e == 0 or self._empty[i]:
            return readplan.HOLE
        state, host, _bound = self._gt(i)
        return readplan.locate_unit(PLAN_KINDS, state, host, r // g, within, length,
                                    self.source)

    def _plan_table(self, i: int) -> readplan.Table:
        """What grain directory entry ``i`` holds for a read plan (:data:`readplan.Table`):
        past the directory and empty tables read the layer below."""
        if i >= len(self.gd):
            return readplan.HOLE
        g = int(self.gd[i])
        if g < 0:
            return None
        if g == 0 or self._empty[i]:
            return readplan.HOLE
        state, host, bound = self._gt(i)
        return (PLAN_KINDS, state, host, self.grain_bytes, self.source,
                self._compressed_at(host, bound, i * self.gt_span))

    def _compressed_at(self, host, bound, vbase: int):
        """For a read plan: grain ``k`` of a table -> (loader of the inflated grain, its
        extent-local start), keyed as the image's runs key it (disk offsets)."""
        g = self.grain_bytes

        def at(k: int):
            start = vbase + k * g
            run = Run(self.start + start, g, DATA, host_file=self.path,
                      host_offset=int(host[k]), compressed=True, source=self.source,
                      extra=(self.start + start, int(bound[k])))
            return partial(self.image.inflated, run), start

        return at

    gd_name = "grain directory"

    def gd_entry_offset(self, i: int) -> int | None:
        """Host offset of grain directory entry ``i`` (None if unknown)."""
        return None

    def gte_offset(self, i: int, k: int) -> int | None:
        """Host offset of entry ``k`` of grain table ``i`` (None if unknown)."""
        g = int(self.gd[i]) if i < len(self.gd) else 0
        return g + k * self.entry_size if g > 0 else None

    entry_size = 4

    def _runs_in_gt(self, i: int, vbase: int, start: int, end: int):
        state, host, bound = self._gt(i)
        g = self.grain_bytes
        first = (start - vbase) // g
        last = -(-(end - vbase) // g)
        st = state[first:last]
        ho = host[first:last]
        starts = np.flatnonzero(unit_breaks(st, ho, g, S_DATA, st == S_COMP))
        stops = np.append(starts[1:], len(st))
        fsize = self.source.size if self.source is not None else 0
        s = st[starts]
        k = first + starts
        vs0 = vbase + k * g
        vs = np.maximum(start, vs0)
        ve = np.minimum(end, vbase + (first + stops) * g)
        comp = s == S_COMP
        data = s == S_DATA
        h = np.where(data, ho[starts] + (vs - vs0), ho[starts])
        # the common runs become columns at once; damaged ones and grains cut short by the
        # end of the file go one by one (findings)
        odd = (s == S_DAMAGED) | (data & (fsize - h < ve - vs))
        p = ~odd
        table = RunTable(
            vs[p], (ve - vs)[p], UNIT_CODES[s[p]], host=np.where(data | comp, h, -1)[p],
            compressed=comp[p], src=np.where(data | comp, 0, -1)[p], x0=vs0[p],
            x1=np.where(comp, bound[k], 0)[p], sources=[(self.path, self.source)])
        rare = []
        for a in np.flatnonzero(odd).tolist():
            rare += self._odd_runs(i, int(s[a]), int(vs[a]), int(ve[a]), int(h[a]),
                                   int(k[a]), int(stops[a] - starts[a]), fsize)
        yield table.with_runs(rare)

    def _odd_runs(self, i: int, s: int, vs: int, ve: int, h: int, k: int, count: int,
                  fsize: int) -> list[Run]:
        """The runs of a damaged stretch of ``count`` entries from ``k``, or of a grain cut
        short by the end of the file."""
        g = self.grain_bytes
        if s == S_DATA:
            room = fsize - h
            out = []
            if room > 0:
                out.append(Run(vs, room, DATA, host_file=self.path, host_offset=h,
                               source=self.source))
            k += max(room, 0) // g
            out.append(self.damaged(
                vs + max(room, 0), ve, "grain table", self.gte_offset(i, k),
                f"grain {k} of grain table {i} is cut short by the end of the file"))
            return out
        more = f" (and the {count - 1} entries after it)" if count > 1 else ""
        return [self.damaged(vs, ve, "grain table", self.gte_offset(i, k),
                             self.bad_entry_message(i, k) + more)]

    def bad_entry_message(self, i: int, k: int) -> str:
        """Why entry ``k`` of grain table ``i`` cannot be used."""
        raw = self._read_gt(i)
        return f"grain table {i} entry {k} = {int(raw[k]):#x} points outside the file or is invalid"

    # --- reports shared by the sparse kinds ---------------------------------------------
    def unusable_gd_rows(self) -> list[dict]:
        """One ``check()`` row counting the grain directory entries that name no readable
        grain table (the first one named), or none."""
        bad = np.flatnonzero(self.gd < 0)
        if not len(bad):
            return []
        i = int(bad[0])
        return [check_row("error", self.gd_name, self.gd_entry_offset(i),
                          self.label + self.bad_gd_message(len(bad), i))]

    def bad_gd_message(self, count: int, i: int) -> str:
        """What :meth:`unusable_gd_rows` says of ``count`` bad entries, ``i`` the first."""
        return f"{count} grain directory entries point outside the file (first: entry {i})"

    def all_tables(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (gt index, state, host) for every grain table (never raises)."""
        if len(self.gd):
            self._learn(0, len(self.gd) - 1)
        for i in np.flatnonzero((self.gd > 0) & ~self._empty).tolist():
            try:
                state, host, _ = self._gt(i)
            except (CorruptImage, ValueError):
                continue
            yield i, state, host

    def data_spans(self) -> list[tuple[int, int, int]]:
        """(host offset, length, grains) of uncompressed data grains, merged when contiguous."""
        hosts = [h[s == S_DATA] for _, s, h in self.all_tables()]
        if not hosts:
            return []
        h = np.sort(np.concatenate(hosts))
        if not len(h):
            return []
        g = self.grain_bytes
        brk = np.flatnonzero(np.diff(h) != g) + 1
        starts = np.concatenate([[0], brk])
        stops = np.concatenate([brk, [len(h)]])
        fsize = self.source.size
        out = []
        for a, b in zip(starts.tolist(), stops.tolist()):
            off = int(h[a])
            n = min((b - a) * g, max(0, fsize - off))
            if n:
                out.append((off, n, b - a))
        return out

    def grain_table_rows(self, gd: np.ndarray | None = None, name: str = "grain table",
                         unit: int = 1) -> list[dict]:
        """``structures()`` rows for the grain tables directory ``gd`` names (default: the
        extent's ``gd``; ``unit``: bytes per unit of its entries, SECTOR in VMDK4)."""
        gd = self.gd if gd is None else gd
        return [
            structure_row(f"{name} {i}", self.path, int(gd[i]) * unit, self.gt_bytes,
                          f"maps extent bytes {i * self.gt_span:#x}..")
            for i in np.flatnonzero(gd > 0).tolist()
        ]

    def data_rows(self) -> list[dict]:
        """``structures()`` rows for the stored data grains."""
        return [
            structure_row("data grains", self.path, off, n, f"{count} grains of guest data")
            for off, n, count in self.data_spans()
        ]

    def table_checks(self, metadata: list[tuple[int, int, str]]) -> list[dict]:
        """Entries past the end of the file, grains cut short by it, grains referenced twice
        or inside metadata: one row per entry (at most MAX_ENTRY_ROWS of each kind), keyed
        like the findings a salvage read records, so a read before ``check()`` adds none."""
        rows: list[dict] = []
        fsize = self.source.size
        g = self.grain_bytes
        hosts: list[np.ndarray] = []  # host offsets of the used grains
        where: list[np.ndarray] = []  # host offset of the grain table entry naming each (-1)
        bad = 0
        for i, state, host in self.all_tables():
            for k in np.flatnonzero(state == S_DAMAGED).tolist():
                bad += 1
                if bad <= MAX_ENTRY_ROWS:
                    rows.append(
                        check_row(
                            "error", "grain table", self.gte_offset(i, k),
                            self.label + self.bad_entry_message(i, k),
                        )
                    )
            used = np.flatnonzero((state == S_DATA) | (state == S_COMP))
            if len(used):
                base = self.gte_offset(i, 0)
                hosts.append(host[used])
                where.append(
                    np.full(len(used), -1, dtype=np.int64)
                    if base is None
                    else base + used.astype(np.int64) * self.entry_size
                )
        if bad > MAX_ENTRY_ROWS:
            rows.append(self._more_row("grain table", bad, "grain table entries are unusable"))
        if not hosts:
            return rows
        h, w = np.concatenate(hosts), np.concatenate(where)
        order = np.argsort(h, kind="stable")
        h, w = h[order], w[order]
        if not self.compressed:
            cut = np.flatnonzero((h < fsize) & (h + g > fsize))
            for c in cut[:MAX_ENTRY_ROWS].tolist():
                rows.append(
                    check_row(
                        "error", "grain table", None if w[c] < 0 else int(w[c]),
                        self.label + f"the grain at {int(h[c]):#x} is cut short by "
                        f"the end of the file ({fsize:#x})",
                    )
                )
        dup = np.flatnonzero(h[1:] == h[:-1]) + 1  # each reference after the first
        for c in dup[:MAX_ENTRY_ROWS].tolist():
            first = int(np.searchsorted(h, h[c]))
            n = int(np.searchsorted(h, h[c], side="right")) - first
            rows.append(
                check_row(
                    "error", "grain", int(h[c]),
                    self.label + f"grain at {int(h[c]):#x} is referenced by {n} grain "
                    f"table entries (this one at {_at(w[c])}, the first at {_at(w[first])})",
                )
            )
        if len(dup) > MAX_ENTRY_ROWS:
            rows.append(self._more_row("grain", len(dup), "grains are referenced twice"))
        if not self.compressed and metadata:
            rows += self._overlaps(h, w, metadata)
        return rows

    def _more_row(self, structure: str, n: int, what: str) -> dict:
        """A row counting the problems of one kind not listed."""
        return check_row(
            "warning", structure, None,
            self.label + f"{n - MAX_ENTRY_ROWS} more {what} (only the first "
            f"{MAX_ENTRY_ROWS} are listed)",
        )

    def _overlaps(
        self, h: np.ndarray, w: np.ndarray, metadata: list[tuple[int, int, str]]
    ) -> list[dict]:
        """Rows for grains (sorted host offsets ``h``, named by the table entries ``w``) that
        overlap a metadata region."""
        g = self.grain_bytes
        fsize = self.source.size  # regions a corrupt header puts outside the file hold no grain
        meta = sorted(
            (o, min(o + n, fsize), name) for o, n, name in metadata if n > 0 and 0 <= o < fsize
        )
        if not meta:
            return []
        starts = np.array([m[0] for m in meta], dtype=np.int64)
        ends = np.maximum.accumulate(np.array([m[1] for m in meta], dtype=np.int64))
        k = np.searchsorted(starts, h + g, side="left") - 1  # last region starting before
        hit = np.flatnonzero((k >= 0) & (ends[k.clip(min=0)] > h))
        rows = []
        for c in hit[:MAX_ENTRY_ROWS].tolist():
            off = int(h[c])
            name, at = next((n, o) for o, e, n in meta if o < off + g and e > off)
            rows.append(
                check_row(
                    "error", "grain", off,
                    self.label + f"grains overlap metadata: the grain at {off:#x} "
                    f"(grain table entry at {_at(w[c])}) overlaps the {name} at {at:#x}",
                )
            )
        if len(hit) > MAX_ENTRY_ROWS:
            rows.append(self._more_row("grain", len(hit), "grains overlap metadata"))
        return rows


def _at(offset) -> str:
    """A host offset for a message (``-1``: not known)."""
    return "?" if offset is None or offset < 0 else f"{int(offset):#x}"
